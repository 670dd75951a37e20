"""The service tunnel (yagna/activity_service/tunnel.py): a local TCP port -> a libp2p stream -> a Unix socket.

The Unix socket's server stands in for the forwarder in the container (tests/exeunit/test_forwarder.py
tests that one; e2e/test_services.py the whole path with real containers). Each test runs over the
in-memory twin and over real libp2p hosts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from yagna.activity_service.tunnel import PortListener, Target, TunnelRefused, TunnelServer, open_tunnel
from yagna.net.bulk import bulk_for
from yagna.net.memory import MemoryHub

from tests.net.conformance import _libp2p_nets

ECHO, BIG, BANNER, DOWN = 1, 2, 3, 4
ACTIVITY = "act-1"


async def _echo(sock: trio.SocketStream) -> None:
    async with sock:
        try:
            while data := await sock.receive_some(65536):
                await sock.send_all(data)
            await sock.send_eof()
        except trio.BrokenResourceError:
            pass


async def _big(sock: trio.SocketStream) -> None:
    """``<n>\\n`` -> n deterministic bytes, then the end."""
    async with sock:
        head = b""
        while b"\n" not in head:
            data = await sock.receive_some(64)
            if not data:
                return
            head += data
        n = int(head.split(b"\n")[0])
        try:
            for block in _blocks(n):
                await sock.send_all(block)
        except trio.BrokenResourceError:
            return


def _blocks(n: int) -> Any:
    seed = hashlib.sha256(b"tunnel").digest() * 2048  # 64 KiB
    while n > 0:
        yield seed[:n]
        n -= len(seed)


async def _banner(sock: trio.SocketStream) -> None:
    async with sock:
        await sock.send_all(b"220 hello\r\n")
        await sock.receive_some(100)


@asynccontextmanager
async def tunnel(kind: str, tmp_path: Path) -> AsyncIterator[tuple[PortListener, TunnelServer, Any, str, str]]:
    """A provider (tunnel server over Unix sockets) and a requestor's listener pointed at it."""
    sockets: dict[int, Path] = {}
    async with trio.open_nursery() as servers:
        for port, handler in ((ECHO, _echo), (BIG, _big), (BANNER, _banner)):
            path = tmp_path / f"{port}.sock"
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            await sock.bind(str(path))
            sock.listen(256)
            servers.start_soon(trio.serve_listeners, handler, [trio.SocketListener(sock)])
            sockets[port] = path
        sockets[DOWN] = tmp_path / "down.sock"
        holder: dict[str, str] = {}

        async def socket_for(peer: str, activity_id: str, port: int) -> Path:
            if activity_id != ACTIVITY or peer != holder["requestor"]:
                raise TunnelRefused("unknown-activity", "no live activity of yours with this id")
            if port not in sockets:
                raise TunnelRefused("no-port", f"port {port} is not exposed")
            return sockets[port]

        if kind == "memory":
            hub = MemoryHub()
            prov, req = hub.node(), hub.node()
            async with trio.open_nursery() as nursery:
                for node in (prov, req):
                    await nursery.start(bulk_for(node.rr).run)
                holder["requestor"] = req.node_id
                server = TunnelServer(prov.rr, socket_for)
                listener = PortListener(req.rr, 0)
                await nursery.start(listener.run)
                listener.point(Target(prov.node_id, ACTIVITY, ECHO))
                yield listener, server, req.rr, prov.node_id, req.node_id
                nursery.cancel_scope.cancel()
        else:
            async with _libp2p_nets(2) as running:
                (prov_net, _), (req_net, _) = running
                holder["requestor"] = req_net.node_id
                server = TunnelServer(prov_net.rr, socket_for)
                async with trio.open_nursery() as nursery:
                    listener = PortListener(req_net.rr, 0)
                    await nursery.start(listener.run)
                    listener.point(Target(prov_net.node_id, ACTIVITY, ECHO))
                    yield listener, server, req_net.rr, prov_net.node_id, req_net.node_id
                    nursery.cancel_scope.cancel()
        servers.cancel_scope.cancel()


