"""What each service exposes, as metric families: one collector per service.

A collector reads the running node through what its REST routes and the
dashboard already call (``net_status``, the market's offers and status, the
provider's status, the stores' counts), never a peer, a container engine or a
chain: a scrape every 15 s costs a few in-memory walks and four grouped store
reads. A collector that raises is skipped and counted by
:class:`~yagna.metrics.registry.NodeMetrics`; a service a role lacks is simply absent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from yagna import __version__
from yagna.core.money import to_decimal
from yagna.metrics.bounded import BoundedLabels
from yagna.metrics.exposition import Family

Collector = Callable[[Any], Awaitable[list[Family]]]

MAX_SUBNETS = 20
"""Subnet labels at most (the subnets a node follows are its own settings; the bound holds anyway)."""
GIB = 2**30


async def node_info(node: Any) -> list[Family]:
    config = getattr(node, "config", None)
    return [Family("yagna_node_info", "gauge", "This node: its id, version, role and market network (always 1).")
            .add(1, node_id=node.node_id, version=__version__, role=node.role,
                 network=getattr(config, "network_id", ""))]


async def net(node: Any) -> list[Family]:
    status = node.net_status()
    out = [
        Family("yagna_peers_connected", "gauge", "libp2p peers connected now.").add(int(status["connected"])),
        Family("yagna_peers_known", "gauge", "libp2p peers known (connected or not), as `yagna net peers --all` lists them.")
        .add(int(status["known"])),
        Family("yagna_reachability", "gauge",
               "Whether peers on other networks can dial this node (public, private or unknown): 1 for the current one.")
        .add(1, status=status["reachability"]),
    ]
    punch = status.get("hole_punching")
    if isinstance(punch, dict) and punch.get("enabled"):
        f = Family("yagna_hole_punches_total", "counter", "Hole punching (DCUtR) attempts since start, by result.")
        for result in ("succeeded", "failed", "refused"):
            if isinstance(punch.get(result), int):
                f.add(punch[result], result=result)
        out.append(f)
    relay = status.get("relay")
    if isinstance(relay, dict):
        out.append(Family("yagna_relay_reservations", "gauge",
                          "Circuit relay v2 reservations this node holds on relays (a private node keeps 2).")
                   .add(len(relay.get("reservations") or [])))
    return out


async def market(node: Any) -> list[Family]:
    market = node.market
    subnet = BoundedLabels(MAX_SUBNETS)
    seen = Family("yagna_market_offers_seen", "gauge",
                  "Live offers in this node's offer book (its own included), by subnet.")
    for name, n in sorted(Counter(subnet(str(o["subnet"])) for o in market.offers()).items()):
        seen.add(n, subnet=name)
    status = market.status()
    events = Family("yagna_market_offer_events_total", "counter",
                    "Offers and withdrawals from peers since start, by outcome: accepted (new), replaced (a newer "
                    "version), withdrawn, refused (invalid or over a bound), synced (pulled by catch-up or anti-entropy).")
    for event in ("accepted", "replaced", "withdrawn", "refused", "synced"):
        events.add(int(status[event]), event=event)
    out = [seen, events]
    if market.requestor is not None:
        out.append(Family("yagna_market_demands", "gauge", "Requestor: demands open now.").add(int(status["demands"])))
    if market.provider is not None:
        prov = market.provider.status()
        presets = prov["presets"]
        out.append(Family("yagna_provider_presets", "gauge", "Provider: presets (what it sells, each one offer).")
                   .add(len(presets)))
        out.append(Family("yagna_provider_offers_live", "gauge", "Provider: its own offers published now.")
                   .add(sum(p.get("offer_id") is not None for p in presets)))
        for name, key, scale, what in (
                ("yagna_provider_capacity_threads", "threads", 1, "CPU threads"),
                ("yagna_provider_capacity_memory_bytes", "mem_gib", GIB, "memory in bytes"),
                ("yagna_provider_capacity_storage_bytes", "storage_gib", GIB, "disk in bytes")):
            f = Family(name, "gauge", f"Provider: {what} for sale in all (total) and held by agreements now (committed).")
            for kind in ("total", "committed"):
                f.add(_scaled(prov[{"total": "capacity", "committed": "committed"}[kind]][key], scale), kind=kind)
            out.append(f)
    return out


def _scaled(value: object, scale: int) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"capacity {value!r:.40} is not a number")
    return value if scale == 1 else int(value * scale)


async def agreements(node: Any) -> list[Family]:
    f = Family("yagna_agreements", "gauge", "Agreements this node is party to (all kept in its store), by state.")
    for state, n in sorted((await node.market.agreements.count_by_state()).items()):
        f.add(n, state=state)
    return [f]


async def activities(node: Any) -> list[Family]:
    service = node.activity
    f = Family("yagna_activities", "gauge",
               "Activities in the store by role (provider: run here; requestor: run for this node) and state.")
    for (role, state), n in sorted((await service.count_by_state()).items()):
        f.add(n, role=role, state=state)
    out = [f]
    if service.provider is not None:
        c = Family("yagna_containers", "gauge",
                   "Provider: containers of live activities now, running or paused (by payment enforcement).")
        for state, n in sorted(service.provider.containers().items()):
            c.add(n, state=state)
        out.append(c)
    return out


async def payments(node: Any) -> list[Family]:
    service = node.payments
    totals = await service.channel_totals()
    channels = Family("yagna_payment_channels", "gauge",
                      "Payment channels (one per agreement) by role (provider: paid to it; requestor: paying) and state.")
    for (role, state), t in sorted(totals.items()):
        channels.add(t["channels"], role=role, state=state)
    out = [channels]

    def total(role: str, column: str, states: tuple[str, ...] = ("open", "closing", "closed")) -> Any:
        return to_decimal(sum(t[column] for (r, s), t in totals.items() if r == role and s in states))

    if service.provider is not None:
        out.append(Family("yagna_provider_earnings_tokens", "gauge",
                          "Provider: tokens over all its channels: due (claimed by its debit notes), paid (covered "
                          "by the best vouchers it holds) and redeemed (paid on channels closed and settled).")
                   .add(total("provider", "due"), status="due")
                   .add(total("provider", "paid"), status="paid")
                   .add(total("provider", "paid", ("closed",)), status="redeemed"))
        out.append(service.provider.voucher_round_trips.family(
            "yagna_payment_voucher_round_trip_seconds",
            "Provider: seconds from signing a debit note to holding the voucher that pays it (stored, acknowledged)."))
        out.append(Family("yagna_payment_debit_notes_unanswered_total", "counter",
                          "Provider: debit notes the requestor did not answer (unreachable, timed out, refused).")
                   .add(service.provider.notes_unanswered))
    if service.requestor is not None:
        out.append(Family("yagna_requestor_spend_tokens", "gauge",
                          "Requestor: tokens over all its channels: paid (its signed vouchers, cumulative) and "
                          "deposited (deposits locked in channels not closed yet).")
                   .add(total("requestor", "best_amount"), status="paid")
                   .add(total("requestor", "deposit", ("open", "closing")), status="deposited"))
    return out


COLLECTORS: tuple[tuple[str, Collector], ...] = (
    ("node", node_info),
    ("net", net),
    ("market", market),
    ("agreements", agreements),
    ("activities", activities),
    ("payments", payments),
)
"""Run in this order on every scrape; the name labels ``yagna_metrics_collector_errors_total``."""
