"""Subscriptions made while a pubsub peer is being set up reach that peer (py-libp2p race)."""

from __future__ import annotations

import os

import trio

from yagna.net import Network

from .conformance import fast_config, start_stoppable

BOUND = 15.0


async def test_subscriptions_during_peer_setup_reach_the_peer() -> None:
    topics = [f"race/{i}" for i in range(40)]
    async with trio.open_nursery() as nursery:
        a = Network(os.urandom(32), fast_config())
        await start_stoppable(nursery, a)
        b = Network(os.urandom(32), fast_config(bootstrap=[a.full_addrs()[0]]))

        done = trio.Event()

        async def subscribe_while_connecting() -> None:
            for topic in topics:
                await a.gossip.subscribe(topic)
                await trio.sleep(0.002)
            done.set()

        nursery.start_soon(subscribe_while_connecting)
        await start_stoppable(nursery, b)
        with trio.fail_after(BOUND):
            await done.wait()
            while not all(a.node_id in b.gossip.topic_peers(t) for t in topics):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
