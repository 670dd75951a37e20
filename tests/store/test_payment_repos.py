"""Payment repositories: pay channels, debit notes, invoices (migration 4).

Amounts are ints of base units stored as canonical decimal TEXT, so they
round-trip exactly past SQLite's 64-bit integers. Every write is durable: the
tests watch the statements SQLite runs and check each COMMIT ran under
``synchronous=FULL``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from payments.meter import MeterRecord
from yagna.core.money import MAX_UNITS, UNIT
from yagna.store import ConstraintError, Store
from yagna.store.payment_repos import (
    DebitNotes,
    Invoices,
    PayChannels,
    StoredPayChannel,
    amount_from_db,
    amount_to_db,
)

BIG = 2**64 + 12345  # over SQLite's INTEGER range (and about 18.4 tokens)
HUGE = MAX_UNITS
ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self, t: float = 1_700_000_000) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open_ctx(tmp_path / "node.db") as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Trace:
    """The SQL statements the store's connection runs (sqlite3 trace callback)."""

    def __init__(self, store: Store) -> None:
        self.statements: list[str] = []
        conn = store._conn  # test-only peek at the private connection
        assert conn is not None
        conn.set_trace_callback(self.statements.append)

    def commits(self) -> list[str]:
        """For each COMMIT, the synchronous mode in force when it ran."""
        mode = "NORMAL"  # the store's default
        out = []
        for s in self.statements:
            up = " ".join(s.split()).upper()
            if up.startswith("PRAGMA SYNCHRONOUS="):
                mode = up.split("=", 1)[1]
            elif up == "COMMIT":
                out.append(mode)
        return out

    def clear(self) -> None:
        self.statements.clear()


async def assert_durable(trace: Trace, action: Callable[[], Awaitable[object]]) -> object:
    trace.clear()
    result = await action()
    commits = trace.commits()
    assert commits and all(mode == "FULL" for mode in commits), (commits, trace.statements)
    return result


async def assert_not_durable(trace: Trace, action: Callable[[], Awaitable[object]]) -> object:
    trace.clear()
    result = await action()
    assert "FULL" not in trace.commits(), trace.statements
    return result


# ---------------------------------------------------------------------- amounts


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 2**63, BIG, 10**30 * UNIT, HUGE])
def test_amount_text_round_trip(value: int) -> None:
    text = amount_to_db(value)
    assert text == str(value) and amount_from_db(text) == value


