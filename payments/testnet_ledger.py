"""The test-network ledger in memory: the in-memory twin of the daemon's SQLite ledger.

Tokens here have no value (``test_network``): ``fund`` mints them. Each node
runs its own ledger, so one channel is seen from two sides:

* the payer's ledger saw ``lock_deposit`` (the payer's free balance shrinks,
  ``locked`` grows) and, at the end, ``redeem`` of what the payer signed;
* the payee's ledger saw ``accept_deposit`` (the payer's promise; it has no
  account for the payer) and ``redeem`` of its best voucher.

``redeem`` moves money out of the payer's account only for a channel locked
*here*; it always credits the payee. In one ledger (tests) both sides exist
and every total is conserved: sum of ``total`` == sum funded.

Every method checks and updates with no ``await`` in between (one checkpoint
first), so concurrent calls under trio can never lock more than the balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from payments.driver import Balance, ChannelInfo, LedgerSettlement, Redemption
from payments.errors import AmountInvalid, DepositMismatch, DepositReused, InsufficientFunds, UnknownChannel
from yagna.core.money import MAX_UNITS

__all__ = ["MemoryLedger"]


@dataclass
class _Account:
    funded: int = 0
    locked: int = 0
    spent: int = 0
    earned: int = 0


@dataclass
class _Channel:
    payer: str
    payee: str
    deposit: int
    locked_here: bool
    """True if the deposit came out of an account of this ledger (``lock_deposit``)."""
    redeemed: int = 0
    state: str = "open"

    def info(self, channel_id: str) -> ChannelInfo:
        return ChannelInfo(channel_id, self.payer, self.payee, self.deposit, self.redeemed, self.state)


def _check_amount(amount: object, *, positive: bool) -> int:
    if type(amount) is not int:
        raise TypeError(f"amounts are ints of base units, got {type(amount).__name__}")
    if amount < 0 or (positive and amount == 0):
        raise AmountInvalid(f"amount must be {'> 0' if positive else '>= 0'}, got {amount}")
    if amount > MAX_UNITS:
        raise AmountInvalid(f"amount {amount} is over the largest amount (2**255 - 1 base units)")
    return amount


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str")
    return value


class MemoryLedger(LedgerSettlement):
    """:class:`~payments.driver.SettlementDriver` in memory (tests, demos, the devnet)."""

    name = "testnet-ledger"
    test_network = True

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._channels: dict[str, _Channel] = {}

    def _known(self, channel_id: str) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise UnknownChannel(f"no channel {channel_id!r}")
        return channel

    def _account(self, account: str) -> _Account:
        return self._accounts.setdefault(_check_id(account, "account"), _Account())

    def _balance(self, account: str) -> Balance:
        a = self._accounts.get(account, _Account())
        return Balance(account, a.funded - a.spent + a.earned, a.locked, a.spent, a.earned)

    async def fund(self, account: str, amount: int) -> Balance:
        await trio.lowlevel.checkpoint()
        _check_amount(amount, positive=True)
        if self._account(account).funded + amount > MAX_UNITS:
            raise AmountInvalid(f"funding {amount} would put {account} over the largest amount (2**255 - 1 base units)")
        self._account(account).funded += amount
        return self._balance(account)

    async def balance(self, account: str) -> Balance:
        await trio.lowlevel.checkpoint()
        return self._balance(_check_id(account, "account"))

    async def lock_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                           expiry: int = 0) -> ChannelInfo:
        await trio.lowlevel.checkpoint()
        _check_id(channel_id, "channel id")
        _check_id(payee, "payee")
        _check_amount(amount, positive=True)
        if channel_id in self._channels:
            raise DepositReused(f"channel id {channel_id} was used before")
        free = self._balance(_check_id(payer, "payer")).free
        if amount > free:
            raise InsufficientFunds(f"{payer} has {free} free, cannot lock {amount}")
        self._account(payer).locked += amount
        channel = self._channels[channel_id] = _Channel(payer, payee, amount, locked_here=True)
        return channel.info(channel_id)

    async def accept_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                             min_expiry: int = 0) -> ChannelInfo:
        await trio.lowlevel.checkpoint()
        _check_id(channel_id, "channel id")
        _check_id(payer, "payer")
        _check_id(payee, "payee")
        _check_amount(amount, positive=True)
        known = self._channels.get(channel_id)
        if known is not None:
            if (known.payer, known.payee, known.deposit) != (payer, payee, amount):
                raise DepositReused(f"channel id {channel_id} is known with other terms")
            return known.info(channel_id)
        channel = self._channels[channel_id] = _Channel(payer, payee, amount, locked_here=False)
        return channel.info(channel_id)

    async def top_up(self, channel_id: str, amount: int) -> ChannelInfo:
        await trio.lowlevel.checkpoint()
        _check_amount(amount, positive=True)
        channel = self._known(channel_id)
        if channel.state != "open" or not channel.locked_here:
            raise DepositMismatch(f"channel {channel_id} is {channel.state if channel.state != 'open' else 'not ours to top up'}")
        if channel.deposit + amount > MAX_UNITS:
            raise AmountInvalid("the deposit would be over the largest amount (2**255 - 1 base units)")
        free = self._balance(channel.payer).free
        if amount > free:
            raise InsufficientFunds(f"{channel.payer} has {free} free, cannot lock {amount} more")
        self._account(channel.payer).locked += amount
        channel.deposit += amount
        return channel.info(channel_id)

    async def accept_top_up(self, channel_id: str, deposit: int) -> ChannelInfo:
        await trio.lowlevel.checkpoint()
        _check_amount(deposit, positive=True)
        channel = self._known(channel_id)
        if channel.state != "open" or deposit < channel.deposit:
            raise DepositMismatch(f"channel {channel_id} is {channel.state} with a deposit of {channel.deposit}; "
                                  f"it cannot become {deposit}")
        if not channel.locked_here:  # on the payer's own ledger the top-up moved it already
            channel.deposit = deposit
        return channel.info(channel_id)

    async def redeem(self, channel_id: str, cumulative_amount: int, *, close: bool,
                     proof: bytes = b"") -> Redemption:
        await trio.lowlevel.checkpoint()
        _check_amount(cumulative_amount, positive=False)
        channel = self._known(channel_id)
        if channel.state == "closed":
            return Redemption(channel_id, paid=0, released=0)
        paid = max(0, min(cumulative_amount, channel.deposit) - channel.redeemed)
        channel.redeemed += paid
        if channel.locked_here:
            payer = self._account(channel.payer)
            payer.locked -= paid
            payer.spent += paid
        self._account(channel.payee).earned += paid
        released = 0
        if close:
            released = channel.deposit - channel.redeemed
            if channel.locked_here:
                self._account(channel.payer).locked -= released
            channel.state = "closed"
        return Redemption(channel_id, paid=paid, released=released)

    async def channel(self, channel_id: str) -> ChannelInfo:
        await trio.lowlevel.checkpoint()
        channel = self._known(channel_id)
        return channel.info(channel_id)
