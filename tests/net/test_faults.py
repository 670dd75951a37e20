"""Hostile and broken peers against real hosts in one process.

A peer that sends garbage gets an error reply or a closed stream, never a
crashed daemon (DESIGN.md, "Wire format"); a dropped peer is redialed; a busy
listen port is a clear :class:`ListenError`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from yagna.core import wire
from yagna.net import ListenError, Network, ProtocolSpec, RemoteError, Request, RequestError
from yagna.net.errors import FrameError
from yagna.net.framing import FrameDecoder, encode_frame, encode_varint, read_frame

from .conformance import fast_config, free_port, libp2p_nets, wait_connected

BOUND = 15.0
SPEC = ProtocolSpec("/test/faults/1", max_request_size=1024, timeout=0.5)
PATIENT = ProtocolSpec("/test/faults-patient/1", max_request_size=1024, timeout=60.0)
"""A server deadline far beyond the tests' bounds: what ends a stream early is the frame check."""


async def handler(req: Request) -> object:
    if req.payload == "raise":
        raise ValueError("a bug in the handler")
    return {"echo": req.payload}


@asynccontextmanager
async def raw_stream(client: Network, server: Network, protocol: str = SPEC.name) -> AsyncIterator[INetStream]:
    """A raw libp2p stream to ``server``, bypassing our request/response client."""
    stream = await client.host.new_stream(ID.from_base58(server.node_id), [TProtocol(protocol)])
    try:
        yield stream
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await stream.reset()
            except StreamError:
                pass


async def answer(stream: INetStream) -> object:
    """The server's reply: a decoded frame, or ``"closed"`` if it sent none."""
    try:
        frame = await read_frame(stream, FrameDecoder(1 << 20))
    except (StreamError, FrameError):
        return "closed"
    return "closed" if frame is None else wire.decode(frame)


async def still_serving(client: Network, server: Network) -> None:
    assert await client.rr.request(server.node_id, SPEC, "hello") == {"echo": "hello"}


@asynccontextmanager
async def three_nodes() -> AsyncIterator[tuple[Network, Network, Network]]:
    """(attacker, server, honest client), all connected; the server speaks SPEC."""
    async with libp2p_nets(3) as (attacker, server, honest):
        server.rr.register(SPEC, handler)
        server.rr.register(PATIENT, handler)
        yield attacker, server, honest


async def test_valid_frame_of_garbage_gets_a_bad_request_reply() -> None:
    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            for garbage in (b"\xff\xfe\x00", b"", b"\x18\x01", b"\xa1\x61a"):  # bad, empty, non-canonical, truncated
                async with raw_stream(attacker, server) as stream:
                    await stream.write(encode_frame(garbage))
                    reply = await answer(stream)
                assert isinstance(reply, dict) and reply["err"]["code"] == "bad_request", (garbage, reply)
            await still_serving(honest, server)
            await still_serving(attacker, server)


async def test_oversized_frame_is_dropped_without_reply() -> None:
    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            for prefix in (
                encode_varint(PATIENT.max_request_size + 1),  # only the length prefix, no body
                encode_varint(2**63) + b"x" * 100,
                b"\xff" * 16,  # a varint that never ends
            ):
                async with raw_stream(attacker, server, PATIENT.name) as stream:
                    await stream.write(prefix)
                    # Refused on the prefix, long before the server's 60 s deadline.
                    with trio.fail_after(5):
                        assert await answer(stream) == "closed"
            await still_serving(honest, server)


async def test_truncated_frame_is_dropped_without_reply() -> None:
    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            async with raw_stream(attacker, server, PATIENT.name) as stream:
                await stream.write(encode_varint(100) + b"x" * 10)
                await stream.close()  # half-close: EOF in the middle of the frame
                with trio.fail_after(5):
                    assert await answer(stream) == "closed"
            await still_serving(honest, server)


