"""Vouchers verified and durably stored per second on one core, beside the plain SQLite commit rate.

The process pins itself to one CPU (``os.sched_setaffinity``) before any thread
exists, so the store's worker thread shares that core too. A payer key signs
``--vouchers`` vouchers up front (seq 1..N, rising cumulative amounts) on one
channel of realistic ids (testnet network, ``testnet-ledger`` driver, 32-hex
channel id, 64-hex agreement id); signing is not part of the payee's figures.
Then, in ``--rounds`` rounds, each kind below runs once over all N vouchers
(a fresh :class:`PayeeChannel` and a fresh channel row each round), in turn,
so load drift hits them alike. Reported: the median per-round rate.

Payee figures (what ``ProviderPayments.on_voucher`` / ``_take_voucher`` do):

* **verify only**: :func:`peek_channel_id` (to find the channel) +
  :meth:`PayeeChannel.receive` (which runs :func:`open_voucher`: size, ed25519
  signature, canonical CBOR, every id against the terms; then checks 5-6);
* **verify + durable store**: the same, then ``await PayChannels.save_best``
  on a real :class:`yagna.store.Store` file (SELECT best_seq + UPDATE in one
  ``BEGIN IMMEDIATE`` transaction, ``synchronous=FULL``, on the store's worker
  thread via ``trio.to_thread``), one voucher at a time, as the provider does.

Baselines, same disk (the temporary directory), same run:

* **plain SQLite, synchronous=FULL**: stdlib ``sqlite3`` in the main thread,
  WAL, one ``INSERT`` of a voucher-sized row per ``BEGIN IMMEDIATE`` ... ``COMMIT``;
  the ratio ours / this is the headline (aim: at least 40%).

Diagnostics that split the gap (same disk, same run):

* plain ``sqlite3``, ``save_best``'s exact SQL and PRAGMA toggles, main thread;
* ``Store.transaction(durable=True)`` of a trivial INSERT (the thread hop +
  the two ``PRAGMA synchronous`` toggles per commit);
* ``open_voucher`` alone and ``sign_voucher`` (the payer's cost per voucher).

Also printed: the bytes per voucher (the sealed envelope; its CBOR payload).

Run: ``python bench/payment_vouchers.py [--vouchers 2000] [--rounds 5] [--cpu N]``. Takes ~20 s.
No child processes; the temporary directory is removed in a ``finally``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import SMOKE_HELP, apply_smoke, machine, table  # noqa: E402


def pin(cpu: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {chosen})
    return chosen


def fs_of(path: Path) -> str:
    """The file system type holding ``path`` (from /proc/mounts, longest mount prefix)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, typ = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, f"{typ} ({dev} on {mnt})"
    except OSError:
        pass
    return kind


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vouchers", type=int, default=2000, help="vouchers per kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one allowed)")
    parser.add_argument("--channels", type=int, default=64,
                        help="channels storing vouchers at once in the group-commit figure")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, vouchers=50, rounds=1)

    cpu = pin(args.cpu)  # before trio or sqlite start any thread: they inherit the mask

    import trio

    from payments.channel import PayeeChannel
    from payments.voucher import ChannelTerms, open_voucher, peek_channel_id, sign_voucher
    from yagna.core import wire
    from yagna.core.identity import NodeKey
    from yagna.store import Store
    from yagna.store.payment_repos import PayChannels

    print(f"# payment_vouchers: {machine()}, load average {os.getloadavg()[0]:.2f}, pinned to CPU {cpu}")
    payer, payee = NodeKey.generate(), NodeKey.generate()
    deposit = 5 * 10**18
    n = args.vouchers

    def terms_for(channel_id: str) -> ChannelTerms:
        return ChannelTerms("testnet", "testnet-ledger", channel_id, secrets.token_hex(32), payer.node_id,
                            payee.node_id, "tGLM", deposit)

    # A realistic amount: ~0.1 tGLM/hour at 1 s notes is ~2.8e13 base units per note.
    step = 27_777_777_777_778

    def sign_all(terms: ChannelTerms) -> tuple[list[bytes], float]:
        t = time.perf_counter()
        out = [sign_voucher(payer, terms, seq, seq * step) for seq in range(1, n + 1)]
        return out, time.perf_counter() - t

    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-vouchers-")
    tmp = Path(tmpdir.name)
    results: dict[str, list[float]] = {k: [] for k in
                                       ("verify", "open", "stored", "stored_many", "plain", "plain_best", "store_trivial", "sign")}
    try:
        store_path = tmp / "yagna.db"

        async def with_store(fn: Callable[[Store, PayChannels], object]) -> object:
            async with Store.open_ctx(store_path) as store:
                return await fn(store, PayChannels(store))  # type: ignore[misc]

        # The plain baseline's own file, same directory (same disk), WAL + FULL.
        plain = sqlite3.connect(tmp / "plain.db", isolation_level=None)
        plain.execute("PRAGMA journal_mode=WAL")
        plain.execute("PRAGMA synchronous=FULL")
        plain.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, seq TEXT, amount TEXT, raw BLOB, at INTEGER)")
        # save_best's exact SQL on a copy of the schema row, plain sqlite3 in the main thread.
        best_db = sqlite3.connect(tmp / "best.db", isolation_level=None)
        best_db.execute("PRAGMA journal_mode=WAL")
        best_db.execute("PRAGMA synchronous=NORMAL")
        best_db.execute("CREATE TABLE pay_channels (channel_id TEXT PRIMARY KEY, best_seq TEXT, best_amount TEXT,"
                        " best_voucher BLOB, paid TEXT, updated_at INTEGER)")

        sample = sign_voucher(payer, terms_for(secrets.token_hex(16)), 1234, 1234 * step)
        body = wire.decode(wire.decode(sample)[0])
        payload_len = len(wire.encode(body[2]))
        print(f"store: {store_path.parent} on {fs_of(store_path)}")

        for rnd in range(args.rounds):
            terms = terms_for(secrets.token_hex(16))
            vouchers, signed_s = sign_all(terms)
            results["sign"].append(rate(n, signed_s))

            # verify only
            core = PayeeChannel(terms)
            t = time.perf_counter()
            for raw in vouchers:
                if peek_channel_id(raw) == terms.channel_id:
                    core.receive(raw)
            results["verify"].append(rate(n, time.perf_counter() - t))

            # open_voucher alone
            t = time.perf_counter()
            for raw in vouchers:
                open_voucher(raw, terms)
            results["open"].append(rate(n, time.perf_counter() - t))

            # verify + durable store, through the daemon's own Store and PayChannels
            async def stored(store: Store, channels: PayChannels, terms: ChannelTerms = terms,
                             vouchers: list[bytes] = vouchers) -> float:
                await channels.insert(terms.channel_id, terms.agreement_id, "payee", payer.node_id,
                                      wire.encode(terms.to_record()), terms.deposit)
                core = PayeeChannel(terms)
                t = time.perf_counter()
                for raw in vouchers:
                    if peek_channel_id(raw) != terms.channel_id:
                        continue
                    receipt = core.receive(raw)
                    assert receipt.commit is not None and core.best is not None
                    ok = await channels.save_best(terms.channel_id, receipt.seq, core.best.amount, receipt.commit,
                                                  receipt.paid)
                    assert ok
                return time.perf_counter() - t

            results["stored"].append(rate(n, trio.run(with_store, stored)))  # type: ignore[arg-type]

            # the same with --channels channels at once (a provider paid by many requestors):
            # their durable commits are grouped, each voucher still acknowledged after its commit
            per = max(1, n // args.channels)
            many = [terms_for(secrets.token_hex(16)) for _ in range(args.channels)]
            many_vouchers = [[sign_voucher(payer, tm, seq, seq * step) for seq in range(1, per + 1)] for tm in many]

            async def stored_many(store: Store, channels: PayChannels) -> float:
                for tm in many:
                    await channels.insert(tm.channel_id, tm.agreement_id, "payee", payer.node_id,
                                          wire.encode(tm.to_record()), tm.deposit)

                async def one_channel(tm: ChannelTerms, vouchers: list[bytes]) -> None:
                    core = PayeeChannel(tm)
                    for raw in vouchers:
                        if peek_channel_id(raw) != tm.channel_id:
                            continue
                        receipt = core.receive(raw)
                        assert receipt.commit is not None and core.best is not None
                        assert await channels.save_best(tm.channel_id, receipt.seq, core.best.amount,
                                                        receipt.commit, receipt.paid)

                t = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for tm, vs in zip(many, many_vouchers):
                        nursery.start_soon(one_channel, tm, vs)
                return time.perf_counter() - t

            results["stored_many"].append(rate(per * len(many), trio.run(with_store, stored_many)))  # type: ignore[arg-type]

            # plain SQLite: one voucher-sized row per durable commit
            t = time.perf_counter()
            for seq, raw in enumerate(vouchers, 1):
                plain.execute("BEGIN IMMEDIATE")
                plain.execute("INSERT INTO t (seq, amount, raw, at) VALUES (?, ?, ?, ?)",
                              (str(seq), str(seq * step), raw, int(time.time())))
                plain.execute("COMMIT")
            results["plain"].append(rate(n, time.perf_counter() - t))

            # plain sqlite3, save_best's SQL + the PRAGMA toggles, main thread
            best_db.execute("INSERT INTO pay_channels VALUES (?, '0', '0', NULL, '0', 0)", (terms.channel_id,))
            t = time.perf_counter()
            for seq, raw in enumerate(vouchers, 1):
                best_db.execute("PRAGMA synchronous=FULL")
                best_db.execute("BEGIN IMMEDIATE")
                row = best_db.execute("SELECT best_seq FROM pay_channels WHERE channel_id = ?",
                                      (terms.channel_id,)).fetchone()
                assert int(row[0]) < seq
                best_db.execute("UPDATE pay_channels SET best_seq = ?, best_amount = ?, best_voucher = ?,"
                                " paid = COALESCE(?, paid), updated_at = ? WHERE channel_id = ?",
                                (str(seq), str(seq * step), raw, str(seq * step), int(time.time()), terms.channel_id))
                best_db.execute("COMMIT")
                best_db.execute("PRAGMA synchronous=NORMAL")
            results["plain_best"].append(rate(n, time.perf_counter() - t))

            # Store.transaction(durable=True) of a trivial insert: thread hop + toggles + fsync
            async def trivial(store: Store, channels: PayChannels, vouchers: list[bytes] = vouchers) -> float:
                await store.execute("CREATE TABLE IF NOT EXISTS bench_t (id INTEGER PRIMARY KEY, raw BLOB)")
                t = time.perf_counter()
                for raw in vouchers:
                    await store.execute("INSERT INTO bench_t (raw) VALUES (?)", (raw,), durable=True)
                return time.perf_counter() - t

            results["store_trivial"].append(rate(n, trio.run(with_store, trivial)))  # type: ignore[arg-type]
            print(f"round {rnd + 1}/{args.rounds}: verify {results['verify'][-1]:,.0f}/s, "
                  f"verify+store {results['stored'][-1]:,.0f}/s ({args.channels} channels at once "
                  f"{results['stored_many'][-1]:,.0f}/s), plain FULL {results['plain'][-1]:,.0f}/s",
                  flush=True)
        plain.close()
        best_db.close()
    finally:
        tmpdir.cleanup()

    med = {k: statistics.median(v) for k, v in results.items()}

    def us(r: float) -> float:
        return 1e6 / r

    print(f"\n## Vouchers on one core (CPU {cpu}), median of {args.rounds} rounds of {n:,}")
    rows = [
        ["ours: verify (peek_channel_id + PayeeChannel.receive)", f"{med['verify']:,.0f}", us(med["verify"]),
         f"{min(results['verify']):,.0f}-{max(results['verify']):,.0f}"],
        ["ours: verify + durable store (receive + PayChannels.save_best)", f"{med['stored']:,.0f}",
         us(med["stored"]), f"{min(results['stored']):,.0f}-{max(results['stored']):,.0f}"],
        [f"ours: the same, {args.channels} channels at once (group commit)", f"{med['stored_many']:,.0f}",
         us(med["stored_many"]), f"{min(results['stored_many']):,.0f}-{max(results['stored_many']):,.0f}"],
        ["baseline: plain sqlite3 INSERT, 1 row/commit, WAL, synchronous=FULL", f"{med['plain']:,.0f}",
         us(med["plain"]), f"{min(results['plain']):,.0f}-{max(results['plain']):,.0f}"],
        ["  diag: plain sqlite3, save_best's SQL + PRAGMA toggles", f"{med['plain_best']:,.0f}",
         us(med["plain_best"]), f"{min(results['plain_best']):,.0f}-{max(results['plain_best']):,.0f}"],
        ["  diag: Store.execute(INSERT, durable=True) (thread hop)", f"{med['store_trivial']:,.0f}",
         us(med["store_trivial"]), f"{min(results['store_trivial']):,.0f}-{max(results['store_trivial']):,.0f}"],
        ["  diag: open_voucher alone", f"{med['open']:,.0f}", us(med["open"]),
         f"{min(results['open']):,.0f}-{max(results['open']):,.0f}"],
        ["  payer: sign_voucher", f"{med['sign']:,.0f}", us(med["sign"]),
         f"{min(results['sign']):,.0f}-{max(results['sign']):,.0f}"],
    ]
    print(table(["what", "per s", "us each", "range per s"], rows))
    print(f"ours (verify + durable store) / plain durable commits: one channel {med['stored'] / med['plain']:.0%}, "
          f"{args.channels} channels at once {med['stored_many'] / med['plain']:.0%} (aim: >= 60%)")
    print(f"verify share of one stored voucher: {us(med['verify']):.0f} of {us(med['stored']):.0f} us; "
          f"Store hop + toggles over plain: {us(med['store_trivial']) - us(med['plain']):.0f} us")
    print(f"bytes per voucher: {len(sample)} sealed (envelope [body, 64-byte signature]); "
          f"CBOR payload {payload_len} (9 fields: 7 ids, seq, amount); body {len(wire.decode(sample)[0])}")


if __name__ == "__main__":
    main()
