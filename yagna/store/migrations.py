"""Versioned schema migrations.

A migration is ``(version, description, sql)``. Versions start at 1 and
increase by one; a released migration is never edited, only followed by a new
one. :func:`migrate` runs on the store's worker thread: every pending
migration is applied with its ``schema_version`` row in one ``BEGIN IMMEDIATE``
transaction (two daemons opening the same file at once serialize on the write
lock and the second sees the work already done). A database whose version is
newer than :data:`MIGRATIONS` knows is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from yagna.store.errors import StoreOpenError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "app keys, peers, settings",
        """
        -- Bearer keys for the local REST API. Only sha256(token) is stored:
        -- a leaked database file does not leak usable keys.
        CREATE TABLE app_keys (
            id           TEXT PRIMARY KEY,
            name         TEXT NOT NULL UNIQUE,
            key_hash     BLOB NOT NULL UNIQUE,
            created_at   INTEGER NOT NULL,
            last_used_at INTEGER
        );

        -- Peers we know of; addrs is a JSON list of multiaddr strings.
        CREATE TABLE peers (
            node_id        TEXT PRIMARY KEY,
            addrs          TEXT NOT NULL,
            source         TEXT NOT NULL CHECK (source IN ('bootstrap', 'px', 'inbound')),
            first_seen     INTEGER NOT NULL,
            last_seen      INTEGER NOT NULL,
            last_connected INTEGER,
            failures       INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX peers_last_seen ON peers (last_seen);

        CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "market: provider presets, agreements, provider records",
        """
        -- A provider's presets; body is the preset's JSON (market.presets).
        CREATE TABLE presets (
            name       TEXT PRIMARY KEY,
            body       TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );

        -- Agreements this node is a party to; raw is the co-signed document
        -- (market.agreement), verifiable offline by anyone.
        CREATE TABLE agreements (
            agreement_id TEXT PRIMARY KEY,
            role         TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
            peer_id      TEXT NOT NULL,
            offer_id     TEXT NOT NULL,
            demand_id    TEXT,
            state        TEXT NOT NULL,
            reason       TEXT,
            raw          BLOB NOT NULL,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        );
        CREATE INDEX agreements_state ON agreements (state);

        -- The requestor's own record of each provider it dealt with (reputation).
        CREATE TABLE provider_records (
            node_id              TEXT PRIMARY KEY,
            successes            INTEGER NOT NULL DEFAULT 0,
            failures             INTEGER NOT NULL DEFAULT 0,
            rejections           INTEGER NOT NULL DEFAULT 0,
            timeouts             INTEGER NOT NULL DEFAULT 0,
            latency_ms           REAL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_failure_ms      INTEGER,
            updated_at           INTEGER NOT NULL
        );
        """,
    ),
    Migration(
        3,
        "exe-unit: activities",
        """
        -- Activities this node runs (provider) or drives (requestor). A provider
        -- that restarts finds its non-terminal rows and the containers they
        -- name, reports them terminated and removes the containers.
        CREATE TABLE activities (
            activity_id  TEXT PRIMARY KEY,
            agreement_id TEXT NOT NULL,
            role         TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
            peer_id      TEXT NOT NULL,
            state        TEXT NOT NULL,
            reason       TEXT,
            container_id TEXT,
            usage        TEXT,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        );
        CREATE INDEX activities_agreement ON activities (agreement_id);
        CREATE INDEX activities_state ON activities (state);
        """,
    ),
)

_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
)
"""


def validate(migrations: Sequence[Migration]) -> None:
    """Refuse a migration list with gaps, duplicates or a wrong start (a bug)."""
    for expected, m in enumerate(migrations, start=1):
        if m.version != expected:
            raise ValueError(f"migration versions must be 1, 2, 3, ...; got {m.version} at position {expected}")


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements.

    ``executescript`` would COMMIT any open transaction first, so a migration is
    run statement by statement inside our own transaction instead.
    ``sqlite3.complete_statement`` keeps ``;`` inside strings and triggers intact.
    """
    out: list[str] = []
    buf = ""
    for chunk in script.split(";"):
        buf += chunk + ";"
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if _has_code(stmt):
                out.append(stmt)
            buf = ""
    if _has_code(buf.rstrip(";")):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buf.strip()[:80]!r}")
    return out


def _has_code(stmt: str) -> bool:
    lines = (line.split("--", 1)[0].strip() for line in stmt.splitlines())
    return any(line and line != ";" for line in lines)


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, where: str = "") -> int:
    """Bring the schema up to date; return the resulting version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Runs on the
    worker thread. ``where`` names the file in error messages.
    """
    validate(migrations)
    latest = len(migrations)
    conn.execute("PRAGMA synchronous=FULL")  # a half-migrated schema is worse than a slow start
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SCHEMA_VERSION_DDL)
            version = current_version(conn)
            if version > latest:
                raise StoreOpenError(
                    f"the node database {where} has schema version {version}, but this yagna only knows "
                    f"versions up to {latest}: it was written by a newer yagna. Upgrade yagna, or use "
                    f"another data directory."
                )
            for m in migrations[version:]:
                for stmt in split_statements(m.sql):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.description, int(time.time())),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA synchronous=NORMAL")
    return latest
