"""yagna.net.bulk: byte streams over libp2p and their in-memory twin, the same tests for both."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from yagna.net.bulk import ByteStream, StreamFailed, bulk_for
from yagna.net.errors import ProtocolNotSupported, RequestError
from yagna.net.memory import MemoryHub

from .conformance import _libp2p_nets

PROTO = "/yagna-test/bulk/1.0.0"


@asynccontextmanager
async def two(kind: str) -> AsyncIterator[tuple[Any, str, Any, str]]:
    """(client bulk, client id, server bulk, server id), running."""
    if kind == "memory":
        hub = MemoryHub()
        a, b = hub.node(), hub.node()
        ba, bb = bulk_for(a.rr), bulk_for(b.rr)
        async with trio.open_nursery() as nursery:
            await nursery.start(ba.run)
            await nursery.start(bb.run)
            yield ba, a.node_id, bb, b.node_id
            nursery.cancel_scope.cancel()
    else:
        async with _libp2p_nets(2) as running:
            (na, _), (nb, _) = running
            yield bulk_for(na.rr), na.node_id, bulk_for(nb.rr), nb.node_id


async def _drain(stream: ByteStream) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some(1 << 20):
        got += chunk
    return bytes(got)


@pytest.fixture(params=["memory", "libp2p"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_bytes_both_ways_with_half_close(kind: str) -> None:
    data = os.urandom(3 * 2**20 + 7)
    async with two(kind) as (client, me, server, other):
        async def echo(stream: ByteStream) -> None:
            assert stream.peer == me
            got = await _drain(stream)
            await stream.send_all(got[::-1])
            await stream.send_eof()

        server.set_handler(PROTO, echo, per_peer=4, total=8)
        with trio.fail_after(20):
            stream = await client.open(other, PROTO)
            for off in range(0, len(data), 100_000):
                await stream.send_all(data[off:off + 100_000])
            await stream.send_eof()
            assert await _drain(stream) == data[::-1]


async def test_streams_past_the_per_peer_bound_are_reset_and_a_failing_handler_is_counted(kind: str) -> None:
    async with two(kind) as (client, _, server, other):
        release = trio.Event()

        async def hold(stream: ByteStream) -> None:
            await stream.send_all(b"hi")
            await release.wait()
            raise RuntimeError("a bug")

        server.set_handler(PROTO, hold, per_peer=2, total=8)
        with trio.fail_after(20):
            held = [await client.open(other, PROTO) for _ in range(2)]
            for s in held:
                assert await s.receive_some(10) == b"hi"
            with pytest.raises(RequestError):  # StreamFailed, or (libp2p) refused during negotiation
                extra = await client.open(other, PROTO)
                got = await extra.receive_some(10)
                assert got == b""  # (a reset may also read as a plain end)
                raise StreamFailed("ended")
            release.set()
            for s in held:
                with pytest.raises(StreamFailed):
                    while await s.receive_some(10):
                        pass
                    raise StreamFailed("ended")
            while server.handler_failures < 2:
                await trio.sleep(0.01)
            assert server.handler_failures == 2
            with pytest.raises(ProtocolNotSupported):
                await client.open(other, "/yagna-test/none/1.0.0")
