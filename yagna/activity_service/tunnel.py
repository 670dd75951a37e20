"""Service ports over libp2p: ``/yagna/tunnel/1.0.0``, one stream per TCP connection.

A requestor's daemon listens on ``127.0.0.1:<local port>`` for each exposed port of a
service it deployed (:class:`PortListener`); every connection it accepts becomes one
stream to the provider::

    requestor: frame {"activity_id": str, "port": int}
    provider:  frame {"ok": {}} | frame {"err": {"code": str, "msg": str}}, end of stream
    then raw bytes both ways; an end of stream is a half-close, a reset is a reset.

The provider checks that the activity is the peer's own and the port one its deploy exposed,
then connects the stream to ``<port>.sock`` in the activity's tunnel directory, where the
static forwarder inside the container (``exeunit/forwarder``) bridges it to the service's
port on the container's loopback. The daemon never joins the container's network namespace
and the container keeps no network: only this socket leads in.

Bounds: streams per peer and in all (:data:`TUNNEL_PER_PEER`, :data:`TUNNEL_TOTAL`; past
either a new stream is reset at once); each open connection holds at most one read of :data:`CHUNK`
(256 KiB) per direction on each side plus the muxer's window (so 128 MiB for one requestor's
connections, 512 MiB for all, if every one of them stalls with a full read); a header must arrive within
:data:`HEADER_TIMEOUT_S`. Frames are the blob protocol's (varint length, canonical CBOR, at most
:data:`~yagna.activity_service.protocol.BLOB_HEADER_MAX` bytes).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from yagna.activity_service.blobs import read_header
from yagna.activity_service.protocol import HEADER_TIMEOUT_S
from yagna.core import wire
from yagna.net.bulk import ByteStream, StreamFailed, bulk_for
from yagna.net.errors import RequestError
from yagna.net.framing import encode_frame

log = logging.getLogger("yagna.activity.tunnel")

TUNNEL_STREAM = "/yagna/tunnel/1.0.0"
TUNNEL_PER_PEER = 256
"""Connections one requestor holds open through us at once (all its services)."""
TUNNEL_TOTAL = 1024
"""Connections open through a provider at once, from all requestors."""
CHUNK = 256 * 1024
"""The most one read moves (measured, bench/services.py: 64 KiB gave 167 MiB/s, 256 KiB 260-330, 1 MiB
240). A connection holds at most one chunk per direction on each side: 512 KiB in a daemon."""
CONNECT_TIMEOUT_S = 10.0


class TunnelRefused(RequestError):
    """The provider refused a tunnel stream (``code``: unknown-activity, no-port, service-down, ...)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


SocketFor = Callable[[str, str, int], Awaitable[Path]]
"""(peer, activity id, port) -> the Unix socket of that port; raises :class:`TunnelRefused`."""


class TunnelServer:
    """The provider's side: admits streams of the peers whose activities expose the port."""

    def __init__(self, rr, socket_for: SocketFor) -> None:  # type: ignore[no-untyped-def]
        self._socket_for = socket_for
        self.open = 0
        """Connections bridged right now."""
        self.total = 0
        bulk_for(rr).set_handler(TUNNEL_STREAM, self._serve, per_peer=TUNNEL_PER_PEER, total=TUNNEL_TOTAL)

    async def _serve(self, stream: ByteStream) -> None:
        leftover = bytearray()
        with trio.move_on_after(HEADER_TIMEOUT_S) as waited:
            request = await read_header(stream, leftover)
        if waited.cancelled_caught or not isinstance(request, dict):
            await stream.reset()
            return
        try:
            activity_id, port = request.get("activity_id"), request.get("port")
            if not isinstance(activity_id, str) or not 0 < len(activity_id) <= 128:
                raise TunnelRefused("bad-request", "activity_id must be a short string")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise TunnelRefused("bad-request", "port must be 1..65535")
            path = await self._socket_for(stream.peer, activity_id, port)
            with trio.fail_after(CONNECT_TIMEOUT_S):
                try:
                    local = await trio.open_unix_socket(str(path))
                except OSError as exc:
                    code = "service-down" if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) else "tunnel-failed"
                    raise TunnelRefused(code, f"port {port} is not reachable in the container ({exc.strerror})") from None
        except (TunnelRefused, trio.TooSlowError) as exc:
            code, msg = (exc.code, str(exc)) if isinstance(exc, TunnelRefused) else ("tunnel-failed", "timed out")
            await stream.send_all(encode_frame(wire.encode({"err": {"code": code, "msg": msg[:500]}})))
            await stream.send_eof()
            return
        self.open += 1
        self.total += 1
        try:
            async with local:
                await stream.send_all(encode_frame(wire.encode({"ok": {}})))
                await splice(stream, local, first=bytes(leftover))
        finally:
            self.open -= 1


