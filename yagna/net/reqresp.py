"""Request/response over libp2p streams: one stream per request, one frame each way.

This is the helper the market, exe-unit and payment protocols build on. Every
request and response is canonical CBOR in a varint frame (:mod:`framing`), with
a size limit per direction, a deadline, and an inbound concurrency limit per
protocol that queues (py-libp2p's own ``RequestResponse`` resets requests past
128 in flight, and breaks on responses of 7 MiB or more).

Replies are ``{"ok": payload}`` or ``{"err": {"code": str, "msg": str}}``. A
handler raises :class:`RequestRejected` to answer with an error; any other
exception becomes an ``internal`` error reply and is logged with its traceback.

Why a broad ``except Exception`` in :meth:`RequestResponse._serve`: in py-libp2p
0.8.1 an exception escaping a stream handler propagates out of ``host.run()``
and kills the whole daemon. That one boundary turns every failure into a log
line plus a reset stream and the right error reply; behind it, every stream
handler of the host (the library's identify and ping too) sits inside
:func:`yagna.net.host.guard_stream_handlers`, and pubsub inside
:mod:`yagna.net.pubsub_guard`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

from yagna.core import wire
from yagna.core.errors import EncodeError, WireError
from yagna.net.errors import (
    BadResponse,
    FrameError,
    PeerUnreachable,
    ProtocolNotSupported,
    RemoteError,
    RequestRejected,
    RequestTimeout,
    RequestTooLarge,
)
from yagna.net.framing import FrameDecoder, encode_frame, read_frame

log = logging.getLogger("yagna.net.reqresp")


PEER_BUFFER_BUDGET = 16 * 1024 * 1024
"""Request bytes one peer may make us buffer on one protocol (see ProtocolSpec.open_limit)."""


@dataclass(frozen=True)
class ProtocolSpec:
    """A request/response protocol and its limits (both sides use the same spec)."""

    name: str
    max_request_size: int = 64 * 1024
    max_response_size: int = 1024 * 1024
    timeout: float = 10.0
    """Client: whole exchange. Server: reading the request and answering it."""
    concurrency: int = 512
    """Inbound requests handled at once, from all peers; more wait (up to ``timeout``)."""
    per_peer: int = 32
    """Inbound requests of one peer handled at once; more of its requests wait (up to ``timeout``)."""
    max_open_per_peer: int | None = None
    """Inbound streams of one peer open at once (read, queued or handled); more are reset at once.

    A request is read before it takes a place in any limit, so a peer that opens
    streams and stalls holds only its own places (issue 11, row 4: 64 stalled
    streams of one peer held the limit all peers shared and slowed an honest
    1 MB upload 30x). None: :data:`PEER_BUFFER_BUDGET` / ``max_request_size``,
    within 16..256, so one peer buffers at most 16 MiB per protocol.
    """

    @property
    def open_limit(self) -> int:
        if self.max_open_per_peer is not None:
            return self.max_open_per_peer
        return max(16, min(256, PEER_BUFFER_BUDGET // self.max_request_size))


@dataclass(frozen=True)
class Request:
    peer: str
    """Node id of the remote peer, authenticated by the Noise handshake."""
    protocol: str
    payload: object


Handler = Callable[[Request], Awaitable[object]]


def _error_reply(code: str, message: str) -> bytes:
    return wire.encode({"err": {"code": code, "msg": message[:500]}})


class RequestResponse:
    """Client and server side of framed CBOR request/response on one host."""

    def __init__(self, host: IHost) -> None:
        self._host = host
        self._specs: dict[str, ProtocolSpec] = {}
        self._inbound: dict[tuple[str, str], int] = {}
        """(protocol, peer) -> inbound streams being served; an entry exists only while > 0."""
        self.refused_busy = 0

    def register(self, spec: ProtocolSpec, handler: Handler) -> None:
        limiter = trio.CapacityLimiter(spec.concurrency)
        peer_limiters: dict[str, trio.CapacityLimiter] = {}

        async def on_stream(stream: INetStream) -> None:
            await self._serve(spec, handler, limiter, peer_limiters, stream)

        self._specs[spec.name] = spec
        self._host.set_stream_handler(TProtocol(spec.name), on_stream)

    async def _serve(
        self,
        spec: ProtocolSpec,
        handler: Handler,
        limiter: trio.CapacityLimiter,
        peer_limiters: dict[str, trio.CapacityLimiter],
        stream: INetStream,
    ) -> None:
        peer = str(stream.muxed_conn.peer_id)
        key = (spec.name, peer)
        if self._inbound.get(key, 0) >= spec.open_limit:
            self.refused_busy += 1
            log.info("%s: %s already has %d streams open; stream reset", spec.name, peer, spec.open_limit)
            await _reset(stream)
            return
        self._inbound[key] = self._inbound.get(key, 0) + 1
        mine = peer_limiters.get(peer)
        if mine is None:
            mine = peer_limiters[peer] = trio.CapacityLimiter(spec.per_peer)
        try:
            with trio.fail_after(spec.timeout):
                # The request is read before taking a place in the shared limit: a
                # peer that stalls holds only its own per-peer places.
                frame = await read_frame(stream, FrameDecoder(spec.max_request_size))
                if frame is None:  # the peer gave up (cancelled, shutting down)
                    log.debug("%s: %s closed the stream before sending a request", spec.name, peer)
                    await _reset(stream)
                    return
                async with mine, limiter:
                    reply = await handle_frame(spec, handler, peer, frame)
                    await stream.write(encode_frame(reply))
                    await stream.close()
        except FrameError as exc:
            log.warning("%s: bad request frame from %s: %s", spec.name, peer, exc)
            await _reset(stream)
        except trio.TooSlowError:
            log.warning("%s: request from %s took over %ss; stream reset", spec.name, peer, spec.timeout)
            await _reset(stream)
        except BaseLibp2pError as exc:
            log.info("%s: stream with %s failed: %r", spec.name, peer, exc)
            await _reset(stream)
        except Exception:
            log.exception("%s: unexpected failure serving %s", spec.name, peer)
            await _reset(stream)
        finally:
            left = self._inbound[key] - 1
            if left:
                self._inbound[key] = left
            else:
                del self._inbound[key]
                peer_limiters.pop(peer, None)

    async def request(
        self,
        peer: str,
        spec: ProtocolSpec,
        payload: object,
        *,
        timeout: float | None = None,
    ) -> object:
        """Send one request and return the peer's ``ok`` payload.

        Raises a :class:`~yagna.net.errors.RequestError` subclass for every
        failure: unreachable, protocol not supported, timeout, malformed
        response, or the peer's own error reply (:class:`RemoteError`).
        """
        data = encode_request(spec, payload)
        deadline = spec.timeout if timeout is None else timeout
        stream: INetStream | None = None
        try:
            with trio.fail_after(deadline):
                stream = await self._open(peer, spec.name)
                await stream.write(encode_frame(data))
                frame = await read_frame(stream, FrameDecoder(spec.max_response_size))
        except trio.TooSlowError:
            if stream is not None:
                await _reset(stream)
            raise RequestTimeout(f"{spec.name}: no answer from {peer} within {deadline}s") from None
        except FrameError as exc:
            await _reset(stream)
            raise BadResponse(f"{spec.name}: bad response frame from {peer}: {exc}") from None
        except BaseLibp2pError as exc:
            if stream is not None:
                await _reset(stream)
            raise PeerUnreachable(f"{spec.name}: stream to {peer} failed: {exc!r}") from None
        except BaseException:
            # cancelled by the caller (its deadline, shutdown): reset, or the
            # stream stays open on both peers
            await _reset(stream)
            raise
        await _close(stream)
        if frame is None:
            raise BadResponse(f"{spec.name}: {peer} closed the stream without answering")
        return _parse_reply(spec, peer, frame)

    async def _open(self, peer: str, protocol: str) -> INetStream:
        try:
            return await self._host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])
        except StreamFailure as exc:
            if "protocol" in str(exc).lower() or "multiselect" in repr(exc.__cause__).lower():
                raise ProtocolNotSupported(f"{peer} does not support {protocol}") from None
            raise PeerUnreachable(f"cannot open {protocol} to {peer}: {exc}") from None
        except (BaseLibp2pError, OSError, ValueError) as exc:  # ValueError: id not base58
            raise PeerUnreachable(f"cannot reach {peer}: {exc}") from None


async def handle_frame(spec: ProtocolSpec, handler: Handler, peer: str, frame: bytes) -> bytes:
    """The server side of one request, sans transport: request frame in, reply frame out, never raises.

    Shared by the libp2p transport and the in-memory twin (:mod:`yagna.net.memory`).
    """
    try:
        payload = wire.decode(frame, max_size=spec.max_request_size)
    except WireError as exc:
        log.warning("%s: malformed request from %s: %s", spec.name, peer, exc)
        return _error_reply("bad_request", str(exc))
    try:
        result = await handler(Request(peer, spec.name, payload))
        reply = wire.encode({"ok": result})
    except RequestRejected as exc:
        return _error_reply(exc.code, exc.message)
    except WireError as exc:
        return _error_reply("bad_request", str(exc))
    except EncodeError:
        log.exception("%s: handler returned a value that cannot be encoded", spec.name)
        return _error_reply("internal", "internal error")
    except Exception:
        log.exception("%s: handler failed on a request from %s", spec.name, peer)
        return _error_reply("internal", "internal error")
    if len(reply) > spec.max_response_size:
        log.error("%s: response of %d bytes is over the limit", spec.name, len(reply))
        return _error_reply("internal", "response too large")
    return reply


def encode_request(spec: ProtocolSpec, payload: object) -> bytes:
    """Encode a request, refusing one over the protocol's limit (a local mistake)."""
    data = wire.encode(payload)
    if len(data) > spec.max_request_size:
        raise RequestTooLarge(
            f"request of {len(data)} bytes is over the {spec.name} limit of {spec.max_request_size}"
        )
    return data


def _parse_reply(spec: ProtocolSpec, peer: str, frame: bytes) -> object:
    try:
        reply = wire.decode(frame, max_size=spec.max_response_size)
    except WireError as exc:
        raise BadResponse(f"{spec.name}: malformed response from {peer}: {exc}") from None
    if isinstance(reply, dict) and len(reply) == 1:
        if "ok" in reply:
            return reply["ok"]
        err = reply.get("err")
        if isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("msg"), str):
            raise RemoteError(err["code"], err["msg"])
    raise BadResponse(f"{spec.name}: response from {peer} is neither ok nor err")


async def _reset(stream: INetStream | None) -> None:
    if stream is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await stream.reset()
        except BaseLibp2pError:
            pass


async def _close(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await stream.close()
        except BaseLibp2pError:
            pass
