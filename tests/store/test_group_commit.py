"""Group commit: durable transactions waiting together share one fsynced COMMIT (issue 12)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from yagna.store import ConstraintError, Store, StoreError


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def held_insert() -> tuple[trio.Event, trio.Event, Callable[[sqlite3.Connection], int]]:
    """A unit of work that sets ``started`` on the worker, then waits there until ``release`` is set."""
    started, release = trio.Event(), trio.Event()

    def slow(conn: sqlite3.Connection) -> int:
        trio.from_thread.run_sync(started.set)
        trio.from_thread.run(release.wait)
        return conn.execute("INSERT INTO settings VALUES ('slow', 'v')").rowcount

    return started, release, slow


def insert(key: str) -> object:
    return lambda c: c.execute("INSERT INTO settings VALUES (?, 'v')", (key,)).rowcount


async def test_concurrent_durable_transactions_share_commits_and_all_land(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as store:
        results: dict[str, object] = {}

        async def one(i: int) -> None:
            results[str(i)] = await store.transaction(insert(f"k{i}"), durable=True)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
        assert results == {str(i): 1 for i in range(50)}
        assert store.durable_units == 50
        assert store.group_commits < 50  # batched
        assert (await store.fetchone("PRAGMA synchronous"))[0] == 1  # back to NORMAL
    with raw(path) as c:
        assert c.execute("SELECT COUNT(*) FROM settings WHERE key LIKE 'k%'").fetchone() == (50,)


async def test_a_failing_unit_is_rolled_back_alone(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def half_then_boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings VALUES ('half', 'v')")
        raise Boom

    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as store:
        await store.execute("INSERT INTO settings VALUES ('dup', 'v')")
        outcomes: dict[str, object] = {}

        async def run(name: str, fn: object) -> None:
            try:
                outcomes[name] = await store.transaction(fn, durable=True)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the test records which error each caller got
                outcomes[name] = type(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", insert("a"))
            nursery.start_soon(run, "boom", half_then_boom)
            nursery.start_soon(run, "dup", insert("dup"))
            nursery.start_soon(run, "misuse", lambda c: c.execute("COMMIT"))
            nursery.start_soon(run, "b", insert("b"))
        assert outcomes == {"a": 1, "boom": Boom, "dup": ConstraintError, "misuse": StoreError, "b": 1}
        assert store.group_commits < 5
    with raw(path) as c:
        keys = {k for (k,) in c.execute("SELECT key FROM settings WHERE key IN ('a', 'b', 'half', 'dup')")}
        assert keys == {"a", "b", "dup"}


async def test_a_caller_cancelled_while_queued_writes_nothing(tmp_path: Path) -> None:
    async with Store.open_ctx(tmp_path / "node.db") as store:
        started, release, slow = held_insert()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: store.transaction(slow, durable=True))
            await started.wait()  # the first group is committing; the next unit queues
            with trio.CancelScope() as scope:
                scope.cancel()
                await store.transaction(insert("cancelled"), durable=True)  # type: ignore[arg-type]
            after = trio.Event()

            async def later() -> None:
                await store.transaction(insert("later"), durable=True)  # type: ignore[arg-type]
                after.set()

            nursery.start_soon(later)
            await trio.sleep(0.05)
            release.set()
            await after.wait()
        keys = {r[0] for r in await store.fetchall("SELECT key FROM settings WHERE key IN ('slow', 'cancelled', 'later')")}
        assert keys == {"slow", "later"}


async def test_a_caller_cancelled_while_its_group_commits_gets_the_commit_first(tmp_path: Path) -> None:
    async with Store.open_ctx(tmp_path / "node.db") as store:
        started, release, slow = held_insert()

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                async def cancel_when_started() -> None:
                    await started.wait()
                    scope.cancel()  # the unit is inside the commit: it finishes, then the caller sees the cancel
                    release.set()

                nursery.start_soon(cancel_when_started)
                outcome = await store.transaction(slow, durable=True)
                await trio.sleep(0)  # the caller's next checkpoint delivers the cancellation
                raise AssertionError("not cancelled")
        assert scope.cancelled_caught and outcome == 1
        assert (await store.fetchone("SELECT value FROM settings WHERE key = 'slow'")) is not None


async def test_closed_store_fails_every_queued_unit(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "node.db")
    await store.close()
    with pytest.raises(StoreError):
        await store.transaction(insert("x"), durable=True)  # type: ignore[arg-type]
    # and a later one does not wait forever for a lead that never comes
    with trio.fail_after(2), pytest.raises(StoreError):
        await store.transaction(insert("y"), durable=True)  # type: ignore[arg-type]
