"""The settlement driver interface: where deposits are locked and vouchers are redeemed.

The voucher protocol does not depend on the driver: a driver only sees a
deposit (channel id, payer, payee, amount) and, at the end, the cumulative
amount of the best voucher (verified by the protocol before). Each node runs
its driver on its own side: the payer locks (``lock_deposit``) and, at the
end, settles what it signed (``redeem``); the payee accepts the deposit
(``accept_deposit``) and redeems its best voucher (``redeem``). On the
test-network ledger a signed voucher is a bearer instrument: the payee's
redemption does not need the payer to be online. The first driver is a test-network
ledger (:mod:`payments.testnet_ledger` in memory, and the daemon's SQLite
one); a chain driver (ERC-20 with a channel contract, EIP-712 vouchers signed
by a payment key vouched for by the node key) fits the same interface.

Conformance: ``tests/payments/driver_conformance.py`` runs the same tests
against every implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Balance:
    """One account's view, all in base units (ints)."""

    account: str
    total: int
    """Funded minus spent plus earned: what the account owns."""
    locked: int
    """In open channels this account pays into."""
    spent: int
    """Redeemed by payees out of this account's deposits."""
    earned: int
    """Redeemed by this account as a payee."""

    @property
    def free(self) -> int:
        return self.total - self.locked


@dataclass(frozen=True)
class ChannelInfo:
    channel_id: str
    payer: str
    payee: str
    deposit: int
    redeemed: int
    """Paid to the payee so far (the highest redeemed cumulative amount)."""
    state: str
    """``open`` or ``closed`` (closed: the rest of the deposit went back to the payer)."""


@dataclass(frozen=True)
class Redemption:
    channel_id: str
    paid: int
    """Moved to the payee by this call (cumulative amount minus what was redeemed before; >= 0)."""
    released: int
    """Returned to the payer when ``close`` is set (deposit minus everything redeemed)."""


class SettlementDriver(Protocol):
    name: str
    """Goes into every voucher (``driver`` field), e.g. ``testnet-ledger``."""
    test_network: bool
    """True for drivers whose tokens have no value (say so to users)."""

    async def fund(self, account: str, amount: int) -> Balance:
        """Credit test tokens (test networks only; a chain driver refuses)."""

    async def balance(self, account: str) -> Balance: ...

    async def lock_deposit(self, channel_id: str, payer: str, payee: str, amount: int) -> ChannelInfo:
        """Lock ``amount`` of ``payer``'s free balance for ``payee`` in a new channel.

        :class:`DepositReused` if ``channel_id`` was ever used; :class:`InsufficientFunds`
        if ``amount`` > free balance; amounts must be > 0 (ValueError otherwise).
        """

    async def accept_deposit(self, channel_id: str, payer: str, payee: str, amount: int) -> ChannelInfo:
        """Payee side: make sure the deposit backs this channel before working for it.

        A chain driver checks the channel contract; the test-network ledger records
        the payer's signed promise (it cannot see the payer's ledger). Idempotent for
        the same terms; :class:`DepositReused` for a known id with other terms.
        """

    async def redeem(self, channel_id: str, cumulative_amount: int, *, close: bool) -> Redemption:
        """Pay the payee up to ``cumulative_amount`` (capped at the deposit; idempotent:
        a lower or equal amount pays nothing more). ``close`` ends the channel and releases
        the rest to the payer; a closed channel pays nothing more."""

    async def channel(self, channel_id: str) -> ChannelInfo:
        """:class:`UnknownChannel` if never opened."""
