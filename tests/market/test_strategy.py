"""The requestor's strategy: each filter, scoring and order, cooldowns on virtual time, outcomes."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import properties as P
from market.errors import MarketError
from market.pricing import LinearPricing
from market.presets import Preset, offer_properties
from market.strategy import (
    DROP_CODES,
    MAX_COOLDOWN_MS,
    Candidate,
    Dropped,
    ProviderRecord,
    Ranked,
    Strategy,
    StrategyConfig,
    StrategyError,
    record_outcome,
)
from yagna.core.money import UNIT

T0 = 1_700_000_000_000


def offer(threads: int = 1, start: int = 0, cpu: int = 10, dur: int = 2) -> dict[str, object]:
    return offer_properties(Preset("p", threads=threads, pricing=LinearPricing(start, cpu, dur)), node_name="n")


def cand(offer_id: str, provider_id: str | None = None, latency_ms: float | None = None, **pricing: int) -> Candidate:
    return Candidate(offer_id, provider_id or f"prov-{offer_id}", offer(**pricing), latency_ms)


def rank(strategy: Strategy, candidates: list[Candidate], records: dict[str, ProviderRecord] | None = None,
         attempts: dict[str, int] | None = None, now_ms: int = T0) -> tuple[list[Ranked], list[Dropped]]:
    return strategy.rank(candidates, records or {}, attempts or {}, now_ms)


def ids(ranked: list[Ranked]) -> list[str]:
    return [r.candidate.offer_id for r in ranked]


def dropped_codes(dropped: list[Dropped]) -> dict[str, str]:
    for d in dropped:
        assert d.code in DROP_CODES and d.message
    return {d.candidate.offer_id: d.code for d in dropped}


def test_error_tree() -> None:
    assert issubclass(StrategyError, MarketError)


# -- filters -----------------------------------------------------------------------------


def test_denied_provider_is_dropped() -> None:
    s = Strategy(StrategyConfig(deny=frozenset({"bad"})))
    ranked, dropped = rank(s, [cand("a", "bad"), cand("b", "good")])
    assert ids(ranked) == ["b"]
    assert dropped_codes(dropped) == {"a": "provider-denied"}


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {P.INF_CPU_THREADS: 2},  # no pricing at all
        offer() | {P.COM_PRICING_MODEL_LINEAR_COEFFS: [0.1, 0.2, 0.0]},  # Golem's float coefficients
        offer() | {P.COM_USAGE_VECTOR: ["golem.usage.gpu_sec", P.USAGE_DURATION_SEC]},
        {k: v for k, v in offer().items() if k != P.INF_CPU_THREADS},  # cannot estimate without threads
        offer() | {P.INF_CPU_THREADS: 0},
        offer() | {P.INF_CPU_THREADS: 2.0},
        offer() | {P.INF_CPU_THREADS: True},
    ],
)
def test_invalid_pricing_is_dropped(properties: dict[str, object]) -> None:
    ranked, dropped = rank(Strategy(), [Candidate("x", "p", properties)])
    assert ranked == []
    assert dropped_codes(dropped) == {"x": "pricing-invalid"}


@pytest.mark.parametrize(
    ("config", "over"),
    [
        (StrategyConfig(max_start_fee=5), {"start": 6}),
        (StrategyConfig(max_per_cpu_sec=10), {"cpu": 11}),
        (StrategyConfig(max_per_duration_sec=2), {"dur": 3}),
        # 2 threads x 100 s x 10 + 100 s x 2 = 2200
        (StrategyConfig(max_estimate=2199, expected_duration_s=100), {"threads": 2}),
    ],
)
def test_price_caps(config: StrategyConfig, over: dict[str, int]) -> None:
    ranked, dropped = rank(Strategy(config), [cand("ok"), cand("x", **over)])
    assert ids(ranked) == ["ok"]
    assert dropped_codes(dropped) == {"x": "over-price-cap"}
    assert "over your cap of" in dropped[0].message and "tGLM" in dropped[0].message


def test_estimate_cap_is_inclusive() -> None:
    s = Strategy(StrategyConfig(max_estimate=2200, expected_duration_s=100))
    ranked, dropped = rank(s, [cand("x", threads=2)])
    assert ids(ranked) == ["x"] and dropped == []
    assert ranked[0].price_estimate == 2200


def test_too_many_attempts() -> None:
    s = Strategy(StrategyConfig(max_attempts_per_provider=2))
    ranked, dropped = rank(s, [cand("a", "p1"), cand("b", "p2"), cand("c", "p3")], attempts={"p1": 2, "p2": 1})
    assert ids(ranked) == ["b", "c"]
    assert dropped_codes(dropped) == {"a": "too-many-attempts"}


def test_filters_report_the_most_lasting_reason() -> None:
    """Denied beats invalid pricing beats price cap beats cooldown beats attempts."""
    s = Strategy(StrategyConfig(deny=frozenset({"p"}), max_start_fee=0))
    failing = ProviderRecord(consecutive_failures=5, last_failure_ms=T0)
    records = {"p": failing}
    attempts = {"p": 99}
    bad_pricing = Candidate("x", "p", {})
    assert dropped_codes(rank(s, [bad_pricing], records, attempts)[1]) == {"x": "provider-denied"}
    s = Strategy(StrategyConfig(max_start_fee=0))
    assert dropped_codes(rank(s, [bad_pricing], records, attempts)[1]) == {"x": "pricing-invalid"}
    assert dropped_codes(rank(s, [cand("x", "p", start=1)], records, attempts)[1]) == {"x": "over-price-cap"}
    assert dropped_codes(rank(s, [cand("x", "p")], records, attempts)[1]) == {"x": "provider-cooling-down"}
    assert dropped_codes(rank(s, [cand("x", "p")], {}, attempts)[1]) == {"x": "too-many-attempts"}


# -- cooldown ----------------------------------------------------------------------------


def test_cooldown_doubles_and_caps_at_an_hour() -> None:
    s = Strategy(StrategyConfig(max_consecutive_failures=3, failure_cooldown_ms=60_000))
    def until(n: int) -> int | None:
        return s.cooldown_until(ProviderRecord(consecutive_failures=n, last_failure_ms=T0))
    assert until(0) is None and until(2) is None
    assert until(3) == T0 + 60_000
    assert until(4) == T0 + 120_000
    assert until(5) == T0 + 240_000
    assert until(9) == T0 + MAX_COOLDOWN_MS  # 64 min capped at 60
    assert until(10**6) == T0 + MAX_COOLDOWN_MS
    assert s.cooldown_until(ProviderRecord(consecutive_failures=5)) is None  # no timestamp: nothing to wait for


def test_cooldown_expires_on_virtual_time() -> None:
    s = Strategy(StrategyConfig(max_consecutive_failures=3, failure_cooldown_ms=60_000))
    record = ProviderRecord()
    for i in range(3):
        record = record_outcome(record, "failure", now_ms=T0 + i)
    records = {"p": record}
    last = T0 + 2
    c = cand("x", "p")
    assert dropped_codes(rank(s, [c], records, now_ms=last)[1]) == {"x": "provider-cooling-down"}
    _, dropped = rank(s, [c], records, now_ms=last + 59_999)
    assert dropped_codes(dropped) == {"x": "provider-cooling-down"}
    assert "in 1 s" in dropped[0].message
    ranked, dropped = rank(s, [c], records, now_ms=last + 60_000)
    assert ids(ranked) == ["x"] and dropped == []
    # it fails once more: twice as long now
    records = {"p": record_outcome(record, "timeout", now_ms=last + 60_000)}
    assert rank(s, [c], records, now_ms=last + 60_000 + 119_999)[0] == []
    assert ids(rank(s, [c], records, now_ms=last + 60_000 + 120_000)[0]) == ["x"]


def test_a_success_ends_the_cooldown_streak() -> None:
    s = Strategy()
    record = ProviderRecord(consecutive_failures=10, last_failure_ms=T0, failures=10)
    record = record_outcome(record, "success", now_ms=T0 + 1)
    assert record.consecutive_failures == 0 and s.cooldown_until(record) is None
    assert ids(rank(s, [cand("x", "p")], {"p": record}, now_ms=T0 + 2)[0]) == ["x"]


def test_a_failing_provider_is_never_picked_forever() -> None:
    """Simulate a requestor picking the top candidate again and again on virtual time.

    ``bad`` is cheaper and always fails; ``good`` always succeeds. The requestor
    soon prefers ``good`` (reputation), ``bad`` cools down ever longer, and yet
    ``bad`` is retried now and then instead of being banned forever.
    """
    s = Strategy(StrategyConfig(max_attempts_per_provider=1000))
    candidates = [cand("bad", "bad", cpu=1, dur=1), cand("good", "good", cpu=3, dur=3)]
    records: dict[str, ProviderRecord] = {}
    picks = {"bad": 0, "good": 0}
    now = T0
    bad_pick_times = []
    for _ in range(2000):
        ranked, _ = rank(s, candidates, records, now_ms=now)
        top = ranked[0].candidate.provider_id
        picks[top] += 1
        if top == "bad":
            bad_pick_times.append(now)
        outcome = "failure" if top == "bad" else "success"
        records[top] = record_outcome(records.get(top, ProviderRecord()), outcome, now_ms=now)
        now += 10_000  # ten virtual seconds per job
    assert picks["good"] > 10 * picks["bad"]
    assert picks["bad"] >= 2  # not banned forever...
    gaps = [b - a for a, b in zip(bad_pick_times, bad_pick_times[1:])]
    assert gaps[-1] >= max(gaps[:2])  # ...but retried ever more rarely
    # with only the failing provider left, it is still retried once its cooldown passes
    only_bad = [candidates[0]]
    record = records["bad"]
    until = s.cooldown_until(record)
    assert until is not None and until - record.last_failure_ms <= MAX_COOLDOWN_MS  # type: ignore[operator]
    assert rank(s, only_bad, records, now_ms=until - 1)[0] == []
    assert ids(rank(s, only_bad, records, now_ms=until)[0]) == ["bad"]


# -- scoring and order -------------------------------------------------------------------


def test_score_formula() -> None:
    s = Strategy(StrategyConfig(expected_duration_s=100))
    cheap = cand("cheap", cpu=1, dur=0)  # 100
    dear = cand("dear", cpu=3, dur=1, latency_ms=100.0)  # 300 + 100 = 400
    records = {"prov-dear": ProviderRecord(successes=8, failures=0)}
    ranked, _ = rank(s, [cheap, dear], records)
    by_id = {r.candidate.offer_id: r for r in ranked}
    assert by_id["cheap"].price_estimate == 100 and by_id["dear"].price_estimate == 400
    assert by_id["cheap"].score == pytest.approx(1.0 * 1.0 + 1.0 * 0.5 + 0.2 * 0.5)
    assert by_id["dear"].score == pytest.approx(1.0 * 0.25 + 1.0 * 0.9 + 0.2 * 0.5)
    assert ids(ranked) == ["cheap", "dear"]


def test_reputation() -> None:
    assert ProviderRecord().reputation == 0.5
    assert ProviderRecord(successes=1).reputation == pytest.approx(2 / 3)
    assert ProviderRecord(failures=1, rejections=1, timeouts=1).reputation == pytest.approx(1 / 5)


def test_reputation_can_outweigh_price() -> None:
    s = Strategy()
    records = {
        "prov-cheap": ProviderRecord(failures=20, consecutive_failures=0),
        "prov-dear": ProviderRecord(successes=20),
    }
    ranked, _ = rank(s, [cand("cheap", cpu=10), cand("dear", cpu=11)], records)
    assert ids(ranked) == ["dear", "cheap"]


def test_latency_prefers_fresh_measurement_then_record() -> None:
    s = Strategy(StrategyConfig(price_weight=0, reputation_weight=0, latency_weight=1))
    records = {"prov-b": ProviderRecord(latency_ms=0.0), "prov-c": ProviderRecord(latency_ms=0.0)}
    ranked, _ = rank(s, [cand("a", latency_ms=100.0), cand("b"), cand("c", latency_ms=300.0), cand("d")], records)
    score = {r.candidate.offer_id: r.score for r in ranked}
    assert score == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.25, "d": 0.5})
    assert ids(ranked) == ["b", "a", "d", "c"]


@pytest.mark.parametrize("latency", [-1.0, math.nan, math.inf])
def test_garbage_latency_counts_as_unknown(latency: float) -> None:
    s = Strategy(StrategyConfig(price_weight=0, reputation_weight=0, latency_weight=1))
    ranked, _ = rank(s, [cand("a", latency_ms=latency)])
    assert ranked[0].score == 0.5


def test_all_free_offers_score_full_price_points() -> None:
    s = Strategy(StrategyConfig(reputation_weight=0, latency_weight=0))
    ranked, _ = rank(s, [cand("a", cpu=0, dur=0), cand("b", cpu=0, dur=0)])
    assert [r.score for r in ranked] == [1.0, 1.0]
    ranked, _ = rank(s, [cand("free", cpu=0, dur=0), cand("paid", cpu=1, dur=0)])
    assert {r.candidate.offer_id: r.score for r in ranked} == {"free": 1.0, "paid": 0.0}


def test_ties_break_on_price_then_offer_id() -> None:
    s = Strategy(StrategyConfig(price_weight=0))
    ranked, _ = rank(s, [cand("z", cpu=5), cand("b", cpu=9), cand("a", cpu=9), cand("y", cpu=5)])
    assert ids(ranked) == ["y", "z", "a", "b"]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50), st.integers(0, 50), st.none() | st.floats(0, 1000)),
                min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_rank_is_deterministic_whatever_the_input_order(specs: list[tuple[int, int, int, float | None]], rnd: random.Random) -> None:
    candidates = [cand(f"o{i}", f"p{i % 3}", latency_ms=lat, start=start, cpu=cpu, dur=1)
                  for i, (start, cpu, _, lat) in enumerate(specs)]
    records = {"p0": ProviderRecord(successes=3), "p1": ProviderRecord(failures=2)}
    s = Strategy()
    first = rank(s, candidates, records)[0]
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    again = rank(s, shuffled, records)[0]
    assert first == again
    scores = [r.score for r in first]
    assert scores == sorted(scores, reverse=True)


def test_empty_input() -> None:
    assert rank(Strategy(), []) == ([], [])


# -- outcomes ----------------------------------------------------------------------------


def test_record_outcome_is_pure() -> None:
    record = ProviderRecord()
    new = record_outcome(record, "success", now_ms=T0, latency_ms=50.0)
    assert record == ProviderRecord()
    assert new == ProviderRecord(successes=1, latency_ms=50.0)


@pytest.mark.parametrize(("outcome", "counter"), [("failure", "failures"), ("rejection", "rejections"), ("timeout", "timeouts")])
def test_bad_outcomes_extend_the_streak(outcome: str, counter: str) -> None:
    record = ProviderRecord(consecutive_failures=1, last_failure_ms=T0)
    new = record_outcome(record, outcome, now_ms=T0 + 5)  # type: ignore[arg-type]
    assert getattr(new, counter) == 1
    assert new.consecutive_failures == 2 and new.last_failure_ms == T0 + 5
    assert new.successes == 0


def test_latency_ewma() -> None:
    record = record_outcome(ProviderRecord(), "success", now_ms=T0, latency_ms=100.0)
    record = record_outcome(record, "failure", now_ms=T0, latency_ms=200.0)
    assert record.latency_ms == pytest.approx(0.3 * 200 + 0.7 * 100)
    record = record_outcome(record, "success", now_ms=T0)  # no sample: unchanged
    assert record.latency_ms == pytest.approx(130.0)
    record = record_outcome(record, "success", now_ms=T0, latency_ms=math.nan)  # garbage: ignored
    assert record.latency_ms == pytest.approx(130.0)


def test_record_outcome_refuses_unknown_outcomes() -> None:
    with pytest.raises(StrategyError):
        record_outcome(ProviderRecord(), "meh", now_ms=T0)  # type: ignore[arg-type]


# -- config ------------------------------------------------------------------------------


def test_config_defaults() -> None:
    c = StrategyConfig()
    assert (c.max_start_fee, c.max_per_cpu_sec, c.max_per_duration_sec, c.max_estimate) == (None,) * 4
    assert (c.expected_duration_s, c.deny) == (3600, frozenset())
    assert (c.price_weight, c.reputation_weight, c.latency_weight) == (1.0, 1.0, 0.2)
    assert (c.max_consecutive_failures, c.failure_cooldown_ms, c.max_attempts_per_provider) == (3, 60_000, 2)


def test_config_json_round_trip() -> None:
    c = StrategyConfig(max_start_fee=UNIT // 10, max_per_cpu_sec=1, max_estimate=5 * UNIT, deny=frozenset({"b", "a"}),
                       price_weight=2, latency_weight=0.0, failure_cooldown_ms=0, max_attempts_per_provider=5)
    data = c.to_json()
    assert data["max_start_fee"] == "0.1"
    assert data["max_per_cpu_sec"] == "0.000000000000000001"
    assert data["max_per_duration_sec"] is None
    assert data["max_estimate"] == "5"
    assert data["deny"] == ["a", "b"]
    assert data["price_weight"] == 2.0 and isinstance(data["price_weight"], float)
    assert StrategyConfig.from_json(data) == c
    assert StrategyConfig.from_json({}) == StrategyConfig()
    assert StrategyConfig.from_json(StrategyConfig().to_json()) == StrategyConfig()


@given(st.none() | st.integers(0, 10**30), st.none() | st.integers(0, 10**30),
       st.floats(0, 100), st.integers(1, 10**6))
def test_config_json_round_trip_any(cap: int | None, est: int | None, weight: float, duration: int) -> None:
    c = StrategyConfig(max_per_cpu_sec=cap, max_estimate=est, latency_weight=weight, expected_duration_s=duration)
    assert StrategyConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_start_fee": -1}, {"max_start_fee": 0.5}, {"max_estimate": True}, {"max_per_cpu_sec": "1"},
        {"price_weight": -0.1}, {"latency_weight": math.nan}, {"reputation_weight": "1"}, {"price_weight": True},
        {"expected_duration_s": 0}, {"max_consecutive_failures": 0}, {"failure_cooldown_ms": -1},
        {"max_attempts_per_provider": 0}, {"max_attempts_per_provider": 1.5},
        {"deny": "node"}, {"deny": [""]}, {"deny": [3]},
    ],
)
def test_config_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(StrategyError):
        StrategyConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [[], {"max_price": "1"}, {"max_start_fee": 1}, {"max_start_fee": 0.5}, {"max_start_fee": "-1"},
     {"max_estimate": "1e-19"}, {"price_weight": "heavy"}],
)
def test_config_from_json_refuses(data: object) -> None:
    with pytest.raises(StrategyError):
        StrategyConfig.from_json(data)


def test_config_is_frozen_and_records_are_not() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        StrategyConfig().price_weight = 2.0  # type: ignore[misc]
    record = ProviderRecord()
    record.successes = 3  # the daemon maps store rows to records
    assert record.reputation == pytest.approx(0.8)


# -- preference (a pipeline's cache holder) --------------------------------------------------


def test_a_preferred_provider_wins_over_a_cheaper_one_within_the_caps() -> None:
    cheap, dear = cand("cheap", "p-cheap", cpu=10, dur=2), cand("dear", "p-dear", cpu=18, dur=4)
    ranked, _ = rank(Strategy(StrategyConfig()), [cheap, dear])
    assert ids(ranked) == ["cheap", "dear"]
    ranked, _ = rank(Strategy(StrategyConfig(prefer=frozenset({"p-dear"}))), [cheap, dear])
    assert ids(ranked) == ["dear", "cheap"]
    # a weight of 0 turns the preference off; the caps and the deny list still win over it
    ranked, _ = rank(Strategy(StrategyConfig(prefer=frozenset({"p-dear"}), prefer_weight=0)), [cheap, dear])
    assert ids(ranked) == ["cheap", "dear"]
    capped = StrategyConfig(prefer=frozenset({"p-dear"}), max_per_cpu_sec=10)
    ranked, dropped = rank(Strategy(capped), [cheap, dear])
    assert ids(ranked) == ["cheap"] and dropped_codes(dropped) == {"dear": "over-price-cap"}
    ranked, _ = rank(Strategy(StrategyConfig(prefer=frozenset({"p-dear"}), deny=frozenset({"p-dear"}))), [cheap, dear])
    assert ids(ranked) == ["cheap"]


def test_prefer_round_trips_and_is_checked() -> None:
    c = StrategyConfig(prefer=frozenset({"b", "a"}), prefer_weight=2)
    data = c.to_json()
    assert data["prefer"] == ["a", "b"] and data["prefer_weight"] == 2.0
    assert StrategyConfig.from_json(data) == c
    for bad in ("a", [""], [1], ["x"] * 10_001):
        with pytest.raises(StrategyError, match="prefer"):
            StrategyConfig(prefer=bad)  # type: ignore[arg-type]
    with pytest.raises(StrategyError, match="prefer_weight"):
        StrategyConfig(prefer_weight=-1)
