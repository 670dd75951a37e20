"""Store: opening, migrations, transactions, durability, cancellation, concurrency."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

import yagna
from yagna.store import (
    MIGRATIONS,
    ConstraintError,
    Migration,
    Store,
    StoreClosedError,
    StoreError,
    StoreOpenError,
)
from yagna.store.migrations import split_statements, validate

REPO_ROOT = Path(yagna.__file__).resolve().parents[1]


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection for checking what is really on disk."""
    return sqlite3.connect(path, isolation_level=None)


# ---------------------------------------------------------------------- opening and migrations


async def test_fresh_file_is_migrated_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as store:
        versions = await store.fetchall("SELECT version, description FROM schema_version")
        assert [tuple(r) for r in versions] == [(m.version, m.description) for m in MIGRATIONS]
        assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"
        assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1
        assert (await store.fetchone("PRAGMA busy_timeout"))[0] > 0
        tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"schema_version", "app_keys", "peers", "settings", "presets", "agreements", "provider_records"} <= tables
        await store.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async with await Store.open(path) as store:  # the other context-manager form
        assert (await store.fetchone("SELECT COUNT(*) FROM schema_version"))[0] == len(MIGRATIONS)
        assert (await store.fetchone("SELECT value FROM settings WHERE key = 'a'"))[0] == "b"


async def test_newer_schema_than_known_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    await (await Store.open(path)).close()
    with raw(path) as c:
        c.execute("INSERT INTO schema_version VALUES (999, 'from the future', 0)")
    with pytest.raises(StoreOpenError, match="newer yagna.*Upgrade yagna"):
        await Store.open(path)


async def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a dir")
    with pytest.raises(StoreOpenError, match="is not a directory.*another data directory"):
        await Store.open(blocker / "node.db")


async def test_parent_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreOpenError, match="does not exist. Create it"):
        await Store.open(tmp_path / "missing" / "node.db")


async def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    path.write_bytes(b"this is definitely not sqlite" * 200)
    with pytest.raises(StoreOpenError, match="corrupt.*move the file aside"):
        await Store.open(path)


async def test_failing_migration_rolls_back_entirely(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "broken", "CREATE TABLE t2 (x INTEGER); SELEC nonsense;"))
    with pytest.raises(StoreOpenError):
        await Store.open(path, migrations=broken)
    async with Store.open_ctx(path) as store:  # the good migrations still apply cleanly
        tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "t2" not in tables
        assert (await store.fetchone("SELECT MAX(version) FROM schema_version"))[0] == len(MIGRATIONS)


def test_split_statements_keeps_strings_and_triggers_whole() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x TEXT DEFAULT 'x;y');
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = 'z;' WHERE rowid = new.rowid;
        END; INSERT INTO a VALUES ('1');
    """
    stmts = split_statements(script)
    assert len(stmts) == 3
    assert stmts[1].startswith("CREATE TRIGGER") and stmts[1].endswith("END;")
    assert split_statements("CREATE TABLE b (x INT)") == ["CREATE TABLE b (x INT);"]  # last ';' optional
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE b (x TEXT DEFAULT 'unterminated)")


def test_migration_versions_must_be_contiguous() -> None:
    validate(MIGRATIONS)
    with pytest.raises(ValueError):
        validate([Migration(1, "a", ""), Migration(3, "c", "")])


# ---------------------------------------------------------------------- generic API and transactions


async def test_execute_fetch_and_error_mapping(tmp_path: Path) -> None:
    async with Store.open_ctx(tmp_path / "node.db") as store:
        assert await store.execute("INSERT INTO settings VALUES (?, ?)", ("k", "v")) == 1
        row = await store.fetchone("SELECT key, value FROM settings WHERE key = ?", ("k",))
        assert row is not None and row["value"] == "v"
        assert await store.fetchone("SELECT 1 FROM settings WHERE key = 'nope'") is None
        with pytest.raises(ConstraintError):
            await store.execute("INSERT INTO settings VALUES ('k', 'again')")
        with pytest.raises(StoreError) as ei:
            await store.execute("SELEC 1")
        assert not isinstance(ei.value, sqlite3.Error)
        with pytest.raises(ConstraintError):  # foreign_keys=ON is really on
            await store.transaction(
                lambda c: (
                    c.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)"),
                    c.execute("CREATE TABLE child (p INTEGER REFERENCES parent(id))"),
                    c.execute("INSERT INTO child VALUES (42)"),
                )
            )


async def test_transaction_rolls_back_on_exception(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings VALUES ('a', '1')")
        conn.execute("INSERT INTO settings VALUES ('b', '2')")
        raise Boom

    async with Store.open_ctx(tmp_path / "node.db") as store:
        with pytest.raises(Boom):  # the caller's own exception, unchanged
            await store.transaction(fn)
        assert (await store.fetchone("SELECT COUNT(*) FROM settings"))[0] == 0
        # the connection is usable and not stuck in a transaction
        assert await store.transaction(lambda c: c.execute("INSERT INTO settings VALUES ('c', '3')").rowcount) == 1


async def test_transaction_rejects_misuse(tmp_path: Path) -> None:
    async def not_sync(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings VALUES ('a', '1')")

    async with Store.open_ctx(tmp_path / "node.db") as store:
        with pytest.raises(TypeError, match="synchronous"):
            await store.transaction(not_sync)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="ended the transaction"):
            await store.transaction(lambda c: c.execute("COMMIT"))
        assert (await store.fetchone("SELECT COUNT(*) FROM settings"))[0] == 0


async def test_durable_commit_survives_reopen_and_mode_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await Store.open(path)
    await store.transaction(lambda c: c.execute("INSERT INTO settings VALUES ('paid', '100')"), durable=True)
    assert await store.execute("INSERT INTO settings VALUES ('x', 'y')", durable=True) == 1
    assert (await store.fetchone("PRAGMA synchronous"))[0] == 1  # back to NORMAL
    await store.close()
    with raw(path) as c:
        assert c.execute("SELECT value FROM settings WHERE key = 'paid'").fetchone() == ("100",)


async def test_closed_store(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "node.db")
    await store.close()
    await store.close()  # idempotent
    assert store.closed
    with pytest.raises(StoreClosedError):
        await store.fetchall("SELECT 1")


def test_durable_commit_survives_sigkill(tmp_path: Path) -> None:
    """The ack comes after the commit: a process killed right then keeps the row."""
    path = tmp_path / "node.db"
    script = textwrap.dedent(
        """
        import sys, trio
        from pathlib import Path
        from yagna.store import Store

        async def main():
            store = await Store.open(Path(sys.argv[1]))
            await store.transaction(
                lambda c: c.execute("INSERT INTO settings VALUES ('voucher', '7')"), durable=True)
            print("committed", flush=True)
            await trio.sleep(60)

        trio.run(main)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "committed"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
    with raw(path) as c:
        assert c.execute("SELECT value FROM settings WHERE key = 'voucher'").fetchone() == ("7",)


