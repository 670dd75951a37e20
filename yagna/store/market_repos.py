"""Repositories of the market's durable state: presets, agreements, provider records.

The store knows nothing of ``market``: presets are JSON objects, agreements
are the co-signed bytes plus the few columns we list by, provider records are
plain counters. The market service maps them to its own types.

Agreements are commitments, so they are written with ``durable=True``
(``synchronous=FULL``): an agreement the peer was told about is on disk.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yagna.store.db import Store, where_equal
from yagna.store.errors import ConstraintError
from yagna.store.repos import Clock


@dataclass(frozen=True, slots=True)
class StoredPreset:
    name: str
    body: dict[str, Any]
    created_at: int
    updated_at: int


class Presets:
    """A provider's presets, by name."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def list(self) -> builtins.list[StoredPreset]:
        rows = await self._store.fetchall("SELECT name, body, created_at, updated_at FROM presets ORDER BY name")
        return [_preset(r) for r in rows]

    async def get(self, name: str) -> StoredPreset | None:
        row = await self._store.fetchone("SELECT name, body, created_at, updated_at FROM presets WHERE name = ?", (name,))
        return _preset(row) if row else None

    async def create(self, name: str, body: dict[str, Any]) -> bool:
        """Insert a new preset; False if the name is taken."""
        now = int(self._clock())
        try:
            await self._store.execute(
                "INSERT INTO presets (name, body, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (name, json.dumps(body, sort_keys=True), now, now),
            )
        except ConstraintError:
            return False
        return True

    async def update(self, name: str, body: dict[str, Any]) -> bool:
        """Replace an existing preset's body; False if there is none."""
        changed = await self._store.execute(
            "UPDATE presets SET body = ?, updated_at = ? WHERE name = ?",
            (json.dumps(body, sort_keys=True), int(self._clock()), name),
        )
        return changed > 0

    async def delete(self, name: str) -> bool:
        return await self._store.execute("DELETE FROM presets WHERE name = ?", (name,)) > 0


def _preset(row: sqlite3.Row) -> StoredPreset:
    return StoredPreset(row["name"], json.loads(row["body"]), row["created_at"], row["updated_at"])


@dataclass(frozen=True, slots=True)
class StoredAgreement:
    agreement_id: str
    role: str
    peer_id: str
    offer_id: str
    demand_id: str | None
    state: str
    reason: str | None
    raw: bytes
    created_at: int
    updated_at: int


_AGREEMENT_COLUMNS = "agreement_id, role, peer_id, offer_id, demand_id, state, reason, raw, created_at, updated_at"


class Agreements:
    """Agreements this node is a party to (as requestor or provider)."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def insert(
        self, *, agreement_id: str, role: str, peer_id: str, offer_id: str, demand_id: str | None, state: str, raw: bytes
    ) -> None:
        now = int(self._clock())
        await self._store.execute(
            f"INSERT INTO agreements ({_AGREEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
            (agreement_id, role, peer_id, offer_id, demand_id, state, raw, now, now),
            durable=True,
        )

    async def set_state(self, agreement_id: str, state: str, reason: str | None = None) -> bool:
        changed = await self._store.execute(
            "UPDATE agreements SET state = ?, reason = COALESCE(?, reason), updated_at = ? WHERE agreement_id = ?",
            (state, reason, int(self._clock()), agreement_id),
            durable=True,
        )
        return changed > 0

    async def get(self, agreement_id: str) -> StoredAgreement | None:
        row = await self._store.fetchone(f"SELECT {_AGREEMENT_COLUMNS} FROM agreements WHERE agreement_id = ?", (agreement_id,))
        return _agreement(row) if row else None

    async def list(self, *, role: str | None = None, state: str | None = None, limit: int = 1000) -> builtins.list[StoredAgreement]:
        where, params = where_equal(role=role, state=state)
        rows = await self._store.fetchall(
            f"SELECT {_AGREEMENT_COLUMNS} FROM agreements {where} ORDER BY created_at DESC, agreement_id LIMIT ?",
            (*params, limit),
        )
        return [_agreement(r) for r in rows]

    async def count_by_state(self) -> dict[str, int]:
        """How many agreements are in each state (all of them, not a page)."""
        rows = await self._store.fetchall("SELECT state, COUNT(*) AS n FROM agreements GROUP BY state ORDER BY state", ())
        return {r["state"]: int(r["n"]) for r in rows}


def _agreement(row: sqlite3.Row) -> StoredAgreement:
    return StoredAgreement(
        row["agreement_id"], row["role"], row["peer_id"], row["offer_id"], row["demand_id"],
        row["state"], row["reason"], bytes(row["raw"]), row["created_at"], row["updated_at"],
    )


_RECORD_FIELDS = ("successes", "failures", "rejections", "timeouts", "disagreements", "latency_ms", "consecutive_failures",
                  "last_failure_ms")


class ProviderRecords:
    """The requestor's own record of each provider (the input of its reputation score)."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def all(self) -> dict[str, dict[str, Any]]:
        rows = await self._store.fetchall(f"SELECT node_id, {', '.join(_RECORD_FIELDS)} FROM provider_records")
        return {r["node_id"]: {f: r[f] for f in _RECORD_FIELDS} for r in rows}

    async def get(self, node_id: str) -> dict[str, Any] | None:
        row = await self._store.fetchone(
            f"SELECT {', '.join(_RECORD_FIELDS)} FROM provider_records WHERE node_id = ?", (node_id,)
        )
        return {f: row[f] for f in _RECORD_FIELDS} if row else None

    async def update(self, node_id: str,
                     change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        """Replace ``node_id``'s record by ``change(current)`` in one transaction; returns the new record.

        Read and write are one unit on the store's thread: outcomes reported
        at once for one provider (several batch workers, a negotiation) all
        count. A ``get`` then a ``put`` lost all but one of them (issue 11 row 13).
        ``change`` is synchronous; an exception from it rolls back and propagates.
        """
        columns = ", ".join(_RECORD_FIELDS)
        updates = ", ".join(f"{f} = excluded.{f}" for f in _RECORD_FIELDS)
        now = int(self._clock())

        def unit(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute(f"SELECT {columns} FROM provider_records WHERE node_id = ?", (node_id,)).fetchone()
            record = change({f: row[f] for f in _RECORD_FIELDS} if row else None)
            conn.execute(
                f"INSERT INTO provider_records (node_id, {columns}, updated_at) "
                f"VALUES (?, {', '.join('?' for _ in _RECORD_FIELDS)}, ?) "
                f"ON CONFLICT(node_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
                (node_id, *(record[f] for f in _RECORD_FIELDS), now),
            )
            return record

        return await self._store.transaction(unit)
