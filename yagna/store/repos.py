"""Typed repositories over :class:`~yagna.store.db.Store` used by the daemon.

Each repository owns its SQL; callers see dataclasses and ``str``/``int``.
Time comes from an injectable ``clock`` (unix seconds) so tests need no sleeps.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import trio

from yagna.store.db import Store
from yagna.store.errors import AppKeyExists, StoreError

Clock = Callable[[], float]

TOKEN_PREFIX: Final = "yk_"
LAST_USED_RESOLUTION_S: Final = 60
MAX_NAME_LEN: Final = 64


def _now(clock: Clock) -> int:
    return int(clock())


# ---------------------------------------------------------------------- app keys


@dataclass(frozen=True, slots=True)
class AppKeyInfo:
    id: str
    name: str
    created_at: int
    last_used_at: int | None


def hash_token(token: str) -> bytes:
    """The only form of a token the database ever holds."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LEN or name != name.strip():
        raise ValueError(
            f"invalid app key name {name!r}: use 1 to {MAX_NAME_LEN} characters without surrounding spaces"
        )
    return name


def _app_key(row: sqlite3.Row) -> AppKeyInfo:
    return AppKeyInfo(row["id"], row["name"], row["created_at"], row["last_used_at"])


class AppKeys:
    """Bearer keys of the local REST API. Tokens are shown once, stored hashed."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def create(self, name: str) -> tuple[AppKeyInfo, str]:
        """Create a key; return its info and the token (the only time it is seen).

        Raises :class:`AppKeyExists` if ``name`` is taken.
        """
        _check_name(name)
        token = new_token()
        info = AppKeyInfo(uuid.uuid4().hex, name, _now(self._clock), None)

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM app_keys WHERE name = ?", (name,)).fetchone():
                raise AppKeyExists(f"an app key named {name!r} already exists. Drop it first, or choose another name.")
            _insert_key(conn, info, token)

        await self._store.transaction(insert)
        return info, token

    async def list(self) -> builtins.list[AppKeyInfo]:
        rows = await self._store.fetchall(
            "SELECT id, name, created_at, last_used_at FROM app_keys ORDER BY created_at, name"
        )
        return [_app_key(r) for r in rows]

    async def get(self, name: str) -> AppKeyInfo | None:
        row = await self._store.fetchone(
            "SELECT id, name, created_at, last_used_at FROM app_keys WHERE name = ?", (name,)
        )
        return _app_key(row) if row else None

    async def drop(self, name: str) -> bool:
        """Delete the key named ``name``; False if there was none."""
        return await self._store.execute("DELETE FROM app_keys WHERE name = ?", (name,)) > 0

    async def check(self, token: str) -> AppKeyInfo | None:
        """Return the key this token belongs to, or None.

        The lookup is by sha256(token), so timing reveals nothing usable about
        the token. ``last_used_at`` is written at most once a minute per key so
        authenticated reads do not turn into a write each.
        """
        if not token.startswith(TOKEN_PREFIX):
            return None
        row = await self._store.fetchone(
            "SELECT id, name, created_at, last_used_at FROM app_keys WHERE key_hash = ?", (hash_token(token),)
        )
        if row is None:
            return None
        info = _app_key(row)
        now = _now(self._clock)
        if info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION_S:
            await self._store.execute("UPDATE app_keys SET last_used_at = ? WHERE id = ?", (now, info.id))
            info = AppKeyInfo(info.id, info.name, info.created_at, now)
        return info

    async def ensure_local_key(self, name: str, token_file: Path) -> str:
        """Return the token of the daemon's own key, (re)creating it if needed.

        Tokens are not stored, so the local CLI's key lives in ``token_file``
        (mode 0600). If the file holds a token whose hash is in the database
        under ``name``, that token is returned. Otherwise a fresh key replaces
        any row called ``name``, is committed, and the file is replaced
        atomically. A crash between the two steps heals on the next call.
        """
        _check_name(name)
        token_file = Path(token_file)
        token = await trio.to_thread.run_sync(_read_token, token_file)
        if token is not None:
            row = await self._store.fetchone(
                "SELECT name FROM app_keys WHERE key_hash = ?", (hash_token(token),)
            )
            if row is not None and row["name"] == name:
                return token

        token = new_token()
        info = AppKeyInfo(uuid.uuid4().hex, name, _now(self._clock), None)

        def replace(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM app_keys WHERE name = ?", (name,))
            _insert_key(conn, info, token)

        await self._store.transaction(replace, durable=True)
        await trio.to_thread.run_sync(_write_private_atomic, token_file, token + "\n")
        return token


def _insert_key(conn: sqlite3.Connection, info: AppKeyInfo, token: str) -> None:
    conn.execute(
        "INSERT INTO app_keys (id, name, key_hash, created_at, last_used_at) VALUES (?, ?, ?, ?, ?)",
        (info.id, info.name, hash_token(token), info.created_at, info.last_used_at),
    )


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
        if token and path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a bearer token readable by others is a leak; tighten quietly
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read the local app key file {path}: {e}. Fix its permissions or delete it.") from e
    return token or None


def _write_private_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a 0600 temp file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(
            f"cannot write the local app key file {path}: {e.strerror or e}. Check that {path.parent} "
            f"exists and is writable."
        ) from e


# ---------------------------------------------------------------------- peers

PeerSource = Literal["bootstrap", "px", "inbound"]
PEER_SOURCES: Final = frozenset(get_args(PeerSource))
MAX_ADDRS: Final = 16


@dataclass(frozen=True, slots=True)
class PeerRecord:
    node_id: str
    addrs: tuple[str, ...]
    source: PeerSource
    first_seen: int
    last_seen: int
    last_connected: int | None
    failures: int


def merge_addrs(new: Sequence[str], old: Sequence[str], limit: int = MAX_ADDRS) -> list[str]:
    """Newest first, no duplicates, at most ``limit``: a peer's old addresses
    stay dialable until crowded out, and a peer cannot grow the row forever."""
    return list(dict.fromkeys([*new, *old]))[:limit]


def merge_source(new: PeerSource, old: PeerSource) -> PeerSource:
    """A configured bootstrap peer stays one however else we hear of it."""
    return "bootstrap" if old == "bootstrap" else new


def _peer(row: sqlite3.Row) -> PeerRecord:
    return PeerRecord(
        node_id=row["node_id"],
        addrs=tuple(json.loads(row["addrs"])),
        source=row["source"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        last_connected=row["last_connected"],
        failures=row["failures"],
    )


_PEER_COLS = "node_id, addrs, source, first_seen, last_seen, last_connected, failures"


class Peers:
    """The peer book: where to dial on start, and who keeps failing."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def upsert(self, node_id: str, addrs: Sequence[str], source: PeerSource) -> PeerRecord:
        """Record that we heard of ``node_id`` at ``addrs`` (merged with known ones)."""
        if source not in PEER_SOURCES:
            raise ValueError(f"peer source must be one of {sorted(PEER_SOURCES)}, not {source!r}")
        if isinstance(addrs, str) or not all(isinstance(a, str) for a in addrs):
            raise TypeError("addrs must be a list of multiaddr strings")
        now = _now(self._clock)

        def upsert(conn: sqlite3.Connection) -> PeerRecord:
            row = conn.execute(f"SELECT {_PEER_COLS} FROM peers WHERE node_id = ?", (node_id,)).fetchone()
            if row is None:
                rec = PeerRecord(node_id, tuple(merge_addrs(addrs, ())), source, now, now, None, 0)
                conn.execute(
                    f"INSERT INTO peers ({_PEER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rec.node_id, json.dumps(rec.addrs), rec.source, now, now, None, 0),
                )
                return rec
            old = _peer(row)
            rec = PeerRecord(
                node_id,
                tuple(merge_addrs(addrs, old.addrs)),
                merge_source(source, old.source),
                old.first_seen,
                now,
                old.last_connected,
                old.failures,
            )
            conn.execute(
                "UPDATE peers SET addrs = ?, source = ?, last_seen = ? WHERE node_id = ?",
                (json.dumps(rec.addrs), rec.source, now, node_id),
            )
            return rec

        return await self._store.transaction(upsert)

    async def mark_connected(self, node_id: str) -> bool:
        """A connection succeeded: reset failures. False if the peer is unknown."""
        now = _now(self._clock)
        n = await self._store.execute(
            "UPDATE peers SET last_connected = ?, last_seen = ?, failures = 0 WHERE node_id = ?",
            (now, now, node_id),
        )
        return n > 0

    async def mark_failure(self, node_id: str) -> int | None:
        """A dial failed; return the new failure count, None if the peer is unknown."""
        row = await self._store.transaction(
            lambda c: c.execute(
                "UPDATE peers SET failures = failures + 1 WHERE node_id = ? RETURNING failures", (node_id,)
            ).fetchone()
        )
        return None if row is None else int(row[0])

    async def get(self, node_id: str) -> PeerRecord | None:
        row = await self._store.fetchone(f"SELECT {_PEER_COLS} FROM peers WHERE node_id = ?", (node_id,))
        return _peer(row) if row else None

    async def list(self, limit: int = 100) -> builtins.list[PeerRecord]:
        """Best dial candidates first: fewest failures, then most recently connected, then seen."""
        rows = await self._store.fetchall(
            f"SELECT {_PEER_COLS} FROM peers "
            "ORDER BY failures, COALESCE(last_connected, 0) DESC, last_seen DESC, node_id LIMIT ?",
            (limit,),
        )
        return [_peer(r) for r in rows]

    async def forget_stale(self, older_than_s: float) -> int:
        """Delete peers not seen for ``older_than_s`` seconds; return how many.

        Bootstrap peers are re-added from the configuration at start, so they
        age like any other.
        """
        cutoff = _now(self._clock) - int(older_than_s)
        return await self._store.execute("DELETE FROM peers WHERE last_seen < ?", (cutoff,))

    async def keep_best(self, count: int) -> int:
        """Delete all but the ``count`` best dial candidates (the order of :meth:`list`); return how many."""
        return await self._store.execute(
            "DELETE FROM peers WHERE node_id NOT IN (SELECT node_id FROM peers "
            "ORDER BY failures, COALESCE(last_connected, 0) DESC, last_seen DESC, node_id LIMIT ?)",
            (count,),
        )


# ---------------------------------------------------------------------- settings


class Settings:
    """Small string key/value pairs the node keeps between runs."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str, default: str | None = None) -> str | None:
        row = await self._store.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else str(row[0])

    async def set(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"setting values are strings; encode {type(value).__name__} first")
        await self._store.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def delete(self, key: str) -> bool:
        return await self._store.execute("DELETE FROM settings WHERE key = ?", (key,)) > 0
