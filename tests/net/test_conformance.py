"""One set of tests for the real network (libp2p on 127.0.0.1) and its memory twin.

Every test runs twice through the ``world`` fixture (``conftest.py``): what a
domain package observes through ``rr`` and ``gossip`` must be the same on both.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from yagna.core.errors import EncodeError, WireError
from yagna.core.identity import public_key_from_node_id
from yagna.net import (
    BadResponse,
    GossipError,
    GossipInvalid,
    PeerUnreachable,
    ProtocolNotSupported,
    ProtocolSpec,
    RemoteError,
    Request,
    RequestRejected,
    RequestTimeout,
    RequestTooLarge,
)
from yagna.net.gossip import MAX_GOSSIP_SIZE, SUBSCRIBER_QUEUE, Inbound
from yagna.net.memory import MemoryHub

from .conformance import World

BOUND = 20.0  # generous bound for every exchange below


async def echo(req: Request) -> object:
    return {"echo": req.payload, "from": req.peer, "protocol": req.protocol}


async def test_round_trip_of_nested_cbor_values(world: World) -> None:
    spec = ProtocolSpec("/test/echo/1")
    world.b.rr.register(spec, echo)
    payload = {
        "list": [1, -2, 2**63, -(2**64), 1.5, None, True, False, b"\x00\xff", "zolw \u017c\u00f3\u0142w"],
        "nested": {"k": [[], {}, [[[b""]]]], 7: "an int key"},
        "tuple": (1, (2, 3)),
        "empty": "",
    }
    with trio.fail_after(BOUND):
        reply = await world.a.rr.request(world.b.node_id, spec, payload)
    expected = dict(payload, tuple=[1, [2, 3]])  # CBOR has no tuples
    assert reply == {"echo": expected, "from": world.a.node_id, "protocol": spec.name}


async def test_several_peers_and_protocols(world: World) -> None:
    one, two = ProtocolSpec("/test/one/1"), ProtocolSpec("/test/two/1")

    async def constant(req: Request) -> object:
        return "two"

    world.c.rr.register(one, echo)
    world.c.rr.register(two, constant)
    world.b.rr.register(one, echo)
    with trio.fail_after(BOUND):
        assert (await world.a.rr.request(world.c.node_id, one, 1))["from"] == world.a.node_id  # type: ignore[index]
        assert (await world.b.rr.request(world.c.node_id, one, 2))["from"] == world.b.node_id  # type: ignore[index]
        assert await world.a.rr.request(world.c.node_id, two, None) == "two"
        assert (await world.c.rr.request(world.b.node_id, one, 3))["echo"] == 3  # type: ignore[index]


async def test_rejection_reaches_the_client_with_its_code_and_message(world: World) -> None:
    spec = ProtocolSpec("/test/reject/1")

    async def reject(req: Request) -> object:
        raise RequestRejected("busy", f"come back later ({req.payload})")

    world.b.rr.register(spec, reject)
    with trio.fail_after(BOUND):
        with pytest.raises(RemoteError) as info:
            await world.a.rr.request(world.b.node_id, spec, "x")
        assert (info.value.code, info.value.message) == ("busy", "come back later (x)")
        with pytest.raises(RemoteError) as info:
            await world.a.rr.request(world.b.node_id, spec, "y" * 2000)
        assert info.value.code == "busy"
        assert info.value.message == ("come back later (" + "y" * 2000)[:500]  # messages are capped


async def test_handler_bug_is_an_internal_error_and_the_server_keeps_serving(world: World) -> None:
    spec = ProtocolSpec("/test/buggy/1")

    async def buggy(req: Request) -> object:
        if req.payload == "raise":
            raise ValueError("a bug in the handler")
        if req.payload == "unencodable":
            return {1, 2, 3}  # a set is not in the wire value model
        if req.payload == "wire":
            raise WireError("field x is missing")
        return "fine"

    world.b.rr.register(spec, buggy)
    with trio.fail_after(BOUND):
        for payload in ("raise", "unencodable"):
            with pytest.raises(RemoteError) as info:
                await world.a.rr.request(world.b.node_id, spec, payload)
            assert info.value.code == "internal"
            assert "a bug" not in info.value.message  # internals stay on the server
            assert await world.a.rr.request(world.b.node_id, spec, "next") == "fine"
        with pytest.raises(RemoteError) as info:
            await world.a.rr.request(world.b.node_id, spec, "wire")
        assert (info.value.code, info.value.message) == ("bad_request", "field x is missing")
        assert await world.c.rr.request(world.b.node_id, spec, "next") == "fine"


async def test_oversized_or_unencodable_request_fails_locally(world: World) -> None:
    spec = ProtocolSpec("/test/small-request/1", max_request_size=100)
    calls: list[object] = []

    async def record(req: Request) -> object:
        calls.append(req.payload)
        return "ok"

    world.b.rr.register(spec, record)
    with trio.fail_after(BOUND):
        with pytest.raises(RequestTooLarge):
            await world.a.rr.request(world.b.node_id, spec, b"x" * 101)
        with pytest.raises(EncodeError):
            await world.a.rr.request(world.b.node_id, spec, {"when": object()})
        assert await world.a.rr.request(world.b.node_id, spec, b"x" * 90) == "ok"
    assert calls == [b"x" * 90]


async def test_request_nested_deeper_than_the_decoder_allows_is_a_bad_request(world: World) -> None:
    spec = ProtocolSpec("/test/deep/1")
    world.b.rr.register(spec, echo)
    deep: object = 0
    for _ in range(40):  # the encoder allows 256 levels, decoders accept 32
        deep = [deep]
    with trio.fail_after(BOUND):
        with pytest.raises(RemoteError) as info:
            await world.a.rr.request(world.b.node_id, spec, deep)
    assert info.value.code == "bad_request"


async def test_request_over_the_servers_limit_gets_no_answer(world: World) -> None:
    server = ProtocolSpec("/test/limits/1", max_request_size=1000)
    client = ProtocolSpec("/test/limits/1", max_request_size=100_000)
    world.b.rr.register(server, echo)
    with trio.fail_after(BOUND):
        with pytest.raises(BadResponse):
            await world.a.rr.request(world.b.node_id, client, b"x" * 5000)
        assert (await world.a.rr.request(world.b.node_id, client, b"x" * 500))["echo"] == b"x" * 500  # type: ignore[index]


async def test_response_over_the_limit(world: World) -> None:
    spec = ProtocolSpec("/test/big-response/1", max_response_size=1000)

    async def big(req: Request) -> object:
        return b"x" * int(req.payload)  # type: ignore[call-overload]

    world.b.rr.register(spec, big)
    with trio.fail_after(BOUND):
        # The server refuses to send it and answers with an internal error ...
        with pytest.raises(RemoteError) as info:
            await world.a.rr.request(world.b.node_id, spec, 2000)
        assert info.value.code == "internal"
        assert await world.a.rr.request(world.b.node_id, spec, 900) == b"x" * 900
        # ... and a client with a smaller limit than the server's rejects the frame.
        strict = ProtocolSpec(spec.name, max_response_size=500)
        with pytest.raises(BadResponse):
            await world.a.rr.request(world.b.node_id, strict, 900)


async def test_unknown_protocol_and_unreachable_peers(world: World) -> None:
    spec = ProtocolSpec("/test/nobody-speaks-this/1")
    with trio.fail_after(BOUND):
        with pytest.raises(ProtocolNotSupported):
            await world.a.rr.request(world.b.node_id, spec, 1)
        with pytest.raises(PeerUnreachable):
            await world.a.rr.request(world.unknown_node_id(), spec, 1)
        world.a.rr.register(spec, echo)
        with pytest.raises(PeerUnreachable):
            await world.a.rr.request(world.a.node_id, spec, 1)  # no connection to oneself


async def test_slow_handler_times_out_and_the_server_keeps_serving(world: World) -> None:
    spec = ProtocolSpec("/test/slow/1", timeout=2.0)

    async def slow(req: Request) -> object:
        if req.payload == "stall":
            await trio.sleep_forever()
        return "quick"

    world.b.rr.register(spec, slow)
    with trio.fail_after(BOUND):
        with pytest.raises(RequestTimeout):
            await world.a.rr.request(world.b.node_id, spec, "stall", timeout=0.3)
        assert await world.a.rr.request(world.b.node_id, spec, "go") == "quick"
        assert await world.c.rr.request(world.b.node_id, spec, "go", timeout=5) == "quick"


async def test_server_deadline_shorter_than_the_clients(world: World) -> None:
    server = ProtocolSpec("/test/server-deadline/1", timeout=0.3)
    client = ProtocolSpec("/test/server-deadline/1", timeout=10.0)

    async def stall(req: Request) -> object:
        await trio.sleep_forever()

    world.b.rr.register(server, stall)
    with trio.fail_after(BOUND):
        with pytest.raises(BadResponse):  # the server resets the stream at its deadline
            await world.a.rr.request(world.b.node_id, client, "x")


async def test_many_concurrent_requests_all_succeed(world: World) -> None:
    spec = ProtocolSpec("/test/many/1")
    count = 300

    async def double(req: Request) -> object:
        await trio.sleep(0.01)  # keep them in flight together
        return 2 * req.payload  # type: ignore[operator]

    world.b.rr.register(spec, double)
    results: dict[int, object] = {}

    async def one(client: object, i: int) -> None:
        results[i] = await client.rr.request(world.b.node_id, spec, i)  # type: ignore[attr-defined]

    with trio.fail_after(BOUND * 2):
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, world.a if i % 2 else world.c, i)
    assert results == {i: 2 * i for i in range(count)}


async def test_inbound_concurrency_limit_queues(world: World) -> None:
    spec = ProtocolSpec("/test/limited/1", concurrency=2)
    running = 0
    peak = 0

    async def handler(req: Request) -> object:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(0.05)
        running -= 1
        return req.payload

    world.b.rr.register(spec, handler)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(world.a.rr.request, world.b.node_id, spec, i)
    assert peak <= 2


# -- gossip --------------------------------------------------------------------------


async def subscribe_all(world: World, topic: str) -> list[trio.MemoryReceiveChannel]:  # type: ignore[type-arg]
    subs = [await e.gossip.subscribe(topic) for e in world.endpoints]
    await world.gossip_ready(topic)
    return subs


def drain(channel: trio.MemoryReceiveChannel) -> list[bytes]:  # type: ignore[type-arg]
    out = []
    while True:
        try:
            out.append(channel.receive_nowait().data)
        except trio.WouldBlock:
            return out


async def test_gossip_reaches_every_other_node_exactly_once(world: World) -> None:
    topic = "test/once"
    sub_a, sub_b, sub_c = await subscribe_all(world, topic)
    assert sorted(world.a.gossip.topic_peers(topic)) == sorted([world.b.node_id, world.c.node_id])
    assert world.a.gossip.topic_peers("test/nobody-here") == []
    with trio.fail_after(BOUND):
        await world.a.gossip.publish(topic, b"hello")
        for sub in (sub_b, sub_c):
            msg = await sub.receive()
            assert (msg.topic, msg.data, msg.origin) == (topic, b"hello", world.a.node_id)
        await world.c.gossip.publish(topic, b"from c")
        for sub in (sub_a, sub_b):
            msg = await sub.receive()
            assert (msg.data, msg.origin) == (b"from c", world.c.node_id)
    await trio.sleep(world.settle)
    assert drain(sub_a) == drain(sub_b) == drain(sub_c) == []


async def test_gossip_to_several_readers_each_message_once(world: World) -> None:
    """Every reader gets every message once. Order is not promised: py-libp2p
    handles each incoming message in its own task, and relays race the origin."""
    topic = "test/readers"
    _, sub_b, _ = await subscribe_all(world, topic)
    second_b = await world.b.gossip.subscribe(topic)
    sent = [b"%d" % i for i in range(20)]
    with trio.fail_after(BOUND):
        for data in sent:
            await world.a.gossip.publish(topic, data)
        for sub in (sub_b, second_b):
            assert sorted([(await sub.receive()).data for _ in sent]) == sorted(sent)
    await trio.sleep(world.settle)
    assert drain(sub_b) == drain(second_b) == []


async def test_receiver_validator_stops_delivery(world: World) -> None:
    topic = "test/validated"
    _, sub_b, sub_c = await subscribe_all(world, topic)
    seen: list[tuple[str, bytes]] = []

    def only_good(msg: Inbound) -> bool:
        seen.append((msg.origin, msg.data))
        return not msg.data.startswith(b"bad")

    world.b.gossip.set_validator(topic, only_good)
    with trio.fail_after(BOUND):
        await world.a.gossip.publish(topic, b"bad offer")
        await world.a.gossip.publish(topic, b"good offer")
        assert (await sub_b.receive()).data == b"good offer"
        got_c = {(await sub_c.receive()).data for _ in range(2)}
        assert got_c == {b"bad offer", b"good offer"}  # C has no validator
    await trio.sleep(world.settle)
    assert drain(sub_b) == drain(sub_c) == []
    assert (world.a.node_id, b"bad offer") in seen


async def test_invalid_message_names_its_forwarder(world: World) -> None:
    """A validator's GossipInvalid drops the message and tells the hook who handed it over."""
    topic = "test/invalid"
    _, sub_b, _ = await subscribe_all(world, topic)
    charged: list[tuple[str, str, int]] = []

    def strict(msg: Inbound) -> bool:
        if msg.data.startswith(b"forged"):
            raise GossipInvalid("bad_signature", penalty=10)
        return True

    world.b.gossip.set_validator(
        topic, strict, on_invalid=lambda peer, exc: charged.append((peer, exc.reason, exc.penalty))
    )
    with trio.fail_after(BOUND):
        await world.a.gossip.publish(topic, b"forged offer")
        await world.a.gossip.publish(topic, b"good offer")
        assert (await sub_b.receive()).data == b"good offer"
        while not charged:
            await trio.sleep(0.01)
    await trio.sleep(world.settle)
    assert drain(sub_b) == []
    assert {reason for _, reason, _ in charged} == {"bad_signature"}
    assert {peer for peer, _, _ in charged} <= {world.a.node_id, world.c.node_id}
    assert all(penalty == 10 for _, _, penalty in charged)


