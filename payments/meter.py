"""The payer's own meter of an agreement's activities, kept across restarts (sans-io).

A requestor checks every debit note against its *own* clock of how long the
agreement's activities lived (:func:`payments.debit_note.decide_payment` caps
the voucher at that estimate). The exe-unit's side reports that clock as
``(milliseconds of activity life summed, activities)`` since *this process*
started, so on its own it starts again at zero after a restart, and a
restarted requestor would underpay the provider for everything before it.

:class:`OwnMeter` accumulates those readings into a :class:`MeterRecord`
that the daemon stores (not durably: a killed process keeps it, it is an
estimate, not money) every few seconds and at every debit note. After a
restart, :meth:`OwnMeter.resume` starts from the stored record and counts the
time the process was down as activity life when an activity was running at
the last reading and is still open now: by the requestor's own view the
provider's container ran for it all that time. What can be lost is one
reading period of an activity that ended just before a crash, which the
per-activity slack of the estimate covers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LIVE_WINDOW_MS", "MeterRecord", "OwnMeter"]

LIVE_WINDOW_MS = 50
"""Readings closer than this keep the previous ``live`` (the clock may not have ticked between them)."""


@dataclass
class MeterRecord:
    """What is stored per payer channel; every field an int >= 0 (``live`` a bool)."""

    ms: int = 0
    """Activity life counted so far, all activities of the agreement summed (ms)."""
    at_ms: int = 0
    """Wall-clock time of the last reading (ms since the epoch)."""
    live: bool = False
    """An activity was running at the last reading (its life grew)."""
    activities: int = 0
    """The most activities the exe-unit side reported at once (each gets the estimate's slack)."""

    def __post_init__(self) -> None:
        for name in ("ms", "at_ms", "activities"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"meter {name} must be an int >= 0, got {value!r}")
        if type(self.live) is not bool:
            raise ValueError(f"meter live must be a bool, got {self.live!r}")


class OwnMeter:
    """Turns the exe-unit's per-process readings into a cumulative :class:`MeterRecord`."""

    def __init__(self, record: MeterRecord | None = None) -> None:
        self.record = record if record is not None else MeterRecord()
        self._ref = 0
        """The process's reading at the last observation (its life is counted up to there)."""

    def resume(self, *, now_ms: int, elapsed_ms: int, activities: int) -> MeterRecord:
        """After a restart: add the downtime when an activity ran before it and is still open now.

        ``elapsed_ms``/``activities`` are this process's first reading; what it already
        counted is not counted twice (the downtime runs up to ``now_ms``).
        """
        r = self.record
        if r.live and activities > 0:
            r.ms += max(0, now_ms - r.at_ms)
        self._ref = max(0, elapsed_ms)
        r.at_ms = max(r.at_ms, now_ms)
        r.live = r.live and activities > 0
        r.activities = max(r.activities, activities)
        return r

    def observe(self, *, now_ms: int, elapsed_ms: int, activities: int) -> bool:
        """Take a reading; True if the record changed (worth storing).

        A reading below the last one (the exe-unit side forgot an ended activity) counts
        nothing and becomes the new reference: the total never goes back.
        """
        r = self.record
        delta = max(0, elapsed_ms - self._ref)
        self._ref = max(0, elapsed_ms)
        before = (r.ms, r.live, r.activities)
        r.ms += delta
        if delta > 0:
            r.live = True
        elif now_ms - r.at_ms >= LIVE_WINDOW_MS:
            r.live = False
        r.activities = max(r.activities, activities)
        if before == (r.ms, r.live, r.activities) and not r.live:
            return False  # nothing ran: the stored record is still right
        r.at_ms = max(r.at_ms, now_ms)
        return True

    def cap_ms(self, slack_ms: int) -> int:
        """Our estimate of activity life with ``slack_ms`` per activity for clock skew; 0 with no activity."""
        r = self.record
        return r.ms + slack_ms * r.activities if r.activities else 0
