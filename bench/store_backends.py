"""Benchmark the two candidate SQLite backends for ``yagna.store`` under trio.

(a) ``aiosqlite`` driven from trio through ``trio-asyncio``
    (``trio_asyncio.open_loop()`` + ``trio_asyncio.aio_as_trio``);
(b) stdlib ``sqlite3`` on one worker thread per store, driven with
    ``trio.to_thread.run_sync(..., limiter=CapacityLimiter(1),
    abandon_on_cancel=False)`` and ``check_same_thread=False``
    (the design ``yagna.store`` would ship).

Both use a real file in a temp dir, WAL mode, one connection per store.
Each workload is time-boxed so the whole run stays well under a minute.
Every "op" is one await from a trio task, timed with ``perf_counter``:

* ``insert FULL``   one row per transaction, ``synchronous=FULL``
                    (the payment path: commit before acknowledging);
* ``insert NORMAL`` the same with ``synchronous=NORMAL`` (soft state);
* ``select``        a point select by primary key on a 5,000-row table;
* ``3 stores``      three stores in one process, one trio task each,
                    inserting concurrently (aggregate ops/s);
* import time and RSS, each in a fresh interpreter (median of 5).

For aiosqlite the insert is a single ``execute`` in autocommit mode
(``isolation_level=None``): one loop hop per op, its best case. sqlite3
runs ``BEGIN IMMEDIATE; INSERT; COMMIT`` as one unit of work on the thread,
which is what ``Store.transaction`` does. A third column runs the same
workloads through ``yagna.store.Store`` itself (``durable=True`` for FULL) to
check the shipped code costs what (b) measured.

Run: ``python bench/store_backends.py [--seconds 2.0]``. Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

SCHEMA = "CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL)"
INSERT = "INSERT INTO kv (k, v) VALUES (?, ?)"
SELECT = "SELECT k, v FROM kv WHERE id = ?"
PAYLOAD = os.urandom(96)
SELECT_ROWS = 5_000
MAX_OPS = 200_000


class Backend(Protocol):
    async def insert(self, i: int) -> None: ...
    async def select(self, i: int) -> Any: ...
    async def set_sync(self, mode: str) -> None: ...
    async def bulk_fill(self, n: int) -> None: ...
    async def close(self) -> None: ...


# --------------------------------------------------------------------------- (a)


class AioBackend:
    """aiosqlite connection, every call bridged with aio_as_trio."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: Path) -> AioBackend:
        import aiosqlite
        from trio_asyncio import aio_as_trio

        async def _open() -> Any:
            conn = await aiosqlite.connect(path, isolation_level=None)
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(SCHEMA)
            return conn

        return cls(await aio_as_trio(_open)())

    async def _run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        from trio_asyncio import aio_as_trio

        return await aio_as_trio(fn)()

    async def set_sync(self, mode: str) -> None:
        await self._run(lambda: self._conn.execute(f"PRAGMA synchronous={mode}"))

    async def insert(self, i: int) -> None:
        await self._run(lambda: self._conn.execute(INSERT, (f"k{i}", PAYLOAD)))

    async def select(self, i: int) -> Any:
        return await self._run(lambda: self._conn.execute_fetchall(SELECT, (i,)))

    async def bulk_fill(self, n: int) -> None:
        async def _fill() -> None:
            await self._conn.execute("BEGIN")
            await self._conn.executemany(INSERT, ((f"k{j}", PAYLOAD) for j in range(n)))
            await self._conn.execute("COMMIT")

        await self._run(_fill)

    async def close(self) -> None:
        await self._run(self._conn.close)


# --------------------------------------------------------------------------- (b)


