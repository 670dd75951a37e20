"""Files and images between two nodes: a registry of blobs we serve, and a streaming fetcher.

A blob is served only to the one peer it was registered for (the other party
of an agreement), by id: ``file:<sha256>`` for files, ``image:sha256:<hex>``
for images. One transfer is one stream (``/yagna/blob/2.0.0``, see
:mod:`yagna.activity_service.protocol`): the fetcher sends the blob id, the
server answers with the size (or an error) and then writes the bytes, read
from disk on a worker thread one :data:`PIECE` ahead of the network, and ends
the stream. The fetcher refuses before reading any byte when the size is over
the caller's limit or differs from what was announced, hashes and writes what
arrives on a worker thread while the next bytes come in (a bounded queue of
:data:`QUEUE` pieces between them), refuses a stream that ends short or runs
long, and returns the sha256 of what it wrote so the caller checks it against
what it was promised. A peer that stalls is dropped after :data:`STALL_S`
without a MiB of progress.

A staged file (a provider's ``transfer_out`` result, :meth:`BlobServer.offer_staged`)
belongs to an activity: once its peer has read it to the last byte as many times
as it was offered, the entry goes and its ``on_gone`` hook frees the file; when
the activity ends, :meth:`BlobServer.withdraw_owner` drops its entries.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import trio

from exeunit.errors import TransferRefused
from yagna.activity_service.protocol import (
    BLOB_HEADER_MAX,
    BLOB_PER_PEER,
    BLOB_STREAM,
    BLOB_TOTAL,
    HEADER_TIMEOUT_S,
    ID_MAX,
)
from yagna.core import wire
from yagna.core.errors import WireError
from yagna.net.bulk import RELAYED_STREAM_LIMIT, ByteStream, StreamFailed, bulk_for
from yagna.net.errors import BadResponse, RemoteError, RequestTimeout
from yagna.net.framing import encode_frame

log = logging.getLogger("yagna.activity.blobs")

PIECE = 1024 * 1024
"""Bytes per disk read of the server, and most bytes per network read of the fetcher."""
QUEUE = 16
"""Batches of about a MiB between the network and the disk on either side (at most 17 MiB each)."""
BATCH_MAX = 4 * 1024 * 1024
"""Most bytes handed to the disk/hash thread at once (what a writer such as an upload queues per call)."""
STALL_S = 30.0
"""A transfer that moves less than a MiB in this long fails (the peer stalled)."""

Materialize = Callable[[], Awaitable[Path]]
"""Makes a blob's file on first request (e.g. ``docker save`` of an image)."""
Gone = Callable[[Path], Awaitable[None]]
"""Told that a staged file is not needed any more (read in full, or a duplicate)."""


@dataclass
class _Entry:
    peer: str
    path: Path | None
    make: Materialize | None
    lock: trio.Lock
    owner: str | None = None
    on_gone: Gone | None = None
    reads_left: int = 1
    """Full reads expected before the file is gone (one per offer of the same content)."""


