"""The requestor's strategy: which offers to negotiate with, best first (pure).

Golem's default strategy prefers the cheapest offer and only lowers the score
of providers that failed; its users complain that negotiation timeouts are
retried on the same provider and failing providers are never banned. Here:

1. **Hard filters** drop a candidate with a reason code (:class:`Dropped`):
   ``provider-denied``, ``pricing-invalid``, ``over-price-cap``,
   ``provider-cooling-down``, ``too-many-attempts`` (checked in that order,
   so the most lasting reason is the one reported).
2. **Score** the rest on price, reputation and latency::

       score = price_weight      * cheapest_estimate / estimate       (1.0 when free)
             + reputation_weight * (successes + 1) / (outcomes + 2)   (Laplace: 0.5 unknown)
             + latency_weight    * 1 / (1 + latency_ms / 100)         (0.5 unknown)

   where an estimate is the worst-case cost of :attr:`StrategyConfig.expected_duration_s`
   on every thread of the offer (:meth:`LinearPricing.estimate`).
3. **Sort** by score (desc), then estimate (asc), then offer id: deterministic.

A provider with ``max_consecutive_failures`` failures, rejections or timeouts
in a row cools down for ``failure_cooldown_ms``, doubled for each further one
(capped at an hour), then gets another chance; a success resets the streak.
Its reputation keeps falling meanwhile, so a provider that always fails is
tried ever more rarely but never picked forever, and never banned forever for
one bad hour. The daemon keeps :class:`ProviderRecord` rows in its store and
passes the clock in; nothing here does I/O or reads the time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from market.errors import MarketError
from market.pricing import LinearPricing, PricingError
from market.properties import INF_CPU_THREADS
from yagna.core.errors import MoneyError
from yagna.core.money import MAX_UNITS, TOKEN, format_amount, parse_amount

__all__ = [
    "DROP_CODES",
    "LATENCY_ALPHA",
    "MAX_COOLDOWN_MS",
    "Candidate",
    "Dropped",
    "Outcome",
    "ProviderRecord",
    "Ranked",
    "Strategy",
    "StrategyConfig",
    "StrategyError",
    "record_outcome",
]

MAX_COOLDOWN_MS = 3_600_000
"""Longest cooldown after consecutive failures: one hour."""
LATENCY_ALPHA = 0.3
"""Weight of the newest latency sample in the moving average."""

PROVIDER_DENIED = "provider-denied"
PRICING_INVALID = "pricing-invalid"
OVER_PRICE_CAP = "over-price-cap"
PROVIDER_COOLING_DOWN = "provider-cooling-down"
TOO_MANY_ATTEMPTS = "too-many-attempts"
DROP_CODES = (PROVIDER_DENIED, PRICING_INVALID, OVER_PRICE_CAP, PROVIDER_COOLING_DOWN, TOO_MANY_ATTEMPTS)
"""Every reason a candidate is dropped, in the order the filters run."""

Outcome = Literal["success", "failure", "rejection", "timeout", "disagreement"]
_OUTCOMES = frozenset(get_args(Outcome))


class StrategyError(MarketError):
    """A strategy configuration or input is invalid; the message names the field."""


@dataclass(frozen=True)
class Candidate:
    """An offer the requestor could negotiate with; ``latency_ms`` if freshly measured."""

    offer_id: str
    provider_id: str
    properties: Mapping[str, object]
    latency_ms: float | None = None


@dataclass
class ProviderRecord:
    """What the requestor remembers of a provider (a row of the node's store)."""

    successes: int = 0
    failures: int = 0
    rejections: int = 0
    timeouts: int = 0
    disagreements: int = 0
    """Results that lost a redundancy vote (a wrong answer, signed)."""
    latency_ms: float | None = None
    consecutive_failures: int = 0
    last_failure_ms: int | None = None

    @property
    def reputation(self) -> float:
        """Laplace-smoothed success rate: 0.5 for a stranger, towards 1 or 0 with evidence."""
        # A disagreement (a wrong result) weighs as much as three failures.
        outcomes = self.successes + self.failures + self.rejections + self.timeouts + 3 * self.disagreements
        return (self.successes + 1) / (outcomes + 2)


@dataclass(frozen=True)
class Ranked:
    """A candidate that passed the filters, with its score and worst-case price estimate."""

    candidate: Candidate
    score: float
    price_estimate: int


@dataclass(frozen=True)
class Dropped:
    """A candidate a hard filter removed: a code from :data:`DROP_CODES` and a message for people."""

    candidate: Candidate
    code: str
    message: str


def _latency(value: object) -> float | None:
    """A usable latency or ``None``: garbage (negative, NaN, not a number) counts as unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def record_outcome(
    record: ProviderRecord, outcome: Outcome, now_ms: int, latency_ms: float | None = None
) -> ProviderRecord:
    """A new record after one negotiation or agreement ``outcome`` (``record`` is not changed).

    ``failure``, ``rejection`` and ``timeout`` each count in their own
    counter *and* extend the streak of consecutive failures that leads to a
    cooldown: a provider that keeps rejecting us is as useless as one that
    keeps failing. ``success`` resets the streak. ``latency_ms`` feeds an
    exponential moving average (alpha :data:`LATENCY_ALPHA`).
    """
    if outcome not in _OUTCOMES:
        raise StrategyError(f"outcome must be one of {', '.join(sorted(_OUTCOMES))}, got {outcome!r}")
    changes: dict[str, Any] = {}
    sample = _latency(latency_ms)
    if sample is not None:
        old = record.latency_ms
        changes["latency_ms"] = sample if old is None else LATENCY_ALPHA * sample + (1 - LATENCY_ALPHA) * old
    if outcome == "success":
        changes["successes"] = record.successes + 1
        changes["consecutive_failures"] = 0
    else:
        counter = {"failure": "failures", "rejection": "rejections", "timeout": "timeouts",
                   "disagreement": "disagreements"}[outcome]
        changes[counter] = getattr(record, counter) + 1
        changes["consecutive_failures"] = record.consecutive_failures + 1
        changes["last_failure_ms"] = now_ms
    return dataclasses.replace(record, **changes)


# -- config ------------------------------------------------------------------------------

_CAPS = ("max_start_fee", "max_per_cpu_sec", "max_per_duration_sec", "max_estimate")
_WEIGHTS = ("price_weight", "reputation_weight", "latency_weight", "prefer_weight")
_COUNTS = {  # name -> lowest allowed value
    "expected_duration_s": 1,
    "max_consecutive_failures": 1,
    "failure_cooldown_ms": 0,
    "max_attempts_per_provider": 1,
}
_MAX_COUNT = 2**31
MAX_ID_LIST = 10_000
"""``deny`` and ``prefer`` hold at most this many node ids (a strategy comes over REST)."""


@dataclass(frozen=True)
class StrategyConfig:
    """The requestor's caps (base units, ``None`` = no cap), weights and failure handling."""

    max_start_fee: int | None = None
    max_per_cpu_sec: int | None = None
    max_per_duration_sec: int | None = None
    max_estimate: int | None = None
    expected_duration_s: int = 3600
    deny: frozenset[str] = field(default_factory=frozenset)
    price_weight: float = 1.0
    reputation_weight: float = 1.0
    latency_weight: float = 0.2
    max_consecutive_failures: int = 3
    failure_cooldown_ms: int = 60_000
    max_attempts_per_provider: int = 2
    prefer: frozenset[str] = field(default_factory=frozenset)
    """Providers worth more to this demand (e.g. one that holds a pipeline's cache): each gets
    ``prefer_weight`` added to its score. With the default weights a preferred provider wins over
    one twice as cheap (price scores 0.5 + 1.0 against 1.0), never over the caps or the deny list."""
    prefer_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in _CAPS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UNITS):
                raise StrategyError(f"{name} must be None or a whole number of base units >= 0, got {value!r}")
        for name in _WEIGHTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise StrategyError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name, low in _COUNTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_COUNT:
                raise StrategyError(f"{name} must be an integer from {low} to {_MAX_COUNT}, got {value!r}")
        for name in ("deny", "prefer"):
            ids = getattr(self, name)
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
                raise StrategyError(f"{name} must be a list of node ids, got {type(ids).__name__}")
            items = list(ids)
            if len(items) > MAX_ID_LIST or not all(isinstance(d, str) and d for d in items):  # before hashing
                raise StrategyError(f"{name} must hold at most {MAX_ID_LIST} non-empty node id strings")
            object.__setattr__(self, name, frozenset(items))

    def to_json(self) -> dict[str, object]:
        """Caps as decimal token strings (or ``None``), the rest as plain numbers."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _CAPS:
                value = None if value is None else format_amount(value)
            elif f.name in ("deny", "prefer"):
                value = sorted(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: object) -> StrategyConfig:
        """Read :meth:`to_json`'s form; missing fields take their defaults, unknown ones are refused."""
        if not isinstance(data, Mapping):
            raise StrategyError(f"strategy must be an object, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise StrategyError(f"unknown strategy field(s): {', '.join(unknown)} (known: {', '.join(known)})")
        kwargs = dict(data)
        for name in _CAPS:
            text = kwargs.get(name)
            if text is None:
                continue
            if not isinstance(text, str):
                raise StrategyError(f"{name} must be a decimal string of tokens such as '0.5', got {type(text).__name__}")
            try:
                kwargs[name] = parse_amount(text)
            except MoneyError as exc:
                raise StrategyError(f"{name}: {exc}") from None
        return cls(**kwargs)


# -- the strategy ------------------------------------------------------------------------


def _tokens(units: int) -> str:
    return f"{format_amount(units)} {TOKEN}"


class Strategy:
    """Ranks candidates for one demand under a :class:`StrategyConfig`."""

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else StrategyConfig()

    def cooldown_until(self, record: ProviderRecord) -> int | None:
        """When a provider with this record may be tried again, or ``None`` if it is not cooling down."""
        c = self.config
        if record.consecutive_failures < c.max_consecutive_failures or record.last_failure_ms is None:
            return None
        doublings = min(record.consecutive_failures - c.max_consecutive_failures, 32)
        return record.last_failure_ms + min(c.failure_cooldown_ms * 2**doublings, MAX_COOLDOWN_MS)

    def estimate(self, candidate: Candidate) -> tuple[LinearPricing, int]:
        """The offer's pricing and worst-case cost; :class:`PricingError` if either cannot be known."""
        pricing = LinearPricing.from_properties(candidate.properties)
        threads = candidate.properties.get(INF_CPU_THREADS)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise PricingError(f"{INF_CPU_THREADS} must be a whole number of threads >= 1, got {threads!r}")
        return pricing, pricing.estimate(threads, self.config.expected_duration_s)

    def _filter(self, candidate: Candidate, record: ProviderRecord, attempts: int, now_ms: int) -> Dropped | int:
        """The drop reason, or the candidate's price estimate if it passes."""
        c = self.config

        def drop(code: str, message: str) -> Dropped:
            return Dropped(candidate, code, message)

        if candidate.provider_id in c.deny:
            return drop(PROVIDER_DENIED, "the provider is on your deny list")
        try:
            pricing, estimate = self.estimate(candidate)
        except PricingError as exc:
            return drop(PRICING_INVALID, f"the offer's pricing cannot be read: {exc}")
        caps = (
            ("start fee", pricing.start_fee, c.max_start_fee),
            ("price per CPU-second", pricing.per_cpu_sec, c.max_per_cpu_sec),
            ("price per second", pricing.per_duration_sec, c.max_per_duration_sec),
            (f"worst-case cost of {c.expected_duration_s} s", estimate, c.max_estimate),
        )
        for what, value, cap in caps:
            if cap is not None and value > cap:
                return drop(OVER_PRICE_CAP, f"the offer's {what} ({_tokens(value)}) is over your cap of {_tokens(cap)}")
        until = self.cooldown_until(record)
        if until is not None and now_ms < until:
            return drop(
                PROVIDER_COOLING_DOWN,
                f"the provider failed {record.consecutive_failures} times in a row; it gets another chance"
                f" in {math.ceil((until - now_ms) / 1000)} s",
            )
        if attempts >= c.max_attempts_per_provider:
            return drop(TOO_MANY_ATTEMPTS, f"already tried {attempts} times for this demand (at most {c.max_attempts_per_provider})")
        return estimate

    def rank(
        self,
        candidates: Sequence[Candidate],
        records: Mapping[str, ProviderRecord],
        attempts: Mapping[str, int],
        now_ms: int,
    ) -> tuple[list[Ranked], list[Dropped]]:
        """Filter, score and sort ``candidates``; ``records`` and ``attempts`` are keyed by provider id.

        ``attempts`` counts this demand's negotiations with each provider so far.
        Dropped candidates keep their input order.
        """
        c = self.config
        passed: list[tuple[Candidate, ProviderRecord, int]] = []
        dropped: list[Dropped] = []
        for candidate in candidates:
            record = records.get(candidate.provider_id) or ProviderRecord()
            result = self._filter(candidate, record, attempts.get(candidate.provider_id, 0), now_ms)
            if isinstance(result, Dropped):
                dropped.append(result)
            else:
                passed.append((candidate, record, result))
        cheapest = min((estimate for _, _, estimate in passed), default=0)
        ranked = []
        for candidate, record, estimate in passed:
            price = 1.0 if estimate == 0 else cheapest / estimate
            latency = _latency(candidate.latency_ms)
            if latency is None:
                latency = _latency(record.latency_ms)
            speed = 0.5 if latency is None else 1 / (1 + latency / 100)
            score = c.price_weight * price + c.reputation_weight * record.reputation + c.latency_weight * speed
            if candidate.provider_id in c.prefer:
                score += c.prefer_weight
            ranked.append(Ranked(candidate, score, estimate))
        ranked.sort(key=lambda r: (-r.score, r.price_estimate, r.candidate.offer_id))
        return ranked, dropped
