"""The daemon's SQLite test-network ledger: the driver conformance suite on a real file,
plus what only a persistent ledger has (restarts, several connections, durable commits).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from payments.driver import SettlementDriver
from payments.errors import DepositReused, InsufficientFunds
from tests.payments.driver_conformance import DriverConformance, Parties
from tests.payments.ledger_conformance import LedgerConformance
from tests.payments.test_testnet_ledger import ledger_parties
from yagna.core.money import MAX_UNITS, UNIT
from yagna.store import Store
from yagna.store.payment_repos import SqliteLedger

PAYER, PAYEE = "payer-a", "payee-b"


class TestSqliteLedgerExtras(LedgerConformance):
    @pytest.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[SettlementDriver]:
        async with Store.open_ctx(tmp_path / "ledger.db") as store:
            yield SqliteLedger(store)


class TestSqliteLedger(DriverConformance):
    @pytest.fixture
    async def parties(self, tmp_path: Path) -> AsyncIterator[Parties]:
        async with Store.open_ctx(tmp_path / "a.db") as a, Store.open_ctx(tmp_path / "b.db") as b, \
                Store.open_ctx(tmp_path / "c.db") as c:
            stores = iter((a, b, c))
            yield ledger_parties(lambda: SqliteLedger(next(stores)))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open_ctx(tmp_path / "node.db") as s:
        yield s


@pytest.mark.parametrize("method", ["fund", "balance", "lock_deposit", "accept_deposit", "redeem", "channel"])
def test_methods_have_the_protocol_signatures(method: str) -> None:
    assert SqliteLedger.test_network is True
    assert inspect.iscoroutinefunction(getattr(SqliteLedger, method))
    assert inspect.signature(getattr(SqliteLedger, method)) == inspect.signature(getattr(SettlementDriver, method))


async def test_name(store: Store) -> None:
    assert SqliteLedger(store).name == "testnet-ledger"
    assert SqliteLedger(store, name="devnet-ledger").name == "devnet-ledger"


async def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    big = 50 * UNIT  # 5e19 base units: over SQLite's INTEGER range
    async with Store.open_ctx(path) as store:
        ledger = SqliteLedger(store)
        await ledger.fund(PAYER, big + 7)
        await ledger.lock_deposit("ch-1", PAYER, PAYEE, 20 * UNIT)
        await ledger.lock_deposit("ch-2", PAYER, PAYEE, 30 * UNIT)
        await ledger.redeem("ch-1", 12 * UNIT + 1, close=False)
        await ledger.accept_deposit("ch-in", "someone", PAYER, 2**70)
        await ledger.redeem("ch-in", 2**66, close=False)
        before = [await ledger.balance(a) for a in (PAYER, PAYEE)]
        chans = [await ledger.channel(c) for c in ("ch-1", "ch-2", "ch-in")]

    async with Store.open_ctx(path) as store:
        ledger = SqliteLedger(store)
        assert [await ledger.balance(a) for a in (PAYER, PAYEE)] == before
        assert [await ledger.channel(c) for c in ("ch-1", "ch-2", "ch-in")] == chans
        assert before[0].locked == 50 * UNIT - (12 * UNIT + 1) and before[0].earned == 2**66
        with pytest.raises(DepositReused):  # ids stay used across restarts
            await ledger.lock_deposit("ch-1", PAYER, PAYEE, 1)
        r = await ledger.redeem("ch-1", 20 * UNIT, close=True)  # carries on where it stopped
        assert (r.paid, r.released) == (8 * UNIT - 1, 0)
        r = await ledger.redeem("ch-2", 0, close=True)
        assert (r.paid, r.released) == (0, 30 * UNIT)
        b = await ledger.balance(PAYER)
        assert (b.total, b.locked, b.spent, b.earned, b.free) == (
            big + 7 - 20 * UNIT + 2**66, 0, 20 * UNIT, 2**66, big + 7 - 20 * UNIT + 2**66,
        )
        assert (await ledger.balance(PAYEE)).earned == 20 * UNIT


async def test_concurrent_locks_over_several_connections_never_exceed_the_balance(tmp_path: Path) -> None:
    """Two daemons on one file (or any second connection): BEGIN IMMEDIATE serializes the check and the lock."""
    path = tmp_path / "node.db"
    deposit = 3 * 2**64  # every figure over 64 bits
    async with Store.open_ctx(path) as a, Store.open_ctx(path) as b, Store.open_ctx(path) as c:
        ledgers = [SqliteLedger(s) for s in (a, b, c)]
        await ledgers[0].fund(PAYER, 100 * deposit + deposit // 2)
        ok: list[str] = []
        refused: list[str] = []

        async def lock(i: int) -> None:
            try:
                await ledgers[i % 3].lock_deposit(f"ch-{i}", PAYER, PAYEE, deposit)
                ok.append(f"ch-{i}")
            except InsufficientFunds:
                refused.append(f"ch-{i}")

        async with trio.open_nursery() as nursery:
            for i in range(150):
                nursery.start_soon(lock, i)
        assert (len(ok), len(refused)) == (100, 50)
        for ledger in ledgers:
            bal = await ledger.balance(PAYER)
            assert (bal.locked, bal.free) == (100 * deposit, deposit // 2)
        assert sorted([(await ledgers[1].channel(cid)).deposit for cid in ok]) == [deposit] * 100


async def test_an_overflowing_fund_changes_nothing(store: Store) -> None:
    ledger = SqliteLedger(store)
    await ledger.fund(PAYER, MAX_UNITS - 1)
    with pytest.raises(ValueError, match="largest amount"):
        await ledger.fund(PAYER, 2)  # the transaction rolls back
    assert (await ledger.balance(PAYER)).total == MAX_UNITS - 1
    await ledger.fund(PAYER, 1)
    assert (await ledger.balance(PAYER)).total == MAX_UNITS


@pytest.mark.parametrize("bad", ["", None, 5])
async def test_ids_must_be_non_empty_strings(store: Store, bad: object) -> None:
    ledger = SqliteLedger(store)
    await ledger.fund(PAYER, 10)
    with pytest.raises(ValueError):
        await ledger.lock_deposit(bad, PAYER, PAYEE, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await ledger.accept_deposit("ch", PAYER, bad, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await ledger.fund(bad, 1)  # type: ignore[arg-type]


async def test_every_ledger_write_commits_durably(store: Store) -> None:
    statements: list[str] = []
    conn = store._conn  # test-only peek: the SQL the connection runs
    assert conn is not None
    conn.set_trace_callback(statements.append)
    ledger = SqliteLedger(store)

    async def commits_full(coro: object) -> None:
        statements.clear()
        await coro  # type: ignore[misc]
        mode, modes = "NORMAL", []
        for s in statements:
            up = " ".join(s.split()).upper()
            if up.startswith("PRAGMA SYNCHRONOUS="):
                mode = up.split("=", 1)[1]
            elif up == "COMMIT":
                modes.append(mode)
        assert modes == ["FULL"], statements

    await commits_full(ledger.fund(PAYER, 100))
    await commits_full(ledger.lock_deposit("ch-1", PAYER, PAYEE, 40))
    await commits_full(ledger.accept_deposit("ch-2", PAYEE, PAYER, 40))
    await commits_full(ledger.redeem("ch-1", 10, close=False))
    await commits_full(ledger.redeem("ch-1", 20, close=True))