class BlobServer:
    """Blobs this node serves, each to one peer."""

    def __init__(self, rr) -> None:  # type: ignore[no-untyped-def]
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._bulk = bulk_for(rr)
        self._bulk.set_handler(BLOB_STREAM, self._serve, per_peer=BLOB_PER_PEER, total=BLOB_TOTAL)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The node's bulk streams (the in-memory twin runs its handlers here)."""
        await self._bulk.run(task_status=task_status)

    def offer_file(self, peer: str, blob_id: str, path: Path) -> None:
        self._entries[(peer, blob_id)] = _Entry(peer, path, None, trio.Lock())

    def offer_lazy(self, peer: str, blob_id: str, make: Materialize) -> None:
        if (peer, blob_id) not in self._entries:
            self._entries[(peer, blob_id)] = _Entry(peer, None, make, trio.Lock())

    async def offer_staged(self, peer: str, blob_id: str, path: Path, *, owner: str, on_gone: Gone) -> None:
        """Serve a staged file of ``owner`` (an activity) to ``peer`` until it is read in full.

        The same content offered again (same blob id) is read once more before it goes;
        the new, identical file is not needed and goes at once.
        """
        entry = self._entries.get((peer, blob_id))
        if entry is not None and entry.on_gone is not None and entry.path is not None and entry.path != path:
            entry.reads_left += 1
            await on_gone(path)
            return
        self._entries[(peer, blob_id)] = _Entry(peer, path, None, trio.Lock(), owner=owner, on_gone=on_gone)

    def withdraw_peer(self, peer: str) -> None:
        for key in [k for k in self._entries if k[0] == peer]:
            del self._entries[key]

    def withdraw_owner(self, owner: str) -> None:
        """Stop serving the staged files of ``owner`` (its activity ended; the files go with it)."""
        for key in [k for k, e in self._entries.items() if e.owner == owner]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    async def _serve(self, stream: ByteStream) -> None:
        peer = stream.peer
        with trio.move_on_after(HEADER_TIMEOUT_S) as waited:
            request = await read_header(stream)
        if waited.cancelled_caught or request is None:
            await stream.reset()
            return
        try:
            blob_id = _blob_id(request)
            entry = self._entries.get((peer, blob_id))
            if entry is None:
                raise _Refusal("not-found", f"no blob {blob_id!r} for you")
            async with entry.lock:
                if entry.path is None:
                    assert entry.make is not None
                    entry.path = await entry.make()
            path = entry.path
            try:
                f, size = await trio.to_thread.run_sync(_open_sized, path)
            except FileNotFoundError:
                raise _Refusal("not-found", "blob is gone") from None
        except _Refusal as refusal:
            await stream.send_all(encode_frame(wire.encode({"err": {"code": refusal.code, "msg": refusal.msg}})))
            await stream.send_eof()
            return
        try:
            await stream.send_all(encode_frame(wire.encode({"ok": {"size": size}})))
            await _send_file(stream, f, size)
            await stream.send_eof()
        finally:
            await trio.to_thread.run_sync(f.close)
        if entry.on_gone is not None:
            await self._count_read(peer, blob_id, entry)

    async def _count_read(self, peer: str, blob_id: str, entry: _Entry) -> None:
        """A staged file sent to the last byte (as often as offered) is gone."""
        if self._entries.get((peer, blob_id)) is not entry:
            return
        entry.reads_left -= 1
        if entry.reads_left > 0:
            return
        del self._entries[(peer, blob_id)]
        assert entry.path is not None and entry.on_gone is not None
        await entry.on_gone(entry.path)


class _Refusal(Exception):
    def __init__(self, code: str, msg: str) -> None:
        self.code, self.msg = code, msg


def _blob_id(request: object) -> str:
    if not isinstance(request, dict) or not isinstance(request.get("blob_id"), str):
        raise _Refusal("bad-request", "expected {blob_id: str}")
    blob_id: str = request["blob_id"]
    if not 0 < len(blob_id) <= ID_MAX:
        raise _Refusal("bad-request", f"blob_id must be 1 to {ID_MAX} characters")
    return blob_id


def _open_sized(path: Path) -> tuple[BinaryIO, int]:
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return f, os.fstat(f.fileno()).st_size


async def read_header(stream: ByteStream, leftover: bytearray | None = None) -> object | None:
    """One varint-framed CBOR value of at most :data:`BLOB_HEADER_MAX` bytes; the bytes after it go to
    ``leftover``. ``None`` for garbage or a stream that ends first."""
    buf = bytearray()
    while True:
        try:
            span = _frame_span(buf)
        except ValueError:
            return None
        if span is not None:
            start, end = span
            if leftover is not None:
                leftover += buf[end:]
            try:
                return wire.decode(bytes(buf[start:end]), max_size=BLOB_HEADER_MAX)
            except WireError:
                return None
        data = await stream.receive_some(BLOB_HEADER_MAX + 16)
        if not data:
            return None
        buf += data