@pytest.fixture(params=["memory", "libp2p"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _connect(listener: PortListener) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", listener.port)


async def _read_all(sock: trio.SocketStream, digest: Any = None) -> int:
    n = 0
    while data := await sock.receive_some(1 << 20):
        n += len(data)
        if digest is not None:
            digest.update(data)
    return n


async def test_bytes_both_ways_and_half_close(kind: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 2**20 + 11)
    async with tunnel(kind, tmp_path) as (listener, server, *_):
        with trio.fail_after(30):
            sock = await _connect(listener)
            got = bytearray()
            async with sock, trio.open_nursery() as nursery:
                async def send() -> None:
                    await sock.send_all(data)
                    await sock.send_eof()  # half-close: the answer still comes back whole

                nursery.start_soon(send)
                while chunk := await sock.receive_some(1 << 20):
                    got += chunk
        assert bytes(got) == data
        assert listener.total == 1 and server.total == 1


async def test_100_mib_download_checked_by_hash(kind: str, tmp_path: Path) -> None:
    size = 100 * 2**20 if kind == "libp2p" else 16 * 2**20
    expected = hashlib.sha256()
    for block in _blocks(size):
        expected.update(block)
    async with tunnel(kind, tmp_path) as (listener, *_):
        listener.point(Target(listener.target.provider_id, ACTIVITY, BIG))  # type: ignore[union-attr]
        with trio.fail_after(120):
            sock = await _connect(listener)
            async with sock:
                await sock.send_all(f"{size}\n".encode())
                got = hashlib.sha256()
                assert await _read_all(sock, got) == size
        assert got.hexdigest() == expected.hexdigest()


async def test_200_concurrent_short_connections(kind: str, tmp_path: Path) -> None:
    answers: list[bytes] = []
    async with tunnel(kind, tmp_path) as (listener, server, *_):
        async def one(i: int) -> None:
            sock = await _connect(listener)
            async with sock:
                msg = f"request {i}\n".encode()
                await sock.send_all(msg)
                await sock.send_eof()
                got = b""
                while chunk := await sock.receive_some(1024):
                    got += chunk
                answers.append(got)
                assert got == msg

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(one, i)
        assert len(answers) == 200
        assert server.open == 0 and listener.open == 0  # every bridge ended with its connection


async def test_a_slow_reader_does_not_stall_other_connections(kind: str, tmp_path: Path) -> None:
    async with tunnel(kind, tmp_path) as (listener, *_):
        listener.point(Target(listener.target.provider_id, ACTIVITY, BIG))  # type: ignore[union-attr]
        slow = await _connect(listener)
        await slow.send_all(b"1000000000\n")  # ~1 GB it never reads: the windows fill, the server waits
        await trio.sleep(0.5)
        listener.point(Target(listener.target.provider_id, ACTIVITY, ECHO))  # type: ignore[union-attr]
        with trio.fail_after(20):
            for i in range(20):
                sock = await _connect(listener)
                async with sock:
                    await sock.send_all(b"ping %d" % i)
                    await sock.send_eof()
                    assert await sock.receive_some(100) == b"ping %d" % i
        await slow.aclose()


async def test_a_server_that_speaks_first(kind: str, tmp_path: Path) -> None:
    async with tunnel(kind, tmp_path) as (listener, *_):
        listener.point(Target(listener.target.provider_id, ACTIVITY, BANNER))  # type: ignore[union-attr]
        with trio.fail_after(20):
            sock = await _connect(listener)
            async with sock:
                assert await sock.receive_some(100) == b"220 hello\r\n"


async def test_refusals_close_the_connection_and_say_why(kind: str, tmp_path: Path) -> None:
    async with tunnel(kind, tmp_path) as (listener, server, rr, provider, _):
        with trio.fail_after(20):
            for activity, port, code in (("someone-else", ECHO, "unknown-activity"), (ACTIVITY, 99, "no-port"),
                                         (ACTIVITY, DOWN, "service-down")):
                with pytest.raises(TunnelRefused) as refused:
                    await open_tunnel(rr, provider, activity, port)
                assert refused.value.code == code
                listener.point(Target(provider, activity, port))
                sock = await _connect(listener)
                async with sock:
                    try:
                        assert await sock.receive_some(100) == b""
                    except trio.BrokenResourceError:
                        pass  # reset: also a clear end
            assert listener.failed == 3 and server.open == 0


async def test_no_target_waits_then_closes(tmp_path: Path) -> None:
    async with tunnel("memory", tmp_path) as (listener, *_):
        target = listener.target
        listener.point(None)
        listener.wait_target_s = 5

        async def repoint() -> None:
            await trio.sleep(0.3)
            listener.point(target)  # a failover found the new replica meanwhile

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(repoint)
                sock = await _connect(listener)
                async with sock:
                    await sock.send_all(b"after failover")
                    await sock.send_eof()
                    assert await sock.receive_some(100) == b"after failover"
