"""Files and images between two nodes: a registry of blobs we serve, and a chunked fetcher.

A blob is served only to the one peer it was registered for (the other party
of an agreement), by id: ``file:<sha256>`` for files, ``image:sha256:<hex>``
for images. The fetcher learns the size from the first chunk, refuses before
downloading anything when it is over the caller's limit, keeps ``window``
chunk requests in flight, and returns the sha256 of what it wrote so the
caller checks it against what it was promised.

A staged file (a provider's ``transfer_out`` result, :meth:`BlobServer.offer_staged`)
belongs to an activity: once its peer has read it to the last byte as many times
as it was offered, the entry goes and its ``on_gone`` hook frees the file; when
the activity ends, :meth:`BlobServer.withdraw_owner` drops its entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import trio

from exeunit.errors import TransferRefused
from yagna.activity_service.protocol import BLOB, CHUNK, field, ident
from yagna.net.errors import RemoteError, RequestRejected
from yagna.net.reqresp import Request

log = logging.getLogger("yagna.activity.blobs")

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
    served: dict[int, int] = dc_field(default_factory=dict)
    """offset -> length of the chunks (at multiples of CHUNK) served in the current read."""


class BlobServer:
    """Blobs this node serves, each to one peer."""

    def __init__(self, rr) -> None:  # type: ignore[no-untyped-def]
        self._entries: dict[tuple[str, str], _Entry] = {}
        rr.register(BLOB, self._handle)

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

    async def _handle(self, request: Request) -> object:
        msg = request.payload
        if not isinstance(msg, dict):
            raise RequestRejected("bad-request", "expected a map")
        blob_id = ident(msg, "blob_id")
        offset = field(msg, "offset", int)
        length = field(msg, "length", int)
        if offset < 0 or not 0 < length <= CHUNK:
            raise RequestRejected("bad-request", f"offset must be >= 0 and length 1..{CHUNK}")
        entry = self._entries.get((request.peer, blob_id))
        if entry is None:
            raise RequestRejected("not-found", f"no blob {blob_id!r} for you")
        async with entry.lock:
            if entry.path is None:
                assert entry.make is not None
                entry.path = await entry.make()
        path = entry.path
        chunk = await trio.to_thread.run_sync(_read_chunk, path, offset, length)
        if entry.on_gone is not None:
            await self._count_read(request.peer, blob_id, entry, offset, chunk)
        return chunk

    async def _count_read(self, peer: str, blob_id: str, entry: _Entry, offset: int, chunk: dict[str, object]) -> None:
        """A staged file read to the last byte (as often as offered) is gone."""
        data, size = chunk["data"], chunk["size"]
        assert isinstance(data, bytes) and isinstance(size, int)
        if offset % CHUNK or (offset >= size and offset > 0):
            return  # only whole chunks count (our fetcher's reads): at most size/CHUNK + 1 kept
        entry.served[offset] = len(data)
        if sum(entry.served.values()) < size or self._entries.get((peer, blob_id)) is not entry:
            return
        entry.served.clear()
        entry.reads_left -= 1
        if entry.reads_left > 0:
            return
        del self._entries[(peer, blob_id)]
        assert entry.path is not None and entry.on_gone is not None
        await entry.on_gone(entry.path)


def _read_chunk(path: Path, offset: int, length: int) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            data = f.read(length) if offset < size else b""
    except FileNotFoundError:
        raise RequestRejected("not-found", "blob is gone") from None
    return {"size": size, "data": data}


async def fetch_blob(
    rr,  # type: ignore[no-untyped-def]
    peer: str,
    blob_id: str,
    dest: Path,
    *,
    max_size: int,
    expected_size: int | None = None,
    window: int = 4,
) -> tuple[str, int]:
    """Download a blob into ``dest``; returns ``(sha256 hex, size)``.

    Raises :class:`TransferRefused` (``too-large`` before any download when the
    announced size is over ``max_size`` or differs from ``expected_size``;
    ``not-found`` when the peer does not serve it). Network failures are the
    net layer's :class:`~yagna.net.errors.RequestError`. ``dest`` is removed on
    any failure.
    """
    try:
        return await _fetch(rr, peer, blob_id, dest, max_size=max_size, expected_size=expected_size, window=window)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: dest.unlink(missing_ok=True))
        raise


async def _fetch(rr, peer: str, blob_id: str, dest: Path, *, max_size: int, expected_size: int | None,  # type: ignore[no-untyped-def]
                 window: int) -> tuple[str, int]:
    first = await _chunk(rr, peer, blob_id, 0)
    size = first["size"]
    if size > max_size:
        raise TransferRefused("too-large", f"{blob_id} is {size} bytes, over the limit of {max_size}")
    if expected_size is not None and size != expected_size:
        raise TransferRefused("too-large" if size > expected_size else "hash-mismatch",
                              f"{blob_id} is {size} bytes, {expected_size} were announced")
    digest = hashlib.sha256()
    offsets = list(range(len(first["data"]), size, CHUNK))
    async with await trio.open_file(dest, "wb") as out:
        data: bytes = first["data"]
        digest.update(data)
        await out.write(data)
        written = len(data)
        for start in range(0, len(offsets), window):
            group = offsets[start:start + window]
            results: dict[int, bytes] = {}

            async def one(offset: int) -> None:
                results[offset] = (await _chunk(rr, peer, blob_id, offset))["data"]

            async with trio.open_nursery() as nursery:
                for offset in group:
                    nursery.start_soon(one, offset)
            for offset in group:
                data = results[offset]
                if offset != written or not data:
                    raise TransferRefused("hash-mismatch", f"{blob_id} changed size while it was fetched")
                digest.update(data)
                await out.write(data)
                written += len(data)
                if written > size:
                    raise TransferRefused("too-large", f"{blob_id} grew past its announced {size} bytes")
    if written != size:
        raise TransferRefused("hash-mismatch", f"{blob_id}: got {written} of {size} bytes")
    return digest.hexdigest(), size


async def _chunk(rr, peer: str, blob_id: str, offset: int) -> dict:  # type: ignore[no-untyped-def,type-arg]
    try:
        reply = await rr.request(peer, BLOB, {"blob_id": blob_id, "offset": offset, "length": CHUNK})
    except RemoteError as exc:
        if exc.code == "not-found":
            raise TransferRefused("not-found", f"{peer} does not serve {blob_id}") from exc
        raise
    if not isinstance(reply, dict) or not isinstance(reply.get("size"), int) or not isinstance(reply.get("data"), bytes):
        raise TransferRefused("hash-mismatch", f"malformed chunk of {blob_id} from {peer}")
    return reply
