"""The payment protocol's messages, typed, with their encoding and decoding (sans-io).

Between the two parties of an agreement (``/yagna/payment/1.0.0``)::

    requestor -> provider
        {"op": "open", "channel_open": bytes}                -> {}
        {"op": "voucher", "raw": bytes}                      -> {"ack_seq": int}
        {"op": "top_up", "channel_id": str, "deposit": int}  -> {}   (a lease's deposit, raised)
    provider -> requestor
        {"op": "debit_note", "channel_id": str, "raw": bytes}
            -> {"accepted": bool, "code": str|None, "reason": str, "voucher_seq": int|None}
        {"op": "notice", "agreement_id": str, "kind": "paused"|"resumed", "reason": str} -> {}

A voucher travels one way only: the requestor stores it durably, then sends
it as a ``voucher`` message until the provider's reply acknowledges it; the
provider replies only after its own durable commit. The answer to a debit
note carries no voucher: it names the seq of the stored voucher that pays for
it (``voucher_seq``), which the provider waits for (an invoice is redeemed
only once its voucher arrived or did not come in time).

:func:`decode_request` and the ``decode_*`` replies check shape and sizes and
raise only :class:`~payments.errors.MessageRejected` (the peer broke the
protocol); the signed objects inside are opened later against the channel's
terms by :mod:`payments.voucher`, :mod:`payments.debit_note` and
:mod:`payments.channel_open`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from payments.channel_open import MAX_CHANNEL_OPEN_SIZE
from payments.debit_note import DECISION_CODES, MAX_DEBIT_NOTE_SIZE
from payments.errors import MessageRejected, VoucherRejected
from payments.voucher import MAX_SEQ, MAX_VOUCHER_SIZE, MAX_WIRE_AMOUNT, is_amount, peek_channel_id
from yagna.core import wire
from yagna.core.errors import WireError

__all__ = [
    "MAX_ID",
    "MAX_REASON",
    "ChannelOpenMsg",
    "HelloAnswer",
    "HelloMsg",
    "decode_hello_answer",
    "encode_hello_answer",
    "DebitNoteAnswer",
    "DebitNoteMsg",
    "NoticeKind",
    "NoticeMsg",
    "PaymentRequest",
    "TopUpMsg",
    "VoucherAck",
    "VoucherMsg",
    "decode_answer",
    "decode_request",
    "decode_voucher_ack",
    "encode_answer",
    "encode_request",
    "encode_voucher_ack",
    "peek_agreement_id",
]

MAX_ID = 128
"""Longest channel or agreement id a message may name (ours are 32 and 64 hex chars)."""
MAX_REASON = 256
"""Longest human-readable reason a message may carry (longer ones are cut when encoding)."""


class NoticeKind(enum.Enum):
    PAUSED = "paused"
    RESUMED = "resumed"


@dataclass(frozen=True)
class ChannelOpenMsg:
    channel_open: bytes
    agreement_id: str
    """Named inside the signed channel-open (peeked, not yet verified: only to find the agreement)."""
    binding: bytes = b""
    """On a chain: the payer's settlement binding (node id <-> 0x address, self-authenticating)."""


@dataclass(frozen=True)
class HelloMsg:
    """Requestor -> provider before a chain deposit: which account and contract do you settle on?"""

    agreement_id: str


@dataclass(frozen=True)
class HelloAnswer:
    driver: str
    binding: bytes
    """The provider's settlement binding (empty on the ledger)."""
    chain_id: int
    contract: str


@dataclass(frozen=True)
class VoucherMsg:
    raw: bytes
    channel_id: str
    """Named inside the signed voucher (peeked, not yet verified: only to find the channel)."""


@dataclass(frozen=True)
class DebitNoteMsg:
    channel_id: str
    raw: bytes


@dataclass(frozen=True)
class NoticeMsg:
    agreement_id: str
    kind: NoticeKind
    reason: str


@dataclass(frozen=True)
class TopUpMsg:
    """The payer raised the channel's deposit to ``deposit`` (the payee checks it through its driver)."""

    channel_id: str
    deposit: int


PaymentRequest = ChannelOpenMsg | VoucherMsg | DebitNoteMsg | NoticeMsg | HelloMsg | TopUpMsg
MAX_BINDING = 512


