"""What the dashboard shows, read from the running node through the services' own functions.

:func:`snapshot` calls what the REST routes call (``net_status``, the market's
offers, presets and agreements, the exe-unit's activities, ``payment/status``,
the requestor's reputation) and keeps a bounded page of each; :func:`live` is
the cheap part the page refreshes every few seconds (activities and the node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from yagna import __version__
from yagna.api.dashboard.log_ring import LogLine
from yagna.api.dashboard.summary import ActivityRow, activity_rows

AGREEMENTS_SHOWN = 50
ACTIVITIES_SHOWN = 50
CHANNELS_SHOWN = 50
OFFERS_SHOWN = 50
ERRORS_SHOWN = 50
PROVIDERS_SHOWN = 50


@dataclass
class Snapshot:
    node: dict[str, Any]
    activities: list[ActivityRow]
    errors: list[LogLine]
    provider: dict[str, Any] | None = None
    """The provider's status (capacity, presets with their live offer ids); None: it does not sell."""
    own_offers: list[dict[str, Any]] = field(default_factory=list)
    offers_seen: int = 0
    agreements: list[dict[str, Any]] = field(default_factory=list)
    agreement_counts: dict[str, int] = field(default_factory=dict)
    payments: dict[str, Any] = field(default_factory=dict)
    """``payment/status``: driver, balance and one row per channel (all of them, for the totals)."""
    reputation: list[dict[str, Any]] | None = None
    """The requestor's records of providers; None: it does not buy."""
    generated_at: float = field(default_factory=time.time)

    @property
    def sells(self) -> bool:
        return self.provider is not None

    @property
    def buys(self) -> bool:
        return self.reputation is not None


def node_view(node: Any) -> dict[str, Any]:
    status = node.net_status()
    return {"node_id": node.node_id, "role": node.role, "version": __version__,
            "reachability": status.get("reachability"), "connected": status.get("connected"),
            "known": status.get("known"), "advertised_addrs": list(status.get("advertised_addrs") or [])[:8]}


async def activities(node: Any) -> list[ActivityRow]:
    provider, requestor = node.activity.provider, node.activity.requestor
    sold = await provider.list() if provider is not None else []
    bought = requestor.list() if requestor is not None else []
    return activity_rows(sold, bought, limit=ACTIVITIES_SHOWN)


def errors(node: Any) -> list[LogLine]:
    ring = getattr(node, "recent_logs", None)
    return ring.lines()[:ERRORS_SHOWN] if ring is not None else []


async def snapshot(node: Any) -> Snapshot:
    snap = Snapshot(node=node_view(node), activities=await activities(node), errors=errors(node))
    market = node.market
    offers = market.offers()
    snap.offers_seen = len(offers)
    if market.provider is not None:
        snap.provider = market.provider.status()
        snap.own_offers = [o for o in offers if o["provider_id"] == node.node_id][:OFFERS_SHOWN]
    snap.agreements = await market.list_agreements(limit=AGREEMENTS_SHOWN)
    snap.agreement_counts = await market.agreements.count_by_state()
    snap.payments = await node.payments.status()
    if market.requestor is not None:
        snap.reputation = (await market.requestor.reputation())[:PROVIDERS_SHOWN]
    return snap


async def live(node: Any) -> dict[str, Any]:
    """The JSON of ``/dashboard/data``: the node and its activities, read every few seconds."""
    return {"generated_at": time.time(), "node": node_view(node),
            "activities": [a.to_json() for a in await activities(node)],
            "errors": len(errors(node))}
