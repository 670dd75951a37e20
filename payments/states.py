"""The payment records' roles and states, as enums (string-valued: the store keeps the same text)."""

from __future__ import annotations

import enum

__all__ = ["ChannelState", "InvoiceStatus", "NoteStatus", "Role"]


class Role(enum.StrEnum):
    PAYER = "payer"  # the requestor's side of a channel
    PAYEE = "payee"  # the provider's side


class ChannelState(enum.StrEnum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class InvoiceStatus(enum.StrEnum):
    ISSUED = "issued"
    PAID = "paid"
    SETTLED = "settled"  # settled for what the best voucher was worth (less than invoiced)


class NoteStatus(enum.StrEnum):
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