@dataclass(frozen=True)
class VoucherAck:
    ack_seq: int
    """The highest seq the provider holds durably (a stale voucher is acknowledged with the best)."""


@dataclass(frozen=True)
class DebitNoteAnswer:
    accepted: bool
    code: str | None
    """``None`` when accepted, else one of :data:`payments.debit_note.DECISION_CODES`."""
    reason: str
    voucher_seq: int | None = None
    """The seq of the requestor's latest stored voucher (a ``voucher`` message follows), if any."""
    voucher: bytes | None = None
    """That voucher itself, when this note earned it: the provider stores it at once (one request,
    not two, per paid interval). The ``voucher`` message still follows and is what gets acknowledged."""


# -- encoding ------------------------------------------------------------------------------


def _cut(reason: str) -> str:
    return reason[:MAX_REASON]


def encode_request(msg: PaymentRequest) -> dict[str, Any]:
    if isinstance(msg, ChannelOpenMsg):
        if msg.binding:
            return {"op": "open", "channel_open": msg.channel_open, "binding": msg.binding}
        return {"op": "open", "channel_open": msg.channel_open}
    if isinstance(msg, HelloMsg):
        return {"op": "hello", "agreement_id": msg.agreement_id}
    if isinstance(msg, VoucherMsg):
        return {"op": "voucher", "raw": msg.raw}
    if isinstance(msg, DebitNoteMsg):
        return {"op": "debit_note", "channel_id": msg.channel_id, "raw": msg.raw}
    if isinstance(msg, TopUpMsg):
        return {"op": "top_up", "channel_id": msg.channel_id, "deposit": msg.deposit}
    return {"op": "notice", "agreement_id": msg.agreement_id, "kind": msg.kind.value, "reason": _cut(msg.reason)}


def encode_hello_answer(answer: HelloAnswer) -> dict[str, Any]:
    return {"driver": answer.driver, "binding": answer.binding, "chain_id": answer.chain_id,
            "contract": answer.contract}


def decode_hello_answer(obj: object) -> HelloAnswer:
    f = _fields(obj, ("driver", "binding", "chain_id", "contract"), "a hello answer")
    chain_id = f["chain_id"]
    if not is_amount(chain_id) or chain_id > MAX_SEQ:
        raise _bad("chain_id must be an int in 0..2**64 - 1")
    return HelloAnswer(_text(f["driver"], "driver", MAX_ID), _bytes(f["binding"], "binding", MAX_BINDING),
                       chain_id, _text(f["contract"], "contract", MAX_ID, empty=True))


def encode_voucher_ack(ack: VoucherAck) -> dict[str, Any]:
    return {"ack_seq": ack.ack_seq}


def encode_answer(answer: DebitNoteAnswer) -> dict[str, Any]:
    out: dict[str, Any] = {"accepted": answer.accepted, "code": answer.code, "reason": _cut(answer.reason),
                           "voucher_seq": answer.voucher_seq}
    if answer.voucher is not None:
        out["voucher"] = answer.voucher
    return out


# -- decoding ------------------------------------------------------------------------------


def _bad(message: str) -> MessageRejected:
    return MessageRejected("bad-request", message)


