"""payments: channels, vouchers, debit notes, enforcement and settlement drivers (see docs/ARCHITECTURE.md).

Sans-io at the core (:mod:`payments.voucher`, :mod:`payments.channel`,
:mod:`payments.debit_note`, :mod:`payments.enforcement`, the payer's own meter
:mod:`payments.meter`, the protocol's typed messages :mod:`payments.messages`,
the records' states :mod:`payments.states`); drivers behind the
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
    AmountInvalid,
    ChannelError,
    DebitNoteRejected,
    DepositReused,
    DriverError,
    InsufficientFunds,
    MessageRejected,
    PaymentError,
    UnknownChannel,
    VoucherRejected,
)
from payments.meter import MeterRecord, OwnMeter
from payments.states import ChannelState, InvoiceStatus, NoteStatus, Role
from payments.testnet_ledger import MemoryLedger
from payments.voucher import VOUCHER_DOMAIN, ChannelTerms, Voucher, open_voucher, peek_channel_id, sign_voucher

__all__ = [
    "DEBIT_NOTE_CODES",
    "DEBIT_NOTE_DOMAIN",
    "DECISION_CODES",
    "VOUCHER_CODES",
    "VOUCHER_DOMAIN",
    "Action",
    "AmountInvalid",
    "Balance",
    "ChannelError",
    "ChannelInfo",
    "ChannelState",
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
    "InvoiceStatus",
    "MemoryLedger",
    "MessageRejected",
    "MeterRecord",
    "NoteStatus",
    "Outcome",
    "OwnMeter",
    "PayeeChannel",
    "PayerChannel",
    "PaymentError",
    "Receipt",
    "Redemption",
    "Role",
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
