"""Byte streams between two nodes for bulk transfers, over libp2p or in memory.

Request/response (:mod:`yagna.net.reqresp`) moves CBOR messages of bounded
size; a file of 64 MiB moved that way is 64 requests, each a CBOR copy of its
chunk and a round trip (issue 12: 59 MiB/s). A transfer instead opens one
stream and the server writes the bytes one after another: no per-chunk
request, no per-chunk encoding, the muxer's window for back-pressure.

:class:`ByteStream` is what a handler and a client hold (``receive_some`` /
``send_all`` / ``send_eof`` / ``reset``, trio's names); :func:`bulk_for` gives the
:class:`BulkStreams` of a node from its request/response object, so the
services that already hold ``rr`` need nothing new: the libp2p host behind a
:class:`~yagna.net.reqresp.RequestResponse`, or the hub behind a
:class:`~yagna.net.memory.MemoryRequestResponse` (the in-memory twin, whose
handlers run in the nursery of :meth:`BulkStreams.run`).

Bounds (per protocol, set by :meth:`BulkStreams.set_handler`): streams one
peer holds open at once and streams open at once in all; past either, a new
stream is reset at once. What a stream buffers is the muxer's window (Yamux:
at most 16 MiB) plus what the handler keeps. Failures on a stream raise
:class:`StreamFailed` (a :class:`~yagna.net.errors.RequestError`); the caller
owns timeouts (cancel scopes).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from yagna.net.addresses import relay_id_of
from yagna.net.errors import PeerUnreachable, ProtocolNotSupported, RequestError

log = logging.getLogger("yagna.net.bulk")

__all__ = ["RELAYED_STREAM_LIMIT", "BulkStreams", "ByteStream", "StreamFailed", "bulk_for", "relay_note"]


class StreamFailed(RequestError):
    """The stream was reset or its connection broke."""


RELAYED_STREAM_LIMIT = 256 * 1024 * 1024
"""What a relayed circuit is assumed to carry at most (our relays' default,
``yagna.net.relay_core.RelayLimits.circuit_bytes``; a foreign relay may allow less, and py-libp2p's
relay resets the circuit past its limit). A transfer bigger than this is refused before it starts
on a relayed stream instead of being cut part way."""
RELAYED_STREAM_SECONDS = 600


class ByteStream(Protocol):
    peer: str
    """Node id of the other side (authenticated by the Noise handshake)."""
    relay: str | None
    """The relay's node id when the stream runs over a relayed connection, else None."""

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at the other side's end of stream."""
        ...

    async def send_all(self, data: bytes) -> None: ...

    async def send_eof(self) -> None:
        """No more bytes from this side (the other side may still send)."""
        ...

    async def reset(self) -> None:
        """Abort both directions (never raises; bounded)."""
        ...


Handler = Callable[[ByteStream], Awaitable[None]]


class BulkStreams(Protocol):
    handler_failures: int

    def set_handler(self, protocol: str, handler: Handler, *, per_peer: int, total: int) -> None: ...

    async def open(self, peer: str, protocol: str) -> ByteStream: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...


_by_rr: weakref.WeakKeyDictionary[Any, BulkStreams] = weakref.WeakKeyDictionary()


def bulk_for(rr: Any) -> BulkStreams:
    """The bulk streams of the node whose request/response object is ``rr`` (one per node).

    Wrappers (test taps) are looked through by their ``_rr`` attribute.
    """
    from yagna.net.memory import MemoryRequestResponse
    from yagna.net.reqresp import RequestResponse

    inner = rr
    while not isinstance(inner, (RequestResponse, MemoryRequestResponse)) and hasattr(inner, "_rr"):
        inner = inner._rr
    got = _by_rr.get(inner)
    if got is None:
        if isinstance(inner, RequestResponse):
            got = Libp2pBulk(inner._host)
        elif isinstance(inner, MemoryRequestResponse):
            got = _memory_hub(inner._hub).node(inner._me)
        else:
            raise TypeError(f"no bulk streams for {type(rr).__name__}")
        _by_rr[inner] = got
    return got


class _Admission:
    """Streams open per (protocol, peer) and per protocol; a stream past either is refused."""

    def __init__(self, per_peer: int, total: int) -> None:
        self.per_peer, self.total = per_peer, total
        self.open: dict[str, int] = {}
        self.all = 0
        self.refused = 0

    def enter(self, peer: str) -> bool:
        if self.all >= self.total or self.open.get(peer, 0) >= self.per_peer:
            self.refused += 1
            return False
        self.open[peer] = self.open.get(peer, 0) + 1
        self.all += 1
        return True

    def leave(self, peer: str) -> None:
        self.all -= 1
        left = self.open[peer] - 1
        if left:
            self.open[peer] = left
        else:
            del self.open[peer]