def _frame_span(buf: bytearray) -> tuple[int, int] | None:
    """``(start, end)`` of the body of the varint frame at the start of ``buf``; None while incomplete.

    ValueError for a length over :data:`BLOB_HEADER_MAX`, a non-minimal or overlong varint.
    """
    length = 0
    for i, byte in enumerate(buf[:10]):
        length |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise ValueError("non-minimal varint")
            if length > BLOB_HEADER_MAX:
                raise ValueError(f"header of {length} bytes is over {BLOB_HEADER_MAX}")
            end = i + 1 + length
            return (i + 1, end) if len(buf) >= end else None
    if len(buf) >= 10:
        raise ValueError("varint too long")
    return None


async def _send_file(stream: ByteStream, f: BinaryIO, size: int) -> None:
    """Write ``size`` bytes of ``f`` to ``stream``; disk reads on a thread, one piece ahead of the network."""
    send, receive = trio.open_memory_channel[bytes](2)

    async def read_ahead() -> None:
        async with send:
            left = size
            while left > 0:
                piece = await trio.to_thread.run_sync(f.read, min(PIECE, left))
                if not piece:
                    raise StreamFailed("the file shrank while it was sent")
                left -= len(piece)
                await send.send(piece)

    with _one_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_ahead)
            async with receive:
                async for piece in receive:
                    await stream.send_all(piece)


async def fetch_blob(
    rr,  # type: ignore[no-untyped-def]
    peer: str,
    blob_id: str,
    dest: Path,
    *,
    max_size: int,
    expected_size: int | None = None,
) -> tuple[str, int]:
    """Download a blob into ``dest``; returns ``(sha256 hex, size)``.

    Raises :class:`TransferRefused` (``too-large`` before any download when the
    announced size is over ``max_size`` or differs from ``expected_size``;
    ``not-found`` when the peer does not serve it; ``hash-mismatch`` when the
    stream ends short; ``too-large`` when it runs past the size). Network
    failures are the net layer's :class:`~yagna.net.errors.RequestError`.
    ``dest`` is removed on any failure.
    """
    try:
        async with open_blob(rr, peer, blob_id, max_size=max_size, expected_size=expected_size) as blob:
            out = await trio.to_thread.run_sync(open, dest, "wb")
            try:
                digest = await blob.copy(functools.partial(_write, out))
            finally:
                await trio.to_thread.run_sync(out.close)
            return digest, blob.size
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: dest.unlink(missing_ok=True))
        raise


def _write(out: BinaryIO, pieces: list[bytes]) -> None:
    if len(pieces) == 1:
        out.write(pieces[0])
    else:
        os.writev(out.fileno(), pieces)


@asynccontextmanager
async def open_blob(rr: Any, peer: str, blob_id: str, *, max_size: int,
                    expected_size: int | None = None) -> AsyncIterator[Blob]:
    """A blob's stream, its size checked (before any byte of data); read it with :meth:`Blob.copy`.

    The same refusals as :func:`fetch_blob`; leaving the block early resets the stream.
    """
    stream = await bulk_for(rr).open(peer, BLOB_STREAM)
    try:
        await stream.send_all(encode_frame(wire.encode({"blob_id": blob_id})))
        await stream.send_eof()
        leftover = bytearray()
        with trio.move_on_after(STALL_S) as waited:
            reply = await read_header(stream, leftover)
        if waited.cancelled_caught:
            raise RequestTimeout(f"{peer} did not answer for {blob_id} within {STALL_S:g}s")
        size = _size_of(reply, peer, blob_id)
        if size > max_size:
            raise TransferRefused("too-large", f"{blob_id} is {size} bytes, over the limit of {max_size}")
        relay = getattr(stream, "relay", None)
        if relay is not None and size > RELAYED_STREAM_LIMIT:
            raise TransferRefused(
                "relay-limit",
                f"{blob_id} is {size} bytes, more than a relayed connection carries "
                f"({RELAYED_STREAM_LIMIT // (1024 * 1024)} MiB by default): {peer} is reached only through relay "
                f"{relay} and hole punching did not give a direct connection; a direct connection "
                "(a forwarded listen port on either side, docs/behind-nat.md) has no such limit")
        if expected_size is not None and size != expected_size:
            raise TransferRefused("too-large" if size > expected_size else "hash-mismatch",
                                  f"{blob_id} is {size} bytes, {expected_size} were announced")
        blob = Blob(stream, peer, blob_id, size, bytes(leftover))
        yield blob
    except BaseException:
        await stream.reset()
        raise


