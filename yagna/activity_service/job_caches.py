"""Pipeline caches a provider keeps for its requestors (``cache_save`` / ``cache_restore``).

A cache is one tar file the requestor's pipeline packed in the container (a dependency folder, a
build tree) under a key it chose (repository and key, e.g. ``deps-<hash of the lock file>``). It is
stored as ``<root>/<requestor id>/<sha256 of the key>.tar``: keyed by the requestor who saved it,
so a requestor can read back only its own caches (no poisoning across requestors), and named by a
digest, so a key never becomes a path.

What a requestor can cost this provider at most: ``per_requestor_bytes`` of disk in at most
``MAX_ENTRIES_PER_REQUESTOR`` files; all requestors together ``total_bytes``. Past a bound the
least recently used caches go first (a restore counts as a use: the file's mtime), the requestor's
own before anyone else's. Caches survive restarts of the provider (they are its data, not an
activity's): :meth:`JobCaches.open` reads what is on disk and removes half-written files.

The index lives in memory; saves (and the evictions they cause) take one lock, so a file being
evicted is never a cache just saved under the same name; file work runs on worker threads. A
cache evicted while a restore reads it is still read whole (an open file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import trio

log = logging.getLogger("yagna.activity.caches")

MAX_ENTRIES_PER_REQUESTOR = 256
MAX_KEY_BYTES = 512
DEFAULT_PER_REQUESTOR_BYTES = 1 << 30
DEFAULT_TOTAL_BYTES = 4 << 30
_SUFFIX = ".tar"
_PARTIAL = ".part"


@dataclass
class CacheEntry:
    requestor_id: str
    name: str
    """sha256 hex of the key."""
    size: int
    used_at: float
    """Wall-clock time of the save or the last restore."""


def cache_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _safe_requestor(requestor_id: str) -> str:
    """A node id as a folder name (node ids are base58; anything else is hashed)."""
    if requestor_id and len(requestor_id) <= 128 and requestor_id.isalnum():
        return requestor_id
    return "h-" + hashlib.sha256(requestor_id.encode()).hexdigest()


class JobCaches:
    def __init__(self, root: Path, *, per_requestor_bytes: int = DEFAULT_PER_REQUESTOR_BYTES,
                 total_bytes: int = DEFAULT_TOTAL_BYTES) -> None:
        if per_requestor_bytes < 0 or total_bytes < 0:
            raise ValueError("cache bounds are sizes >= 0")
        self.root = root
        self.per_requestor_bytes = min(per_requestor_bytes, total_bytes)
        self.total_bytes = total_bytes
        self._entries: dict[tuple[str, str], CacheEntry] = {}
        self.used_bytes = 0
        self.evicted = 0
        self._doomed: list[Path] = []
        self._lock = trio.Lock()

    # -- start-up -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Read the caches on disk (a previous run's); half-written files are removed."""
        async with self._lock:
            found = await trio.to_thread.run_sync(self._scan)
            for entry in sorted(found, key=lambda e: e.used_at):
                self._add(entry)
            self._evict_over_bounds(None)  # the bounds may have shrunk since
            await self._remove_evicted()
        if found:
            log.info("pipeline caches: %d kept (%d bytes) in %s", len(self._entries), self.used_bytes, self.root)

    def _scan(self) -> list[CacheEntry]:
        self.root.mkdir(parents=True, exist_ok=True)
        out: list[CacheEntry] = []
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.is_symlink():
                continue
            for f in folder.iterdir():
                if f.name.endswith(_PARTIAL):
                    f.unlink(missing_ok=True)
                    continue
                if not f.name.endswith(_SUFFIX) or not f.is_file():
                    continue
                st = f.stat()
                out.append(CacheEntry(folder.name, f.name[:-len(_SUFFIX)], st.st_size, st.st_mtime))
        return out

    # -- lookups --------------------------------------------------------------------------------
    def path_of(self, requestor_id: str, key: str) -> Path:
        return self.root / _safe_requestor(requestor_id) / (cache_name(key) + _SUFFIX)

    def lookup(self, requestor_id: str, key: str) -> CacheEntry | None:
        return self._entries.get((_safe_requestor(requestor_id), cache_name(key)))

    def entries_of(self, requestor_id: str) -> list[CacheEntry]:
        folder = _safe_requestor(requestor_id)
        return sorted((e for (r, _), e in self._entries.items() if r == folder), key=lambda e: e.used_at)

    async def touch(self, entry: CacheEntry) -> None:
        """A restore used it: it is the requestor's most recent (evicted last)."""
        entry.used_at = time.time()
        self._entries.pop((entry.requestor_id, entry.name), None)
        self._entries[(entry.requestor_id, entry.name)] = entry  # most recent last
        path = self.root / entry.requestor_id / (entry.name + _SUFFIX)
        try:
            await trio.to_thread.run_sync(os.utime, path)
        except OSError:
            pass

    # -- saving ---------------------------------------------------------------------------------
    def partial_path(self, requestor_id: str) -> Path:
        """Where a cache being saved is written first (removed by :meth:`discard` or moved by :meth:`commit`)."""
        folder = self.root / _safe_requestor(requestor_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (secrets.token_hex(8) + _PARTIAL)

    async def commit(self, requestor_id: str, key: str, partial: Path, size: int) -> CacheEntry:
        """The cache written at ``partial`` (``size`` bytes) becomes ``key``'s; older caches go past the bounds.

        ``ValueError`` (and the file removed) when it is over the requestor's bound.
        """
        if size > self.per_requestor_bytes:
            await self.discard(partial)
            raise ValueError(f"a cache of {size} bytes is over this provider's bound of {self.per_requestor_bytes} "
                             "bytes per requestor")
        folder, name = _safe_requestor(requestor_id), cache_name(key)
        final = self.root / folder / (name + _SUFFIX)
        async with self._lock:
            await trio.to_thread.run_sync(os.replace, partial, final)
            old = self._entries.pop((folder, name), None)
            if old is not None:
                self.used_bytes -= old.size
            entry = CacheEntry(folder, name, size, time.time())
            self._add(entry)
            self._evict_over_bounds(entry)
            await self._remove_evicted()
        log.info("pipeline cache saved for %s: %d bytes (%d kept in all, %d bytes)", requestor_id[:16], size,
                 len(self._entries), self.used_bytes)
        return entry

    async def discard(self, partial: Path) -> None:
        await trio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))

    # -- bounds ---------------------------------------------------------------------------------
    def _add(self, entry: CacheEntry) -> None:
        self._entries[(entry.requestor_id, entry.name)] = entry
        self.used_bytes += entry.size

    def _evict_over_bounds(self, keep: CacheEntry | None) -> None:
        """Choose what goes (no checkpoint: the index is never seen half-changed); files go in ``_remove_evicted``."""
        for folder in {r for r, _ in self._entries}:
            mine = sorted((e for (r, _), e in self._entries.items() if r == folder), key=lambda e: e.used_at)
            size, count = sum(e.size for e in mine), len(mine)
            for e in mine:  # oldest first
                if size <= self.per_requestor_bytes and count <= MAX_ENTRIES_PER_REQUESTOR:
                    break
                if e is keep:
                    continue
                size, count = size - e.size, count - 1
                self._drop(e)
        if self.used_bytes > self.total_bytes:
            for e in sorted(self._entries.values(), key=lambda e: e.used_at):
                if self.used_bytes <= self.total_bytes:
                    break
                if e is not keep:
                    self._drop(e)

    def _drop(self, entry: CacheEntry) -> None:
        if self._entries.pop((entry.requestor_id, entry.name), None) is not None:
            self.used_bytes -= entry.size
            self.evicted += 1
            self._doomed.append(self.root / entry.requestor_id / (entry.name + _SUFFIX))

    async def _remove_evicted(self) -> None:
        doomed, self._doomed = self._doomed, []
        def unlink_all() -> None:
            for path in doomed:
                path.unlink(missing_ok=True)

        if doomed:
            await trio.to_thread.run_sync(unlink_all)

    def view(self) -> dict[str, object]:
        return {"caches": len(self._entries), "bytes": self.used_bytes, "total_bytes": self.total_bytes,
                "per_requestor_bytes": self.per_requestor_bytes, "evicted": self.evicted}
