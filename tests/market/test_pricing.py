"""Linear pricing: properties and JSON round trips, every refusal, exact costs."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import properties as P
from market.errors import MarketError
from market.pricing import COUNTERS, MAX_COEFFICIENT, LinearPricing, PricingError
from market.properties import validate_properties
from yagna.core.money import UNIT, parse_amount

coefficients = st.integers(min_value=0, max_value=MAX_COEFFICIENT)
pricings = st.builds(LinearPricing, coefficients, coefficients, coefficients)

PRICING = LinearPricing(start_fee=5, per_cpu_sec=7, per_duration_sec=3)


def test_error_tree() -> None:
    assert issubclass(PricingError, MarketError)


def test_properties_have_golem_names_and_int_coefficients() -> None:
    props = PRICING.to_properties()
    assert props == {
        "golem.com.scheme": "payu",
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
        "golem.com.pricing.model.linear.coeffs": [7, 3, 5],
    }
    assert validate_properties(props) == props


@given(pricings)
def test_properties_round_trip(pricing: LinearPricing) -> None:
    props = validate_properties(pricing.to_properties())
    assert LinearPricing.from_properties(props) == pricing


@given(pricings)
def test_json_round_trip(pricing: LinearPricing) -> None:
    data = pricing.to_json()
    assert set(data) == {"start_fee", "per_cpu_sec", "per_duration_sec"}
    assert all(isinstance(v, str) for v in data.values())
    assert LinearPricing.from_json(data) == pricing


def test_json_is_decimal_tokens() -> None:
    pricing = LinearPricing(start_fee=UNIT, per_cpu_sec=25 * 10**15, per_duration_sec=1)
    assert pricing.to_json() == {"start_fee": "1", "per_cpu_sec": "0.025", "per_duration_sec": "0.000000000000000001"}


def test_usage_vector_in_either_order() -> None:
    props = PRICING.to_properties()
    props[P.COM_USAGE_VECTOR] = [P.USAGE_DURATION_SEC, P.USAGE_CPU_SEC]
    props[P.COM_PRICING_MODEL_LINEAR_COEFFS] = [3, 7, 5]
    assert LinearPricing.from_properties(props) == PRICING


@pytest.mark.parametrize(
    ("vector", "coeffs", "expected"),
    [
        ([P.USAGE_DURATION_SEC], [3, 5], LinearPricing(5, 0, 3)),
        ([P.USAGE_CPU_SEC], [7, 5], LinearPricing(5, 7, 0)),
        ([], [5], LinearPricing(5, 0, 0)),
    ],
)
def test_counters_left_out_cost_nothing(vector: list[str], coeffs: list[int], expected: LinearPricing) -> None:
    props = PRICING.to_properties() | {P.COM_USAGE_VECTOR: vector, P.COM_PRICING_MODEL_LINEAR_COEFFS: coeffs}
    assert LinearPricing.from_properties(props) == expected


def test_tuples_are_accepted() -> None:
    props = PRICING.to_properties() | {P.COM_USAGE_VECTOR: tuple(COUNTERS), P.COM_PRICING_MODEL_LINEAR_COEFFS: (7, 3, 5)}
    assert LinearPricing.from_properties(props) == PRICING


def broken(**changes: object) -> dict[str, object]:
    props = PRICING.to_properties()
    for key, value in changes.items():
        name = {
            "scheme": P.COM_SCHEME,
            "model": P.COM_PRICING_MODEL,
            "vector": P.COM_USAGE_VECTOR,
            "coeffs": P.COM_PRICING_MODEL_LINEAR_COEFFS,
        }[key]
        if value is None:
            del props[name]
        else:
            props[name] = value
    return props


@pytest.mark.parametrize(
    ("props", "words"),
    [
        (broken(scheme=None), "golem.com.scheme"),
        (broken(scheme="payd"), "'payd'"),
        (broken(model=None), "golem.com.pricing.model must be"),
        (broken(model="fixed"), "'fixed'"),
        (broken(vector=None), "golem.com.usage.vector"),
        (broken(vector="golem.usage.cpu_sec"), "must be a list"),
        (broken(vector=[P.USAGE_CPU_SEC, P.USAGE_GIB]), "unknown usage counter 'golem.usage.gib'"),
        (broken(vector=[P.USAGE_CPU_SEC, 3]), "unknown usage counter 3"),
        (broken(vector=[P.USAGE_CPU_SEC, P.USAGE_CPU_SEC]), "twice"),
        (broken(coeffs=None), "golem.com.pricing.model.linear.coeffs"),
        (broken(coeffs=7), "must be a list"),
        (broken(coeffs=[7, 3]), "has 2 coefficients, expected 3"),
        (broken(coeffs=[7, 3, 5, 1]), "has 4 coefficients, expected 3"),
        (broken(coeffs=[0.0001, 3, 5]), "[0] (base units) must be an integer, got float"),
        (broken(coeffs=[7, "3", 5]), "[1] (base units) must be an integer, got str"),
        (broken(coeffs=[7, 3, True]), "[2] (base units) must be an integer, got bool"),
        (broken(coeffs=[7, -3, 5]), "at least 0"),
        (broken(coeffs=[7, 3, 2**63]), "at most"),
    ],
)
def test_from_properties_refuses(props: dict[str, object], words: str) -> None:
    with pytest.raises(PricingError) as info:
        LinearPricing.from_properties(props)
    assert words in str(info.value)


def test_from_properties_refuses_non_mapping() -> None:
    with pytest.raises(PricingError, match="mapping"):
        LinearPricing.from_properties([1, 2])  # type: ignore[arg-type]


@given(st.dictionaries(st.sampled_from([P.COM_SCHEME, P.COM_PRICING_MODEL, P.COM_USAGE_VECTOR, P.COM_PRICING_MODEL_LINEAR_COEFFS]),
                       st.none() | st.integers() | st.floats() | st.text(max_size=30) | st.lists(st.integers() | st.sampled_from(COUNTERS) | st.floats(), max_size=4)))
def test_from_properties_on_garbage_raises_only_pricing_error(props: dict[str, object]) -> None:
    try:
        pricing = LinearPricing.from_properties(props)
    except PricingError:
        return
    assert isinstance(pricing, LinearPricing)


@pytest.mark.parametrize(
    "args",
    [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (2**63, 0, 0), (0.5, 0, 0), (True, 0, 0), ("1", 0, 0), (None, 0, 0)],
)
def test_constructor_validates(args: tuple[object, ...]) -> None:
    with pytest.raises(PricingError):
        LinearPricing(*args)  # type: ignore[arg-type]


def test_limits_are_accepted() -> None:
    assert LinearPricing(0, 0, 0).cost(0, 0) == 0
    assert LinearPricing(MAX_COEFFICIENT, MAX_COEFFICIENT, MAX_COEFFICIENT).start_fee == MAX_COEFFICIENT


def test_cost_examples() -> None:
    assert PRICING.cost(0, 0) == 5
    assert PRICING.cost(1000, 1000) == 5 + 7 + 3
    assert PRICING.cost(1, 0) == 5 + 1  # 0.007 base units rounds up to one
    assert PRICING.cost(0, 1) == 5 + 1
    assert PRICING.cost(1, 1) == 5 + 1  # (7 + 3) / 1000 rounds up once, not per counter
    assert PRICING.cost(500, 0) == 5 + 4  # 3.5 -> 4
    assert PRICING.cost(3_600_000, 3_600_000) == 5 + 3600 * 10


@given(pricings, st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_cost_is_exact_ceiling(pricing: LinearPricing, cpu_ms: int, duration_ms: int) -> None:
    exact = pricing.start_fee + Fraction(pricing.per_cpu_sec * cpu_ms + pricing.per_duration_sec * duration_ms, 1000)
    cost = pricing.cost(cpu_ms, duration_ms)
    assert isinstance(cost, int)
    assert exact <= cost < exact + 1


@given(pricings, st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9),
       st.integers(min_value=0, max_value=10**6))
def test_cost_is_monotonic(pricing: LinearPricing, cpu_ms: int, duration_ms: int, more: int) -> None:
    assert pricing.cost(cpu_ms, duration_ms) <= pricing.cost(cpu_ms + more, duration_ms)
    assert pricing.cost(cpu_ms, duration_ms) <= pricing.cost(cpu_ms, duration_ms + more)


@pytest.mark.parametrize(("cpu_ms", "duration_ms"), [(-1, 0), (0, -1), (1.5, 0), (0, True), ("1", 0)])
def test_cost_refuses_bad_usage(cpu_ms: object, duration_ms: object) -> None:
    with pytest.raises(PricingError):
        PRICING.cost(cpu_ms, duration_ms)  # type: ignore[arg-type]


def test_estimate_is_all_threads_busy_all_the_time() -> None:
    assert PRICING.estimate(threads=4, duration_s=3600) == 5 + 4 * 3600 * 7 + 3600 * 3
    assert PRICING.estimate(threads=0, duration_s=10) == 5 + 10 * 3
    assert PRICING.estimate(threads=8, duration_s=0) == 5


@given(pricings, st.integers(min_value=0, max_value=1024), st.integers(min_value=0, max_value=10**7))
def test_estimate_bounds_any_real_usage(pricing: LinearPricing, threads: int, duration_s: int) -> None:
    worst = pricing.estimate(threads, duration_s)
    assert pricing.cost(threads * duration_s * 1000, duration_s * 1000) == worst
    assert pricing.cost(threads * duration_s * 500, duration_s * 1000) <= worst


@pytest.mark.parametrize(("threads", "duration_s"), [(-1, 1), (1, -1), (1.0, 1), (1, None)])
def test_estimate_refuses_bad_input(threads: object, duration_s: object) -> None:
    with pytest.raises(PricingError):
        PRICING.estimate(threads, duration_s)  # type: ignore[arg-type]


def test_at_least() -> None:
    floor = LinearPricing(5, 7, 3)
    assert PRICING.at_least(floor)
    assert LinearPricing(6, 8, 4).at_least(floor)
    assert not LinearPricing(4, 7, 3).at_least(floor)
    assert not LinearPricing(5, 6, 3).at_least(floor)
    assert not LinearPricing(5, 7, 2).at_least(floor)
    assert not LinearPricing(100, 100, 2).at_least(floor)  # every coefficient, not the total


def test_from_hourly_rounds_half_up() -> None:
    golem_default = LinearPricing.from_hourly(
        start_fee=0, per_cpu_hour=parse_amount("0.025"), per_duration_hour=parse_amount("0.005")
    )
    assert golem_default == LinearPricing(0, 6944444444444, 1388888888889)
    assert LinearPricing.from_hourly(start_fee=1, per_cpu_hour=1800, per_duration_hour=1799) == LinearPricing(1, 1, 0)
    with pytest.raises(PricingError):
        LinearPricing.from_hourly(start_fee=0, per_cpu_hour=-1, per_duration_hour=0)
    with pytest.raises(PricingError):
        LinearPricing.from_hourly(start_fee=0, per_cpu_hour=0.5, per_duration_hour=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "must be an object"),
        ({"start_fee": "0", "per_cpu_sec": "0"}, "'per_duration_sec' is missing"),
        ({"start_fee": "0", "per_cpu_sec": "0", "per_duration_sec": "0", "per_hour": "1"}, "unknown pricing field(s): per_hour"),
        ({"start_fee": 0.5, "per_cpu_sec": "0", "per_duration_sec": "0"}, "must be a decimal string"),
        ({"start_fee": 1, "per_cpu_sec": "0", "per_duration_sec": "0"}, "must be a decimal string"),
        ({"start_fee": "-1", "per_cpu_sec": "0", "per_duration_sec": "0"}, "negative"),
        ({"start_fee": "abc", "per_cpu_sec": "0", "per_duration_sec": "0"}, "'start_fee'"),
        ({"start_fee": "0", "per_cpu_sec": "1e-19", "per_duration_sec": "0"}, "decimal places"),
        ({"start_fee": "0", "per_cpu_sec": "0", "per_duration_sec": "10"}, "too large"),
    ],
)
def test_from_json_refuses(data: object, words: str) -> None:
    with pytest.raises(PricingError) as info:
        LinearPricing.from_json(data)
    assert words in str(info.value)


def test_pricing_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        PRICING.start_fee = 1  # type: ignore[misc]
    assert len({PRICING, LinearPricing(5, 7, 3)}) == 1
