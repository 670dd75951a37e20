"""Files into and out of a container's ``/work`` through the archive API (``docker cp``).

``put_file`` streams a one-file tar (parent directories included, all owned
1000:1000 so commands can change them) into ``/work``; docker cp's semantics
apply: whatever is at the path or on its way (a file, a symlink, a directory
tree) is *replaced*, never followed, so a symlink planted by a command cannot
redirect a transfer out of ``/work``. A full ``/work`` ->
``TransferRefused("too-large")``. Files written this way are charged to the
engine's memory cgroup, not the container's.

``upload`` streams a file into ``/work`` while its bytes arrive (a transfer
from a peer) and commits it only when the caller says so: the last byte of the
data and the end of the archive are held back until :meth:`Upload.commit`;
an abort (a wrong sha256, a broken stream, a cancellation) cuts the upload
short, the engine refuses the truncated archive and what was at the path stays
as it was (measured on Docker 27 with the tmpfs ``/work``; the test
``test_an_aborted_upload_changes_nothing`` pins it).

Archive bodies are iterables of 1 MiB pieces with a length: the HTTP client
sends each with one ``sendall`` (a file-like body is read 16 KiB at a time,
which cost 20% of a provider's CPU in a 64 MiB transfer).

``get_file`` refuses anything but a regular file (``bad-path``; symlinks
included), a file over ``max_bytes`` before a byte is copied (``too-large``,
and again while copying should it grow), a missing one (``not-found``); it
writes a temporary file renamed into place. Paths must normalize to below
``/work``.
"""

from __future__ import annotations

import os
import posixpath
import queue
import tarfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import trio

import docker.errors

from exeunit.docker.engine import GID, UID, WORK_DIR, Engine
from exeunit.errors import TransferRefused

PIECE = 1024 * 1024
"""Bytes per piece of an archive body."""
UPLOAD_QUEUE = 4
"""Writes waiting for the engine in an upload (a write is at most 4 MiB from the blob fetcher): 16 MiB."""
UPLOAD_STALL_S = 30.0
"""An upload whose engine takes nothing (or whose writer sends nothing) for this long is aborted."""

GO_MODE_TYPE = 0x8F280000
"""Go's os.FileMode type bits (dir, symlink, device, pipe, socket, char device, irregular)."""


def work_path(path: str) -> str:
    """The normalized container path of ``path``; ``bad-path`` unless it is below ``/work``."""
    if not isinstance(path, str) or "\x00" in path or not path.startswith("/"):
        raise TransferRefused("bad-path", f"not an absolute container path: {path!r}")
    norm = posixpath.normpath(path)
    if not norm.startswith(WORK_DIR + "/") or ".." in norm.split("/"):
        raise TransferRefused("bad-path", f"outside {WORK_DIR}: {path!r}")
    return norm


