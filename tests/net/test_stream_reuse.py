"""Request streams are reused (issue 12): fewer stream set-ups, same errors and limits."""

from __future__ import annotations

import pytest
import trio

from yagna.core import wire
from libp2p.abc import INetStream

from yagna.net import Network, ProtocolSpec, Request, RequestTimeout
from yagna.net import reqresp
from yagna.net.framing import FrameDecoder, encode_frame, read_frame

from .conformance import libp2p_nets
from .test_faults import raw_stream

BOUND = 20.0
SPEC = ProtocolSpec("/test/reuse/1", max_request_size=1024, timeout=2.0)


def count_opens(net: Network) -> list[str]:
    """Protocols of the streams ``net`` opens from now on (peer exchange opens its own too)."""
    opened: list[str] = []
    real = net.rr._open

    async def counting(peer: str, protocol: str) -> INetStream:
        opened.append(protocol)
        return await real(peer, protocol)

    net.rr._open = counting  # type: ignore[method-assign]
    return opened


def pooled(client: Network, server: Network) -> int:
    return client.rr.pool.idle(server.node_id, SPEC.name)


def served(client: Network, server: Network) -> int:
    """Streams of ``client`` the server holds open on SPEC."""
    return server.rr._inbound.get((SPEC.name, client.node_id), 0)


async def echo(req: Request) -> object:
    if req.payload == "slow":
        await trio.sleep(5)
    return {"echo": req.payload}


async def test_sequential_requests_share_one_stream() -> None:
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            opened = count_opens(client)
            for i in range(20):
                assert await client.rr.request(server.node_id, SPEC, i) == {"echo": i}
            assert opened.count(SPEC.name) == 1
            assert pooled(client, server) == 1


async def test_a_burst_keeps_at_most_the_pool_bound() -> None:
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            results: list[object] = []

            async def one(i: int) -> None:
                results.append(await client.rr.request(server.node_id, SPEC, i))

            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(one, i)
            assert sorted(r["echo"] for r in results) == list(range(40))  # type: ignore[index]
            assert pooled(client, server) == reqresp.POOL_PER_KEY
            # the extra streams were closed: the server serves only the pooled ones
            with trio.fail_after(5):
                while served(client, server) > reqresp.POOL_PER_KEY:
                    await trio.sleep(0.02)


@pytest.mark.parametrize("client_sees_the_close", [True, False], ids=["seen", "raced"])
async def test_a_stream_the_server_closed_as_idle_is_replaced_without_an_error(
    monkeypatch: pytest.MonkeyPatch, client_sees_the_close: bool
) -> None:
    """Seen: the pool drops the closed stream. Raced: the close arrives after the client picked the
    stream, so the request meets a clean end of stream unread and goes again on a new one."""
    monkeypatch.setattr(reqresp, "SERVER_IDLE_TIMEOUT", 0.2)
    if not client_sees_the_close:
        monkeypatch.setattr(reqresp, "_usable", lambda stream: True)
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            opened = count_opens(client)
            assert await client.rr.request(server.node_id, SPEC, "a") == {"echo": "a"}
            # the server closes the idle stream; the client still holds it
            with trio.fail_after(5):
                while served(client, server):
                    await trio.sleep(0.02)
            await trio.sleep(0.1)  # the server's end of stream has reached the client
            assert pooled(client, server) == 1
            assert await client.rr.request(server.node_id, SPEC, "b") == {"echo": "b"}
            assert opened.count(SPEC.name) == 2


async def test_a_timed_out_stream_is_never_reused() -> None:
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            opened = count_opens(client)
            with pytest.raises(RequestTimeout):
                await client.rr.request(server.node_id, SPEC, "slow", timeout=0.3)
            assert pooled(client, server) == 0
            assert await client.rr.request(server.node_id, SPEC, "x") == {"echo": "x"}
            assert opened.count(SPEC.name) == 2


async def test_a_one_shot_client_is_served_as_before() -> None:
    """One request per stream, then the client closes its side: one reply, then the server closes."""
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            async with raw_stream(client, server, SPEC.name) as stream:
                await stream.write(encode_frame(wire.encode("hi")))
                decoder = FrameDecoder(1 << 16)
                assert wire.decode(await read_frame(stream, decoder)) == {"ok": {"echo": "hi"}}  # type: ignore[arg-type]
                await stream.close()
                assert await read_frame(stream, decoder) is None  # the server closed too


async def test_several_requests_on_one_raw_stream_are_answered_in_order() -> None:
    """Two frames written at once (a pipelining peer) are answered one after the other."""
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            async with raw_stream(client, server, SPEC.name) as stream:
                await stream.write(encode_frame(wire.encode(1)) + encode_frame(wire.encode(2)))
                decoder = FrameDecoder(1 << 16)
                assert wire.decode(await read_frame(stream, decoder)) == {"ok": {"echo": 1}}  # type: ignore[arg-type]
                assert wire.decode(await read_frame(stream, decoder)) == {"ok": {"echo": 2}}  # type: ignore[arg-type]


async def test_an_idle_stream_of_a_silent_peer_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer that keeps a stream open after its request holds it only for the idle timeout."""
    monkeypatch.setattr(reqresp, "SERVER_IDLE_TIMEOUT", 0.3)
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            async with raw_stream(client, server, SPEC.name) as stream:
                await stream.write(encode_frame(wire.encode("x")))
                decoder = FrameDecoder(1 << 16)
                assert await read_frame(stream, decoder) is not None
                with trio.fail_after(5):
                    assert await read_frame(stream, decoder) is None  # closed by the server
            assert not served(client, server)


async def test_a_handler_registered_again_serves_the_streams_already_open() -> None:
    """Regression: a pooled stream kept calling the handler of when it was opened (the lying
    peer-exchange test got the real peer exchange's answers about half the time)."""
    with trio.fail_after(BOUND):
        async with libp2p_nets(2) as (client, server):
            server.rr.register(SPEC, echo)
            assert await client.rr.request(server.node_id, SPEC, "a") == {"echo": "a"}
            assert pooled(client, server) == 1

            async def other(req: Request) -> object:
                return {"other": req.payload}

            server.rr.register(SPEC, other)
            assert await client.rr.request(server.node_id, SPEC, "b") == {"other": "b"}