def _fields(obj: object, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != set(keys):
        raise _bad(f"{what} must be a map of exactly {', '.join(keys)}")
    return obj


def _bytes(value: object, name: str, limit: int) -> bytes:
    if not isinstance(value, bytes):
        raise _bad(f"field {name!r} must be bytes")
    if len(value) > limit:
        raise MessageRejected("too-large", f"field {name!r} has {len(value)} bytes, the limit is {limit}")
    return value


def _text(value: object, name: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise _bad(f"field {name!r} must be a {'' if empty else 'non-empty '}string")
    if len(value) > limit:
        raise MessageRejected("too-large", f"field {name!r} has {len(value)} characters, the limit is {limit}")
    return value


def peek_agreement_id(raw: bytes) -> str:
    """The agreement id a channel-open names, unverified (only to find the agreement; verified next)."""
    try:
        body = wire.decode(raw, max_size=MAX_CHANNEL_OPEN_SIZE)[0]  # type: ignore[index]
        agreement_id = wire.decode(body, max_size=MAX_CHANNEL_OPEN_SIZE, bignums=True)[2][3]  # type: ignore[index]
    except (WireError, TypeError, IndexError, KeyError):
        raise _bad("not a channel-open message") from None
    return _text(agreement_id, "agreement_id", MAX_ID)


def decode_request(obj: object) -> PaymentRequest:
    """A request from a peer; :class:`MessageRejected` for anything not of the protocol's shape."""
    if not isinstance(obj, dict):
        raise _bad("a payment message is a map")
    op = obj.get("op")
    if op == "open":
        with_binding = "binding" in obj
        f = _fields(obj, ("op", "channel_open", "binding") if with_binding else ("op", "channel_open"), "an open message")
        raw = _bytes(f["channel_open"], "channel_open", MAX_CHANNEL_OPEN_SIZE)
        binding = _bytes(f["binding"], "binding", MAX_BINDING) if with_binding else b""
        return ChannelOpenMsg(raw, peek_agreement_id(raw), binding)
    if op == "hello":
        f = _fields(obj, ("op", "agreement_id"), "a hello")
        return HelloMsg(_text(f["agreement_id"], "agreement_id", MAX_ID))
    if op == "voucher":
        f = _fields(obj, ("op", "raw"), "a voucher message")
        raw = _bytes(f["raw"], "raw", MAX_VOUCHER_SIZE)
        try:
            channel_id = peek_channel_id(raw)
        except VoucherRejected as exc:
            raise MessageRejected(exc.code, str(exc)) from None
        return VoucherMsg(raw, channel_id)
    if op == "debit_note":
        f = _fields(obj, ("op", "channel_id", "raw"), "a debit-note message")
        return DebitNoteMsg(_text(f["channel_id"], "channel_id", MAX_ID), _bytes(f["raw"], "raw", MAX_DEBIT_NOTE_SIZE))
    if op == "notice":
        f = _fields(obj, ("op", "agreement_id", "kind", "reason"), "a notice")
        try:
            kind = NoticeKind(f["kind"])
        except ValueError:
            raise _bad(f"notice kind must be one of {', '.join(k.value for k in NoticeKind)}") from None
        return NoticeMsg(_text(f["agreement_id"], "agreement_id", MAX_ID), kind,
                         _text(f["reason"], "reason", MAX_REASON, empty=True))
    if op == "top_up":
        f = _fields(obj, ("op", "channel_id", "deposit"), "a top-up")
        deposit = f["deposit"]
        if not is_amount(deposit) or not 0 < deposit <= MAX_WIRE_AMOUNT:
            raise _bad(f"deposit must be an int in 1..{MAX_WIRE_AMOUNT}")
        return TopUpMsg(_text(f["channel_id"], "channel_id", MAX_ID), deposit)
    raise _bad(f"unknown op {str(op)[:40]!r}")


def decode_voucher_ack(obj: object) -> VoucherAck:
    """The provider's reply to a voucher."""
    f = _fields(obj, ("ack_seq",), "a voucher acknowledgement")
    seq = f["ack_seq"]
    if not is_amount(seq) or seq > MAX_SEQ:
        raise _bad("ack_seq must be an int in 0..2**64 - 1")
    return VoucherAck(seq)


def decode_answer(obj: object) -> DebitNoteAnswer:
    """The requestor's answer to a debit note."""
    keys = ("accepted", "code", "reason", "voucher_seq")
    with_voucher = isinstance(obj, dict) and "voucher" in obj
    f = _fields(obj, (*keys, "voucher") if with_voucher else keys, "a debit-note answer")
    accepted, code, seq = f["accepted"], f["code"], f["voucher_seq"]
    voucher = _bytes(f["voucher"], "voucher", MAX_VOUCHER_SIZE) if with_voucher else None
    if voucher is not None and seq is None:
        raise _bad("a voucher comes with its voucher_seq")
    if type(accepted) is not bool:
        raise _bad("accepted must be a bool")
    if accepted and code is not None or not accepted and code not in DECISION_CODES:
        raise _bad(f"code must be null when accepted, else one of {', '.join(DECISION_CODES)}")
    if seq is not None and (not is_amount(seq) or not 0 < seq <= MAX_SEQ):
        raise _bad("voucher_seq must be null or an int in 1..2**64 - 1")
    return DebitNoteAnswer(accepted, code, _text(f["reason"], "reason", MAX_REASON, empty=True), seq, voucher)