# -- libp2p -------------------------------------------------------------------------------
def relay_note(relay: str | None, moved: int) -> str:
    """What to add to a failure on a relayed stream: the relay and its limits."""
    if relay is None:
        return ""
    return (f" (through relay {relay} after {moved} bytes: a relayed connection is limited, by default to "
            f"{RELAYED_STREAM_LIMIT // (1024 * 1024)} MiB and {RELAYED_STREAM_SECONDS} s, and the relay resets it "
            "past that; a direct connection has no such limit: forward the listen port (docs/behind-nat.md))")


def stream_relay(host: Any, stream: Any) -> str | None:
    """The relay's node id if ``stream`` runs over a relayed connection of ``host``, else None."""
    try:
        muxed = stream.muxed_conn
        conns = host.get_network().connections.get(muxed.peer_id, [])
        for conn in conns if isinstance(conns, list) else [conns]:
            if getattr(conn, "muxed_conn", None) is not muxed:
                continue
            for addr in map(str, conn.get_transport_addresses()):
                relay = relay_id_of(addr)
                if relay is not None:
                    return relay or "?"
            return None
    except Exception:  # noqa: BLE001 - a closing connection: treat as direct
        return None
    return None


class _Libp2pStream:
    def __init__(self, stream: Any, peer: str, relay: str | None = None) -> None:
        self._s = stream
        self.peer = peer
        self.relay = relay
        self._moved = 0

    async def receive_some(self, max_bytes: int) -> bytes:
        from libp2p.exceptions import BaseLibp2pError
        from libp2p.network.stream.exceptions import StreamEOF

        try:
            data = bytes(await self._s.read(max_bytes))
        except StreamEOF:
            return b""
        except BaseLibp2pError as exc:
            raise StreamFailed(f"stream from {self.peer} failed: {exc!r}{relay_note(self.relay, self._moved)}") from None
        self._moved += len(data)
        return data

    async def send_all(self, data: bytes) -> None:
        from libp2p.exceptions import BaseLibp2pError

        try:
            await self._s.write(data)
        except BaseLibp2pError as exc:
            raise StreamFailed(f"stream to {self.peer} failed: {exc!r}{relay_note(self.relay, self._moved)}") from None
        self._moved += len(data)

    async def send_eof(self) -> None:
        from libp2p.exceptions import BaseLibp2pError

        try:
            await self._s.close()  # Yamux: FIN, a half-close
        except BaseLibp2pError as exc:
            raise StreamFailed(f"stream to {self.peer} failed: {exc!r}{relay_note(self.relay, self._moved)}") from None

    async def reset(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self._s.reset()
            except Exception:  # noqa: BLE001 - already gone; reset never raises
                pass


class Libp2pBulk:
    def __init__(self, host: Any) -> None:
        self._host = host
        self.admissions: dict[str, _Admission] = {}
        self.handler_failures = 0
        """Handlers that raised something other than :class:`StreamFailed` (a bug: logged with its traceback)."""
        self.connect: Callable[[str], Awaitable[None]] | None = None
        """Set by the network: connects to a peer we are not connected to (RequestResponse.connect)."""
        self.prefer_direct: Callable[[str], Awaitable[bool]] | None = None
        """Set by the network: waits (bounded) for a hole punch under way before a bulk stream
        opens, so that a transfer does not run through a relay when a direct path is moments away
        (yagna/net/holepunch.py ``prefer_direct``)."""

    def set_handler(self, protocol: str, handler: Handler, *, per_peer: int, total: int) -> None:
        from libp2p.custom_types import TProtocol

        admission = self.admissions[protocol] = _Admission(per_peer, total)

        async def on_stream(raw: Any) -> None:
            stream = _Libp2pStream(raw, str(raw.muxed_conn.peer_id), stream_relay(self._host, raw))
            if not admission.enter(stream.peer):
                log.info("%s: %s is over its open streams; stream reset", protocol, stream.peer)
                await stream.reset()
                return
            try:
                await handler(stream)
            except StreamFailed as exc:
                log.info("%s: %s", protocol, exc)
                await stream.reset()
            except Exception:
                self.handler_failures += 1
                log.exception("%s: handler failed on a stream from %s", protocol, stream.peer)
                await stream.reset()
            finally:
                admission.leave(stream.peer)

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    async def open(self, peer: str, protocol: str) -> ByteStream:
        from yagna.net.reqresp import connected, open_stream

        if self.connect is not None and not connected(self._host, peer):
            await self.connect(peer)  # through a relay if need be (see RequestResponse.connect)
        if self.prefer_direct is not None:
            await self.prefer_direct(peer)
        raw = await open_stream(self._host, peer, protocol)
        return _Libp2pStream(raw, peer, stream_relay(self._host, raw))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # the host runs the handlers
        await trio.sleep_forever()


# -- in memory ------------------------------------------------------------------------------
MEMORY_BUFFER = 16
"""Pieces in flight per direction of an in-memory stream (back-pressure like a muxer window)."""

_hubs: weakref.WeakKeyDictionary[Any, _MemoryBulkHub] = weakref.WeakKeyDictionary()


def _memory_hub(hub: Any) -> _MemoryBulkHub:
    got = _hubs.get(hub)
    if got is None:
        got = _hubs[hub] = _MemoryBulkHub(hub)
    return got


class _MemoryBulkHub:
    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.nodes: dict[str, MemoryBulk] = {}

    def node(self, node_id: str) -> MemoryBulk:
        got = self.nodes.get(node_id)
        if got is None:
            got = self.nodes[node_id] = MemoryBulk(self, node_id)
        return got


class _Reset:
    """Sent down an in-memory stream by :meth:`_MemoryStream.reset`."""


_RESET = _Reset()


class _MemoryStream:
    def __init__(self, peer: str, send: trio.MemorySendChannel[bytes | _Reset],
                 receive: trio.MemoryReceiveChannel[bytes | _Reset], link: Callable[[], bool]) -> None:
        self.peer = peer
        self.relay: str | None = None  # the in-memory twin has no relays
        self._send, self._receive = send, receive
        self._link = link
        self._pending = b""
        self._eof_sent = False

    async def receive_some(self, max_bytes: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        try:
            got = await self._receive.receive()
        except trio.EndOfChannel:
            return b""
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StreamFailed(f"stream from {self.peer} was reset") from None
        if isinstance(got, _Reset):
            self._receive.close()
            raise StreamFailed(f"stream from {self.peer} was reset")
        if not self._link():
            raise StreamFailed(f"connection to {self.peer} is gone")
        data, self._pending = got[:max_bytes], got[max_bytes:]
        return data

    async def send_all(self, data: bytes) -> None:
        if self._eof_sent:
            raise StreamFailed("stream closed for sending")
        if not self._link():
            raise StreamFailed(f"connection to {self.peer} is gone")
        try:
            await self._send.send(bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise StreamFailed(f"stream to {self.peer} was reset") from None

    async def send_eof(self) -> None:
        self._eof_sent = True
        await self._send.aclose()

    async def reset(self) -> None:
        try:
            self._send.send_nowait(_RESET)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._send.close()
        self._receive.close()


class MemoryBulk:
    """Twin of :class:`Libp2pBulk` on a :class:`~yagna.net.memory.MemoryHub` (handlers run in :meth:`run`)."""

    def __init__(self, hub: _MemoryBulkHub, node_id: str) -> None:
        self._hub = hub
        self._me = node_id
        self._handlers: dict[str, tuple[Handler, _Admission]] = {}
        self._nursery: trio.Nursery | None = None
        self.handler_failures = 0

    def set_handler(self, protocol: str, handler: Handler, *, per_peer: int, total: int) -> None:
        self._handlers[protocol] = (handler, _Admission(per_peer, total))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def open(self, peer: str, protocol: str) -> ByteStream:
        await trio.lowlevel.checkpoint()
        hub = self._hub.hub
        if peer == self._me or not hub.connected(peer) or not hub.connected(self._me):
            raise PeerUnreachable(f"cannot reach {peer}")
        server = self._hub.nodes.get(peer)
        if server is None or protocol not in server._handlers or server._nursery is None:
            raise ProtocolNotSupported(f"{peer} does not support {protocol}")
        handler, admission = server._handlers[protocol]
        to_server_send, to_server_recv = trio.open_memory_channel[bytes | _Reset](MEMORY_BUFFER)
        to_client_send, to_client_recv = trio.open_memory_channel[bytes | _Reset](MEMORY_BUFFER)
        me = self._me

        def link() -> bool:
            return bool(hub.connected(peer) and hub.connected(me))

        client = _MemoryStream(peer, to_server_send, to_client_recv, link)
        theirs = _MemoryStream(me, to_client_send, to_server_recv, link)

        async def serve() -> None:
            if not admission.enter(me):
                await theirs.reset()
                return
            try:
                await handler(theirs)
            except StreamFailed:
                await theirs.reset()
            except Exception:
                server.handler_failures += 1
                log.exception("%s: handler failed on a stream from %s", protocol, me)
                await theirs.reset()
            finally:
                admission.leave(me)

        server._nursery.start_soon(serve)
        return client

