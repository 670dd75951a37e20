"""Vouchers: the payer's signed promise of a *cumulative* amount on one channel (sans-io).

A voucher is a signed envelope (:mod:`yagna.core.envelope`) under
:data:`VOUCHER_DOMAIN`, sealed by the payer's node key, whose payload is the
positional list::

    [network_id, driver, channel_id, agreement_id, payer, payee, currency, seq, amount]
    [network_id, driver, channel_id, agreement_id, payer, payee, currency, seq, amount, proof]

``proof`` (on a chain) is the payer's settlement-key signature that lets the payee redeem
``amount`` by itself (the EIP-712 signature of :mod:`payments.evm.voucher`); the
driver checks it (:meth:`payments.driver.SettlementDriver.check_voucher_proof`). On the
test-network ledger there is none and the voucher is byte for byte as before.

Every id that binds the voucher is inside the signed bytes, so a voucher can
never be replayed on another channel, agreement, network or driver (Raiden's
balance proofs). ``amount`` is cumulative (Filecoin's vouchers): the payee only
needs the best one, and an old or replayed voucher is worth nothing more.

:func:`open_voucher` runs the payee's checks 1-4 of
``reference/payments.md`` in order; checks 5-7 (sequence, deposit cap, commit)
need the channel's state and live in :mod:`payments.channel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payments.errors import ChannelError, VoucherRejected
from yagna.core.envelope import seal
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey, public_key_from_node_id, verify
from yagna.core.wire import decode

__all__ = [
    "MAX_SEQ",
    "MAX_VOUCHER_SIZE",
    "MAX_WIRE_AMOUNT",
    "VOUCHER_DOMAIN",
    "ChannelTerms",
    "Voucher",
    "open_voucher",
    "peek_channel_id",
    "sign_voucher",
]

VOUCHER_DOMAIN = "yagna/voucher/1"
MAX_VOUCHER_SIZE = 1024
"""A real voucher is ~260-400 bytes (two node ids, a few ids, a signature)."""
MAX_WIRE_AMOUNT = 2**256 - 1
"""Largest amount a signed payload carries: an unsigned 256-bit value, as on an EVM chain.

