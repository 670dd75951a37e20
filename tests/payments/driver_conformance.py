"""The conformance suite every :class:`~payments.driver.SettlementDriver` passes: ledgers and chains.

Each party (payer, payee, another node) runs its own driver, as nodes do: the payer
locks, the payee accepts and redeems with the payer's :meth:`voucher_proof`, the payer
settles its side. Subclass :class:`DriverConformance` and override the ``parties``
fixture with a :class:`Parties` (fresh, empty accounts per test).

The ledger-only extras (one driver holding every account, caller-chosen channel ids)
are in ``ledger_conformance.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio

from payments.driver import Balance, ChannelInfo, Redemption, SettlementDriver
from payments.errors import DepositMismatch, DepositReused, InsufficientFunds, UnknownChannel

__all__ = ["DriverConformance", "Parties"]

UNKNOWN = "0x" + "ab" * 32


@dataclass
class Party:
    driver: SettlementDriver
    account: str


@dataclass
class Parties:
    payer: Party
    payee: Party
    other: Party
    """A second payer (or payee) with its own account."""
    new_id: Callable[[], str]
    """A fresh channel id to propose."""
    expiry: Callable[[], Awaitable[int]]
    """An expiry (unix seconds) an hour from the chain's (or the clock's) now."""


def _ints_only(obj: Balance | ChannelInfo | Redemption) -> None:
    for name, value in vars(obj).items():
        if name in ("account", "channel_id", "payer", "payee", "state"):
            continue
        assert type(value) is int, f"{type(obj).__name__}.{name} is {type(value).__name__}, not int"


class DriverConformance:
    @pytest.fixture
    def parties(self) -> Parties:
        raise NotImplementedError("override the parties fixture in a subclass")

    async def _open(self, p: Parties, amount: int, *, payer: Party | None = None) -> ChannelInfo:
        payer = payer or p.payer
        info = await payer.driver.lock_deposit(p.new_id(), payer.account, p.payee.account, amount,
                                               expiry=await p.expiry())
        accepted = await p.payee.driver.accept_deposit(info.channel_id, payer.account, p.payee.account, amount)
        assert (accepted.channel_id, accepted.deposit, accepted.state) == (info.channel_id, amount, "open")
        return info

    async def _redeem(self, p: Parties, channel_id: str, amount: int, *, close: bool,
                      payer: Party | None = None) -> Redemption:
        proof = (payer or p.payer).driver.voucher_proof(channel_id, amount)
        return await p.payee.driver.redeem(channel_id, amount, close=close, proof=proof)

    # -- identity and funding ----------------------------------------------------------
    async def test_name_and_test_network(self, parties: Parties) -> None:
        d = parties.payer.driver
        assert isinstance(d.name, str) and d.name
        assert d.test_network is True

    async def test_fund_then_balance(self, parties: Parties) -> None:
        p = parties.payer
        before = await p.driver.balance(p.account)
        b = await p.driver.fund(p.account, 1000)
        assert (b.total - before.total, b.locked, b.free - before.free) == (1000, 0, 1000)
        await p.driver.fund(p.account, 10**22)  # far beyond 64 bits (a faucet may cap one call)
        assert (await p.driver.balance(p.account)).total == before.total + 1000 + 10**22
        _ints_only(b)

    @pytest.mark.parametrize("amount", [0, -1, 1.5, True, "10"])
    async def test_fund_refuses_non_positive_and_non_int(self, parties: Parties, amount: object) -> None:
        p = parties.payer
        with pytest.raises((ValueError, TypeError)):
            await p.driver.fund(p.account, amount)  # type: ignore[arg-type]
        assert (await p.driver.balance(p.account)).total == 0

    # -- locking and accepting -------------------------------------------------------------
    async def test_lock_reduces_free_and_the_payee_sees_the_deposit(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        info = await self._open(p, 400)
        assert (info.payer, info.payee, info.deposit, info.redeemed, info.state) == (
            p.payer.account, p.payee.account, 400, 0, "open")
        _ints_only(info)
        b = await p.payer.driver.balance(p.payer.account)
        assert (b.total, b.locked, b.free) == (1000, 400, 600)
        assert await p.payer.driver.channel(info.channel_id) == info
        seen = await p.payee.driver.channel(info.channel_id)
        assert (seen.payer, seen.payee, seen.deposit, seen.state) == (info.payer, info.payee, 400, "open")

    async def test_lock_above_free_is_refused(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        await self._open(p, 700)
        with pytest.raises(InsufficientFunds):
            await p.payer.driver.lock_deposit(p.new_id(), p.payer.account, p.payee.account, 301,
                                              expiry=await p.expiry())
        b = await p.payer.driver.balance(p.payer.account)
        assert (b.locked, b.free) == (700, 300)
        await self._open(p, 300)  # exactly the free balance
        assert (await p.payer.driver.balance(p.payer.account)).free == 0

    @pytest.mark.parametrize("amount", [0, -5])
    async def test_lock_refuses_non_positive(self, parties: Parties, amount: int) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        with pytest.raises(ValueError):
            await p.payer.driver.lock_deposit(p.new_id(), p.payer.account, p.payee.account, amount,
                                              expiry=await p.expiry())
        assert (await p.payer.driver.balance(p.payer.account)).locked == 0

    async def test_a_proposed_id_is_never_reused(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = p.new_id()
        await p.payer.driver.lock_deposit(cid, p.payer.account, p.payee.account, 100, expiry=await p.expiry())
        with pytest.raises(DepositReused):
            await p.payer.driver.lock_deposit(cid, p.payer.account, p.payee.account, 100, expiry=await p.expiry())
        assert (await p.payer.driver.balance(p.payer.account)).locked == 100

    async def test_accept_deposit_is_idempotent_and_refuses_other_terms(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        info = await self._open(p, 500)
        again = await p.payee.driver.accept_deposit(info.channel_id, p.payer.account, p.payee.account, 500)
        assert (again.channel_id, again.deposit, again.state) == (info.channel_id, 500, "open")
        for terms in ((p.payer.account, p.payee.account, 501), (p.other.account, p.payee.account, 500)):
            with pytest.raises((DepositReused, DepositMismatch)):
                await p.payee.driver.accept_deposit(info.channel_id, *terms)

    # -- redeeming ----------------------------------------------------------------------
    async def test_redeem_is_cumulative_idempotent_and_capped(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 100)).channel_id
        paid = []
        for amount in (30, 30, 20, 60, 150, 150):
            r = await self._redeem(p, cid, amount, close=False)
            _ints_only(r)
            assert r.channel_id == cid and r.released == 0
            paid.append(r.paid)
        assert paid == [30, 0, 0, 30, 40, 0]
        info = await p.payee.driver.channel(cid)
        assert (info.redeemed, info.state) == (100, "open")
        assert (await p.payee.driver.balance(p.payee.account)).earned == 100

    async def test_close_releases_exactly_the_rest_and_the_payer_settles(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 400)).channel_id
        await self._redeem(p, cid, 100, close=False)
        r = await self._redeem(p, cid, 250, close=True)
        assert (r.paid, r.released) == (150, 150)
        info = await p.payee.driver.channel(cid)
        assert (info.redeemed, info.state) == (250, "closed")
        settled = await p.payer.driver.settle_payer(cid, 250)
        assert settled.released == 150
        payer = await p.payer.driver.balance(p.payer.account)
        assert (payer.total, payer.locked, payer.spent, payer.free) == (750, 0, 250, 750)
        payee = await p.payee.driver.balance(p.payee.account)
        assert (payee.total, payee.earned, payee.locked) == (250, 250, 0)

    async def test_closed_channel_pays_nothing_more(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 400)).channel_id
        await self._redeem(p, cid, 100, close=True)
        for close in (False, True):
            r = await self._redeem(p, cid, 400, close=close)
            assert (r.paid, r.released) == (0, 0)
        assert (await p.payee.driver.channel(cid)).redeemed == 100
        assert (await p.payee.driver.balance(p.payee.account)).earned == 100

    async def test_close_without_redeeming_releases_all(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 400)).channel_id
        r = await p.payee.driver.redeem(cid, 0, close=True)
        assert (r.paid, r.released) == (0, 400)
        assert (await p.payer.driver.settle_payer(cid, 0)).released == 400
        b = await p.payer.driver.balance(p.payer.account)
        assert (b.total, b.locked, b.free) == (1000, 0, 1000)

    @pytest.mark.parametrize("amount", [-1, 1.0, True])
    async def test_redeem_refuses_bad_amounts(self, parties: Parties, amount: object) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 400)).channel_id
        with pytest.raises((ValueError, TypeError)):
            await p.payee.driver.redeem(cid, amount, close=False)  # type: ignore[arg-type]
        assert (await p.payee.driver.channel(cid)).redeemed == 0

    async def test_unknown_channel(self, parties: Parties) -> None:
        d = parties.payee.driver
        with pytest.raises(UnknownChannel):
            await d.channel(UNKNOWN)
        with pytest.raises(UnknownChannel):
            await d.redeem(UNKNOWN, 10, close=True)

    async def test_totals_are_conserved(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        await p.other.driver.fund(p.other.account, 500)
        c1 = (await self._open(p, 300)).channel_id
        c2 = (await self._open(p, 500, payer=p.other)).channel_id
        await self._redeem(p, c1, 120, close=True)
        await self._redeem(p, c2, 499, close=True, payer=p.other)
        await p.payer.driver.settle_payer(c1, 120)
        await p.other.driver.settle_payer(c2, 499)
        payer, other = await p.payer.driver.balance(p.payer.account), await p.other.driver.balance(p.other.account)
        payee = await p.payee.driver.balance(p.payee.account)
        assert (payer.total, payer.spent, payer.locked) == (880, 120, 0)
        assert (other.total, other.spent, other.locked) == (1, 499, 0)
        assert (payee.total, payee.earned) == (619, 619)
        for b in (payer, payee, other):
            _ints_only(b)

    # -- concurrency --------------------------------------------------------------------
    async def test_concurrent_locks_never_exceed_balance(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 100)
        outcomes: list[str] = []
        expiry = await p.expiry()

        async def lock() -> None:
            try:
                await p.payer.driver.lock_deposit(p.new_id(), p.payer.account, p.payee.account, 30, expiry=expiry)
                outcomes.append("ok")
            except InsufficientFunds:
                outcomes.append("refused")

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(lock)
        assert outcomes.count("ok") == 3 and outcomes.count("refused") == 3
        b = await p.payer.driver.balance(p.payer.account)
        assert (b.locked, b.free) == (90, 10)

    async def test_concurrent_redeems_pay_at_most_the_deposit(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 100)).channel_id
        paid: list[int] = []

        async def redeem(amount: int) -> None:
            paid.append((await self._redeem(p, cid, amount, close=False)).paid)

        async with trio.open_nursery() as nursery:
            for amount in range(7, 200, 21):
                nursery.start_soon(redeem, amount)
        assert sum(paid) == 100
        assert (await p.payee.driver.balance(p.payee.account)).earned == 100

    # -- top-ups (a lease that runs on) ---------------------------------------------------
    async def test_top_up_raises_the_deposit_on_both_sides(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 100)).channel_id
        info = await p.payer.driver.top_up(cid, 150)
        assert (info.deposit, info.state) == (250, "open")
        _ints_only(info)
        assert (await p.payer.driver.balance(p.payer.account)).locked == 250
        accepted = await p.payee.driver.accept_top_up(cid, 250)
        assert accepted.deposit == 250
        # the payee redeems beyond the first deposit, up to the new one
        assert (await self._redeem(p, cid, 240, close=True)).paid == 240
        assert (await p.payee.driver.balance(p.payee.account)).earned == 240

    async def test_top_up_needs_free_funds_and_an_open_channel_of_ours(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 300)
        cid = (await self._open(p, 100)).channel_id
        with pytest.raises(InsufficientFunds):
            await p.payer.driver.top_up(cid, 201)
        with pytest.raises(UnknownChannel):
            await p.payer.driver.top_up(UNKNOWN, 10)
        with pytest.raises((DepositMismatch, UnknownChannel)):
            await p.payee.driver.top_up(cid, 10)  # the payee cannot top up the payer's channel
        await self._redeem(p, cid, 50, close=True)
        await p.payer.driver.settle_payer(cid, 50)
        with pytest.raises(DepositMismatch):
            await p.payer.driver.top_up(cid, 10)  # closed

    async def test_accept_top_up_never_lowers_or_invents_a_deposit(self, parties: Parties) -> None:
        p = parties
        await p.payer.driver.fund(p.payer.account, 1000)
        cid = (await self._open(p, 100)).channel_id
        await p.payer.driver.top_up(cid, 50)
        with pytest.raises(DepositMismatch):
            await p.payee.driver.accept_top_up(cid, 90)  # lower than what it holds
        with pytest.raises(UnknownChannel):
            await p.payee.driver.accept_top_up(UNKNOWN, 100)
        assert (await p.payee.driver.accept_top_up(cid, 150)).deposit == 150