class ThreadBackend:
    """stdlib sqlite3, one connection used from one worker slot at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter, abandon_on_cancel=False)

    @classmethod
    async def open(cls, path: Path) -> ThreadBackend:
        def _open() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)
            return conn

        return cls(await trio.to_thread.run_sync(_open))

    async def set_sync(self, mode: str) -> None:
        await self._run(lambda: self._conn.execute(f"PRAGMA synchronous={mode}"))

    async def insert(self, i: int) -> None:
        def _txn() -> None:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(INSERT, (f"k{i}", PAYLOAD))
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        await self._run(_txn)

    async def select(self, i: int) -> Any:
        return await self._run(lambda: self._conn.execute(SELECT, (i,)).fetchall())

    async def bulk_fill(self, n: int) -> None:
        def _fill() -> None:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany(INSERT, ((f"k{j}", PAYLOAD) for j in range(n)))

        await self._run(_fill)

    async def close(self) -> None:
        await self._run(self._conn.close)


# --------------------------------------------------------------------------- (b) as shipped


class StoreBackend:
    """``yagna.store.Store`` itself: (b) plus its BEGIN/COMMIT and durable switch."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._durable = False

    @classmethod
    async def open(cls, path: Path) -> StoreBackend:
        from yagna.store import Migration, Store

        return cls(await Store.open(path, migrations=(Migration(1, "bench", SCHEMA),)))

    async def set_sync(self, mode: str) -> None:
        self._durable = mode == "FULL"

    async def insert(self, i: int) -> None:
        await self._store.transaction(lambda c: c.execute(INSERT, (f"k{i}", PAYLOAD)), durable=self._durable)

    async def select(self, i: int) -> Any:
        return await self._store.fetchall(SELECT, (i,))

    async def bulk_fill(self, n: int) -> None:
        await self._store.transaction(lambda c: c.executemany(INSERT, ((f"k{j}", PAYLOAD) for j in range(n))))

    async def close(self) -> None:
        await self._store.close()


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    ops: int
    elapsed: float
    lat_ms: list[float]

    @property
    def ops_s(self) -> float:
        return self.ops / self.elapsed

    def median(self) -> float:
        return statistics.median(self.lat_ms) if self.lat_ms else float("nan")

    def p99(self) -> float:
        if len(self.lat_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.lat_ms, n=100)[98]


async def timed_loop(op: Callable[[int], Awaitable[Any]], seconds: float, start: int = 0) -> Result:
    lat: list[float] = []
    t0 = time.perf_counter()
    deadline = t0 + seconds
    i = start
    while time.perf_counter() < deadline and len(lat) < MAX_OPS:
        s = time.perf_counter()
        await op(i)
        lat.append((time.perf_counter() - s) * 1000)
        i += 1
    return Result(len(lat), time.perf_counter() - t0, lat)


WORKLOADS = ("insert FULL", "insert NORMAL", "select", "3 stores FULL", "3 stores NORMAL")
WARMUP_S = 0.1


def merge(acc: Result | None, r: Result) -> Result:
    if acc is None:
        return r
    return Result(acc.ops + r.ops, acc.elapsed + r.elapsed, acc.lat_ms + r.lat_ms)


async def run_workload(
    opener: Callable[[Path], Awaitable[Backend]], tmp: Path, workload: str, seconds: float
) -> Result:
    """One time slice of one workload; files persist in ``tmp`` between slices."""
    if workload.startswith("insert"):
        b = await opener(tmp / "single.db")
        await b.set_sync(workload.split()[1])
        await timed_loop(b.insert, WARMUP_S)
        r = await timed_loop(b.insert, seconds)
        await b.close()
        return r

    if workload == "select":
        b = await opener(tmp / "select.db")
        marker = tmp / "select.filled"
        if not marker.exists():
            await b.bulk_fill(SELECT_ROWS)
            marker.touch()
        await timed_loop(lambda i: b.select(i % SELECT_ROWS + 1), WARMUP_S)
        r = await timed_loop(lambda i: b.select(i % SELECT_ROWS + 1), seconds)
        await b.close()
        return r

    mode = workload.split()[-1]
    stores = [await opener(tmp / f"node{n}.db") for n in range(3)]
    results: list[Result] = []

    async def worker(st: Backend) -> None:
        await st.set_sync(mode)
        await timed_loop(st.insert, WARMUP_S)
        results.append(await timed_loop(st.insert, seconds))

    async with trio.open_nursery() as nursery:
        for st in stores:
            nursery.start_soon(worker, st)
    for st in stores:
        await st.close()
    # aggregate throughput: ops of all three over the (common) wall time of one
    wall = max(r.elapsed for r in results)
    return Result(sum(r.ops for r in results), wall, [x for r in results for x in r.lat_ms])


async def run_one(tag: str, tmp: Path, workload: str, seconds: float) -> Result:
    if tag == "a":
        import trio_asyncio

        async with trio_asyncio.open_loop():
            return await run_workload(AioBackend.open, tmp, workload, seconds)
    opener = ThreadBackend.open if tag == "b" else StoreBackend.open
    return await run_workload(opener, tmp, workload, seconds)


# --------------------------------------------------------------------------- import / RSS

