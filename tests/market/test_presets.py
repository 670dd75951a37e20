"""Presets: validation naming the field, JSON round trips, needs, offer properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import properties as P
from market.capacity import Capacity
from market.constraints import Tri, evaluate, parse
from market.errors import MarketError
from market.negotiation import settle_terms
from market.pricing import LinearPricing
from market.presets import (
    DEFAULT_PRICING,
    FIXED_PRICE_PROPERTY,
    OFFER_CONSTRAINTS,
    Preset,
    PresetError,
    offer_properties,
)
from market.properties import validate_properties
from yagna.core.money import parse_amount

PRICING = LinearPricing(start_fee=10, per_cpu_sec=20, per_duration_sec=4)


def field_error(field: str, **kwargs: object) -> PresetError:
    args: dict[str, object] = {"name": "small"} | kwargs
    with pytest.raises(PresetError) as info:
        Preset(**args)  # type: ignore[arg-type]
    assert info.value.field == field
    assert f"preset field {field!r}" in str(info.value)
    return info.value


def test_error_tree_and_field() -> None:
    assert issubclass(PresetError, MarketError)
    err = PresetError("threads", "must be positive")
    assert err.field == "threads" and err.message == "must be positive"
    assert str(err) == "preset field 'threads': must be positive"


def test_defaults() -> None:
    p = Preset("default")
    assert (p.runtime, p.threads, p.mem_gib, p.storage_gib, p.subnet) == ("docker", 1, 1.0, 2.0, "public")
    assert p.pricing == DEFAULT_PRICING


def test_default_pricing_is_golems() -> None:
    # 0.025 GLM per CPU-hour and a fifth of that per hour of wall-clock time, per second, rounded
    assert DEFAULT_PRICING.start_fee == 0
    assert DEFAULT_PRICING.per_cpu_sec == 6_944_444_444_444  # 0.025e18 / 3600 = 6944444444444.4
    assert DEFAULT_PRICING.per_duration_sec == 1_388_888_888_889  # 0.005e18 / 3600 = 1388888888888.9
    hour = DEFAULT_PRICING.estimate(threads=1, duration_s=3600)
    assert abs(hour - parse_amount("0.03")) < 3600  # within a rounding of a base unit per second


def test_sizes_become_floats() -> None:
    p = Preset("x", mem_gib=4, storage_gib=10)
    assert isinstance(p.mem_gib, float) and isinstance(p.storage_gib, float)
    assert p == Preset("x", mem_gib=4.0, storage_gib=10.0)


@pytest.mark.parametrize("name", ["a", "0", "small-1", "gpu_big", "a" * 64])
def test_good_names(name: str) -> None:
    assert Preset(name).name == name


@pytest.mark.parametrize("name", ["", "-a", "_a", "A", "a b", "a.b", "a" * 65, "é", 1, None, "a\n"])
def test_bad_names(name: object) -> None:
    field_error("name", name=name)


@pytest.mark.parametrize("runtime", ["vm", "wasm", "Docker", "", None, ["docker"]])
def test_only_docker(runtime: object) -> None:
    field_error("runtime", runtime=runtime)


@pytest.mark.parametrize("threads", [0, -1, 1025, 1.0, True, "2", None])
def test_bad_threads(threads: object) -> None:
    field_error("threads", threads=threads)


@pytest.mark.parametrize("threads", [1, 1024])
def test_thread_bounds(threads: int) -> None:
    assert Preset("x", threads=threads).threads == threads


@pytest.mark.parametrize("field", ["mem_gib", "storage_gib"])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, float("nan"), float("inf"), 1_000_001, True, "1", None])
def test_bad_sizes(field: str, value: object) -> None:
    field_error(field, **{field: value})


@pytest.mark.parametrize("field", ["mem_gib", "storage_gib"])
@pytest.mark.parametrize("value", [0.001, 0.5, 1_000_000])
def test_size_bounds(field: str, value: float) -> None:
    assert getattr(Preset("x", **{field: value}), field) == value


def test_bad_pricing() -> None:
    field_error("pricing", pricing={"start_fee": "0"})
    field_error("pricing", pricing=None)


@pytest.mark.parametrize("subnet", ["", ".a", "a b", "a/b", "a" * 65, None, 3])
def test_bad_subnet(subnet: object) -> None:
    field_error("subnet", subnet=subnet)


@pytest.mark.parametrize("subnet", ["public", "Devnet-1.beta_2", "a" * 64])
def test_good_subnet(subnet: str) -> None:
    assert Preset("x", subnet=subnet).subnet == subnet


def test_replace_validates() -> None:
    p = Preset("small", threads=2)
    assert p.replace(threads=4) == Preset("small", threads=4)
    assert p.threads == 2  # frozen, unchanged
    with pytest.raises(PresetError) as info:
        p.replace(threads=0)
    assert info.value.field == "threads"
    with pytest.raises(PresetError) as info:
        p.replace(gpus=1)
    assert info.value.field == "gpus"


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Preset("x").threads = 2  # type: ignore[misc]


def test_needs() -> None:
    assert Preset("x", threads=3, mem_gib=0.5, storage_gib=8).needs() == Capacity(3, 0.5, 8)


def test_json_shape() -> None:
    p = Preset("big", threads=8, mem_gib=16, storage_gib=100, pricing=PRICING, subnet="devnet")
    assert p.to_json() == {
        "name": "big",
        "runtime": "docker",
        "threads": 8,
        "mem_gib": 16.0,
        "storage_gib": 100.0,
        "pricing": {"start_fee": "0.00000000000000001", "per_cpu_sec": "0.00000000000000002", "per_duration_sec": "0.000000000000000004"},
        "subnet": "devnet",
        "fixed": False,
    }


presets = st.builds(
    Preset,
    name=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True),
    threads=st.integers(1, 1024),
    mem_gib=st.floats(min_value=0.001, max_value=1_000_000),
    storage_gib=st.floats(min_value=0.001, max_value=1_000_000),
    pricing=st.builds(LinearPricing, *[st.integers(0, 2**63 - 1)] * 3),
    subnet=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
)


@given(presets)
def test_json_round_trip(p: Preset) -> None:
    assert Preset.from_json(p.to_json()) == p


def test_from_json_defaults_and_errors() -> None:
    assert Preset.from_json({"name": "x"}) == Preset("x")
    cases: list[tuple[object, str]] = [
        ([], "preset"),
        ({}, "name"),
        ({"name": "x", "gpu": 1}, "gpu"),
        ({"name": "x", "threads": "2"}, "threads"),
        ({"name": "x", "mem_gib": "1.5"}, "mem_gib"),
        ({"name": "x", "pricing": {"start_fee": 1, "per_cpu_sec": "0", "per_duration_sec": "0"}}, "pricing"),
        ({"name": "x", "pricing": "cheap"}, "pricing"),
    ]
    for data, field in cases:
        with pytest.raises(PresetError) as info:
            Preset.from_json(data)
        assert info.value.field == field, data


def test_offer_properties() -> None:
    p = Preset("big", threads=8, mem_gib=16, storage_gib=100, pricing=PRICING, subnet="devnet")
    props = offer_properties(p, node_name="alice-laptop")
    assert props == {
        "golem.inf.cpu.threads": 8,
        "golem.inf.mem.gib": 16.0,
        "golem.inf.storage.gib": 100.0,
        "golem.runtime.name": "docker",
        "golem.node.id.name": "alice-laptop",
        "golem.node.debug.subnet": "devnet",
        "golem.srv.caps.multi-activity": True,
        "golem.com.scheme": "payu",
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
        "golem.com.pricing.model.linear.coeffs": [20, 4, 10],
        "golem.com.scheme.payu.debit-note.interval-sec?": 120,
        "golem.com.scheme.payu.payment-timeout-sec?": 120,
        "yagna.preset": "big",
    }
    assert validate_properties(props) == props
    assert LinearPricing.from_properties(props) == PRICING


def test_offer_properties_terms_are_parameters() -> None:
    props = offer_properties(Preset("x"), node_name="n", debit_note_interval_s=60, payment_timeout_s=300)
    assert props[P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC] == 60
    assert props[P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC] == 300
    # they are negotiable: they bind only when the demand echoes them
    demand = {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 60, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 200}
    assert settle_terms(demand, props) == {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 60}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"node_name": ""}, "node_name"),
        ({"node_name": 3}, "node_name"),
        ({"node_name": "x" * 5000}, "node_name"),
        ({"node_name": "n", "debit_note_interval_s": 0}, "debit_note_interval_s"),
        ({"node_name": "n", "debit_note_interval_s": 1.5}, "debit_note_interval_s"),
        ({"node_name": "n", "payment_timeout_s": True}, "payment_timeout_s"),
        ({"node_name": "n", "payment_timeout_s": -1}, "payment_timeout_s"),
    ],
)
def test_offer_properties_refuses(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(PresetError) as info:
        offer_properties(Preset("x"), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_offer_properties_needs_a_preset() -> None:
    with pytest.raises(PresetError):
        offer_properties({"name": "x"}, node_name="n")  # type: ignore[arg-type]


@given(presets)
def test_any_preset_gives_valid_offer_properties(p: Preset) -> None:
    props = offer_properties(p, node_name="node")
    assert validate_properties(props) == props
    assert LinearPricing.from_properties(props) == p.pricing


def test_offer_constraints_require_an_expiration() -> None:
    constraint = parse(OFFER_CONSTRAINTS)
    assert evaluate(constraint, {P.SRV_COMP_EXPIRATION: 1_800_000_000_000}) is Tri.YES
    assert evaluate(constraint, {P.SRV_COMP_EXPIRATION: 0}) is Tri.NO
    assert evaluate(constraint, {}) is not Tri.YES


def test_offer_properties_name_the_payment_platforms_golem_requestors_match() -> None:
    """Golem's SDK puts `(golem.com.payment.platform.<platform>.address=*)` and
    `(golem.com.payment.protocol.version>1)` in every demand (with newlines and tabs between
    clauses): an offer without them never matches."""
    from market.constraints import parse
    from market.matching import Demand, matches

    props = offer_properties(Preset("x", pricing=PRICING), node_name="n",
                             payment_platforms={"erc20-holesky-tglm": "0x" + "ab" * 20})
    assert props["golem.com.payment.platform.erc20-holesky-tglm.address"] == "0x" + "ab" * 20
    assert props["golem.com.payment.protocol.version"] == "3"
    golem_demand = ("(&(golem.node.debug.subnet=public)\n\t(golem.com.payment.platform.erc20-holesky-tglm.address=*)"
                    "\n\t(golem.com.payment.protocol.version>1)\n\t(golem.com.pricing.model=linear))")
    parse(golem_demand)
    from market.offers import Offer

    offer = Offer("p", {**props, "golem.node.debug.subnet": "public"}, "()")
    assert matches(offer, Demand("r", {}, golem_demand))
    assert not matches(Offer("p", offer_properties(Preset("x"), node_name="n"), "()"), Demand("r", {}, golem_demand))


# -- fixed prices (Flux's model) ------------------------------------------------------------------
def test_a_fixed_price_preset_bills_the_hour_only_and_says_so() -> None:
    hourly = parse_amount("0.36")
    p = Preset(name="flux-s", threads=2, mem_gib=2, storage_gib=10, fixed=True,
               pricing=LinearPricing(start_fee=0, per_cpu_sec=0, per_duration_sec=hourly // 3600))
    props = offer_properties(p, node_name="n")
    assert props[FIXED_PRICE_PROPERTY] is True
    assert props[P.COM_PRICING_MODEL_LINEAR_COEFFS] == [0, hourly // 3600, 0]
    assert p.pricing.estimate(2, 3600) == hourly  # whatever the threads do, an hour costs the fixed price
    assert Preset.from_json(p.to_json()) == p
    assert FIXED_PRICE_PROPERTY not in offer_properties(Preset(name="linear"), node_name="n")
    assert Preset.from_json({"name": "old"}).fixed is False  # presets stored before the field


@pytest.mark.parametrize("pricing", [LinearPricing(start_fee=1, per_cpu_sec=0, per_duration_sec=5),
                                     LinearPricing(start_fee=0, per_cpu_sec=1, per_duration_sec=5)])
def test_a_fixed_price_preset_refuses_cpu_prices_and_start_fees(pricing: LinearPricing) -> None:
    with pytest.raises(PresetError) as info:
        Preset(name="flux-s", fixed=True, pricing=pricing)
    assert info.value.field == "pricing" and "by the hour only" in str(info.value)
