"""Debit notes: the provider's signed claim of what is due so far, and the requestor's answer (sans-io).

A debit note is a signed envelope under :data:`DEBIT_NOTE_DOMAIN`, sealed by
the channel's *payee* (the provider), whose payload is the positional list::

    [network_id, agreement_id, channel_id, seq, amount_due, usage, issued_at_ms, final]

``amount_due`` is cumulative, in base units (an ``int``: money is never a
float). ``usage`` is a map of integer counters (:class:`Usage`: milliseconds
and bytes, so usage is exact too). ``final`` marks the invoice sent at
termination. Amounts come from the daemon (``market.pricing``); this module
only carries and judges them.

The requestor answers with :func:`decide_payment`, pure: it pays what its *own*
meter says, whatever the note claims (reference: "the requestor's own meter
caps what it will sign").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payments.errors import ChannelError, DebitNoteRejected
from payments.voucher import MAX_SEQ, MAX_WIRE_AMOUNT, ChannelTerms, is_amount
from yagna.core.envelope import seal
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey, public_key_from_node_id, verify
from yagna.core.wire import decode

__all__ = [
    "DEBIT_NOTE_CODES",
    "DEBIT_NOTE_DOMAIN",
    "DECISION_CODES",
    "MAX_DEBIT_NOTE_SIZE",
    "DebitNote",
    "Decision",
    "Usage",
    "decide_payment",
    "open_debit_note",
    "sign_debit_note",
]

DEBIT_NOTE_DOMAIN = "yagna/debit-note/1"
MAX_DEBIT_NOTE_SIZE = 2048

DEBIT_NOTE_CODES = (
    "too-large",
    "malformed",
    "bad-signature",  # not signed by the channel's payee
    "wrong-domain",
    "wrong-network",
    "wrong-agreement",
    "wrong-channel",
)
"""Codes of :class:`DebitNoteRejected` raised by :func:`open_debit_note`."""

DECISION_CODES = (
    "above-agreed-price",  # more than the requestor's own estimate plus tolerance
    "above-deposit",       # more than the channel's deposit can pay
)
"""Codes of a rejecting :class:`Decision` (the note is valid but its amount is refused)."""

_USAGE_KEYS = ("duration_ms", "cpu_ms", "peak_mem_bytes")


@dataclass(frozen=True)
class Usage:
    """Usage counters, exact ints: wall time and CPU time in ms, peak memory in bytes."""

    duration_ms: int = 0
    cpu_ms: int = 0
    peak_mem_bytes: int = 0

    def __post_init__(self) -> None:
        for name in _USAGE_KEYS:
            value = getattr(self, name)
            if not is_amount(value) or value > MAX_SEQ:
                raise ValueError(f"usage {name} must be an int in 0..{MAX_SEQ}, got {value!r}")

    def to_wire(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _USAGE_KEYS}

    def capped(self, life_ms: int, threads: int) -> Usage:
        """What of this usage the payer's own clock can vouch for: at most ``life_ms`` of wall
        time and ``threads`` busy CPUs over it (the requestor's own estimate)."""
        return Usage(min(self.duration_ms, life_ms), min(self.cpu_ms, threads * life_ms), self.peak_mem_bytes)


@dataclass(frozen=True)
class DebitNote:
    """A debit note verified against a channel's terms; ``raw`` is what was signed."""

    network_id: str
    agreement_id: str
    channel_id: str
    payee: str
    seq: int
    amount_due: int
    usage: Usage
    issued_at_ms: int
    final: bool
    raw: bytes


def sign_debit_note(
    key: NodeKey,
    terms: ChannelTerms,
    *,
    seq: int,
    amount_due: int,
    usage: Usage,
    issued_at_ms: int,
    final: bool = False,
) -> bytes:
    """Seal a debit note as the channel's payee; :class:`ChannelError` on a local misuse."""
    if key.node_id != terms.payee:
        raise ChannelError(f"key {key.node_id} is not the payee {terms.payee} of channel {terms.channel_id}")
    for name, value, top in (("seq", seq, MAX_SEQ), ("amount_due", amount_due, MAX_WIRE_AMOUNT),
                             ("issued_at_ms", issued_at_ms, MAX_SEQ)):
        if not is_amount(value) or value > top:
            raise ChannelError(f"debit note {name} must be an int in 0..{top}, got {value!r}")
    if seq == 0:
        raise ChannelError("debit note seq starts at 1")
    if not isinstance(usage, Usage) or type(final) is not bool:
        raise ChannelError("debit note usage must be a Usage and final a bool")
    payload = [
        terms.network_id, terms.agreement_id, terms.channel_id,
        seq, amount_due, usage.to_wire(), issued_at_ms, final,
    ]
    return seal(key, DEBIT_NOTE_DOMAIN, payload)


def _malformed(message: str) -> DebitNoteRejected:
    return DebitNoteRejected("malformed", message)


def _parse_usage(value: object) -> Usage:
    if not isinstance(value, dict) or set(value) != set(_USAGE_KEYS):
        raise _malformed(f"usage must be a map of exactly {', '.join(_USAGE_KEYS)}")
    if not all(is_amount(v) and v <= MAX_SEQ for v in value.values()):
        raise _malformed(f"usage counters must be ints in 0..{MAX_SEQ}")
    return Usage(**value)


def open_debit_note(raw: bytes, *, terms: ChannelTerms, max_size: int = MAX_DEBIT_NOTE_SIZE) -> DebitNote:
    """Verify a debit note like a voucher (size, signer = ``terms.payee``, ids); raise only
    :class:`DebitNoteRejected` (codes: :data:`DEBIT_NOTE_CODES`).

    The amount is *not* judged here: a valid note may still ask too much, which is
    :func:`decide_payment`'s call.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _malformed(f"a debit note is bytes, got {type(raw).__name__}")
    if len(raw) > max_size:
        raise DebitNoteRejected("too-large", f"{len(raw)} bytes, the limit is {max_size}")
    try:
        outer = decode(bytes(raw), max_size=max_size, max_depth=1)
    except WireError as exc:
        raise _malformed(str(exc)) from None
    if not (isinstance(outer, list) and len(outer) == 2):
        raise _malformed("a debit note is a 2-element array [body, signature]")
    body, signature = outer
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise _malformed("debit note body and signature must be byte strings")
    payee_key = public_key_from_node_id(terms.payee)  # valid: ChannelTerms checked it
    try:
        verify(payee_key, body, signature)
    except WireError as exc:
        raise DebitNoteRejected("bad-signature", f"not signed by the payee {terms.payee}: {exc}") from None
    try:
        inner = decode(body, max_size=max_size, max_depth=3, bignums=True)
    except WireError as exc:
        raise _malformed(f"debit note body: {exc}") from None
    if not (isinstance(inner, list) and len(inner) == 3):
        raise _malformed("debit note body must be [domain, signer key, payload]")
    tag, signer_key, payload = inner
    if tag != DEBIT_NOTE_DOMAIN:
        raise DebitNoteRejected("wrong-domain", f"signed for {tag!r:.80}, not {DEBIT_NOTE_DOMAIN!r}")
    if signer_key != payee_key:
        raise DebitNoteRejected("bad-signature", "the body names another signer than the channel's payee")
    if not (isinstance(payload, list) and len(payload) == 8):
        raise _malformed("debit note payload must be an 8-element array")
    network_id, agreement_id, channel_id, seq, amount_due, usage, issued_at_ms, final = payload
    for code, value, expected in (
        ("wrong-network", network_id, terms.network_id),
        ("wrong-agreement", agreement_id, terms.agreement_id),
        ("wrong-channel", channel_id, terms.channel_id),
    ):
        if value != expected:
            raise DebitNoteRejected(code, f"{value!r:.80} is not the channel's {expected!r}")
    if not is_amount(seq) or not 0 < seq <= MAX_SEQ:
        raise _malformed(f"debit note seq must be an int in 1..{MAX_SEQ}")
    if not is_amount(amount_due) or amount_due > MAX_WIRE_AMOUNT:
        raise _malformed("debit note amount_due must be an int >= 0")
    if not is_amount(issued_at_ms) or issued_at_ms > MAX_SEQ:
        raise _malformed(f"debit note issued_at_ms must be an int in 0..{MAX_SEQ}")
    if type(final) is not bool:
        raise _malformed("debit note final must be a bool")
    return DebitNote(
        network_id=network_id,
        agreement_id=agreement_id,
        channel_id=channel_id,
        payee=terms.payee,
        seq=seq,
        amount_due=amount_due,
        usage=_parse_usage(usage),
        issued_at_ms=issued_at_ms,
        final=final,
        raw=bytes(raw),
    )


@dataclass(frozen=True)
class Decision:
    """The requestor's answer to one debit note.

    The service acts on both halves: it accepts or rejects the *note* (with
    ``code``/``reason``), and, independently, signs a voucher for
    ``voucher_amount`` when it is not ``None`` (so honest work keeps being
    paid even when a note is rejected).
    """

    accepted: bool
    code: str | None
    """``None`` when accepted, else one of :data:`DECISION_CODES`."""
    reason: str
    agreed: int
    """Cumulative amount the requestor agrees it owes now (>= ``last_signed``)."""
    voucher_amount: int | None
    """Sign a voucher for this cumulative amount, or ``None``: nothing new to sign."""


def decide_payment(note: DebitNote, *, own_estimate: int, last_signed: int, deposit: int, tolerance: int) -> Decision:
    """Decide what to pay for ``note``; all amounts cumulative base units.

    ``agreed = max(last_signed, min(note.amount_due, own_estimate, deposit))``: never
    more than the requestor's own estimate, never more than the deposit, never less
    than what it already signed (cumulative amounts do not go back).

    * ``amount_due > own_estimate + tolerance``: the note is rejected
      (``above-agreed-price``), but the voucher still pays ``min(own_estimate, deposit)``:
      the requestor refuses the overcharge, not the work.
    * ``amount_due > deposit`` (within tolerance): rejected (``above-deposit``); the
      voucher pays the deposit's worth the requestor agrees to.
    * otherwise the note is accepted; within the tolerance above ``own_estimate`` the
      voucher still pays only ``own_estimate`` (clock skew closes the gap at the next
      note; the provider's debt bound must exceed ``tolerance``).
    """
    for name, value in (
        ("own_estimate", own_estimate), ("last_signed", last_signed),
        ("deposit", deposit), ("tolerance", tolerance),
    ):
        if not is_amount(value):
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if last_signed > deposit:
        raise ValueError(f"last_signed {last_signed} exceeds the deposit {deposit}")
    due = note.amount_due
    agreed = max(last_signed, min(due, own_estimate, deposit))
    voucher_amount = agreed if agreed > last_signed else None
    if due > own_estimate + tolerance:
        return Decision(
            False, "above-agreed-price",
            f"note {note.seq} asks {due}, own estimate is {own_estimate} (tolerance {tolerance})",
            agreed, voucher_amount,
        )
    if due > deposit:
        return Decision(
            False, "above-deposit", f"note {note.seq} asks {due}, the deposit is {deposit}",
            agreed, voucher_amount,
        )
    return Decision(True, None, f"note {note.seq} accepted", agreed, voucher_amount)