_PROBE = r"""
import sys, time, os, tempfile, threading
def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
import trio
base = rss_kib()
t0 = time.perf_counter()
if sys.argv[1] == "aio":
    import asyncio, aiosqlite, trio_asyncio
else:
    import sqlite3
t_imp = time.perf_counter() - t0
after_import = rss_kib()
d = tempfile.mkdtemp()
async def main():
    if sys.argv[1] == "aio":
        async with trio_asyncio.open_loop():
            async def go():
                conn = await aiosqlite.connect(os.path.join(d, "x.db"), isolation_level=None)
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, v BLOB)")
                for i in range(200):
                    await conn.execute("INSERT INTO kv (v) VALUES (?)", (b"x" * 96,))
                n = threading.active_count()
                await conn.close()
                return n
            return await trio_asyncio.aio_as_trio(go)()
    else:
        lim = trio.CapacityLimiter(1)
        conn = await trio.to_thread.run_sync(
            lambda: sqlite3.connect(os.path.join(d, "x.db"), isolation_level=None, check_same_thread=False))
        for sql in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                    "CREATE TABLE kv (id INTEGER PRIMARY KEY, v BLOB)"):
            await trio.to_thread.run_sync(conn.execute, sql, limiter=lim)
        for i in range(200):
            await trio.to_thread.run_sync(conn.execute, "INSERT INTO kv (v) VALUES (?)", (b"x" * 96,), limiter=lim)
        n = threading.active_count()
        await trio.to_thread.run_sync(conn.close, limiter=lim)
        return n
threads = trio.run(main)
print(t_imp * 1000, after_import - base, rss_kib() - base, threads)
import shutil
shutil.rmtree(d, ignore_errors=True)
"""


def probe(kind: str, runs: int = 5) -> tuple[float, float, float, int]:
    rows = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, kind], check=True, capture_output=True, text=True
        ).stdout.split()
        rows.append([float(x) for x in out])
    cols = list(zip(*rows))
    return (
        statistics.median(cols[0]),
        statistics.median(cols[1]) / 1024,
        statistics.median(cols[2]) / 1024,
        int(statistics.median(cols[3])),
    )


# --------------------------------------------------------------------------- report


def _have_store() -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import yagna.store  # noqa: F401
    except ImportError as e:
        print(f"(skipping yagna.store.Store: {e})")
        return False
    return True


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _util import SMOKE_HELP, apply_smoke

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time box per workload")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved slices per workload")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, seconds=0.3, rounds=1)

    t_start = time.perf_counter()
    print(f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, trio {trio.__version__}")
    tags = ["a", "b"] + (["c"] if _have_store() else [])
    res: dict[str, dict[str, Result]] = {t: {} for t in tags}
    slice_s = args.seconds / args.rounds
    with tempfile.TemporaryDirectory(prefix="store-bench-") as d:
        for t in tags:
            (Path(d) / t).mkdir()
        # Interleave: every round runs each workload on every backend in a
        # rotated order, so a burst of disk contention hits all alike.
        for rnd in range(args.rounds):
            for workload in WORKLOADS:
                order = tags[rnd % len(tags) :] + tags[: rnd % len(tags)]
                for t in order:
                    r = trio.run(run_one, t, Path(d) / t, workload, slice_s)
                    res[t][workload] = merge(res[t].get(workload), r)

    names = {
        "a": "(a) aiosqlite via trio-asyncio",
        "b": "(b) sqlite3 on a worker thread",
        "c": "(b) as shipped: yagna.store.Store",
    }
    print(
        f"\nWAL, one connection per store, {args.seconds:.1f} s per workload and backend "
        f"in {args.rounds} interleaved slices\n"
    )
    print("| workload | backend | ops/s | median ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for key in WORKLOADS:
        for tag in tags:
            r = res[tag][key]
            print(f"| {key} | {names[tag]} | {r.ops_s:,.0f} | {r.median():.3f} | {r.p99():.3f} |")

    print("\nfresh interpreter, after `import trio`, median of 5\n")
    print("| backend | import ms | RSS after import MiB | RSS after 200 inserts MiB | threads |")
    print("|---|---:|---:|---:|---:|")
    for tag, kind in (("a", "aio"), ("b", "thread")):
        imp, rss_i, rss_u, threads = probe(kind)
        print(f"| {names[tag]} | {imp:.1f} | +{rss_i:.1f} | +{rss_u:.1f} | {threads} |")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