class Files:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def put(self, container_id: str, path: str, data_path: str, *, mode: int = 0o644) -> None:
        dest = work_path(path)
        await self._engine.blocking("container", self._put_blocking, container_id, dest, data_path, mode)

    def _put_blocking(self, container_id: str, dest: str, data_path: str, mode: int) -> None:
        # One uncompressed tar streamed from a spooled file: the parent directories
        # (owned by the work's uid, like what a command would create) then the file.
        rel = dest[len(WORK_DIR) + 1 :]
        parts = rel.split("/")
        size = os.path.getsize(data_path)
        spool = TarStream(data_path, parts, size, mode & 0o7777)
        try:
            self._put_body(container_id, dest, spool, size)
        finally:
            spool.close()

    @asynccontextmanager
    async def upload(self, container_id: str, path: str, size: int, *, mode: int = 0o644) -> AsyncIterator[Upload]:
        """Stream ``size`` bytes into ``path`` as they come (:meth:`Upload.write` from worker threads).

        Leaving the block normally commits the file; leaving it with an exception
        aborts the upload (nothing changes in the container) and re-raises.
        """
        dest = work_path(path)
        rel = dest[len(WORK_DIR) + 1 :]
        upload = Upload(_archive_head(rel.split("/"), size, mode & 0o7777), size)
        failure: list[BaseException] = []

        async def put() -> None:
            try:
                await self._engine.blocking("container", self._put_body, container_id, dest, upload, size)
            except Exception as exc:  # noqa: BLE001 - reported below
                failure.append(exc)
                upload.abort()  # a writer blocked on a full queue gives up at once

        mine: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(put)
            try:
                yield upload
            except BaseException as exc:
                mine = exc
                upload.abort()
            else:
                try:
                    await trio.to_thread.run_sync(upload.commit)
                except _Aborted:
                    pass  # the engine failed: reported below
        engine = failure[0] if failure and not isinstance(failure[0], _Aborted) else None
        if mine is not None and not (isinstance(mine, _Aborted) and engine is not None):
            raise mine
        if engine is not None:
            raise engine
        if failure or mine is not None:
            raise TransferRefused("bad-path", f"{dest}: the upload was cut short")

    def _put_body(self, container_id: str, dest: str, body: Any, size: int) -> None:
        try:
            self._engine.api().put_archive(container_id, WORK_DIR, body)
        except docker.errors.APIError as e:
            if "no space left" in str(e.explanation or e).lower():
                raise TransferRefused("too-large", f"{dest}: {WORK_DIR} is full ({size} bytes sent)") from e
            raise

    async def get(self, container_id: str, path: str, dest_path: str, *, max_bytes: int, digest: Any = None) -> int:
        """Copy a regular file out; ``digest`` (a hashlib object) is updated with its bytes as they go."""
        src = work_path(path)
        return await self._engine.blocking("container", self._get_blocking, container_id, src, dest_path, max_bytes,
                                           digest)

    def _get_blocking(self, container_id: str, src: str, dest_path: str, max_bytes: int, digest: Any = None) -> int:
        api = self._engine.api()
        try:
            stat = api.get_archive(container_id, src, chunk_size=PIECE)
        except docker.errors.NotFound as e:
            # Both "no such container" and "no such file" are 404: tell them apart.
            try:
                api.inspect_container(container_id)
            except docker.errors.NotFound:
                raise e from None
            raise TransferRefused("not-found", f"no such file: {src}") from e
        stream, info = stat
        reader = _Chunks(stream)
        if (info.get("mode", 0) & GO_MODE_TYPE) != 0 or info.get("linkTarget"):
            reader.close()
            raise TransferRefused("bad-path", f"not a regular file: {src}")
        if info.get("size", 0) > max_bytes:
            reader.close()
            raise TransferRefused("too-large", f"{src} is {info['size']} bytes, over the limit of {max_bytes}")
        written = 0
        tmp = f"{dest_path}.part-{uuid.uuid4().hex[:8]}"
        try:
            size = _first_member(reader, src)
            if size > max_bytes:
                raise TransferRefused("too-large", f"{src} is {size} bytes, over {max_bytes}")
            with open(tmp, "wb") as out:
                for piece in reader.take(size):
                    if digest is not None:
                        digest.update(piece)  # releases the GIL on large pieces, as the write does
                    out.write(piece)
                    written += len(piece)
            if written != size:
                raise TransferRefused("bad-path", f"{src}: the archive ended after {written} of {size} bytes")
            os.replace(tmp, dest_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            reader.close()
        return written


def _archive_head(parts: list[str], size: int, mode: int) -> list[bytes]:
    """Tar headers of the parent directories (owned by the work's uid, like what a command would create)
    and of the file."""
    head: list[bytes] = []
    for i in range(1, len(parts)):
        d = tarfile.TarInfo("/".join(parts[:i]))
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        d.uid, d.gid = UID, GID
        d.mtime = int(time.time())
        head.append(d.tobuf(format=tarfile.PAX_FORMAT))
    info = tarfile.TarInfo("/".join(parts))
    info.size = size
    info.mode = mode
    info.uid, info.gid = UID, GID
    info.mtime = int(time.time())
    head.append(info.tobuf(format=tarfile.PAX_FORMAT))
    return head


def _archive_tail(size: int) -> bytes:
    """Padding of the file's last block and the two zero blocks that end an archive."""
    return b"\0" * ((-size) % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)


class TarStream:
    """A tar of one file (plus its parent directories) produced while sent: no copy in memory or on disk.

    An iterable of pieces with a length (so the HTTP client sends a Content-Length
    and one ``sendall`` per piece).
    """

    def __init__(self, data_path: str, parts: list[str], size: int, mode: int) -> None:
        self._head = _archive_head(parts, size, mode)
        self._path = data_path
        self._size = size
        self._total = sum(map(len, self._head)) + size + len(_archive_tail(size))
        self._file: Any = None

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        self._file = open(self._path, "rb")  # noqa: SIM115 - closed below or by close()
        left = self._size
        while left > 0:
            data = self._file.read(min(PIECE, left))
            if not data:
                raise TransferRefused("bad-path", "the source file shrank while being sent")
            left -= len(data)
            yield data
        self._file.close()
        self._file = None
        yield _archive_tail(self._size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Aborted(Exception):
    """The upload's writer gave up; the archive is cut short so the engine refuses it."""


_COMMIT = object()


class Upload:
    """The body of an archive upload fed by :meth:`write` while the engine reads it (two threads).

    The last byte of the data waits for :meth:`commit`, so an abort always leaves
    the archive incomplete. Memory: at most :data:`UPLOAD_QUEUE` writes queued.
    """

    def __init__(self, head: list[bytes], size: int) -> None:
        self._head = head
        self._size = size
        self._queue: queue.Queue[object] = queue.Queue(maxsize=UPLOAD_QUEUE)
        self._aborted = threading.Event()
        self._written = 0
        self._held = b""
        self._total = sum(map(len, head)) + size + len(_archive_tail(size))

    def __len__(self) -> int:
        return self._total

    def write(self, pieces: list[bytes]) -> None:
        """Queue the next bytes (blocking: call it on a worker thread); more than ``size`` in all is refused."""
        n = sum(map(len, pieces))
        if self._written + n > self._size:
            self.abort()
            raise TransferRefused("too-large", f"more than the announced {self._size} bytes")
        self._written += n
        if self._written == self._size and n:  # hold the last byte back until commit
            last = pieces[-1]
            pieces = [*pieces[:-1], last[:-1]] if len(last) > 1 else pieces[:-1]
            self._held = last[-1:]
        self._put(pieces)

    def commit(self) -> None:
        if self._written != self._size:
            self.abort()
            return
        self._put(_COMMIT)

    def abort(self) -> None:
        self._aborted.set()

    def _put(self, item: object) -> None:
        deadline = time.monotonic() + UPLOAD_STALL_S
        while True:
            if self._aborted.is_set():
                raise _Aborted()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if time.monotonic() > deadline:
                    self.abort()
                    raise _Aborted() from None

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        deadline = time.monotonic() + UPLOAD_STALL_S
        while True:
            if self._aborted.is_set():
                raise _Aborted()
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline:
                    self.abort()
                    raise _Aborted() from None
                continue
            deadline = time.monotonic() + UPLOAD_STALL_S
            if item is _COMMIT:
                yield self._held + _archive_tail(self._size)
                return
            assert isinstance(item, list)
            yield from item


class _Chunks:
    """docker-py's chunk iterator read by exact counts, without re-slicing its 1 MiB chunks.

    (Read through ``tarfile``'s stream mode, 10 KiB at a time off a sliced
    buffer, the copy-out cost more CPU than the engine's own tar.)
    """

    def __init__(self, chunks: Any) -> None:
        self._iter = iter(chunks)
        self._raw = chunks
        self._buf = b""
        self._pos = 0

    def _more(self) -> bool:
        for chunk in self._iter:
            if chunk:
                self._buf, self._pos = chunk, 0
                return True
        return False

    def read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            if self._pos >= len(self._buf) and not self._more():
                break
            piece = self._buf[self._pos:self._pos + n]
            self._pos += len(piece)
            n -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def take(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes (fewer if the stream ends), as large pieces."""
        while n > 0:
            if self._pos >= len(self._buf) and not self._more():
                return
            if self._pos == 0 and len(self._buf) <= n:
                piece = self._buf  # a whole chunk: no copy
            else:
                piece = self._buf[self._pos:self._pos + n]
            self._pos += len(piece)
            n -= len(piece)
            yield piece

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


def _first_member(reader: _Chunks, src: str) -> int:
    """Read the archive up to the data of its first member, which must be a regular file; returns its size.

    Handles the extended headers the engine writes (PAX ``x``/``g``, GNU long names).
    """
    pax_size: int | None = None
    for _ in range(16):  # a member has a few extended headers at most
        block = reader.read_exact(tarfile.BLOCKSIZE)
        if len(block) < tarfile.BLOCKSIZE or block == bytes(tarfile.BLOCKSIZE):
            raise TransferRefused("bad-path", f"not a regular file: {src}")
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.TarError:
            raise TransferRefused("bad-path", f"{src}: the engine sent a malformed archive") from None
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if info.size > 1024 * 1024:
                raise TransferRefused("bad-path", f"{src}: extended header of {info.size} bytes")
            data = reader.read_exact(info.size + (-info.size) % tarfile.BLOCKSIZE)[:info.size]
            if info.type == tarfile.XHDTYPE:
                for record in _pax_records(data):
                    if record[0] == "size":
                        pax_size = int(record[1])
            continue
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise TransferRefused("bad-path", f"not a regular file: {src}")
        return pax_size if pax_size is not None else info.size
    raise TransferRefused("bad-path", f"{src}: too many extended headers")


def _pax_records(data: bytes) -> Iterator[tuple[str, str]]:
    """``"<len> key=value\\n"`` records of a PAX extended header."""
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            return
        try:
            length = int(data[pos:space])
        except ValueError:
            return
        if length <= 0:
            return
        record = data[space + 1:pos + length - 1].decode("utf-8", "surrogateescape")
        key, _, value = record.partition("=")
        yield key, value
        pos += length
