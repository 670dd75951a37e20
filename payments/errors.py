"""The exception tree of ``payments``.

::

    YagnaError                        (yagna.core) root of everything we raise on purpose
    └── PaymentError                  root of the payments' errors
        ├── VoucherRejected           a voucher fails a payee check; ``.code`` names which
        │                             (see :data:`VOUCHER_CODES`), ``.terminate`` whether
        │                             the agreement must end (equivocation, decrease)
        ├── DebitNoteRejected         a debit note is malformed, forged, or asks more than
        │                             the requestor's own meter allows; ``.code``
        ├── ChannelError              a local misuse of a channel (signing a lower amount,
        │                             over the deposit, a closed channel)
        ├── AmountInvalid             ``bad-amount``: an amount out of range (not > 0 where it
        │                             must be, past 2**255 - 1); also a ``ValueError``
        ├── MessageRejected           a payment-protocol message of the wrong shape or size
        │                             (the peer broke the protocol); ``.code``
        └── DriverError               a settlement driver refused; ``.code``:
            ├── InsufficientFunds     ``insufficient-funds``: lock > free balance
            ├── DepositReused         ``deposit-reused``: the channel id was used before
            ├── UnknownChannel        ``unknown-channel``
            ├── DepositMismatch       ``deposit-mismatch``: the deposit on chain is not the promised one
            ├── NotOnThisChain        ``not-a-test-chain``: minting on a chain with real tokens
            ├── SettlementPending     ``settlement-pending``: the payer's end is not final yet
            └── ChainUnavailable      ``chain-unavailable``: RPC failed / not mined (retry)

Money is never a float: every amount here is an ``int`` of base units
(:mod:`yagna.core.money`).
"""

from __future__ import annotations

from yagna.core.errors import YagnaError

VOUCHER_CODES = (
    "too-large",        # 1. size limit
    "unknown-channel",  # 2. no channel record for this id
    "malformed",        # not a voucher envelope / not canonical / wrong shape
    "bad-signature",    # 3. not signed by the channel's payer key
    "wrong-domain",     # signed for another kind of object
    "wrong-network",    # 4. field differs from the channel record
    "wrong-driver",
    "wrong-channel",
    "wrong-agreement",
    "wrong-payer",
    "wrong-payee",
    "wrong-currency",
    "equivocation",     # 5. same seq, different bytes (evidence kept, terminate)
    "decreased",        # 5. lower cumulative amount than the best (terminate)
    "stale",            # 5. lower seq: ignored, not an error for the payer
)


class PaymentError(YagnaError):
    """Root of every error the payments package raises on purpose."""

    code = "payment-error"


class VoucherRejected(PaymentError):
    def __init__(self, code: str, message: str, *, terminate: bool = False) -> None:
        self.code = code
        self.terminate = terminate
        super().__init__(f"{code}: {message}")


class DebitNoteRejected(PaymentError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class ChannelError(PaymentError):
    code = "channel-error"


class AmountInvalid(PaymentError, ValueError):
    """An amount out of range: a caller's input (e.g. ``fund``), mapped to a 400 by the REST layer."""

    code = "bad-amount"


class MessageRejected(PaymentError):
    """A payment-protocol message (or reply) is not of the protocol's shape or size: the peer's fault."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class DriverError(PaymentError):
    code = "driver-error"


class InsufficientFunds(DriverError):
    code = "insufficient-funds"


class DepositReused(DriverError):
    code = "deposit-reused"


class UnknownChannel(DriverError):
    code = "unknown-channel"


class DepositMismatch(DriverError):
    """The deposit on chain is not what the channel-open promised (payer, payee, amount, expiry, contract)."""

    code = "deposit-mismatch"


class NotOnThisChain(DriverError):
    """An operation only a local test chain allows (minting), or a chain the node does not use."""

    code = "not-a-test-chain"


class SettlementPending(DriverError):
    """The payer's side of a channel cannot be final yet (the payee has not closed it and it has not expired)."""

    code = "settlement-pending"


class ChainUnavailable(DriverError):
    """The chain's RPC endpoint failed or a transaction was not mined; the operation may be retried."""

    code = "chain-unavailable"

