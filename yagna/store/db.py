"""The node's SQLite store: stdlib ``sqlite3`` on a worker thread, driven from trio.

Why this backend (figures in ``docs/decisions.md``): it measured faster than
aiosqlite bridged through trio-asyncio on every workload, needs no asyncio
loop around the daemon, and several nodes in one trio process just work.

One connection per :class:`Store`, opened in autocommit mode
(``isolation_level=None``) so transactions are ours and explicit. Every call
is one *unit of work* shipped to a worker thread with
``trio.to_thread.run_sync(..., limiter=CapacityLimiter(1),
abandon_on_cancel=False)``: the per-store limiter serializes use of the
connection (hence ``check_same_thread=False`` is safe), and a cancelled
caller never abandons a unit of work half done. Once started, the unit runs
to COMMIT or ROLLBACK; the caller receives its outcome and the cancellation
is delivered at its next checkpoint. A caller cancelled while still waiting
for the connection is cancelled before its unit starts.

Durability: the connection runs ``synchronous=NORMAL`` (in WAL mode a commit
survives a process crash, and a power loss may drop the last commits: fine
for soft state). ``durable=True`` switches that one commit to
``synchronous=FULL`` (WAL fsynced before COMMIT returns), which is what
payment state needs before a message is acknowledged.

Usage::

    async with Store.open_ctx(path) as store:      # or: store = await Store.open(path)
        await store.execute("INSERT INTO settings VALUES (?, ?)", ("k", "v"))
        row = await store.fetchone("SELECT value FROM settings WHERE key = ?", ("k",))
        n = await store.transaction(lambda conn: conn.execute(...).rowcount, durable=True)

``async with await Store.open(path) as store:`` works too.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import trio

from yagna.store.errors import (
    ConstraintError,
    StoreBusyError,
    StoreClosedError,
    StoreError,
    StoreOpenError,
)
from yagna.store.migrations import MIGRATIONS, Migration, migrate
from yagna.store.sqlite_tx import immediate_transaction

T = TypeVar("T")

Params = Sequence[Any] | dict[str, Any]

BUSY_TIMEOUT_MS = 5_000


class Store:
    """One node's database. Create with :meth:`open` or :meth:`open_ctx`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, limiter: trio.CapacityLimiter) -> None:
        # Private: use Store.open(). The connection is touched only on the worker.
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._limiter = limiter
        self._queue: list[_Unit[Any]] = []
        """Durable transactions waiting for the next group commit."""
        self._leading = False
        """A caller is committing a group; the next one waits to be handed the lead."""
        self.group_commits = 0
        """Durable commits made (one per group); with ``durable_units``, the batching achieved."""
        self.durable_units = 0

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._conn is None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
        """Open (creating if needed) the database at ``path`` and migrate it.

        The parent directory must exist: creating the data directory (and its
        permissions) belongs to whoever chose it. A new file is created 0600.
        Raises :class:`StoreOpenError` with advice when that fails.
        """
        path = Path(path)
        limiter = trio.CapacityLimiter(1)
        conn = await trio.to_thread.run_sync(_open_sync, path, migrations, limiter=limiter)
        return cls(conn, path, limiter)

    @classmethod
    @asynccontextmanager
    async def open_ctx(cls, path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> AsyncIterator[Store]:
        """``async with Store.open_ctx(path) as store:`` (closes on exit)."""
        store = await cls.open(path, migrations=migrations)
        try:
            yield store
        finally:
            await store.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Let units of work already queued finish, then close. Idempotent.

        Shielded, so shutdown under a cancelled scope still closes the file
        (checkpointing the WAL); units of work are short, so this is bounded.
        Later calls raise :class:`StoreClosedError`.
        """
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._close_sync, limiter=self._limiter)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:  # cannot happen through our API; never commit by accident
                conn.execute("ROLLBACK")
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # best effort on the way out; close() below still releases the file
        finally:
            conn.close()

    # ------------------------------------------------------------------ generic API

    async def execute(self, sql: str, params: Params = (), *, durable: bool = False) -> int:
        """Run one statement in its own transaction; return its rowcount."""
        if durable:
            return await self.transaction(lambda c: c.execute(sql, params).rowcount, durable=True)
        return await self._run(lambda c: c.execute(sql, params).rowcount)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._run(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        return await self._run(lambda c: c.execute(sql, params).fetchone())

    async def transaction(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run ``fn(conn)`` on the worker inside ``BEGIN IMMEDIATE`` ... ``COMMIT``.

        ``fn`` is plain synchronous code (no awaits) and must not BEGIN/COMMIT
        itself. Any exception rolls back and propagates; ``sqlite3`` errors are
        mapped to :class:`StoreError`. With ``durable=True`` the commit is
        fsynced (``synchronous=FULL``) before this returns: acknowledge
        payment messages only after that. IMMEDIATE takes the write lock up
        front so a read-then-write ``fn`` cannot fail half way with BUSY.

        Durable transactions that wait for the connection at the same time are
        committed together (group commit): each runs in its own SAVEPOINT of
        one transaction, a failing one is rolled back alone, and one fsync
        covers them all. Each caller still returns only after that commit.
        """
        if durable:
            return await self._group_commit(fn)

        def unit(conn: sqlite3.Connection) -> T:
            with immediate_transaction(conn):
                return _call_unit(conn, fn)

        return await self._run(unit)

    # ------------------------------------------------------------------ group commit

    async def _group_commit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Queue ``fn``; the first caller leads: it commits every queued unit at once, then hands over."""
        unit = _Unit(fn)
        self._queue.append(unit)
        if self._leading:
            try:
                await unit.wake.wait()
            except trio.Cancelled:
                if unit.taken:  # inside a commit already: its outcome comes first, as for any unit of work
                    with trio.CancelScope(shield=True):
                        await unit.wake.wait()
                    raise
                self._queue.remove(unit)
                if unit.lead:
                    self._hand_over()
                raise
            if unit.taken:  # woken as finished (only units still queued are handed the lead)
                return self._outcome(unit)
        else:
            self._leading = True
        try:
            batch, self._queue = self._queue, []
            for u in batch:
                u.taken = True
            try:
                # Shielded: the group holds other callers' units; the leader's own
                # cancellation is delivered at its next checkpoint, after the commit.
                with trio.CancelScope(shield=True):
                    self.group_commits += 1
                    self.durable_units += len(batch)
                    await self._run(lambda conn: _commit_group(conn, batch))
            except Exception as exc:  # BEGIN or COMMIT failed, or the store is closed: all of it failed
                for u in batch:
                    u.fail(exc)
            finally:
                for u in batch:
                    u.wake.set()
        finally:
            self._hand_over()
        return self._outcome(unit)

    def _outcome(self, unit: _Unit[T]) -> T:
        try:
            return unit.outcome()
        except sqlite3.Error as e:
            raise _map_error(e, self._path) from e

    def _hand_over(self) -> None:
        if self._queue:
            nxt = self._queue[0]
            nxt.lead = True
            nxt.wake.set()
        else:
            self._leading = False

    # ------------------------------------------------------------------ the I/O boundary

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def unit() -> T:
            conn = self._conn  # read on the worker, under the limiter: no race with close()
            if conn is None:
                raise StoreClosedError(f"the store {self._path} is closed")
            return fn(conn)

        try:
            return await trio.to_thread.run_sync(unit, limiter=self._limiter, abandon_on_cancel=False)
        except sqlite3.Error as e:
            raise _map_error(e, self._path) from e


class _Unit(Generic[T]):
    """One durable transaction in a group commit, and its outcome."""

    __slots__ = ("fn", "result", "error", "ok", "taken", "lead", "wake")

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.ok = False
        self.taken = False
        """Part of a group being committed: no longer cancellable."""
        self.lead = False
        self.wake = trio.Event()
        """Set when the unit is finished (it was taken) or handed the lead (it was not)."""

    def fail(self, exc: BaseException) -> None:
        self.ok = False
        self.result = None
        self.error = self.error or exc

    def outcome(self) -> T:
        if self.ok:
            return self.result  # type: ignore[return-value]
        assert self.error is not None
        raise self.error


def _call_unit(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    result = fn(conn)
    if inspect.isawaitable(result):
        _close_awaitable(result)
        raise TypeError("Store.transaction() takes a synchronous function, not an async one")
    if not conn.in_transaction:
        raise StoreError("the transaction function ended the transaction itself; it must not")
    return result


def _commit_group(conn: sqlite3.Connection, batch: list[_Unit[Any]]) -> None:
    """Worker side: every unit in its own SAVEPOINT, one fsynced COMMIT for all of them."""
    with immediate_transaction(conn, full_sync=True):
        for u in batch:
            conn.execute("SAVEPOINT unit")
            try:
                u.result = _call_unit(conn, u.fn)
                conn.execute("RELEASE unit")
                u.ok = True
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                u.error = exc
            if not conn.in_transaction:  # the unit ended it (a bug, reported to that unit): go on in a new one
                conn.execute("BEGIN IMMEDIATE")


def _close_awaitable(obj: object) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()  # silence "coroutine was never awaited"


def _errorcode(e: sqlite3.Error) -> int:
    return int(getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF


def _map_error(e: sqlite3.Error, path: Path) -> StoreError:
    code = _errorcode(e)
    if isinstance(e, sqlite3.IntegrityError):
        return ConstraintError(f"constraint violated: {e}")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreBusyError(
            f"the node database {path} stayed locked for {BUSY_TIMEOUT_MS / 1000:g} s. Is another yagna "
            f"running on the same data directory? Stop it, or use another data directory."
        )
    if code == sqlite3.SQLITE_FULL:
        return StoreError(f"the disk holding {path} is full. Free some space and retry.")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return StoreError(f"cannot write the node database {path} ({e}). Check the disk and the file permissions.")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreError(
            f"the node database {path} is corrupt ({e}). Stop yagna, move the file aside and restore a "
            f"backup, or let yagna create a fresh one."
        )
    return StoreError(f"database error in {path}: {e}")


# ---------------------------------------------------------------------- opening (worker side)


def _open_sync(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    parent = path.parent
    try:
        if not parent.exists():
            raise StoreOpenError(
                f"cannot open the node database {path}: the directory {parent} does not exist. "
                f"Create it, or choose another data directory."
            )
        if not parent.is_dir():
            raise StoreOpenError(
                f"cannot open the node database {path}: {parent} is not a directory. "
                f"Choose another data directory."
            )
        if path.exists() and not path.is_file():
            raise StoreOpenError(f"cannot open the node database {path}: it is not a regular file. Move it aside.")
        _create_private(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    except OSError as e:
        raise StoreOpenError(
            f"cannot create the node database {path}: {e.strerror or e}. "
            f"Check that {parent} is writable by this user."
        ) from e
    except sqlite3.Error as e:
        raise _open_error(e, path) from e
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreOpenError(
                f"cannot put the node database {path} in WAL mode (got {mode!r}); the file system may not "
                f"support it (network file systems do not). Use a local data directory."
            )
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, migrations, where=str(path))
    except StoreOpenError:
        conn.close()
        raise
    except sqlite3.Error as e:
        conn.close()
        raise _open_error(e, path) from e
    return conn


def _create_private(path: Path) -> None:
    """Create an empty 0600 file; SQLite gives the -wal/-shm files the same mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _open_error(e: sqlite3.Error, path: Path) -> StoreOpenError:
    code = _errorcode(e)
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreOpenError(
            f"the node database {path} is not a SQLite database or is corrupt ({e}). Stop yagna, move the "
            f"file aside (with its -wal and -shm files) and restore a backup, or let yagna create a fresh one."
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR):
        return StoreOpenError(
            f"cannot open the node database {path} for writing ({e}). Check the permissions of the file "
            f"and of {path.parent}, and that the disk is not read-only."
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreOpenError(
            f"the node database {path} is locked. Is another yagna running on the same data directory? "
            f"Stop it, or use another data directory."
        )
    return StoreOpenError(f"cannot open the node database {path}: {e}")


def where_equal(**filters: object) -> tuple[str, list[object]]:
    """``("WHERE a = ? AND b = ?", [a, b])`` for the filters that are not None (``("", [])`` if none).

    Column names come from our code (keyword names), never from input.
    """
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return "WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())