async def test_stalled_stream_is_reset_after_the_spec_timeout() -> None:
    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            async with raw_stream(attacker, server) as stream:
                # Write nothing: the server gives up after SPEC.timeout (0.5 s).
                with trio.fail_after(SPEC.timeout + 5):
                    assert await answer(stream) == "closed"
            async with raw_stream(attacker, server) as stream:
                await stream.write(encode_varint(50) + b"x" * 10)  # half a frame, then silence
                with trio.fail_after(SPEC.timeout + 5):
                    assert await answer(stream) == "closed"
            await still_serving(honest, server)


async def test_client_that_vanishes_before_the_reply() -> None:
    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            for _ in range(5):
                async with raw_stream(attacker, server) as stream:
                    await stream.write(encode_frame(wire.encode("hello")))
                # raw_stream reset it: the server's reply hits a dead stream
            await still_serving(honest, server)


async def test_handler_exception_is_an_internal_error_reply() -> None:
    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            async with raw_stream(attacker, server) as stream:
                await stream.write(encode_frame(wire.encode("raise")))
                assert await answer(stream) == {"err": {"code": "internal", "msg": "internal error"}}
            with pytest.raises(RemoteError) as info:
                await honest.rr.request(server.node_id, SPEC, "raise")
            assert info.value.code == "internal"
            await still_serving(honest, server)


async def test_many_hostile_streams_at_once() -> None:
    async def attack(attacker: Network, server: Network, kind: int) -> None:
        try:
            async with raw_stream(attacker, server) as stream:
                if kind == 0:
                    await stream.write(encode_frame(b"\xff"))
                elif kind == 1:
                    await stream.write(encode_varint(1 << 40))
                await answer(stream)  # kind 2: stall until the server resets
        except (StreamError, StreamFailure):
            return  # past the per-peer bound the server resets new streams at once

    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            async with trio.open_nursery() as nursery:
                for i in range(60):
                    nursery.start_soon(attack, attacker, server, i % 3)
                await still_serving(honest, server)
            await still_serving(honest, server)


# -- redial ----------------------------------------------------------------------------


@pytest.mark.parametrize("survivor_learns", ["bootstrap", "peer-exchange"])
async def test_dropped_peer_is_redialed_when_it_comes_back(survivor_learns: str) -> None:
    """Stop B, start a new B with the same seed and port: A reconnects on its own.

    With ``bootstrap``, A has B in its --bootstrap list; with ``peer-exchange``,
    B dialed A and A only knows B's address from B's peer-exchange request (and
    the new B dials nobody, so the reconnection is A's redial).
    """
    seed_b = os.urandom(32)
    listen_b = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
    with trio.fail_after(BOUND * 2):
        async with trio.open_nursery() as nursery_a:
            async with trio.open_nursery() as nursery_b:
                if survivor_learns == "bootstrap":
                    b = Network(seed_b, fast_config(listen=listen_b))
                    await nursery_b.start(b.run)
                    a = Network(os.urandom(32), fast_config(bootstrap=[b.full_addrs()[0]]))
                    await nursery_a.start(a.run)
                else:
                    a = Network(os.urandom(32), fast_config())
                    await nursery_a.start(a.run)
                    b = Network(seed_b, fast_config(listen=listen_b, bootstrap=[a.full_addrs()[0]]))
                    await nursery_b.start(b.run)
                await wait_connected([a, b], 1)
                while not any(v.node_id == b.node_id and v.addrs for v in a.peers.view()):
                    await trio.sleep(0.02)  # A has B's listen address (from B's px request)
                nursery_b.cancel_scope.cancel()
            while b.node_id in a.peers.connected_peers():
                await trio.sleep(0.02)
            b2 = Network(seed_b, fast_config(listen=listen_b))
            assert b2.node_id == b.node_id
            async with trio.open_nursery() as nursery_b2:
                await nursery_b2.start(b2.run)
                b2.rr.register(SPEC, handler)
                while b2.node_id not in a.peers.connected_peers():
                    await trio.sleep(0.02)
                await still_serving(a, b2)
                nursery_b2.cancel_scope.cancel()
            nursery_a.cancel_scope.cancel()


# -- listen errors ---------------------------------------------------------------------


async def test_listen_port_held_by_another_program_is_a_listen_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        net = Network(os.urandom(32), fast_config(listen=[f"/ip4/127.0.0.1/tcp/{port}"]))
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                with pytest.raises(ListenError, match=str(port)):
                    await nursery.start(net.run)


