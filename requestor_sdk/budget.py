"""Money for a batch: prices of an agreement and a budget that is never exceeded. Pure (no I/O, no clock).

What an agreement can cost, at most, is what the daemon will ever sign for it:
the daemon never signs more than the agreed price of its *own* clock of the
agreement's activities (every sold thread busy for the activities' whole
lifetime, plus 2 s of slack per activity), and the start fee once. The SDK
starts its own clock before it asks for an activity and stops it after the
activity is gone, so its bound is always at least the daemon's.

The :class:`Budget` adds, for a moment ``now`` (seconds, any monotonic clock):

- **committed**: for each agreement, the larger of its bound so far and the
  amount the daemon reports as signed (``paid_units`` of ``/payment/status``);
- **reserved**: for each running task, what is left of its worst case
  (``rate x (timeout + transfer margin)`` from its start, plus the start fee
  when the task creates the agreement's first activity);
- **tail**: for each live activity, ``rate x tail_s``: the idle time before an
  idle activity is removed and the time to remove it.

A new task is started only when ``committed + reserved + tail + its worst
case <= limit`` (:meth:`Budget.reserve`); when it does not fit, the SDK stops
taking tasks and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from requestor_sdk.errors import BudgetError
from yagna.core.errors import MoneyError
from yagna.core.money import format_amount, parse_amount

__all__ = ["SLACK_S", "Budget", "Pricing", "Reservation", "parse_tokens", "tokens"]

SLACK_S = 2.0
"""The daemon's allowance per activity for clocks that disagree (``payment_service.requestor.SLACK_MS``)."""

_COEFFS = "golem.com.pricing.model.linear.coeffs"
_VECTOR = "golem.com.usage.vector"
_THREADS = "golem.inf.cpu.threads"
_CPU, _DURATION = "golem.usage.cpu_sec", "golem.usage.duration_sec"


def parse_tokens(value: str | int, what: str = "amount") -> int:
    """A decimal token string (``"0.5"``) as base units; :class:`BudgetError` naming ``what`` if invalid."""
    try:
        return parse_amount(value)
    except MoneyError as exc:
        raise BudgetError(f"{what}: {exc}") from None


def tokens(units: int) -> str:
    """Base units as a decimal token string."""
    return format_amount(units)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Pricing:
    """An agreement's linear price in base units, and the threads it sold."""

    per_cpu_sec: int
    per_duration_sec: int
    start_fee: int
    threads: int

    @classmethod
    def from_offer(cls, props: Mapping[str, Any]) -> Pricing:
        """From an agreement's offer properties (Golem's linear model); :class:`BudgetError` if unusable."""
        if not isinstance(props, Mapping):
            raise BudgetError(f"the offer's properties are not a map: {type(props).__name__}")
        coeffs, vector, threads = props.get(_COEFFS), props.get(_VECTOR), props.get(_THREADS)
        if not isinstance(coeffs, list) or not isinstance(vector, list) or len(coeffs) != len(vector) + 1:
            raise BudgetError(f"the offer's pricing is not linear: {_COEFFS}={coeffs!r}, {_VECTOR}={vector!r}")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in coeffs):
            raise BudgetError(f"the offer's price coefficients are not whole base units: {coeffs!r}")
        if not all(isinstance(v, str) for v in vector) or not set(vector) <= {_CPU, _DURATION}:
            raise BudgetError(f"the offer bills counters this SDK cannot bound: {vector!r}")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise BudgetError(f"the offer states no thread count ({_THREADS}={threads!r})")
        per = dict(zip(vector, coeffs[:-1], strict=True))
        return cls(per_cpu_sec=per.get(_CPU, 0), per_duration_sec=per.get(_DURATION, 0), start_fee=coeffs[-1],
                   threads=threads)

    @property
    def rate(self) -> int:
        """Worst-case base units per second: every thread busy, plus the duration price."""
        return self.per_cpu_sec * self.threads + self.per_duration_sec

    def worst_case(self, seconds: float, *, start_fee: bool = False) -> int:
        """At most what ``seconds`` of activity life cost (rounded up), with the start fee if asked."""
        ms = max(0, int(seconds * 1000) + 1)
        return _ceil_div(self.rate * ms, 1000) + (self.start_fee if start_fee else 0)

    def hourly(self) -> tuple[str, str]:
        """``(per CPU-hour, per hour)`` as token strings, as people quote prices."""
        return tokens(self.per_cpu_sec * 3600), tokens(self.per_duration_sec * 3600)


