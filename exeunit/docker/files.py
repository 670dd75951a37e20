"""Files into and out of a container's ``/work`` through the archive API (``docker cp``).

``put_file`` streams a one-file tar (parent directories included, all owned
1000:1000 so commands can change them) into ``/work``; docker cp's semantics
apply: whatever is at the path or on its way (a file, a symlink, a directory
tree) is *replaced*, never followed, so a symlink planted by a command cannot
redirect a transfer out of ``/work``. A full ``/work`` ->
``TransferRefused("too-large")``. Files written this way are charged to the
engine's memory cgroup, not the container's.

``get_file`` refuses anything but a regular file (``bad-path``; symlinks
included), a file over ``max_bytes`` before a byte is copied (``too-large``,
and again while copying should it grow), a missing one (``not-found``); it
writes a temporary file renamed into place. Paths must normalize to below
``/work``.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
import time
import uuid
from typing import Any

import docker.errors

from exeunit.docker.engine import GID, UID, WORK_DIR, Engine
from exeunit.errors import TransferRefused

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
            self._engine.api().put_archive(container_id, WORK_DIR, spool)
        except docker.errors.APIError as e:
            if "no space left" in str(e.explanation or e).lower():
                raise TransferRefused("too-large", f"{dest}: {WORK_DIR} is full ({size} bytes sent)") from e
            raise
        finally:
            spool.close()

    async def get(self, container_id: str, path: str, dest_path: str, *, max_bytes: int) -> int:
        src = work_path(path)
        return await self._engine.blocking("container", self._get_blocking, container_id, src, dest_path, max_bytes)

    def _get_blocking(self, container_id: str, src: str, dest_path: str, max_bytes: int) -> int:
        api = self._engine.api()
        try:
            stat = api.get_archive(container_id, src, chunk_size=1024 * 1024)
        except docker.errors.NotFound as e:
            # Both "no such container" and "no such file" are 404: tell them apart.
            try:
                api.inspect_container(container_id)
            except docker.errors.NotFound:
                raise e from None
            raise TransferRefused("not-found", f"no such file: {src}") from e
        stream, info = stat
        reader = IterReader(stream)
        if (info.get("mode", 0) & GO_MODE_TYPE) != 0 or info.get("linkTarget"):
            reader.close()
            raise TransferRefused("bad-path", f"not a regular file: {src}")
        if info.get("size", 0) > max_bytes:
            reader.close()
            raise TransferRefused("too-large", f"{src} is {info['size']} bytes, over the limit of {max_bytes}")
        written = 0
        tmp = f"{dest_path}.part-{uuid.uuid4().hex[:8]}"
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tf:
                member = tf.next()
                if member is None or not member.isfile():
                    raise TransferRefused("bad-path", f"not a regular file: {src}")
                if member.size > max_bytes:
                    raise TransferRefused("too-large", f"{src} is {member.size} bytes, over {max_bytes}")
                f = tf.extractfile(member)
                assert f is not None
                with open(tmp, "wb") as out:
                    while chunk := f.read(1024 * 1024):
                        written += len(chunk)
                        out.write(chunk)
            os.replace(tmp, dest_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            reader.close()
        return written


class TarStream(io.RawIOBase):
    """A tar of one file (plus its parent directories) produced while read: no copy in memory or on disk."""

    def __init__(self, data_path: str, parts: list[str], size: int, mode: int) -> None:
        self._pieces: list[bytes | str] = []
        for i in range(1, len(parts)):
            d = tarfile.TarInfo("/".join(parts[:i]))
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            d.uid, d.gid = UID, GID
            d.mtime = int(time.time())
            self._pieces.append(d.tobuf(format=tarfile.PAX_FORMAT))
        info = tarfile.TarInfo("/".join(parts))
        info.size = size
        info.mode = mode
        info.uid, info.gid = UID, GID
        info.mtime = int(time.time())
        self._pieces.append(info.tobuf(format=tarfile.PAX_FORMAT))
        self._pieces.append(data_path)
        pad = (-size) % tarfile.BLOCKSIZE
        self._pieces.append(b"\0" * pad + b"\0" * (2 * tarfile.BLOCKSIZE))
        self._size = size
        self._total = size + sum(len(p) for p in self._pieces if isinstance(p, bytes))
        self._file: io.BufferedReader | None = None
        self._left = 0
        self._buf = b""

    def __len__(self) -> int:
        return self._total  # requests sends a Content-Length instead of chunks

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b)
        while True:
            if self._buf:
                n = min(len(view), len(self._buf))
                view[:n] = self._buf[:n]
                self._buf = self._buf[n:]
                return n
            if self._file is not None:
                if self._left > 0:
                    data = self._file.read(min(len(view), self._left, 1024 * 1024))
                    if not data:
                        raise TransferRefused("bad-path", "the source file shrank while being sent")
                    self._left -= len(data)
                    view[: len(data)] = data
                    return len(data)
                self._file.close()
                self._file = None
                continue
            if not self._pieces:
                return 0
            piece = self._pieces.pop(0)
            if isinstance(piece, str):
                self._file = open(piece, "rb")
                self._left = self._size
            else:
                self._buf = piece

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class IterReader(io.RawIOBase):
    """A file-like view of docker-py's chunk iterator (for tarfile's stream mode)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._raw = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()
        super().close()