@pytest.mark.parametrize(
    ("value", "exc"), [(-1, ValueError), (HUGE + 1, ValueError), (True, TypeError), (1.0, TypeError), ("1", TypeError)]
)
def test_amount_text_refuses(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        amount_to_db(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["0123", "-1", "1.5", "", " 1", "1e3", "1" * 79, b"12"])
async def test_amount_columns_refuse_non_canonical_text(store: Store, bad: object) -> None:
    with pytest.raises(ConstraintError):
        await store.execute("INSERT INTO invoices VALUES ('a', 'payee', ?, 'issued', NULL, 0, 0)", (bad,))


async def test_migration_4_tables(store: Store) -> None:
    rows = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {"ledger_accounts", "ledger_channels", "pay_channels", "debit_notes", "invoices"} <= {r[0] for r in rows}
    desc = await store.fetchone("SELECT description FROM schema_version WHERE version = 4")
    assert desc is not None and desc[0] == "payments: ledger, channels, vouchers, debit notes"


# ---------------------------------------------------------------------- pay channels


async def test_pay_channel_insert_get_list(store: Store, clock: FakeClock) -> None:
    chans = PayChannels(store, clock=clock)
    made = await chans.insert("ch-1", "ag-1", "payee", "peer-r", b"\x84terms", BIG)
    got = await chans.get("ch-1")
    assert got == made == StoredPayChannel(
        "ch-1", "ag-1", "payee", "peer-r", b"\x84terms", BIG, "open", 0, 0, None, 0, 0, 0, None, None,
        int(clock.t), int(clock.t),
    )
    assert await chans.by_agreement("ag-1") == got
    assert await chans.get("nope") is None and await chans.by_agreement("nope") is None

    clock.t += 1
    await chans.insert("ch-2", "ag-2", "payer", "peer-p", b"t2", 5)
    assert [c.channel_id for c in await chans.list()] == ["ch-2", "ch-1"]
    assert [c.channel_id for c in await chans.list(role="payer")] == ["ch-2"]
    await chans.set_state("ch-1", "closed", "agreement ended")
    assert [c.channel_id for c in await chans.list(state="open")] == ["ch-2"]
    assert [c.channel_id for c in await chans.list(role="payee", state="closed")] == ["ch-1"]

    with pytest.raises(ConstraintError):
        await chans.insert("ch-1", "ag-9", "payee", "x", b"", 1)  # channel id taken
    with pytest.raises(ConstraintError):
        await chans.insert("ch-9", "ag-1", "payee", "x", b"", 1)  # one channel per agreement
    with pytest.raises(ConstraintError):
        await chans.insert("ch-9", "ag-9", "watcher", "x", b"", 1)
    with pytest.raises(ConstraintError):
        await chans.set_state("ch-2", "weird")


async def test_payer_save_signed_never_reuses_a_seq(store: Store, clock: FakeClock) -> None:
    chans = PayChannels(store, clock=clock)
    await chans.insert("ch", "ag", "payer", "prov", b"terms", HUGE)
    assert await chans.save_signed("ch", 1, 10, b"v1") is True
    clock.t += 5
    assert await chans.save_signed("ch", 1, 11, b"v1-other") is False  # same seq, another amount: refused
    assert await chans.save_signed("ch", 0, 11, b"v0") is False
    assert await chans.save_signed("ch", 2, BIG, b"v2") is True
    assert await chans.save_signed("missing", 3, 1, b"v") is False
    c = await chans.get("ch")
    assert c is not None
    assert (c.best_seq, c.best_amount, c.best_voucher, c.paid, c.updated_at) == (2, BIG, b"v2", 0, int(clock.t))

    assert await chans.set_acked("ch", 2) is True
    assert await chans.set_acked("ch", 1) is True  # a late ack never moves it back
    c = await chans.get("ch")
    assert c is not None and c.acked_seq == 2
    assert await chans.set_acked("missing", 1) is False


async def test_payer_save_signed_stores_the_meter_in_the_same_commit(store: Store, clock: FakeClock) -> None:
    from payments.meter import MeterRecord

    chans, trace = PayChannels(store, clock=clock), Trace(store)
    await chans.insert("ch", "ag", "payer", "prov", b"terms", HUGE)
    meter = MeterRecord(1234, 5678, True, 1)
    await assert_durable(trace, lambda: chans.save_signed("ch", 1, 10, b"v1", meter=meter))
    assert trace.commits() == ["FULL"]
    assert await chans.get_meter("ch") == meter
    # refused (seq reused): the meter is not written either
    assert await chans.save_signed("ch", 1, 11, b"again", meter=MeterRecord(1, 1, False, 0)) is False
    assert await chans.get_meter("ch") == meter


async def test_payee_save_best_and_the_rest(store: Store, clock: FakeClock) -> None:
    chans = PayChannels(store, clock=clock)
    await chans.insert("ch", "ag", "payee", "req", b"terms", BIG)
    assert await chans.save_best("ch", 1, 2**63, b"best-1", 2**63) is True
    assert await chans.save_best("ch", 3, HUGE, b"best-3", BIG) is True  # amount over the deposit: paid capped
    assert await chans.save_best("ch", 2, 2**63 + 1, b"late", 2**63 + 1) is False  # lower seq never overwrites
    assert await chans.set_due("ch", BIG + 1) is True
    assert await chans.set_evidence("ch", b"\x82both-vouchers") is True
    assert await chans.set_state("ch", "closing", "equivocation") is True
    assert await chans.set_state("ch", "closed") is True  # reason kept
    c = await chans.get("ch")
    assert c is not None
    assert (c.best_seq, c.best_amount, c.best_voucher, c.paid, c.due) == (3, HUGE, b"best-3", BIG, BIG + 1)
    assert (c.state, c.reason, c.evidence) == ("closed", "equivocation", b"\x82both-vouchers")
    for call in (chans.set_due("x", 1), chans.set_evidence("x", b""), chans.set_state("x", "closed")):
        assert await call is False
    with pytest.raises(ValueError):
        await chans.save_best("ch", 4, -1, b"v", 0)
    with pytest.raises(ValueError):
        await chans.save_best("ch", -1, 1, b"v", 0)


async def test_seqs_past_64_bit_integers(store: Store) -> None:
    """The wire allows seq up to 2**64 - 1 and a payer may jump there; compared as ints, not text."""
    chans = PayChannels(store)
    await chans.insert("ch", "ag", "payee", "req", b"terms", 100)
    assert await chans.save_best("ch", 9, 1, b"v9", 1) is True
    assert await chans.save_best("ch", 10, 2, b"v10", 2) is True  # "10" < "9" as text; 10 > 9 as ints
    assert await chans.save_best("ch", 9, 3, b"v9-again", 3) is False
    assert await chans.save_best("ch", 2**64 - 1, 4, b"vmax", 4) is True
    assert await chans.save_best("ch", 2**63, 5, b"v-lower", 5) is False
    assert await chans.set_acked("ch", 2**64 - 1) is True
    assert await chans.set_acked("ch", 11) is True  # never moves back, even across text order
    c = await chans.get("ch")
    assert c is not None and (c.best_seq, c.best_voucher, c.acked_seq) == (2**64 - 1, b"vmax", 2**64 - 1)

    notes = DebitNotes(store)
    for seq in (2**64 - 1, 10, 9, 100):
        await notes.insert("ag", seq, b"dn-%d" % seq, seq)
    assert [n.seq for n in await notes.list("ag")] == [9, 10, 100, 2**64 - 1]
    latest = await notes.latest("ag")
    assert latest is not None and latest.seq == 2**64 - 1
    assert await notes.set_status("ag", 2**64 - 1, "accepted", accepted_amount=2**64 - 1) is True
    got = await notes.get("ag", 2**64 - 1)
    assert got is not None and got.accepted_amount == 2**64 - 1


async def test_every_pay_channel_write_is_durable(store: Store) -> None:
    chans, trace = PayChannels(store), Trace(store)
    await assert_durable(trace, lambda: chans.insert("ch", "ag", "payee", "req", b"t", 100))
    await assert_durable(trace, lambda: chans.save_best("ch", 1, 10, b"v", 10))
    await assert_durable(trace, lambda: chans.save_signed("ch", 2, 20, b"v"))
    await assert_durable(trace, lambda: chans.set_acked("ch", 2))
    await assert_not_durable(trace, lambda: chans.set_due("ch", 30))  # soft: the note itself is durable
    await assert_durable(trace, lambda: chans.set_state("ch", "closing", "r"))
    await assert_durable(trace, lambda: chans.set_evidence("ch", b"e"))
    # and a plain soft-state write is not: the trace tells the difference
    trace.clear()
    await store.execute("INSERT INTO settings VALUES ('k', 'v')")
    assert trace.commits() == [] and not any("FULL" in s for s in trace.statements)


# ---------------------------------------------------------------------- debit notes


async def test_debit_notes(store: Store, clock: FakeClock) -> None:
    notes, trace = DebitNotes(store, clock=clock), Trace(store)
    assert await notes.latest("ag") is None
    n1 = await assert_durable(trace, lambda: notes.insert("ag", 1, b"dn-1", 5))
    await notes.insert("ag", 2, b"dn-2", BIG)
    await notes.insert("other", 1, b"dn-o", 1)
    assert await notes.get("ag", 1) == n1
    with pytest.raises(ConstraintError):
        await notes.insert("ag", 2, b"again", 7)

    await assert_not_durable(trace, lambda: notes.set_status("ag", 1, "accepted", accepted_amount=5))
    assert await notes.set_status("ag", 2, "rejected", reason="over the meter") is True
    assert await notes.set_status("ag", 9, "accepted") is False
    with pytest.raises(ConstraintError):
        await notes.set_status("ag", 1, "maybe")

    # with its channel: the note and the channel's due in one durable commit
    chans = PayChannels(store, clock=clock)
    await chans.insert("ch-n", "ag-n", "payee", "peer", b"terms", 100)
    await assert_durable(trace, lambda: notes.insert("ag-n", 1, b"dn", 42, channel_id="ch-n"))
    assert trace.commits() == ["FULL"]
    got = await chans.get("ch-n")
    assert got is not None and got.due == 42

    listed = await notes.list("ag")
    assert [(n.seq, n.amount_due, n.accepted_amount, n.status, n.reason) for n in listed] == [
        (1, 5, 5, "accepted", None),
        (2, BIG, None, "rejected", "over the meter"),
    ]
    latest = await notes.latest("ag")
    assert latest is not None and latest.seq == 2 and latest.raw == b"dn-2" and latest.created_at == int(clock.t)


# ---------------------------------------------------------------------- invoices


async def test_invoices(store: Store, clock: FakeClock) -> None:
    invoices, trace = Invoices(store, clock=clock), Trace(store)
    await assert_durable(trace, lambda: invoices.upsert("ag-1", "payee", BIG, "issued", b"inv"))
    created = int(clock.t)
    clock.t += 60
    await assert_durable(trace, lambda: invoices.upsert("ag-1", "payee", BIG + 1, "settled"))  # raw kept
    await invoices.upsert("ag-2", "payer", HUGE, "paid")
    inv = await invoices.get("ag-1")
    assert inv is not None
    assert (inv.amount, inv.status, inv.raw, inv.created_at, inv.updated_at) == (BIG + 1, "settled", b"inv", created, int(clock.t))
    assert await invoices.get("nope") is None
    assert [i.agreement_id for i in await invoices.list()] == ["ag-2", "ag-1"]
    assert [i.amount for i in await invoices.list(role="payer")] == [HUGE]
    assert [i.agreement_id for i in await invoices.list(status="settled")] == ["ag-1"]
    with pytest.raises(ConstraintError):
        await invoices.upsert("ag-3", "payee", 1, "lost")


# ---------------------------------------------------------------------- surviving restarts


async def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as store:
        chans = PayChannels(store)
        await chans.insert("ch", "ag", "payee", "req", b"terms", BIG)
        await chans.save_best("ch", 7, BIG, b"best", BIG)
        await DebitNotes(store).insert("ag", 1, b"dn", BIG)
        await Invoices(store).upsert("ag", "payee", BIG, "issued")
    async with Store.open_ctx(path) as store:
        c = await PayChannels(store).get("ch")
        assert c is not None and (c.best_seq, c.best_amount, c.best_voucher, c.paid) == (7, BIG, b"best", BIG)
        note = await DebitNotes(store).get("ag", 1)
        assert note is not None and note.amount_due == BIG
        inv = await Invoices(store).get("ag")
        assert inv is not None and inv.amount == BIG


async def test_the_payer_meter_is_stored_with_its_channel(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as store:
        chans = PayChannels(store)
        await chans.insert("ch", "ag", "payer", "prov", b"terms", BIG)
        assert await chans.get_meter("ch") == MeterRecord()  # migration 6: a channel starts at zero
        assert await chans.set_meter("ch", MeterRecord(30_000, 1_700_000_030_000, True, 1))
        assert not await chans.set_meter("nope", MeterRecord())
        assert await chans.get_meter("nope") is None
    async with Store.open_ctx(path) as store:
        assert await PayChannels(store).get_meter("ch") == MeterRecord(30_000, 1_700_000_030_000, True, 1)


_CHILD = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from yagna.store import Store
    from yagna.store.payment_repos import PayChannels

    async def main(path):
        store = await Store.open(Path(path))  # never closed: the parent kills us
        chans = PayChannels(store)
        await chans.insert("ch", "ag", "payee", "req", b"terms", 2**70)
        for seq in range(1, 51):
            await chans.save_best("ch", seq, seq * 2**64, b"voucher-%d" % seq, seq * 2**64)
        print("acked 50", flush=True)  # what the peer would be told
        await trio.sleep(60)

    trio.run(main, sys.argv[1])
    """
)


async def test_acknowledged_best_voucher_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        out = b""
        assert proc.stdout is not None
        with trio.fail_after(60):
            while b"acked 50\n" not in out:
                chunk = await proc.stdout.receive_some()
                assert chunk, f"child exited early: {out!r}"
                out += chunk
        proc.send_signal(signal.SIGKILL)
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()
    assert proc.returncode == -signal.SIGKILL
    assert path.with_name("node.db-wal").exists()  # not checkpointed: recovery reads the WAL

    async with Store.open_ctx(path) as store:
        c = await PayChannels(store).get("ch")
    assert c is not None
    assert (c.best_seq, c.best_amount, c.best_voucher, c.paid) == (50, 50 * 2**64, b"voucher-50", 50 * 2**64)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
