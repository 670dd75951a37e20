"""The requestor's side of pipeline caches: which provider holds which cache, and a local copy of each.

A pipeline's cache (``cache: {key, paths}``) is saved by the provider that ran the job, under the
requestor's node id and ``<repository id>/<key>`` (see ``yagna/activity_service/job_caches.py``).
This module remembers, per requestor data dir and repository, who holds each key, so that the next
job with the same key prefers that provider in the auction (``StrategyConfig.prefer``: it may cost
a little more), and keeps a copy of each cache on the requestor's disk, so that a job that lands on
another provider uploads the cache itself instead of starting cold.

Layout: ``<root>/<repository id>/index.json`` and ``<root>/<repository id>/<sha256 of key>.tar``.
The local copies are bounded (``max_bytes`` for all repositories together, least recently used
first out). The index is rewritten whole (a temporary file, then a rename), so a crash leaves the
old or the new one; two ``yagna pipeline run`` processes at once may lose one's index entry (the
cache is then only missed once), never corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 2 << 30
MAX_INDEX_BYTES = 4 << 20


def repository_id(root: Path) -> str:
    """The repository's name for caches: its git ``origin`` URL when it has one (the same repository
    cloned twice shares caches), else the tree's absolute path; hashed (16 hex digits)."""
    name = str(root.resolve())
    try:
        out = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"], capture_output=True,
                             text=True, timeout=10, check=False)
        if out.returncode == 0 and out.stdout.strip():
            name = "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass
class LocalCache:
    key: str
    """``<repository id>/<key value>``: what the provider stores it under."""
    provider_id: str | None
    """Who saved it last (the provider a job with this key prefers)."""
    sha256: str | None = None
    """The local copy's digest (None: no local copy)."""
    size: int = 0
    used_at: float = 0.0


class LocalCaches:
    """The caches of one repository as this requestor knows them (see the module docstring)."""

    def __init__(self, root: Path, repo: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.repo = repo
        self.dir = root / repo
        self.max_bytes = max_bytes

    def full_key(self, value: str) -> str:
        return f"{self.repo}/{value}"

    def file_of(self, full_key: str) -> Path:
        return self.dir / (hashlib.sha256(full_key.encode()).hexdigest() + ".tar")

    # -- the index ------------------------------------------------------------------------------
    def _read(self, folder: Path) -> dict[str, LocalCache]:
        try:
            with open(folder / "index.json", "rb") as f:
                data = json.loads(f.read(MAX_INDEX_BYTES + 1)[:MAX_INDEX_BYTES])
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: caches are only an optimisation
        out: dict[str, LocalCache] = {}
        if isinstance(data, dict):
            for key, row in data.items():
                try:
                    out[key] = LocalCache(**row)
                except TypeError:
                    continue
        return out

    def _write(self, folder: Path, index: dict[str, LocalCache]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".index-{os.getpid()}.json"
        tmp.write_text(json.dumps({k: asdict(v) for k, v in index.items()}, indent=1))
        os.replace(tmp, folder / "index.json")

    def get(self, full_key: str) -> LocalCache | None:
        entry = self._read(self.dir).get(full_key)
        if entry is not None and entry.sha256 is not None and not self.file_of(full_key).is_file():
            entry.sha256, entry.size = None, 0  # the copy went (evicted, removed by hand)
        return entry

    def holders(self, full_keys: list[str]) -> list[str]:
        """Providers holding any of these keys, most keys first."""
        index = self._read(self.dir)
        counts: dict[str, int] = {}
        for k in full_keys:
            entry = index.get(k)
            if entry is not None and entry.provider_id:
                counts[entry.provider_id] = counts.get(entry.provider_id, 0) + 1
        return sorted(counts, key=lambda p: -counts[p])

    def remember(self, full_key: str, provider_id: str | None, *, copy: Path | None = None,
                 sha256: str | None = None) -> None:
        """``provider_id`` holds the cache now (None: keep who held it); ``copy`` becomes the local copy (moved)."""
        index = self._read(self.dir)
        entry = index.get(full_key) or LocalCache(full_key, provider_id)
        if provider_id is not None:
            entry.provider_id = provider_id
        entry.used_at = time.time()
        if copy is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            size = copy.stat().st_size
            if size <= self.max_bytes:
                os.replace(copy, self.file_of(full_key))
                entry.sha256, entry.size = sha256, size
            else:
                copy.unlink(missing_ok=True)
        index[full_key] = entry
        self._write(self.dir, index)
        self._evict()

    def _evict(self) -> None:
        """Local copies past ``max_bytes`` (all repositories) go, least recently used first."""
        rows: list[tuple[float, Path, str, int]] = []
        for folder in (p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else ():
            for key, entry in self._read(folder).items():
                if entry.sha256 is not None:
                    rows.append((entry.used_at, folder, key, entry.size))
        total = sum(r[3] for r in rows)
        for _, folder, key, size in sorted(rows):
            if total <= self.max_bytes:
                break
            index = self._read(folder)
            row = index.get(key)
            if row is not None:
                (folder / (hashlib.sha256(key.encode()).hexdigest() + ".tar")).unlink(missing_ok=True)
                row.sha256, row.size = None, 0
                self._write(folder, index)
            total -= size

    def view(self) -> dict[str, Any]:
        index = self._read(self.dir)
        return {"repository": self.repo, "caches": len(index),
                "local_bytes": sum(e.size for e in index.values() if e.sha256)}
