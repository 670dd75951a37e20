"""A rogue peer speaking py-libp2p's pubsub wrongly on purpose (issue 11, rows 1 and 6).

The target is a real :class:`Network` in this process; the rogue writes raw
pubsub RPCs on its own stream, so no library check on the sending side
stands between it and the target.
"""

from __future__ import annotations

import os

import trio
from libp2p.peer.id import ID

from e2e.rogue import garbage_messages, poison_gossip, pubsub_rpc, rogue_host, send_pubsub
from yagna.net import Network
from yagna.user_topics import KEEP_BYTES, USER_TOPIC_LIMITS, UserTopics

from .conformance import libp2p_nets

BOUND = 20.0
TOPIC = "yagna/market/1/testnet/public/offers"


async def _gossip_still_works(a: Network, b: Network, topic: str) -> None:
    sub = await b.gossip.subscribe(topic)
    with trio.fail_after(BOUND):
        while a.node_id not in b.gossip.topic_peers(topic) and b.node_id not in a.gossip.topic_peers(topic):
            await trio.sleep(0.05)
        while True:
            await a.gossip.publish(topic, b"still alive")
            with trio.move_on_after(0.5):
                msg = await sub.receive()
                assert msg.data == b"still alive"
                return


async def test_poisoned_pubsub_message_does_not_take_the_node_down() -> None:
    """Row 1: a garbage ``key`` with a non-key-type ``from_id`` made every receiver exit."""
    async with libp2p_nets(2) as (a, b):
        await a.gossip.subscribe(TOPIC)
        target = a.full_addrs()[0]
        async with rogue_host(target) as host:
            sent = await poison_gossip(host, ID.from_base58(a.node_id), [TOPIC])
            assert sent > 0
            await trio.sleep(0.5)
        # the node is up, its gossip service too, and nothing of the garbage was delivered
        await _gossip_still_works(b, a, TOPIC)
        assert a.gossip.rejected >= sent
        assert a.gossip.rejected_by_peer.get(host.get_id().to_base58(), 0) >= 1


async def test_garbage_pubsub_from_many_rogues_is_counted_not_fatal() -> None:
    async with libp2p_nets(2) as (a, b):
        await a.gossip.subscribe(TOPIC)
        for _ in range(3):
            async with rogue_host(a.full_addrs()[0]) as host:
                frames = [pubsub_rpc(subscribe=[TOPIC])]
                frames += [pubsub_rpc(publish=[m]) for m in garbage_messages(TOPIC)]
                frames.append(os.urandom(200))  # not even protobuf
                await send_pubsub(host, ID.from_base58(a.node_id), frames, linger=0.3)
        assert a.gossip.rejected >= 3
        await _gossip_still_works(b, a, TOPIC)


async def test_user_topic_flood_is_bounded() -> None:
    """Row 6: 300 x 900 KB messages on a subscribed user topic were all kept (289 -> 466 MB)."""
    from e2e.rogue import _Signer

    topic = "user/chat"
    async with libp2p_nets(1) as (a,), trio.open_nursery() as nursery:
        topics = UserTopics(a.gossip, nursery)
        await topics.subscribe(topic)
        async with rogue_host(a.full_addrs()[0]) as host:
            signer = _Signer(host)
            big = [pubsub_rpc(publish=[signer.message(topic, b"B" * 900_000, i)]) for i in range(5)]
            small = [pubsub_rpc(publish=[signer.message(topic, b"s" * 60_000, 100 + i)]) for i in range(300)]
            await send_pubsub(host, ID.from_base58(a.node_id), [pubsub_rpc(subscribe=[topic]), *big, *small],
                              linger=1.0)
        kept = topics.messages(topic)
        assert kept, "some of the flood within the rate is delivered"
        assert all(len(m.data) == 60_000 for m in kept)  # the oversized ones never
        assert sum(len(m.data) for m in kept) <= KEEP_BYTES
        # a burst of 2 s at the per-forwarder byte rate, at most, got through
        assert len(kept) <= USER_TOPIC_LIMITS.bytes_per_s * (USER_TOPIC_LIMITS.burst_s + 3) / 60_000
        assert a.gossip.rejected >= 300 - len(kept)
        nursery.cancel_scope.cancel()


async def test_user_topic_keeps_bounded_bytes() -> None:
    async with libp2p_nets(2) as (a, b), trio.open_nursery() as nursery:
        topics = UserTopics(b.gossip, nursery, keep_bytes=10_000)
        await topics.subscribe("user/t")
        sub = await b.gossip.subscribe("user/t")
        with trio.fail_after(BOUND):
            while "user/t" not in a.gossip.pubsub.peer_topics or not a.gossip.topic_peers("user/t"):
                await trio.sleep(0.05)
            for i in range(10):
                await a.gossip.publish("user/t", bytes([i]) * 3000)
            for _ in range(10):
                await sub.receive()
            await trio.sleep(0.1)
        kept = topics.messages("user/t")
        assert [m.data[0] for m in kept] == [7, 8, 9]
        nursery.cancel_scope.cancel()