class Blob:
    """The data of one blob on its stream (see :func:`open_blob`)."""

    def __init__(self, stream: ByteStream, peer: str, blob_id: str, size: int, first: bytes) -> None:
        self._stream = stream
        self.peer, self.blob_id, self.size = peer, blob_id, size
        self._first = first

    async def copy(self, write: Callable[[list[bytes]], None]) -> str:
        """Read the data to its end, handing it in order to ``write`` (called on a worker thread, a batch
        at a time, while the network goes on); returns the sha256 hex of the bytes.

        A stream that ends short is ``hash-mismatch``, one that runs past the size
        ``too-large``, one that moves less than a MiB in :data:`STALL_S`
        :class:`~yagna.net.errors.RequestTimeout`.
        """
        stream, size, peer, blob_id = self._stream, self.size, self.peer, self.blob_id
        digest = hashlib.sha256()
        # Items are lists of pieces of at least PIECE bytes together: one thread hop per MiB, not per read.
        send, receive = trio.open_memory_channel[list[bytes]](QUEUE)

        def hash_and_write(pieces: list[bytes]) -> None:
            for piece in pieces:  # hashlib and file writes release the GIL on large buffers
                digest.update(piece)
            write(pieces)

        async def write_behind() -> None:
            async with receive:
                while True:
                    try:
                        batch = list(await receive.receive())
                    except trio.EndOfChannel:
                        return
                    size_of_batch = sum(map(len, batch))
                    while size_of_batch < BATCH_MAX:
                        try:
                            more = receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        batch.extend(more)
                        size_of_batch += sum(map(len, more))
                    await trio.to_thread.run_sync(hash_and_write, batch)

        with _one_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_behind)
                async with send:
                    got = len(self._first)
                    if got > size:
                        raise TransferRefused("too-large", f"{blob_id} grew past its announced {size} bytes")
                    pending: list[bytes] = [self._first] if got else []
                    pending_bytes = got
                    progress = got
                    deadline = trio.current_time() + STALL_S
                    while got < size:
                        with trio.move_on_at(deadline) as stalled:
                            data = await stream.receive_some(min(PIECE, size - got))
                        if stalled.cancelled_caught:
                            raise RequestTimeout(f"{peer} sent {got} of {size} bytes of {blob_id}, then stalled")
                        if not data:
                            raise TransferRefused("hash-mismatch", f"{blob_id}: got {got} of {size} bytes")
                        got += len(data)
                        pending.append(data)
                        pending_bytes += len(data)
                        if pending_bytes >= PIECE or got == size:
                            await send.send(pending)
                            pending, pending_bytes = [], 0
                        if got - progress >= PIECE:
                            progress, deadline = got, trio.current_time() + STALL_S
                    if pending:
                        await send.send(pending)
                with trio.move_on_after(STALL_S) as waited:
                    extra = await stream.receive_some(1)
                if extra or waited.cancelled_caught:
                    raise TransferRefused("too-large", f"{blob_id} grew past its announced {size} bytes")
        return digest.hexdigest()


@contextmanager
def _one_error() -> Iterator[None]:
    """A nursery's failure as the one exception that caused it (callers catch TransferRefused, RequestError)."""
    try:
        yield
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        real = [e for e in errors if not isinstance(e, trio.Cancelled)]
        raise (real or errors)[0] from None


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:  # type: ignore[type-arg]
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _size_of(reply: object, peer: str, blob_id: str) -> int:
    if isinstance(reply, dict) and len(reply) == 1:
        ok = reply.get("ok")
        if isinstance(ok, dict) and isinstance(ok.get("size"), int) and ok["size"] >= 0:
            return int(ok["size"])
        err = reply.get("err")
        if isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("msg"), str):
            if err["code"] == "not-found":
                raise TransferRefused("not-found", f"{peer} does not serve {blob_id}")
            raise RemoteError(err["code"], err["msg"])
    raise BadResponse(f"malformed answer from {peer} for {blob_id}")