@dataclass
class _Agreement:
    pricing: Pricing
    life_s: float = 0.0
    """Summed lifetime of this agreement's ended activities."""
    live_since: float | None = None
    activities: int = 0
    signed: int = 0


@dataclass(frozen=True)
class Reservation:
    key: str
    start: float
    seconds: float
    fee: bool
    """Whether the start fee is part of it (the task creates the agreement's first activity)."""
    ident: int = field(default=0, compare=False)


class Budget:
    """The ledger of one batch: agreements, live activities and reservations against ``limit`` base units."""

    def __init__(self, limit: int, *, tail_s: float = 15.0) -> None:
        if limit < 0:
            raise BudgetError("the budget must not be negative")
        self.limit = limit
        self.tail_s = tail_s
        self._agreements: dict[str, _Agreement] = {}
        self._reservations: dict[int, Reservation] = {}
        self._next = 0

    # -- agreements and activities ---------------------------------------------------------
    def add_agreement(self, key: str, pricing: Pricing) -> None:
        self._agreements.setdefault(key, _Agreement(pricing))

    def pricing(self, key: str) -> Pricing:
        return self._agreements[key].pricing

    def activity_started(self, key: str, now: float) -> None:
        a = self._agreements[key]
        if a.live_since is None:
            a.live_since = now
            a.activities += 1

    def activity_ended(self, key: str, now: float) -> None:
        a = self._agreements[key]
        if a.live_since is not None:
            a.life_s += max(0.0, now - a.live_since)
            a.live_since = None

    def signed(self, key: str, paid_units: int) -> None:
        """The daemon reports ``paid_units`` signed for this agreement (never lowers what is known)."""
        a = self._agreements.get(key)
        if a is not None:
            a.signed = max(a.signed, paid_units)

    def has_activity(self, key: str) -> bool:
        return self._agreements[key].activities > 0

    # -- sums ------------------------------------------------------------------------------
    def bound(self, key: str, now: float) -> int:
        """At most what the daemon may have signed for this agreement so far."""
        a = self._agreements[key]
        if a.activities == 0:
            return a.signed
        life = a.life_s + (now - a.live_since if a.live_since is not None else 0.0) + SLACK_S * a.activities
        return max(a.signed, a.pricing.worst_case(life, start_fee=True))

    def committed(self, now: float) -> int:
        return sum(self.bound(k, now) for k in self._agreements)

    def _remaining(self, r: Reservation, now: float) -> int:
        p = self._agreements[r.key].pricing
        left = max(0.0, r.start + r.seconds - now)
        fee = r.fee and not self.has_activity(r.key)
        return p.worst_case(left, start_fee=fee) if left > 0 or fee else 0

    def reserved(self, now: float) -> int:
        return sum(self._remaining(r, now) for r in self._reservations.values())

    def tail(self) -> int:
        return sum(a.pricing.worst_case(self.tail_s) for a in self._agreements.values() if a.live_since is not None)

    def exposure(self, now: float) -> int:
        """Committed + reserved + tail: the most the batch can cost if nothing new starts."""
        return self.committed(now) + self.reserved(now) + self.tail()

    def task_cost(self, key: str, seconds: float) -> int:
        """A new task's worst case on agreement ``key``: with its tail and the :data:`SLACK_S` that
        :meth:`bound` adds for every activity if the activity is not live yet (without that slack a
        task shorter than it was accepted at the limit and then over it: found by hypothesis)."""
        a = self._agreements[key]
        if a.live_since is not None:
            return a.pricing.worst_case(seconds, start_fee=a.activities == 0)
        return (a.pricing.worst_case(seconds, start_fee=a.activities == 0) + a.pricing.worst_case(SLACK_S)
                + a.pricing.worst_case(self.tail_s))

    # -- reservations ----------------------------------------------------------------------
    def reserve(self, key: str, seconds: float, now: float) -> Reservation | None:
        """Reserve a task's worst case, or ``None`` if it could exceed the limit."""
        if self.exposure(now) + self.task_cost(key, seconds) > self.limit:
            return None
        self._next += 1
        r = Reservation(key, now, seconds, fee=self._agreements[key].activities == 0, ident=self._next)
        self._reservations[r.ident] = r
        return r

    def release(self, r: Reservation) -> None:
        self._reservations.pop(r.ident, None)

    def running(self) -> int:
        return len(self._reservations)

    def signed_total(self) -> int:
        return sum(a.signed for a in self._agreements.values())
