"""The provider's acceptance policy: each rule both ways, the order, config JSON, settling counters."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import properties as P
from market.constraints import parse
from market.errors import MarketError
from market.matching import Demand, Offer, matches
from market.negotiation import Counter, Negotiation, Propose, Role, settle_terms
from market.policy import (
    CODES,
    NO_CAPACITY,
    AllowList,
    DebitNoteInterval,
    DenyList,
    ExpirationBounds,
    PaymentTimeout,
    Policy,
    PolicyConfig,
    PolicyError,
    PriceFloor,
    ProposalContext,
    Rejection,
)
from market.presets import OFFER_CONSTRAINTS, Preset, offer_properties
from market.pricing import LinearPricing

NOW = 1_700_000_000_000
HOUR_MS = 3_600_000
ALICE, MALLORY = "12D3KooWAlice", "12D3KooWMallory"
PRICING = LinearPricing(start_fee=10, per_cpu_sec=100, per_duration_sec=20)
OFFER = offer_properties(Preset("small", pricing=PRICING), node_name="prov")
DEMAND: dict[str, object] = {P.SRV_COMP_EXPIRATION: NOW + HOUR_MS, P.NODE_DEBUG_SUBNET: "public"}


def ctx(
    demand: Mapping[str, object] | None = None,
    offer: Mapping[str, object] | None = None,
    requestor: str = ALICE,
    now_ms: int = NOW,
) -> ProposalContext:
    return ProposalContext(requestor, DEMAND if demand is None else demand, OFFER if offer is None else offer, now_ms)


def code(policy: Policy, context: ProposalContext) -> str | None:
    rejection = policy.check(context)
    if rejection is not None:
        assert rejection.code in CODES
        assert rejection.message and "\n" not in rejection.message
    return None if rejection is None else rejection.code


def test_error_tree_and_rejection() -> None:
    assert issubclass(PolicyError, MarketError)
    r = Rejection("no-capacity", "all slots are busy")
    assert str(r) == "no-capacity: all slots are busy"
    assert NO_CAPACITY == "no-capacity" and NO_CAPACITY in CODES


def test_default_policy_accepts_a_plain_demand() -> None:
    assert Policy().check(ctx()) is None


# -- each rule ---------------------------------------------------------------------------


def test_deny_list() -> None:
    rule = DenyList(frozenset({MALLORY}))
    assert rule.check(ctx()) is None
    r = rule.check(ctx(requestor=MALLORY))
    assert r is not None and r.code == "requestor-denied" == DenyList.code


def test_allow_list() -> None:
    assert AllowList(None).check(ctx(requestor=MALLORY)) is None  # None = everyone
    rule = AllowList(frozenset({ALICE}))
    assert rule.check(ctx()) is None
    r = rule.check(ctx(requestor=MALLORY))
    assert r is not None and r.code == "requestor-not-allowed"
    r = AllowList(frozenset()).check(ctx())
    assert r is not None and r.code == "requestor-not-allowed"  # an empty allow list admits nobody


@pytest.mark.parametrize(
    ("expiration", "expected"),
    [
        (NOW + 60_000, None),
        (NOW + 24 * HOUR_MS, None),
        (NOW + 59_999, "expiration-out-of-bounds"),
        (NOW + 24 * HOUR_MS + 1, "expiration-out-of-bounds"),
        (NOW - 1, "expiration-out-of-bounds"),
        (0, "expiration-out-of-bounds"),
        (float(NOW + HOUR_MS), "expiration-missing"),
        (str(NOW + HOUR_MS), "expiration-missing"),
        (True, "expiration-missing"),
    ],
)
def test_expiration_bounds(expiration: object, expected: str | None) -> None:
    rule = ExpirationBounds(60, 24 * 3600)
    r = rule.check(ctx({P.SRV_COMP_EXPIRATION: expiration}))
    assert (None if r is None else r.code) == expected


def test_expiration_missing_and_negotiable_form() -> None:
    rule = ExpirationBounds(60, 3600)
    r = rule.check(ctx({}))
    assert r is not None and r.code == "expiration-missing" and P.SRV_COMP_EXPIRATION in r.message
    assert rule.check(ctx({P.SRV_COMP_EXPIRATION + "?": NOW + 120_000})) is None


def test_expiration_message_says_what_to_do() -> None:
    r = ExpirationBounds(60, 24 * 3600).check(ctx({P.SRV_COMP_EXPIRATION: NOW + 5_000}))
    assert r is not None
    assert r.message == "agreement expiration must be 1 min to 24 h from now; the demand's is 5 s from now"
    r = ExpirationBounds(60, 24 * 3600).check(ctx({P.SRV_COMP_EXPIRATION: NOW - 7_200_000}))
    assert r is not None and r.message.endswith("the demand's is 2 h ago")


def test_price_floor() -> None:
    assert PriceFloor(None).check(ctx(offer={})) is None  # no floor: nothing to check
    assert PriceFloor(PRICING).check(ctx()) is None
    assert PriceFloor(LinearPricing(0, 0, 0)).check(ctx()) is None
    for floor in (LinearPricing(11, 100, 20), LinearPricing(10, 101, 20), LinearPricing(10, 100, 21)):
        r = PriceFloor(floor).check(ctx())
        assert r is not None and r.code == "price-below-floor"


@pytest.mark.parametrize(
    "offer",
    [
        {},
        {k: v for k, v in OFFER.items() if k != P.COM_PRICING_MODEL_LINEAR_COEFFS},
        OFFER | {P.COM_PRICING_MODEL_LINEAR_COEFFS: [0.1, 0.2, 0.0]},
        OFFER | {P.COM_PRICING_MODEL: "fixed"},
    ],
)
def test_price_floor_on_invalid_pricing(offer: dict[str, object]) -> None:
    r = PriceFloor(LinearPricing(0, 0, 0)).check(ctx(offer=offer))
    assert r is not None and r.code == "pricing-invalid"


@pytest.mark.parametrize(
    ("rule_cls", "name", "code_"),
    [
        (DebitNoteInterval, P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC, "debit-note-interval-out-of-bounds"),
        (PaymentTimeout, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC, "payment-timeout-out-of-bounds"),
    ],
)
@pytest.mark.parametrize(
    ("value", "ok"),
    [(None, True), (30, True), (600, True), (29, False), (601, False), (0, False), (-1, False),
     (60.0, False), ("60", False), (True, False), ([60], False)],
)
def test_payment_term_bounds(rule_cls: type, name: str, code_: str, value: object, ok: bool) -> None:
    rule = rule_cls(30, 600)
    demand = {} if value is None else {name: value}
    r = rule.check(ctx(demand))
    assert (r is None) == ok
    if r is not None:
        assert r.code == code_ and name in r.message
    # a demand may also state the term without its '?'
    if value is not None:
        r2 = rule.check(ctx({name.rstrip("?"): value}))
        assert (r2 is None) == ok


# -- the chain ---------------------------------------------------------------------------


def test_rules_in_order() -> None:
    policy = Policy(PolicyConfig())
    assert [type(r) for r in policy.rules] == [DenyList, AllowList, ExpirationBounds, PriceFloor, DebitNoteInterval, PaymentTimeout]


def test_first_rejection_wins() -> None:
    config = PolicyConfig(
        deny=frozenset({MALLORY}),
        allow=frozenset({ALICE}),
        price_floor=LinearPricing(10**6, 10**6, 10**6),
        debit_note_interval_s=(60, 600),
        payment_timeout_s=(60, 600),
    )
    policy = Policy(config)
    terrible = {
        P.SRV_COMP_EXPIRATION: NOW + 1,
        P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 1,
        P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 1,
    }
    assert code(policy, ctx(terrible, requestor=MALLORY)) == "requestor-denied"
    assert code(policy, ctx(terrible, requestor="12D3KooWBob")) == "requestor-not-allowed"
    assert code(policy, ctx(terrible)) == "expiration-out-of-bounds"
    terrible[P.SRV_COMP_EXPIRATION] = NOW + HOUR_MS
    assert code(policy, ctx(terrible)) == "price-below-floor"
    policy = Policy(PolicyConfig(debit_note_interval_s=(60, 600), payment_timeout_s=(60, 600)))
    assert code(policy, ctx(terrible)) == "debit-note-interval-out-of-bounds"
    terrible[P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC] = 120
    assert code(policy, ctx(terrible)) == "payment-timeout-out-of-bounds"
    terrible[P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC] = 120
    assert code(policy, ctx(terrible)) is None


def test_every_rule_has_its_codes() -> None:
    for rule in Policy().rules:
        assert rule.code in CODES
        assert rule.code in type(rule).codes  # type: ignore[attr-defined]


# -- config ------------------------------------------------------------------------------


def test_config_defaults() -> None:
    c = PolicyConfig()
    assert (c.min_expiration_s, c.max_expiration_s) == (60, 86_400)
    assert c.price_floor is None and c.deny == frozenset() and c.allow is None
    assert c.debit_note_interval_s == (1, 3600) and c.payment_timeout_s == (1, 3600)
    assert c.default_debit_note_interval_s == 120 and c.default_payment_timeout_s == 120


def test_config_normalises_collections() -> None:
    c = PolicyConfig(deny=[MALLORY, MALLORY], allow={ALICE}, debit_note_interval_s=[5, 500])  # type: ignore[arg-type]
    assert c.deny == frozenset({MALLORY}) and isinstance(c.deny, frozenset)
    assert c.allow == frozenset({ALICE})
    assert c.debit_note_interval_s == (5, 500)
    assert hash(c) == hash(PolicyConfig(deny=frozenset({MALLORY}), allow=frozenset({ALICE}), debit_note_interval_s=(5, 500)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_expiration_s": -1},
        {"min_expiration_s": 1.5},
        {"min_expiration_s": 100, "max_expiration_s": 99},
        {"max_expiration_s": 400 * 24 * 3600},
        {"price_floor": {"start_fee": "0"}},
        {"deny": "12D3KooWMallory"},  # a string is not a list of ids
        {"deny": [""]},
        {"allow": [1]},
        {"debit_note_interval_s": (0, 10)},
        {"debit_note_interval_s": (10, 5)},
        {"debit_note_interval_s": (1, 2, 3)},
        {"debit_note_interval_s": 60},
        {"payment_timeout_s": (1, 10**9)},
        {"default_debit_note_interval_s": 7200},  # outside the default bounds
        {"default_payment_timeout_s": 0},
        {"default_payment_timeout_s": True},
    ],
)
def test_config_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(PolicyError):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


def test_config_json_round_trip() -> None:
    c = PolicyConfig(
        min_expiration_s=30,
        max_expiration_s=7200,
        price_floor=PRICING,
        deny=frozenset({MALLORY, "12D3KooWEve"}),
        allow=frozenset({ALICE}),
        debit_note_interval_s=(30, 600),
        payment_timeout_s=(60, 900),
        default_debit_note_interval_s=60,
        default_payment_timeout_s=300,
    )
    data = c.to_json()
    assert data["deny"] == ["12D3KooWEve", MALLORY]  # sorted: stable output
    assert data["price_floor"] == PRICING.to_json()
    assert PolicyConfig.from_json(data) == c
    assert PolicyConfig.from_json(PolicyConfig().to_json()) == PolicyConfig()
    assert PolicyConfig.from_json({}) == PolicyConfig()


@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.frozensets(st.text(min_size=1, max_size=10), max_size=4),
    st.none() | st.frozensets(st.text(min_size=1, max_size=10), max_size=4),
    st.integers(1, 120),
)
def test_config_json_round_trip_any(lo: int, extra: int, deny: frozenset[str], allow: frozenset[str] | None, dn: int) -> None:
    c = PolicyConfig(min_expiration_s=lo, max_expiration_s=lo + extra, deny=deny, allow=allow,
                     debit_note_interval_s=(dn, 3600), default_debit_note_interval_s=max(dn, 120))
    assert PolicyConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize(
    "data",
    [[], {"max_price": 1}, {"price_floor": {"start_fee": 1}}, {"deny": "x"}, {"min_expiration_s": "60"}],
)
def test_config_from_json_refuses(data: object) -> None:
    with pytest.raises(PolicyError):
        PolicyConfig.from_json(data)


# -- counter-proposals settle the terms --------------------------------------------------


def test_counter_takes_the_demands_terms_within_bounds() -> None:
    policy = Policy()
    demand = DEMAND | {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 300, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 600}
    counter = policy.counter_properties(OFFER, demand)
    for name, value in OFFER.items():  # everything else is the offer, unchanged
        if name not in (P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC):
            assert counter[name] == value
    assert settle_terms(demand, counter) == {
        P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 300,
        P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 600,
        P.SRV_COMP_EXPIRATION: NOW + HOUR_MS,
    }


def test_counter_uses_defaults_when_the_demand_is_silent_or_out_of_bounds() -> None:
    policy = Policy(PolicyConfig(default_debit_note_interval_s=90, default_payment_timeout_s=240))
    silent = policy.counter_properties(OFFER, DEMAND)
    assert silent[P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC] == 90
    assert silent[P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC] == 240
    assert settle_terms(DEMAND, silent) == {P.SRV_COMP_EXPIRATION: NOW + HOUR_MS}
    wild = DEMAND | {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 10**6, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: "soon"}
    counter = policy.counter_properties(OFFER, wild)
    assert counter[P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC] == 90
    assert counter[P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC] == 240


def test_counter_settles_plain_named_demand_terms() -> None:
    plain = DEMAND | {"golem.com.scheme.payu.debit-note.interval-sec": 60}
    counter = Policy().counter_properties(OFFER, plain)
    assert "golem.com.scheme.payu.debit-note.interval-sec" not in counter
    assert settle_terms(plain, counter)[P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC] == 60


def test_counter_replaces_an_offer_stating_a_term_without_its_question_mark() -> None:
    offer = {k: v for k, v in OFFER.items() if k != P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC}
    offer["golem.com.scheme.payu.payment-timeout-sec"] = 999
    counter = Policy().counter_properties(offer, DEMAND)
    assert "golem.com.scheme.payu.payment-timeout-sec" not in counter
    assert counter[P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC] == 120
    assert P.validate_properties(counter) == counter


def test_counter_echoes_the_expiration_only_when_it_is_an_int() -> None:
    counter = Policy().counter_properties(OFFER, {P.SRV_COMP_EXPIRATION: "tomorrow"})
    assert P.SRV_COMP_EXPIRATION not in counter
    counter = Policy().counter_properties(OFFER, {P.SRV_COMP_EXPIRATION + "?": NOW})
    assert counter[P.SRV_COMP_EXPIRATION] == NOW


def test_counter_is_a_legal_counter_in_a_negotiation() -> None:
    """The counter still matches the demand, so the state machine accepts it and the terms settle."""
    demand = DEMAND | {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 60}
    demand_text = "(&(golem.runtime.name=docker)(golem.inf.cpu.threads>=1))"
    n = Negotiation(Role.PROVIDER, requestor_id=ALICE, provider_id="12D3KooWProv")
    n.receive(Propose(demand, demand_text, NOW + 60_000), now_ms=NOW)
    policy = Policy()
    assert policy.check(ctx(demand)) is None
    counter = policy.counter_properties(OFFER, demand)
    parse(OFFER_CONSTRAINTS)
    assert matches(Offer("12D3KooWProv", counter, OFFER_CONSTRAINTS), Demand(ALICE, demand, demand_text))
    n.send(Counter(counter, OFFER_CONSTRAINTS, NOW + 60_000), now_ms=NOW + 1)
    assert n.settled_terms() == {
        P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 60,
        P.SRV_COMP_EXPIRATION: NOW + HOUR_MS,
    }
