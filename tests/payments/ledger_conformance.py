"""What every test-network *ledger* passes on top of the shared suite (``driver_conformance.py``).

A ledger holds many accounts in one driver and takes the caller's channel ids, so
this suite tests one driver holding both sides: caller-chosen ids never reused,
one deposit never promised twice, conservation of tokens across accounts.

Use: subclass :class:`LedgerConformance` in a ``test_*.py`` module and override
the ``driver`` fixture (sync or async, may ``yield`` to clean up)::

    from tests.payments.ledger_conformance import LedgerConformance

    class TestSqliteLedger(LedgerConformance):
        @pytest.fixture
        async def driver(self, tmp_path):
            ledger = await SqliteLedger.open(tmp_path / "ledger.db")
            yield ledger
            await ledger.close()

Each test gets a fresh, empty driver. Accounts are plain strings; one driver
holds both the payer's and the payee's accounts, plus channels known only by
``accept_deposit`` (the payee's side on another node). The driver must mint
with ``fund`` (``test_network``).
"""

from __future__ import annotations

import pytest
import trio

from payments.driver import Balance, ChannelInfo, Redemption, SettlementDriver
from payments.errors import AmountInvalid, DepositReused, InsufficientFunds, PaymentError, UnknownChannel
from yagna.core.money import MAX_UNITS

__all__ = ["LedgerConformance"]

PAYER = "payer-a"
PAYEE = "payee-b"
OTHER = "payee-c"


def _ints_only(obj: Balance | ChannelInfo | Redemption) -> None:
    for name, value in vars(obj).items():
        if name in ("account", "channel_id", "payer", "payee", "state"):
            continue
        assert type(value) is int, f"{type(obj).__name__}.{name} is {type(value).__name__}, not int"


async def _total(driver: SettlementDriver, *accounts: str) -> int:
    return sum([(await driver.balance(a)).total for a in accounts])