async def test_publisher_validator_gates_its_own_messages(world: World) -> None:
    topic = "test/own-validator"
    _, sub_b, sub_c = await subscribe_all(world, topic)

    def picky(msg: Inbound) -> bool:
        if msg.data == b"explode":
            raise RuntimeError("a bug in the validator")
        return msg.data != b"bad"

    world.a.gossip.set_validator(topic, picky)
    with trio.fail_after(BOUND):
        await world.a.gossip.publish(topic, b"bad")
        await world.a.gossip.publish(topic, b"explode")  # a failing validator rejects
        await world.a.gossip.publish(topic, b"good")
        assert (await sub_b.receive()).data == b"good"
        assert (await sub_c.receive()).data == b"good"


async def test_oversized_gossip_is_refused(world: World) -> None:
    topic = "test/big"
    _, sub_b, _ = await subscribe_all(world, topic)
    with trio.fail_after(BOUND):
        with pytest.raises(GossipError):
            await world.a.gossip.publish(topic, b"x" * (MAX_GOSSIP_SIZE + 1))
        biggest = bytes(range(256)) * (MAX_GOSSIP_SIZE // 256) + b"z" * (MAX_GOSSIP_SIZE % 256)
        await world.a.gossip.publish(topic, biggest)  # the limit itself is deliverable
        assert (await sub_b.receive()).data == biggest


async def test_gossip_data_must_be_bytes(world: World) -> None:
    """A str is a caller bug: refused at once, and the node keeps running."""
    topic = "test/types"
    _, sub_b, _ = await subscribe_all(world, topic)
    with trio.fail_after(BOUND):
        with pytest.raises(TypeError):
            await world.a.gossip.publish(topic, "not bytes")  # type: ignore[arg-type]
        await world.a.gossip.publish(topic, b"still alive")
        assert (await sub_b.receive()).data == b"still alive"


async def test_malformed_node_ids_are_unreachable(world: World) -> None:
    spec = ProtocolSpec("/test/ids/1")
    with trio.fail_after(BOUND):
        for peer in ("", "xyz", "0OIl", "12D3KooW" + "z" * 200):
            with pytest.raises(PeerUnreachable):
                await world.a.rr.request(peer, spec, 1)


async def test_a_vanished_peer_is_unreachable_and_misses_gossip(world: World) -> None:
    spec = ProtocolSpec("/test/vanish/1")
    topic = "test/vanish"
    world.b.rr.register(spec, echo)
    world.c.rr.register(spec, echo)
    _, _, sub_c = await subscribe_all(world, topic)
    await world.drop(world.b)
    with trio.fail_after(BOUND):
        with pytest.raises(PeerUnreachable):
            await world.a.rr.request(world.b.node_id, spec, 1)
        assert (await world.a.rr.request(world.c.node_id, spec, 1))["echo"] == 1  # type: ignore[index]
        await world.eventually(lambda: world.a.gossip.topic_peers(topic) == [world.c.node_id])
        await world.a.gossip.publish(topic, b"after")
        assert (await sub_c.receive()).data == b"after"


# -- the memory twin's own surface ---------------------------------------------------


async def test_memory_hub_node_ids() -> None:
    hub = MemoryHub()
    first, second = hub.node(), hub.node()
    assert first.node_id != second.node_id
    public_key_from_node_id(first.node_id)  # a real ed25519 node id
    assert hub.node("custom").node_id == "custom"
    with pytest.raises(ValueError):
        hub.node("custom")
    with pytest.raises(KeyError):
        hub.disconnect("nobody")


async def test_memory_disconnect_and_reconnect() -> None:
    hub = MemoryHub()
    a, b = hub.node(), hub.node()
    spec = ProtocolSpec("/test/memory/1")
    b.rr.register(spec, echo)
    sub = await b.gossip.subscribe("t")
    hub.disconnect(b.node_id)
    assert not hub.connected(b.node_id) and hub.peers_of(a.node_id) == []
    with pytest.raises(PeerUnreachable):
        await a.rr.request(b.node_id, spec, 1)
    with pytest.raises(PeerUnreachable):
        await b.rr.request(a.node_id, spec, 1)  # a vanished node reaches nobody either
    await a.gossip.publish("t", b"missed")
    hub.reconnect(b.node_id)
    assert (await a.rr.request(b.node_id, spec, 1))["echo"] == 1  # type: ignore[index]
    await a.gossip.publish("t", b"seen")
    assert drain(sub) == [b"seen"]  # nothing is replayed


async def test_memory_twin_runs_on_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    hub = MemoryHub()
    a, b = hub.node(), hub.node()
    spec = ProtocolSpec("/test/virtual/1", timeout=3600.0)

    async def hour_and_a_half(req: Request) -> object:
        await trio.sleep(5400)
        return "late"

    b.rr.register(spec, hour_and_a_half)
    start = trio.current_time()
    with pytest.raises(RequestTimeout):
        await a.rr.request(b.node_id, spec, None)
    assert trio.current_time() - start == pytest.approx(3600.0)
    start = trio.current_time()
    with pytest.raises(BadResponse):  # a patient client meets the server's own deadline
        await a.rr.request(b.node_id, spec, None, timeout=6000)
    assert trio.current_time() - start == pytest.approx(3600.0)


async def test_memory_slow_reader_loses_the_overflow() -> None:
    hub = MemoryHub()
    a, b = hub.node(), hub.node()
    sub = await b.gossip.subscribe("t")
    for i in range(SUBSCRIBER_QUEUE + 5):
        await a.gossip.publish("t", b"%d" % i)
    assert (b.gossip.delivered, b.gossip.dropped) == (SUBSCRIBER_QUEUE, 5)
    assert len(drain(sub)) == SUBSCRIBER_QUEUE
    await sub.aclose()
    await a.gossip.publish("t", b"nobody reads")  # a closed reader is forgotten
    assert b.gossip.dropped == 5
