"""payments: channels, vouchers, debit notes, enforcement and settlement drivers (see docs/ARCHITECTURE.md).

Sans-io at the core (:mod:`payments.voucher`, :mod:`payments.channel`,
:mod:`payments.debit_note`, :mod:`payments.enforcement`); drivers behind the
:class:`~payments.driver.SettlementDriver` Protocol. Money is an ``int`` of base units.
"""

from payments.channel import Evidence, Outcome, PayeeChannel, PayerChannel, Receipt
from payments.debit_note import (
    DEBIT_NOTE_CODES,
    DEBIT_NOTE_DOMAIN,
    DECISION_CODES,
    DebitNote,
    Decision,
    Usage,
    decide_payment,
    open_debit_note,
    sign_debit_note,
)
from payments.driver import Balance, ChannelInfo, Redemption, SettlementDriver
from payments.enforcement import Action, Enforcement, EnforcementState, Step
from payments.errors import (
    VOUCHER_CODES,
    ChannelError,
    DebitNoteRejected,
    DepositReused,
    DriverError,
    InsufficientFunds,
    PaymentError,
    UnknownChannel,
    VoucherRejected,
)
from payments.testnet_ledger import MemoryLedger
from payments.voucher import VOUCHER_DOMAIN, ChannelTerms, Voucher, open_voucher, peek_channel_id, sign_voucher

__all__ = [
    "DEBIT_NOTE_CODES",
    "DEBIT_NOTE_DOMAIN",
    "DECISION_CODES",
    "VOUCHER_CODES",
    "VOUCHER_DOMAIN",
    "Action",
    "Balance",
    "ChannelError",
    "ChannelInfo",
    "ChannelTerms",
    "DebitNote",
    "DebitNoteRejected",
    "Decision",
    "DepositReused",
    "DriverError",
    "Enforcement",
    "EnforcementState",
    "Evidence",
    "InsufficientFunds",
    "MemoryLedger",
    "Outcome",
    "PayeeChannel",
    "PayerChannel",
    "PaymentError",
    "Receipt",
    "Redemption",
    "SettlementDriver",
    "Step",
    "UnknownChannel",
    "Usage",
    "Voucher",
    "VoucherRejected",
    "decide_payment",
    "open_debit_note",
    "open_voucher",
    "peek_channel_id",
    "sign_debit_note",
    "sign_voucher",
]
