"""The exe-unit's rows: activities this node runs or drives.

Soft state except for the terminal transitions: a provider restarted after a
crash must know which containers it left behind, so state changes are durable.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exeunit.activity import TERMINAL
from yagna.store.db import Store

Clock = Callable[[], float]

_COLUMNS = "activity_id, agreement_id, role, peer_id, state, reason, container_id, usage, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class StoredActivity:
    activity_id: str
    agreement_id: str
    role: str
    peer_id: str
    state: str
    reason: str | None
    container_id: str | None
    usage: dict[str, Any] | None
    created_at: int
    updated_at: int


class Activities:
    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def insert(self, *, activity_id: str, agreement_id: str, role: str, peer_id: str, state: str) -> None:
        now = int(self._clock())
        await self._store.execute(
            f"INSERT INTO activities ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?)",
            (activity_id, agreement_id, role, peer_id, state, now, now),
            durable=True,
        )

    async def update(
        self,
        activity_id: str,
        *,
        state: str | None = None,
        reason: str | None = None,
        container_id: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> bool:
        changed = await self._store.execute(
            "UPDATE activities SET state = COALESCE(?, state), reason = COALESCE(?, reason),"
            " container_id = COALESCE(?, container_id), usage = COALESCE(?, usage), updated_at = ?"
            " WHERE activity_id = ?",
            (state, reason, container_id, json.dumps(usage) if usage is not None else None, int(self._clock()), activity_id),
            durable=True,
        )
        return changed > 0

    async def get(self, activity_id: str) -> StoredActivity | None:
        row = await self._store.fetchone(f"SELECT {_COLUMNS} FROM activities WHERE activity_id = ?", (activity_id,))
        return _activity(row) if row else None

    async def list(
        self,
        *,
        role: str | None = None,
        agreement_id: str | None = None,
        live: bool | None = None,
        limit: int = 1000,
    ) -> builtins.list[StoredActivity]:
        """``live=True``: not terminated or failed; ``live=False``: only those."""
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if role is not None:
            clauses.append("role = ?")
            params.append(role)
        if agreement_id is not None:
            clauses.append("agreement_id = ?")
            params.append(agreement_id)
        if live is not None:
            terminal = sorted(state.value for state in TERMINAL)
            clauses.append(f"state {'NOT IN' if live else 'IN'} ({', '.join('?' * len(terminal))})")
            params.extend(terminal)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._store.fetchall(
            f"SELECT {_COLUMNS} FROM activities {where} ORDER BY created_at DESC, activity_id LIMIT ?", (*params, limit)
        )
        return [_activity(r) for r in rows]

    async def count_by_state(self) -> dict[tuple[str, str], int]:
        """How many activities are in each ``(role, state)`` (all of them, not a page; for metrics)."""
        rows = await self._store.fetchall(
            "SELECT role, state, COUNT(*) AS n FROM activities GROUP BY role, state ORDER BY role, state", ())
        return {(r["role"], r["state"]): int(r["n"]) for r in rows}


def _activity(row: sqlite3.Row) -> StoredActivity:
    return StoredActivity(
        row["activity_id"], row["agreement_id"], row["role"], row["peer_id"], row["state"], row["reason"],
        row["container_id"], json.loads(row["usage"]) if row["usage"] else None, row["created_at"], row["updated_at"],
    )