Amounts up to ``2**64 - 1`` encode as before (plain CBOR ints, byte for byte the same
vouchers); larger ones as the wire's bignum (yagna/core/wire.py), which a node older than
issue 14 refuses as malformed (safe: it never accepts a voucher it cannot read).
"""
MAX_SEQ = 2**64 - 1
"""Sequence numbers, counters and times stay 64-bit."""
MAX_PROOF = 96
"""An EIP-712 signature is 65 bytes."""

_FIELDS = ("network_id", "driver", "channel_id", "agreement_id", "payer", "payee", "currency")
_SETTLEMENT_FIELDS = ("payer_account", "payee_account", "expiry")
_CODES = {
    "network_id": "wrong-network",
    "driver": "wrong-driver",
    "channel_id": "wrong-channel",
    "agreement_id": "wrong-agreement",
    "payer": "wrong-payer",
    "payee": "wrong-payee",
    "currency": "wrong-currency",
}


def is_amount(value: object) -> bool:
    """An exact non-negative ``int`` (``bool`` is not money)."""
    return type(value) is int and value >= 0


@dataclass(frozen=True)
class ChannelTerms:
    """What both sides agreed for one channel: the record every voucher is checked against.

    ``payer`` and ``payee`` are node ids; the payer's key is taken from ``payer``,
    never from a message. ``deposit`` is in base units.
    """

    network_id: str
    driver: str
    channel_id: str
    agreement_id: str
    payer: str
    payee: str
    currency: str
    deposit: int
    payer_account: str = ""
    """The payer's settlement account when it is not the node id (a chain's 0x address)."""
    payee_account: str = ""
    expiry: int = 0
    """Unix seconds when the payer may take back what was not redeemed (0: never, the ledger)."""

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"channel terms: {name} must be a non-empty str")
        for name in ("payer", "payee"):
            try:
                public_key_from_node_id(getattr(self, name))
            except WireError as exc:
                raise ValueError(f"channel terms: {name} is not a node id: {exc}") from None
        if not (isinstance(self.payer_account, str) and isinstance(self.payee_account, str)
                and is_amount(self.expiry) and self.expiry <= MAX_SEQ):
            raise ValueError("channel terms: settlement accounts must be str and expiry an int in 0..2**64-1")
        if not is_amount(self.deposit) or not 0 < self.deposit <= MAX_WIRE_AMOUNT:
            raise ValueError(
                f"channel terms: deposit must be an int in 1..{MAX_WIRE_AMOUNT}, got {self.deposit!r}"
            )

    def to_record(self) -> dict[str, Any]:
        """A CBOR/JSON-friendly dict (the store keeps this next to the channel's state)."""
        record = {name: getattr(self, name) for name in (*_FIELDS, "deposit")}
        for name in _SETTLEMENT_FIELDS:  # only on chains: a ledger's stored terms are as before
            if getattr(self, name):
                record[name] = getattr(self, name)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChannelTerms:
        return cls(**{name: record[name] for name in (*_FIELDS, "deposit")},
                   **{name: record[name] for name in _SETTLEMENT_FIELDS if name in record})


@dataclass(frozen=True)
class Voucher:
    """A voucher that passed checks 1-4 for some :class:`ChannelTerms`; ``raw`` is what was signed."""

    network_id: str
    driver: str
    channel_id: str
    agreement_id: str
    payer: str
    payee: str
    currency: str
    seq: int
    amount: int
    raw: bytes
    proof: bytes = b""
    """The settlement key's signature for ``amount`` (chains), checked by the driver."""


def sign_voucher(key: NodeKey, terms: ChannelTerms, seq: int, amount: int, proof: bytes = b"") -> bytes:
    """Seal a voucher for ``terms`` (low level: :class:`payments.channel.PayerChannel` keeps seq order).

    :class:`ChannelError` if ``key`` is not the channel's payer or seq/amount are not
    ints in range; the deposit cap is the channel's business (a payee caps anyway).
    """
    if key.node_id != terms.payer:
        raise ChannelError(f"key {key.node_id} is not the payer {terms.payer} of channel {terms.channel_id}")
    if not is_amount(seq) or not 0 < seq <= MAX_SEQ:
        raise ChannelError(f"voucher seq must be an int in 1..{MAX_SEQ}, got {seq!r}")
    if not is_amount(amount) or amount > MAX_WIRE_AMOUNT:
        raise ChannelError(f"voucher amount must be an int in 0..{MAX_WIRE_AMOUNT}, got {amount!r}")
    if not isinstance(proof, bytes) or len(proof) > MAX_PROOF:
        raise ChannelError(f"a voucher proof is at most {MAX_PROOF} bytes")
    payload: list[Any] = [*(getattr(terms, name) for name in _FIELDS), seq, amount]
    if proof:
        payload.append(proof)
    return seal(key, VOUCHER_DOMAIN, payload)


def _split(raw: object, max_size: int) -> tuple[bytes, bytes]:
    """Check 1 and the envelope's shape: ``(body, signature)``."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise VoucherRejected("malformed", f"a voucher is bytes, got {type(raw).__name__}")
    if len(raw) > max_size:
        raise VoucherRejected("too-large", f"{len(raw)} bytes, the limit is {max_size}")
    try:
        outer = decode(bytes(raw), max_size=max_size, max_depth=1)
    except WireError as exc:
        raise VoucherRejected("malformed", str(exc)) from None
    if not (isinstance(outer, list) and len(outer) == 2):
        raise VoucherRejected("malformed", "a voucher is a 2-element array [body, signature]")
    body, signature = outer
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise VoucherRejected("malformed", "voucher body and signature must be byte strings")
    return body, signature


def peek_channel_id(raw: bytes, *, max_size: int = MAX_VOUCHER_SIZE) -> str:
    """The channel id a voucher *claims*, unverified: only to find the channel record (check 2).

    Never trust anything else from it; :func:`open_voucher` then verifies
    everything against the record found. Raises only :class:`VoucherRejected`.
    """
    body, _ = _split(raw, max_size)
    _, payload = _payload(body, max_size)
    return str(payload[2])


def _payload(body: bytes, max_size: int) -> tuple[object, list[Any]]:
    """The body's ``(signer key, payload)`` after the domain and shape checks."""
    try:
        inner = decode(body, max_size=max_size, max_depth=2, bignums=True)
    except WireError as exc:
        raise VoucherRejected("malformed", f"voucher body: {exc}") from None
    if not (isinstance(inner, list) and len(inner) == 3):
        raise VoucherRejected("malformed", "voucher body must be [domain, signer key, payload]")
    tag, signer_key, payload = inner
    if tag != VOUCHER_DOMAIN:
        raise VoucherRejected("wrong-domain", f"signed for {tag!r:.80}, not {VOUCHER_DOMAIN!r}")
    if not (isinstance(payload, list) and len(payload) in (len(_FIELDS) + 2, len(_FIELDS) + 3)):
        raise VoucherRejected("malformed", f"voucher payload must be a {len(_FIELDS) + 2}-element array "
                                           "(or one more: the settlement proof)")
    if len(payload) == len(_FIELDS) + 3 and not (isinstance(payload[-1], bytes) and 0 < len(payload[-1]) <= MAX_PROOF):
        raise VoucherRejected("malformed", f"a voucher proof is 1 to {MAX_PROOF} bytes")
    if not all(isinstance(value, str) for value in payload[: len(_FIELDS)]):
        raise VoucherRejected("malformed", "voucher ids must be text strings")
    seq, amount = payload[len(_FIELDS) : len(_FIELDS) + 2]
    if not is_amount(seq) or not 0 < seq <= MAX_SEQ:
        raise VoucherRejected("malformed", f"voucher seq must be an int in 1..{MAX_SEQ}")
    if not is_amount(amount):
        raise VoucherRejected("malformed", "voucher amount must be an int >= 0")
    return signer_key, payload


def open_voucher(raw: bytes, terms: ChannelTerms, *, max_size: int = MAX_VOUCHER_SIZE) -> Voucher:
    """Run checks 1-4 in order; raise only :class:`VoucherRejected` (never ``terminate``).

    1. size; 2. the payer key comes from ``terms.payer``; 3. the ed25519
    signature over the body bytes, by that key; 4. the body is canonical CBOR,
    tagged :data:`VOUCHER_DOMAIN`, names the payer's key, and every id equals
    ``terms``. The amount is *not* capped here: a voucher above the deposit is
    valid and counts as the deposit (check 6, :mod:`payments.channel`).
    """
    body, signature = _split(raw, max_size)
    payer_key = public_key_from_node_id(terms.payer)  # valid: ChannelTerms checked it
    try:
        verify(payer_key, body, signature)
    except WireError as exc:
        raise VoucherRejected("bad-signature", f"not signed by the payer {terms.payer}: {exc}") from None
    signer_key, payload = _payload(body, max_size)
    if signer_key != payer_key:
        raise VoucherRejected("bad-signature", "the body names another signer than the channel's payer")
    for name, value in zip(_FIELDS, payload, strict=False):
        expected = getattr(terms, name)
        if value != expected:
            raise VoucherRejected(_CODES[name], f"{name} is {value!r:.80}, the channel's is {expected!r}")
    seq, amount = payload[len(_FIELDS) : len(_FIELDS) + 2]
    proof = payload[len(_FIELDS) + 2] if len(payload) > len(_FIELDS) + 2 else b""
    # mypy cannot count a list slice: seven str fields, checked against the terms above
    return Voucher(*payload[: len(_FIELDS)], seq=seq, amount=amount, raw=bytes(raw), proof=proof)  # type: ignore[misc]
