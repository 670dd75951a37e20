"""Pure summaries of what the services report (the same dicts as their REST routes), for the page.

Nothing here decides anything about money or work: it sorts, groups and adds
up the services' own views (:mod:`yagna.api.dashboard.collect` fetches them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ENDED = frozenset({"terminated", "failed"})
"""Activity states after which nothing runs."""

EARNED, HELD = 0, 1
"""Chart series: redeemed (the channel is closed) and held (the best voucher of an open channel)."""


@dataclass(frozen=True)
class ActivityRow:
    side: str
    """``sold`` (this node runs it) or ``bought`` (this node's job runs on a provider)."""
    activity_id: str
    agreement_id: str
    peer_id: str
    state: str
    reason: str | None
    cpu_s: float | None
    mem_gib: float | None
    elapsed_s: float | None

    @property
    def running(self) -> bool:
        return self.state not in ENDED

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "running": self.running}


def _number(usage: object, key: str) -> float | None:
    if not isinstance(usage, dict):
        return None
    value = usage.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def activity_rows(sold: Iterable[dict[str, Any]], bought: Iterable[dict[str, Any]], *, limit: int) -> list[ActivityRow]:
    """Both sides' activities, running ones first, at most ``limit``."""
    rows = []
    for side, items, peer_key in (("sold", sold, "requestor_id"), ("bought", bought, "provider_id")):
        for a in items:
            usage = a.get("usage")
            rows.append(ActivityRow(side, str(a.get("activity_id", "")), str(a.get("agreement_id", "")),
                                    str(a.get(peer_key, "")), str(a.get("state", "")), a.get("reason"),
                                    _number(usage, "golem.usage.cpu_sec"), _number(usage, "golem.usage.gib"),
                                    _number(usage, "golem.usage.duration_sec")))
    rows.sort(key=lambda r: not r.running)  # stable: each service's own order within
    return rows[:limit]


@dataclass
class PeerPayments:
    """One counterpart's agreements with this node, as the payment channels have them."""

    peer_id: str
    agreements: int = 0
    open: int = 0
    due_units: int = 0
    paid_units: int = 0
    activities: int = 0
    states: set[str] = field(default_factory=set)
    """Enforcement states seen on its open channels (e.g. ``paused``)."""

    @property
    def unpaid_units(self) -> int:
        return max(0, self.due_units - self.paid_units)


def per_peer(channels: Iterable[dict[str, Any]], role: str, activities: Iterable[ActivityRow] = ()) -> list[PeerPayments]:
    """``payment/status`` rows of ``role`` (provider or requestor) grouped by counterpart, most paid first."""
    peers: dict[str, PeerPayments] = {}
    for c in channels:
        if c.get("role") != role:
            continue
        p = peers.setdefault(str(c.get("peer_id")), PeerPayments(str(c.get("peer_id"))))
        p.agreements += 1
        p.due_units += int(c.get("due_units") or 0)
        p.paid_units += int(c.get("paid_units") or 0)
        if c.get("state") != "closed":
            p.open += 1
            if c.get("enforcement"):
                p.states.add(str(c["enforcement"]))
    side = "sold" if role == "provider" else "bought"
    for a in activities:
        if a.side == side and a.peer_id in peers:
            peers[a.peer_id].activities += 1
    return sorted(peers.values(), key=lambda p: (-p.paid_units, p.peer_id))


def voucher_totals(channels: Iterable[dict[str, Any]], role: str) -> tuple[int, int]:
    """(redeemed or settled, held in open channels) base units of ``role``'s channels."""
    closed = held = 0
    for c in channels:
        if c.get("role") != role:
            continue
        if c.get("state") == "closed":
            closed += int(c.get("paid_units") or 0)
        else:
            held += int(c.get("paid_units") or 0)
    return closed, held


def payment_events(channels: Iterable[dict[str, Any]], role: str) -> list[tuple[float, int, int]]:
    """``(time, series, amount)`` per channel of ``role``: what it paid, when it last moved.

    A closed channel counts as :data:`EARNED` at its close; an open one as :data:`HELD` at its
    last voucher or debit note (its best voucher, not redeemed yet)."""
    out = []
    for c in channels:
        amount = int(c.get("paid_units") or 0)
        when = c.get("updated_at")
        if c.get("role") != role or amount <= 0 or not isinstance(when, (int, float)):
            continue
        out.append((float(when), EARNED if c.get("state") == "closed" else HELD, amount))
    return out