async def open_tunnel(rr, peer: str, activity_id: str, port: int) -> tuple[ByteStream, bytes]:  # type: ignore[no-untyped-def]
    """Open a tunnel stream to ``port`` of the peer's activity; ``(stream, bytes already read past the
    answer)``. :class:`TunnelRefused` when the provider says no, a RequestError when unreachable."""
    stream = await bulk_for(rr).open(peer, TUNNEL_STREAM)
    try:
        await stream.send_all(encode_frame(wire.encode({"activity_id": activity_id, "port": port})))
        leftover = bytearray()
        with trio.move_on_after(HEADER_TIMEOUT_S) as waited:
            answer = await read_header(stream, leftover)
        if waited.cancelled_caught or not isinstance(answer, dict):
            raise StreamFailed("the provider gave no tunnel answer")
        if "err" in answer:
            err = answer["err"] if isinstance(answer["err"], dict) else {}
            raise TunnelRefused(str(err.get("code", "refused"))[:64], str(err.get("msg", ""))[:500])
        if "ok" not in answer:
            raise StreamFailed("malformed tunnel answer")
        return stream, bytes(leftover)
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.reset()
        raise


async def splice(stream: ByteStream, sock: trio.abc.HalfCloseableStream, *, first: bytes = b"") -> None:
    """Copy both ways until both directions ended; an error on either side resets both.
    ``first``: bytes already read from ``stream`` (they go to ``sock`` first).

    Back-pressure: each direction holds one chunk at a time (a slow reader stalls its own
    connection, nothing else)."""
    failed = False

    async def to_sock() -> None:
        nonlocal failed
        try:
            if first:
                await sock.send_all(first)
            while data := await stream.receive_some(CHUNK):
                await sock.send_all(data)
            await sock.send_eof()
        except (StreamFailed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            failed = True
            nursery.cancel_scope.cancel()

    async def to_stream() -> None:
        nonlocal failed
        try:
            while data := await sock.receive_some(CHUNK):
                await stream.send_all(bytes(data))
            await stream.send_eof()
        except (StreamFailed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            failed = True
            nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(to_sock)
            nursery.start_soon(to_stream)
    finally:
        if failed or nursery.cancel_scope.cancel_called:
            with trio.CancelScope(shield=True):
                await stream.reset()
                _abort(sock)


def _abort(sock: trio.abc.HalfCloseableStream) -> None:
    """Close a socket stream with a reset (SO_LINGER 0), so the other end sees the failure."""
    raw = getattr(sock, "socket", None)
    if raw is None:
        return
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


@dataclass
class Target:
    """Where a local port leads: the provider and activity of the replica serving it now."""

    provider_id: str
    activity_id: str
    port: int


class PortListener:
    """A requestor's ``127.0.0.1:<port>`` for one exposed port of one replica.

    The target can change under it (a failover points it at the new replica); connections
    open at that moment stay with the old one until they end. With no target (a replica
    being replaced), new connections wait up to ``wait_target_s`` for one, then are closed."""

    def __init__(self, rr, port: int, *, host: str = "127.0.0.1", wait_target_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
        self._rr = rr
        self.host = host
        self.requested_port = port
        self.port = port
        self.target: Target | None = None
        self._target_changed = trio.Event()
        self.wait_target_s = wait_target_s
        self.open = 0
        self.total = 0
        self.failed = 0
        self.last_error: str | None = None

    def point(self, target: Target | None) -> None:
        self.target = target
        self._target_changed.set()
        self._target_changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen (port 0: any free port) and serve until cancelled; ``started`` with the bound port."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, conn: trio.SocketStream) -> None:
        async with conn:
            target = self.target
            if target is None:
                with trio.move_on_after(self.wait_target_s):
                    while self.target is None:
                        await self._target_changed.wait()
                target = self.target
                if target is None:
                    self.failed += 1
                    _abort(conn)
                    return
            try:
                stream, first = await open_tunnel(self._rr, target.provider_id, target.activity_id, target.port)
            except RequestError as exc:
                self.failed += 1
                if str(exc) != self.last_error:  # once per kind of failure, not per connection (a failover's burst)
                    log.info("tunnel to %s port %d: %s", target.provider_id[:16], target.port, exc)
                self.last_error = str(exc)
                _abort(conn)
                return
            self.open += 1
            self.total += 1
            try:
                await splice(stream, conn, first=first)  # a server that speaks first: its bytes came with the answer
            finally:
                self.open -= 1


class SocketDir:
    """A service's tunnel directory on the host, writable by the container's user (its parent keeps
    others out), held open: its sockets are reached as ``/proc/self/fd/<fd>/<port>.sock``, a short path
    whatever the data dir's (a Unix socket's path has at most 107 bytes)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        self._short = Path(f"/proc/self/fd/{self._fd}")
        if not self._short.is_dir():  # no /proc: the long path, which may be too long for a socket
            self._short = path

    def socket(self, port: int) -> Path:
        return self._short / f"{port}.sock"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
