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
    expiry: int = 0
    """Unix seconds after which the payer may take back what was not redeemed (0: none, the ledger)."""


@dataclass(frozen=True)
class Redemption:
    channel_id: str
    paid: int
    """Moved to the payee by this call (cumulative amount minus what was redeemed before; >= 0)."""
    released: int
    """Returned to the payer when ``close`` is set (deposit minus everything redeemed)."""


class SettlementDriver(Protocol):
    name: str
    """Goes into every voucher (``driver`` field), e.g. ``testnet-ledger`` or ``erc20``."""
    test_network: bool
    """True for drivers whose tokens have no value (say so to users)."""

    def account_of(self, node_id: str) -> str:
        """This node's account on the driver: the node id on the ledger, the 0x address on a chain."""

    async def fund(self, account: str, amount: int) -> Balance:
        """Credit test tokens (test networks and local chains only; :class:`NotOnThisChain` elsewhere)."""

    async def balance(self, account: str) -> Balance: ...

    async def lock_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                           expiry: int = 0) -> ChannelInfo:
        """Lock ``amount`` of ``payer``'s free balance for ``payee`` in a new channel.

        ``channel_id`` is a fresh id the caller proposes; the returned
        :attr:`ChannelInfo.channel_id` is the channel's id from then on (a chain
        driver returns the contract's, which the channel-open carries). ``expiry``
        (unix seconds) is when the payer may reclaim the rest; 0 lets the driver choose.
        :class:`DepositReused` if ``channel_id`` was ever used; :class:`InsufficientFunds`
        if ``amount`` > free balance; amounts must be > 0 (ValueError otherwise).
        """

    async def accept_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                             min_expiry: int = 0) -> ChannelInfo:
        """Payee side: make sure the deposit backs this channel before working for it.

        A chain driver reads the contract (payer, payee, amount, an expiry not before
        ``min_expiry``: :class:`DepositMismatch` otherwise); the test-network ledger
        records the payer's signed promise (it cannot see the payer's ledger).
        Idempotent for the same terms; :class:`DepositReused` for a known id with other terms.
        """

    async def redeem(self, channel_id: str, cumulative_amount: int, *, close: bool,
                     proof: bytes = b"") -> Redemption:
        """Payee side: pay the payee up to ``cumulative_amount`` (capped at the deposit;
        idempotent: a lower or equal amount pays nothing more). ``close`` ends the channel and
        releases the rest to the payer; a closed channel pays nothing more. ``proof`` is the
        payer's :meth:`voucher_proof` for that amount (a chain checks it; the ledger needs none).
        Crash-safe: a redeem interrupted before its outcome is known is finished by the driver
        when it starts again, and never pays twice."""

    async def settle_payer(self, channel_id: str, signed: int) -> Redemption:
        """Payer side, after the agreement ended: what we signed (``signed``) is spent and the
        rest is ours again. On the ledger at once; on a chain once the payee closed the channel
        or, past the expiry, by taking the rest back. :class:`SettlementPending` until then."""

    async def top_up(self, channel_id: str, amount: int) -> ChannelInfo:
        """Payer side: lock ``amount`` more into an open channel this driver locked (a lease that runs
        on). :class:`InsufficientFunds`, :class:`UnknownChannel`, or :class:`DepositMismatch` for a
        closed channel or one the payee opened."""

    async def accept_top_up(self, channel_id: str, deposit: int) -> ChannelInfo:
        """Payee side: the payer says the channel now holds ``deposit``. The ledger records it (a test
        network trusts the payer, as ``accept_deposit`` does); a chain checks the contract's channel.
        Never lowers a deposit: :class:`DepositMismatch` for a smaller or unbacked amount."""

    async def channel(self, channel_id: str) -> ChannelInfo:
        """:class:`UnknownChannel` if never opened."""

    def voucher_proof(self, channel_id: str, cumulative_amount: int) -> bytes:
        """Payer side: what the payee needs to redeem ``cumulative_amount`` by itself (a chain's
        EIP-712 signature; ``b""`` on the ledger, where the node-signed voucher is the proof)."""

    def check_voucher_proof(self, channel_id: str, payer: str, cumulative_amount: int, proof: bytes) -> None:
        """Payee side, before a voucher is accepted: :class:`VoucherRejected` if ``proof`` would not
        redeem ``cumulative_amount`` from ``payer``'s channel."""


class LedgerSettlement:
    """What both test-network ledgers (memory and SQLite) do the same: accounts are node ids, a
    signed voucher is a bearer instrument (no extra proof), and the payer settles at once."""

    def account_of(self, node_id: str) -> str:
        return node_id

    async def redeem(self, channel_id: str, cumulative_amount: int, *, close: bool,
                     proof: bytes = b"") -> Redemption:
        raise NotImplementedError

    async def settle_payer(self, channel_id: str, signed: int) -> Redemption:
        return await self.redeem(channel_id, signed, close=True)

    def voucher_proof(self, channel_id: str, cumulative_amount: int) -> bytes:
        return b""

    def check_voucher_proof(self, channel_id: str, payer: str, cumulative_amount: int, proof: bytes) -> None:
        return None

