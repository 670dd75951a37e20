"""A node whose only peer holds ``offers`` offers joins the subnet: what its catch-up takes in.

Two real :class:`~yagna.market_service.offers.OfferDirectory` instances over the
simulator's ports (one link, 5-80 ms, no loss): node 0 holds the offers (one
per provider, signed as in :mod:`.scenario`), node 1 joins and pulls them page
by page (``/yagna/market/offers/1.0.0``). This is every new node's situation
when it knows only its bootstrap peer.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio.testing

from market.offers import make_offer
from market.presets import OFFER_CONSTRAINTS, Preset, offer_properties
from yagna.market_service.offers import OfferDirectory

from .network import SimNetwork
from .scenario import EPOCH_MS, NETWORK_ID, OFFER_TTL_MS, SUBNET, provider_key


@dataclass
class LonePeerResult:
    offers: int
    taken: int
    refused: int
    peer_banned: bool
    took_s: float
    """Virtual seconds from join to the last page handled."""


def run_lone_peer(offers: int, *, seed: int = 1, wait_s: float = 60.0) -> LonePeerResult:
    raws = [make_offer(provider_key(seed, i), network_id=NETWORK_ID, subnet=SUBNET,
                       properties=offer_properties(Preset("default"), node_name=f"sim-{i}"),
                       constraints=OFFER_CONSTRAINTS, created_at_ms=EPOCH_MS, expires_at_ms=EPOCH_MS + OFFER_TTL_MS)
            for i in range(offers)]
    out: list[LonePeerResult] = []

    async def main() -> None:
        net = SimNetwork(2, degree=1, seed=seed)
        holder, joiner = net.make_real(0), net.make_real(1)

        def clock() -> int:
            return EPOCH_MS + int(trio.current_time() * 1000)

        dirs = [OfferDirectory(network_id=NETWORK_ID, gossip=n.gossip, rr=n.rr, peers=n.peers, me=n.node_id,
                               clock_ms=clock) for n in (holder, joiner)]
        last = [0.0]
        dirs[1].on_offer(lambda offer, source: last.__setitem__(0, trio.current_time()))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            for node, d in zip((holder, joiner), dirs):
                await nursery.start(node.peers.run)
                await nursery.start(d.run)
            await dirs[0].join(SUBNET)
            for raw in raws:
                dirs[0].take_offer(SUBNET, raw, source="own")
            start = trio.current_time()
            await dirs[1].join(SUBNET)
            await trio.sleep(wait_s)
            out.append(LonePeerResult(offers, len(dirs[1].book), dirs[1].stats.refused,
                                      holder.node_id in joiner.peers.bans, max(0.0, last[0] - start)))
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out[0]