class LedgerConformance:
    """Async tests parametrised by the ``driver`` fixture (override it in a subclass)."""

    @pytest.fixture
    def driver(self) -> SettlementDriver:
        raise NotImplementedError("override the driver fixture in a subclass")

    # -- identity and funding ----------------------------------------------------------

    async def test_name_and_test_network(self, driver: SettlementDriver) -> None:
        assert isinstance(driver.name, str) and driver.name
        assert driver.test_network is True

    async def test_unknown_account_is_empty(self, driver: SettlementDriver) -> None:
        b = await driver.balance("nobody")
        assert (b.account, b.total, b.locked, b.spent, b.earned, b.free) == ("nobody", 0, 0, 0, 0, 0)

    async def test_fund_then_balance(self, driver: SettlementDriver) -> None:
        b = await driver.fund(PAYER, 1000)
        assert (b.total, b.locked, b.free) == (1000, 0, 1000)
        await driver.fund(PAYER, 10**30)  # far beyond 64 bits: money is an unbounded int
        b = await driver.balance(PAYER)
        assert b.total == 1000 + 10**30
        _ints_only(b)

    @pytest.mark.parametrize("amount", [0, -1, 1.5, True, "10"])
    async def test_fund_refuses_non_positive_and_non_int(self, driver: SettlementDriver, amount: object) -> None:
        with pytest.raises((ValueError, TypeError)):
            await driver.fund(PAYER, amount)  # type: ignore[arg-type]
        assert (await driver.balance(PAYER)).total == 0

    @pytest.mark.parametrize("amount", [0, -1, MAX_UNITS + 1])
    async def test_fund_out_of_range_is_a_typed_payment_error(self, driver: SettlementDriver, amount: int) -> None:
        with pytest.raises(AmountInvalid) as exc:  # the REST layer maps it to a 400 (was a bare ValueError: 500)
            await driver.fund(PAYER, amount)
        assert exc.value.code == "bad-amount" and isinstance(exc.value, PaymentError)
        assert (await driver.balance(PAYER)).total == 0

    async def test_fund_past_the_largest_total_is_a_typed_error_and_changes_nothing(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, MAX_UNITS - 1)
        with pytest.raises(AmountInvalid):
            await driver.fund(PAYER, 2)
        assert (await driver.balance(PAYER)).total == MAX_UNITS - 1

    # -- locking ------------------------------------------------------------------------

    async def test_lock_reduces_free(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        info = await driver.lock_deposit("ch-1", PAYER, PAYEE, 400)
        assert (info.channel_id, info.payer, info.payee, info.deposit, info.redeemed, info.state) == (
            "ch-1", PAYER, PAYEE, 400, 0, "open",
        )
        _ints_only(info)
        b = await driver.balance(PAYER)
        assert (b.total, b.locked, b.free) == (1000, 400, 600)
        assert await driver.channel("ch-1") == info

    async def test_lock_above_free_is_refused(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 700)
        with pytest.raises(InsufficientFunds):
            await driver.lock_deposit("ch-2", PAYER, PAYEE, 301)
        b = await driver.balance(PAYER)
        assert (b.locked, b.free) == (700, 300)
        await driver.lock_deposit("ch-3", PAYER, PAYEE, 300)  # exactly the free balance
        assert (await driver.balance(PAYER)).free == 0

    async def test_lock_without_funds_is_refused(self, driver: SettlementDriver) -> None:
        with pytest.raises(InsufficientFunds):
            await driver.lock_deposit("ch-1", PAYER, PAYEE, 1)

    @pytest.mark.parametrize("amount", [0, -5])
    async def test_lock_refuses_non_positive(self, driver: SettlementDriver, amount: int) -> None:
        await driver.fund(PAYER, 1000)
        with pytest.raises(ValueError):
            await driver.lock_deposit("ch-1", PAYER, PAYEE, amount)
        assert (await driver.balance(PAYER)).locked == 0

    async def test_channel_id_never_reused(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.fund(OTHER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 100)
        with pytest.raises(DepositReused):
            await driver.lock_deposit("ch-1", PAYER, PAYEE, 100)
        with pytest.raises(DepositReused):  # another payer cannot take the id either
            await driver.lock_deposit("ch-1", OTHER, PAYEE, 100)
        await driver.redeem("ch-1", 10, close=True)
        with pytest.raises(DepositReused):  # not even after close
            await driver.lock_deposit("ch-1", PAYER, PAYEE, 100)
        b = await driver.balance(PAYER)
        assert (b.total, b.locked) == (990, 0)

    async def test_deposit_promised_twice_is_refused(self, driver: SettlementDriver) -> None:
        """Attack: one deposit promised to two providers. The id binds one payee."""
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 600)
        with pytest.raises(DepositReused):
            await driver.lock_deposit("ch-1", PAYER, OTHER, 600)
        with pytest.raises(InsufficientFunds):  # and a second lock must fit the balance
            await driver.lock_deposit("ch-2", PAYER, OTHER, 600)

    # -- the payee's side ---------------------------------------------------------------

    async def test_accept_deposit_is_idempotent(self, driver: SettlementDriver) -> None:
        a = await driver.accept_deposit("ch-9", PAYER, PAYEE, 500)
        assert (a.payer, a.payee, a.deposit, a.redeemed, a.state) == (PAYER, PAYEE, 500, 0, "open")
        assert await driver.accept_deposit("ch-9", PAYER, PAYEE, 500) == a
        assert await driver.channel("ch-9") == a

    @pytest.mark.parametrize("other", [(PAYER, OTHER, 500), (OTHER, PAYEE, 500), (PAYER, PAYEE, 501)])
    async def test_accept_deposit_other_terms_is_refused(
        self, driver: SettlementDriver, other: tuple[str, str, int]
    ) -> None:
        await driver.accept_deposit("ch-9", PAYER, PAYEE, 500)
        with pytest.raises(DepositReused):
            await driver.accept_deposit("ch-9", *other)

    async def test_accept_deposit_of_a_local_lock(self, driver: SettlementDriver) -> None:
        """Both sides on one ledger: accepting the same terms is fine, other terms are not."""
        await driver.fund(PAYER, 1000)
        info = await driver.lock_deposit("ch-1", PAYER, PAYEE, 300)
        assert await driver.accept_deposit("ch-1", PAYER, PAYEE, 300) == info
        with pytest.raises(DepositReused):
            await driver.accept_deposit("ch-1", PAYER, OTHER, 300)
        assert (await driver.balance(PAYER)).locked == 300  # accepting locks nothing more

    async def test_accept_deposit_refuses_non_positive(self, driver: SettlementDriver) -> None:
        with pytest.raises(ValueError):
            await driver.accept_deposit("ch-9", PAYER, PAYEE, 0)

    async def test_payee_only_channel_credits_payee_without_payer_account(self, driver: SettlementDriver) -> None:
        await driver.accept_deposit("ch-9", PAYER, PAYEE, 500)
        r = await driver.redeem("ch-9", 200, close=False)
        assert (r.paid, r.released) == (200, 0)
        r = await driver.redeem("ch-9", 900, close=True)
        assert (r.paid, r.released) == (300, 0)
        assert (await driver.balance(PAYEE)).earned == 500
        assert (await driver.balance(PAYEE)).total == 500
        b = await driver.balance(PAYER)
        assert (b.total, b.locked, b.spent, b.earned) == (0, 0, 0, 0)

    # -- redeeming ----------------------------------------------------------------------

    async def test_redeem_is_cumulative_idempotent_and_capped(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 100)
        paid = []
        for amount in (30, 30, 20, 0, 60, 150, 150):
            r = await driver.redeem("ch-1", amount, close=False)
            _ints_only(r)
            assert r.channel_id == "ch-1" and r.released == 0
            paid.append(r.paid)
        assert paid == [30, 0, 0, 0, 30, 40, 0]
        info = await driver.channel("ch-1")
        assert (info.redeemed, info.state) == (100, "open")
        payer = await driver.balance(PAYER)
        assert (payer.total, payer.locked, payer.spent, payer.free) == (900, 0, 100, 900)
        assert (await driver.balance(PAYEE)).earned == 100

    async def test_close_releases_exactly_the_rest(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 400)
        await driver.redeem("ch-1", 100, close=False)
        r = await driver.redeem("ch-1", 250, close=True)
        assert (r.paid, r.released) == (150, 150)
        info = await driver.channel("ch-1")
        assert (info.redeemed, info.state) == (250, "closed")
        payer = await driver.balance(PAYER)
        assert (payer.total, payer.locked, payer.spent, payer.free) == (750, 0, 250, 750)
        payee = await driver.balance(PAYEE)
        assert (payee.total, payee.earned, payee.locked) == (250, 250, 0)

    async def test_closed_channel_pays_nothing_more(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 400)
        await driver.redeem("ch-1", 100, close=True)
        for close in (False, True):
            r = await driver.redeem("ch-1", 400, close=close)
            assert (r.paid, r.released) == (0, 0)
        assert (await driver.channel("ch-1")).redeemed == 100
        assert (await driver.balance(PAYER)).total == 900

    async def test_close_without_redeeming_releases_all(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 400)
        r = await driver.redeem("ch-1", 0, close=True)
        assert (r.paid, r.released) == (0, 400)
        b = await driver.balance(PAYER)
        assert (b.total, b.locked, b.free) == (1000, 0, 1000)

    @pytest.mark.parametrize("amount", [-1, 1.0, True])
    async def test_redeem_refuses_bad_amounts(self, driver: SettlementDriver, amount: object) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 400)
        with pytest.raises((ValueError, TypeError)):
            await driver.redeem("ch-1", amount, close=False)  # type: ignore[arg-type]
        assert (await driver.channel("ch-1")).redeemed == 0

    async def test_unknown_channel(self, driver: SettlementDriver) -> None:
        with pytest.raises(UnknownChannel):
            await driver.channel("nope")
        with pytest.raises(UnknownChannel):
            await driver.redeem("nope", 10, close=True)

    async def test_totals_are_conserved(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.fund(OTHER, 500)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 300)
        await driver.lock_deposit("ch-2", PAYER, OTHER, 200)
        await driver.lock_deposit("ch-3", OTHER, PAYEE, 500)
        await driver.redeem("ch-1", 120, close=True)
        await driver.redeem("ch-2", 999, close=False)
        await driver.redeem("ch-3", 499, close=True)
        assert await _total(driver, PAYER, PAYEE, OTHER) == 1500
        payer, payee, other = [await driver.balance(a) for a in (PAYER, PAYEE, OTHER)]
        assert payer.spent == 320 and payer.locked == 0 and payer.total == 680
        assert payee.earned == 619 and payee.total == 619
        assert other.earned == 200 and other.spent == 499 and other.total == 201
        assert payer.spent + other.spent == payee.earned + other.earned
        for b in (payer, payee, other):
            _ints_only(b)

    # -- concurrency --------------------------------------------------------------------

    async def test_concurrent_locks_never_exceed_balance(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        outcomes: list[str] = []

        async def lock(i: int) -> None:
            try:
                await driver.lock_deposit(f"ch-{i}", PAYER, PAYEE, 30)
                outcomes.append("ok")
            except InsufficientFunds:
                outcomes.append("refused")

        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(lock, i)
        assert outcomes.count("ok") == 33 and outcomes.count("refused") == 27
        b = await driver.balance(PAYER)
        assert (b.locked, b.free) == (990, 10)

    async def test_concurrent_locks_of_one_id_only_one_wins(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        outcomes: list[str] = []

        async def lock(payee: str) -> None:
            try:
                await driver.lock_deposit("ch-1", PAYER, payee, 100)
                outcomes.append("ok")
            except DepositReused:
                outcomes.append("reused")

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(lock, f"payee-{i}")
        assert outcomes.count("ok") == 1 and outcomes.count("reused") == 19
        assert (await driver.balance(PAYER)).locked == 100

    async def test_concurrent_redeems_pay_at_most_the_deposit(self, driver: SettlementDriver) -> None:
        await driver.fund(PAYER, 1000)
        await driver.lock_deposit("ch-1", PAYER, PAYEE, 100)
        paid: list[int] = []

        async def redeem(amount: int) -> None:
            paid.append((await driver.redeem("ch-1", amount, close=False)).paid)

        async with trio.open_nursery() as nursery:
            for amount in range(0, 200, 7):
                nursery.start_soon(redeem, amount)
        assert sum(paid) == 100
        assert (await driver.balance(PAYEE)).earned == 100
        assert await _total(driver, PAYER, PAYEE) == 1000