async def test_listen_port_held_by_another_node_is_a_listen_error() -> None:
    port = free_port()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            first = Network(os.urandom(32), fast_config(listen=[f"/ip4/127.0.0.1/tcp/{port}"]))
            await nursery.start(first.run)
            second = Network(os.urandom(32), fast_config(listen=[f"/ip4/127.0.0.1/tcp/{port}"]))
            with pytest.raises(ListenError):
                await nursery.start(second.run)
            nursery.cancel_scope.cancel()


SHARED = ProtocolSpec("/test/faults-shared/1", max_request_size=1024, timeout=60.0, concurrency=4, per_peer=2,
                      max_open_per_peer=4)


async def test_stalled_streams_of_one_peer_do_not_hold_others_up() -> None:
    """Issue 11 row 4: 64 stalled streams from one peer took the limit all peers share."""
    from e2e.rogue import stall_streams

    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            server.rr.register(SHARED, handler)
            stalled = await stall_streams(attacker.host, ID.from_base58(server.node_id), SHARED.name, 8)
            try:
                # Far below the server's 60 s deadline that would free a stalled place.
                with trio.fail_after(5):
                    for i in range(6):
                        assert await honest.rr.request(server.node_id, SHARED, i) == {"echo": i}
                # past its own share, the attacker's further streams are reset at once
                with trio.fail_after(5):
                    while server.rr.refused_busy < 1:
                        await trio.sleep(0.05)
                with pytest.raises(RequestError):
                    await attacker.rr.request(server.node_id, SHARED, "more", timeout=5)
            finally:
                for stream in stalled:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        try:
                            await stream.reset()
                        except StreamError:
                            pass
            # once its streams are gone, the attacker is served again
            with trio.fail_after(5):
                while True:
                    try:
                        assert await attacker.rr.request(server.node_id, SHARED, "ok", timeout=2) == {"echo": "ok"}
                        break
                    except RequestError:
                        await trio.sleep(0.1)


async def test_a_lying_peer_exchange_cannot_fill_the_peer_list() -> None:
    """Each learned peer is a future dial; one peer may teach us at most MAX_TAUGHT_PER_PEER of them."""
    from yagna.core.identity import NodeKey
    from yagna.net import px
    from yagna.net.peers import MAX_TAUGHT_PER_PEER

    def fake_ids() -> Iterator[str]:
        while True:  # also for the periodic exchanges that run beside the test's own
            yield NodeKey.from_seed(os.urandom(32)).node_id

    fakes = fake_ids()

    async def lie(req: Request) -> object:
        hints = [px.PeerHint(next(fakes), ("/ip4/127.0.0.1/tcp/1",)) for _ in range(px.MAX_PEERS_PER_REPLY)]
        return px.make_response(hints)

    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (victim, liar):
            liar.rr.register(px.PX, lie)
            # The taught addresses never answer: the victim would forget them after 12 failed dials
            # (~5 s of fast redials), and a slow machine got there before the count below.
            victim.peers.forget_after = 10**6
            for _ in range(4):
                await victim.peers._exchange(liar.node_id)
            taught = [p for p in victim.peers._peers.values() if p.taught_by == liar.node_id]
            assert len(taught) == MAX_TAUGHT_PER_PEER


async def test_a_failing_stream_handler_does_not_end_the_host() -> None:
    """Any handler, the library's or ours, registered before or after start, is behind the boundary."""
    async def explode(stream: INetStream) -> None:
        raise RuntimeError("a bug in a stream handler")

    with trio.fail_after(BOUND):
        async with three_nodes() as (attacker, server, honest):
            server.host.set_stream_handler(TProtocol("/test/explode/1"), explode)
            for _ in range(3):
                try:
                    async with raw_stream(attacker, server, "/test/explode/1") as stream:
                        assert await answer(stream) == "closed"
                except StreamFailure:
                    pass  # reset before the client finished negotiating: closed too
            await still_serving(honest, server)
            await still_serving(attacker, server)