# ---------------------------------------------------------------------- cancellation and concurrency


async def test_cancelled_caller_mid_transaction_leaves_db_consistent(tmp_path: Path) -> None:
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def slow(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO settings VALUES ('a', '1')")
        trio.from_thread.run_sync(started.set, trio_token=token)
        time.sleep(0.2)
        conn.execute("INSERT INTO settings VALUES ('b', '2')")
        return "done"

    ran_second = False

    def second(conn: sqlite3.Connection) -> None:
        nonlocal ran_second
        ran_second = True

    async with Store.open_ctx(tmp_path / "node.db") as store:
        async with trio.open_nursery() as nursery:
            cancel_me = trio.CancelScope()

            async def caller() -> None:
                with cancel_me:
                    await store.transaction(slow)

            nursery.start_soon(caller)
            await started.wait()
            # a second caller queued behind the first is cancelled before its unit starts
            with trio.move_on_after(0.01):
                await store.transaction(second)
            cancel_me.cancel()

        assert not ran_second
        # the started unit ran to COMMIT: all or nothing, and here it is all
        rows = await store.fetchall("SELECT key FROM settings ORDER BY key")
        assert [r[0] for r in rows] == ["a", "b"]
        assert (await store.fetchone("SELECT COUNT(*) FROM settings"))[0] == 2
        await store.execute("INSERT INTO settings VALUES ('c', '3')")  # not stuck in a transaction


async def test_cancelled_caller_of_failing_transaction_rolls_back(tmp_path: Path) -> None:
    def slow_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings VALUES ('a', '1')")
        time.sleep(0.1)
        raise RuntimeError("late failure")

    async with Store.open_ctx(tmp_path / "node.db") as store:
        with trio.move_on_after(0.02):
            with pytest.raises(RuntimeError):
                await store.transaction(slow_fail)
        assert (await store.fetchone("SELECT COUNT(*) FROM settings"))[0] == 0


async def test_several_stores_in_one_trio_run(tmp_path: Path) -> None:
    stores = [await Store.open(tmp_path / f"node{i}.db") for i in range(3)]
    try:

        async def writer(store: Store, n: int, tag: str) -> None:
            for i in range(n):
                await store.execute("INSERT INTO settings VALUES (?, ?)", (f"{tag}{i}", tag), durable=i % 5 == 0)

        async with trio.open_nursery() as nursery:
            for idx, store in enumerate(stores):
                for w in range(2):
                    nursery.start_soon(writer, store, 30, f"s{idx}w{w}-")
        for idx, store in enumerate(stores):
            rows = await store.fetchall("SELECT DISTINCT value FROM settings ORDER BY value")
            assert [r[0] for r in rows] == [f"s{idx}w0-", f"s{idx}w1-"]
            assert (await store.fetchone("SELECT COUNT(*) FROM settings"))[0] == 60
    finally:
        for store in stores:
            await store.close()


async def test_two_stores_on_one_file_share_it(tmp_path: Path) -> None:
    """Two connections to one file (e.g. a CLI beside the daemon) see each other's commits."""
    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as a, Store.open_ctx(path) as b:
        await a.execute("INSERT INTO settings VALUES ('k', 'v')")
        assert (await b.fetchone("SELECT value FROM settings"))[0] == "v"
