"""One SQLite transaction on a connection in autocommit mode (worker-thread side).

Shared by :class:`yagna.store.db.Store` (plain and grouped durable
transactions) and :func:`yagna.store.migrations.migrate`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate_transaction(conn: sqlite3.Connection, *, full_sync: bool = False) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception rolls back and propagates.

    ``full_sync``: the commit is fsynced (``synchronous=FULL``), and the
    connection goes back to ``synchronous=NORMAL`` afterwards, whatever happened.
    """
    if full_sync:
        conn.execute("PRAGMA synchronous=FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if full_sync:
            conn.execute("PRAGMA synchronous=NORMAL")
