"""Property sets: names, value types, size caps, negotiable names, versions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import MarketError, PropertyError, Version, is_negotiable, lookup, validate_properties
from market import properties as P


def golem_offer() -> dict[str, object]:
    return {
        P.INF_CPU_THREADS: 7,
        P.INF_CPU_CORES: 4,
        P.INF_MEM_GIB: 11.2,
        P.INF_STORAGE_GIB: 80.5,
        P.RUNTIME_NAME: "vm",
        P.RUNTIME_VERSION: "0.3.0",
        P.NODE_ID_NAME: "fancy-node",
        P.NODE_DEBUG_SUBNET: "public",
        P.SRV_COMP_EXPIRATION: 1_800_000_000_000,
        P.COM_SCHEME: P.SCHEME_PAYU,
        P.COM_PRICING_MODEL: P.PRICING_LINEAR,
        P.COM_PRICING_MODEL_LINEAR_COEFFS: ["0.0001", "0.00002", "0"],
        P.COM_USAGE_VECTOR: [P.USAGE_CPU_SEC, P.USAGE_DURATION_SEC],
        P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120,
        P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 120,
        P.payment_platform_address("erc20-polygon-glm"): "0x" + "ab" * 20,
        P.SRV_CAPS_MULTI_ACTIVITY: True,
    }


def test_standard_names_are_golems() -> None:
    assert P.INF_MEM_GIB == "golem.inf.mem.gib"
    assert P.COM_PRICING_MODEL_LINEAR_COEFFS == "golem.com.pricing.model.linear.coeffs"
    assert P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC == "golem.com.scheme.payu.debit-note.interval-sec?"
    assert P.USAGE_CPU_SEC == "golem.usage.cpu_sec"
    assert P.payment_platform_address("erc20-polygon-glm") == "golem.com.payment.platform.erc20-polygon-glm.address"


def test_a_golem_offer_validates_unchanged() -> None:
    props = golem_offer()
    assert validate_properties(props) == props


def test_tuples_become_lists() -> None:
    assert validate_properties({"a": ("x", 1)}) == {"a": ["x", 1]}


@pytest.mark.parametrize(
    "name",
    ["", ".a", "a.", "a..b", "a b", "a?b", "a??", "golem.inf.mem.gib!", "ä", "a/b", "x" * 257],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(PropertyError):
        validate_properties({name: 1})


@pytest.mark.parametrize("name", ["a", "golem.usage.cpu_sec", "a-b.c_d?", "Golem.Mixed.Case", "x" * 256])
def test_good_names(name: str) -> None:
    validate_properties({name: 1})


@pytest.mark.parametrize(
    "value",
    [None, math.nan, math.inf, -math.inf, b"bytes", {"a": 1}, [[1]], [{"a": 1}], [None], 1 << 64, -(1 << 64) - 1,
     "x" * 4097, list(range(257)), object()],
)
def test_bad_values(value: object) -> None:
    with pytest.raises(PropertyError):
        validate_properties({"a": value})


def test_bad_containers() -> None:
    for bad in (None, [("a", 1)], "a=1"):
        with pytest.raises(PropertyError):
            validate_properties(bad)
    with pytest.raises(PropertyError):
        validate_properties({1: "a"})
    with pytest.raises(PropertyError):
        validate_properties({f"p{i}": i for i in range(257)})


def test_total_size_cap() -> None:
    props = {f"p{i}": "x" * 4000 for i in range(20)}
    with pytest.raises(PropertyError, match="too large"):
        validate_properties(props)


def test_a_name_may_not_be_both_negotiable_and_not() -> None:
    with pytest.raises(PropertyError):
        validate_properties({"a": 1, "a?": 2})


def test_property_error_is_a_market_error() -> None:
    assert issubclass(PropertyError, MarketError)


def test_negotiable_names_and_lookup() -> None:
    assert is_negotiable(P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC)
    assert not is_negotiable(P.COM_SCHEME)
    props = {"a?": 1, "b": 2}
    assert lookup(props, "a") == 1
    assert lookup(props, "a?") == 1
    assert lookup(props, "b") == 2
    assert lookup(props, "b?") is None
    assert lookup(props, "c") is None


@pytest.mark.parametrize(
    ("lo", "hi"),
    [("1.2.3", "1.2.4"), ("1.9", "1.10"), ("1.0.0-rc.1", "1.0.0"), ("1.0.0-1", "1.0.0-alpha"),
     ("1.0.0-alpha", "1.0.0-alpha.1"), ("0.17", "0.17.1"), ("2", "10.0")],
)
def test_version_order(lo: str, hi: str) -> None:
    assert Version.parse(lo) < Version.parse(hi)
    assert Version.parse(hi) > Version.parse(lo)


def test_version_equality_and_text() -> None:
    assert Version.parse("1.2") == Version.parse("1.2.0") == Version.parse("1.2.0+build.5")
    assert hash(Version.parse("1.2")) == hash(Version.parse("1.2.0.0"))
    assert str(Version.parse("1.0.0-rc.1")) == "1.0.0-rc.1"


@pytest.mark.parametrize("text", ["", "v1.2", "1.2.3.4.5", "1..2", "a", "1.2-", "1.2.x"])
def test_bad_versions(text: str) -> None:
    with pytest.raises(ValueError):
        Version.parse(text)


@settings(deadline=None, max_examples=200)
@given(st.dictionaries(st.text(max_size=20), st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=50),
                                                        st.binary(max_size=5), st.lists(st.integers(), max_size=3))))
def test_validation_raises_only_property_errors(props: dict[str, object]) -> None:
    try:
        out = validate_properties(props)
    except PropertyError:
        return
    assert out == props


def test_public_surface_is_pinned() -> None:
    import market

    assert sorted(market.__all__) == sorted(
        ["MAX_CONSTRAINT_LENGTH", "MAX_DEPTH", "And", "Compare", "Constraint", "ConstraintSyntaxError", "Demand",
         "Empty", "Like", "MarketError", "Matcher", "Not", "Offer", "Op", "Or", "Present", "PropertyError", "Tri",
         "Version", "evaluate", "format", "is_negotiable", "lookup", "matches", "parse", "validate_properties",
         "DEMAND_DOMAIN", "OFFER_DOMAIN", "WITHDRAW_DOMAIN", "AddResult", "AddStatus", "OfferBook", "OfferError",
         "OfferRejected", "SignedDemand", "SignedOffer", "SignedWithdrawal", "TokenBucket", "WithdrawResult",
         "WithdrawStatus", "due_for_reannounce", "make_demand", "make_offer", "make_withdrawal", "offer_id",
         "reannounce_at", "verify_demand", "verify_offer", "verify_withdrawal",
         "Agreement", "AgreementInvalid", "LocalProtocolError", "Negotiation", "NegotiationError",
         "RemoteProtocolError", "Role", "State", "build_agreement", "cosign", "sign_agreement", "verify_agreement",
         "OFFER_CONSTRAINTS", "Capacity", "CapacityLedger", "LinearPricing", "Policy", "PolicyConfig", "Preset",
         "PresetError", "PricingError", "ProposalContext", "Rejection", "default_limits", "machine_capacity",
         "offer_properties", "Candidate", "ProviderRecord", "Strategy", "StrategyConfig", "record_outcome"]
    )
    for name in market.__all__:
        assert hasattr(market, name), name
