"""Hypothesis-driven garbage at the library's protocols we run: pubsub, identify, ping.

The invariant is the node's, not a reply's: whatever a peer writes on these
streams, the node stays up and keeps serving its honest peers. One target
node and one rogue per example batch; the rogue writes raw bytes, so no check
on the sending side stands in the way. ``YAGNA_FUZZ=long`` runs more examples.
"""

from __future__ import annotations

import os

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from e2e.rogue import rogue_host, send_pubsub, write_raw
from yagna.net.framing import encode_varint

from .conformance import libp2p_nets
from .test_hostile_gossip import TOPIC, _gossip_still_works

LONG = os.environ.get("YAGNA_FUZZ") == "long"
FUZZ = settings(max_examples=60 if LONG else 6, deadline=None, suppress_health_check=list(HealthCheck))

ED_ID = st.binary(min_size=32, max_size=32).map(lambda k: b"\x00\x24\x08\x01\x12\x20" + k)
IDS = st.one_of(ED_ID, st.binary(max_size=64))
TOPICS = st.one_of(st.just(TOPIC), st.text(max_size=40), st.just("user/chat"))

messages = st.builds(
    rpc_pb2.Message,
    from_id=IDS,
    data=st.binary(max_size=2048),
    seqno=st.binary(max_size=16),
    topicIDs=st.lists(TOPICS, max_size=3),
    signature=st.binary(max_size=80),
    key=st.one_of(st.binary(max_size=48), st.binary(min_size=32, max_size=32).map(lambda k: b"\x08\x01\x12\x20" + k)),
)
control = st.builds(
    rpc_pb2.ControlMessage,
    ihave=st.lists(st.builds(rpc_pb2.ControlIHave, topicID=TOPICS, messageIDs=st.lists(st.binary(max_size=50), max_size=5)),
                   max_size=3),
    iwant=st.lists(st.builds(rpc_pb2.ControlIWant, messageIDs=st.lists(st.binary(max_size=50), max_size=5)), max_size=3),
    graft=st.lists(st.builds(rpc_pb2.ControlGraft, topicID=TOPICS), max_size=3),
    prune=st.lists(st.builds(rpc_pb2.ControlPrune, topicID=TOPICS, backoff=st.integers(0, 2**63)), max_size=3),
)
rpcs = st.builds(
    rpc_pb2.RPC,
    subscriptions=st.lists(st.builds(rpc_pb2.RPC.SubOpts, subscribe=st.booleans(), topicid=TOPICS), max_size=4),
    publish=st.lists(messages, max_size=4),
    control=st.one_of(st.none(), control),
)


def _framed(rpc: rpc_pb2.RPC) -> bytes:
    data = rpc.SerializeToString()
    return encode_varint(len(data)) + data


frames = st.one_of(
    rpcs.map(_framed),
    st.binary(max_size=300),  # not protobuf, or a bad varint
    st.binary(max_size=300).map(lambda b: encode_varint(len(b)) + b),  # framed garbage
    st.binary(min_size=1, max_size=8).map(lambda b: b"\xff\xff\xff\xff\x0f" + b),  # a 4 GiB length
)


@FUZZ
@given(batch=st.lists(frames, min_size=1, max_size=25), identify=st.lists(st.binary(max_size=400), max_size=3),
       ping=st.lists(st.binary(max_size=100), max_size=3))
def test_garbage_at_pubsub_identify_and_ping_leaves_the_node_up(
    batch: list[bytes], identify: list[bytes], ping: list[bytes]
) -> None:
    async def run() -> None:
        async with libp2p_nets(2) as (a, b):
            await a.gossip.subscribe(TOPIC)
            async with rogue_host(a.full_addrs()[0]) as host:
                target = ID.from_base58(a.node_id)
                await send_pubsub(host, target, batch, linger=0.2)
                await write_raw(host, target, "/ipfs/id/push/1.0.0",
                                 [encode_varint(len(x)) + x for x in identify] or [b"\xff" * 12])
                await write_raw(host, target, "/ipfs/id/1.0.0", identify)
                await write_raw(host, target, "/ipfs/ping/1.0.0", ping)
            await _gossip_still_works(b, a, TOPIC)
            assert a.node_id in b.peers.connected_peers()

    trio.run(run)
