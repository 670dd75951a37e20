"""Fuzz the payment decoders: vouchers (and the channel id peeked before verifying), debit notes,
channel-open messages. Signed garbage is made with the right keys, so the checks past the
signature run on every shape."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from payments.channel_open import CHANNEL_OPEN_DOMAIN, ChannelOpenRejected, open_channel_open, seal_channel_open
from payments.debit_note import DEBIT_NOTE_DOMAIN, DebitNoteRejected, Usage, open_debit_note, sign_debit_note
from payments.errors import MessageRejected
from payments.messages import decode_answer, decode_request, decode_voucher_ack, peek_agreement_id
from payments.voucher import VOUCHER_DOMAIN, ChannelTerms, VoucherRejected, open_voucher, peek_channel_id, sign_voucher
from yagna.core.envelope import seal
from yagna.core.identity import NodeKey
from yagna.core.wire import decode, encode

from .strategies import FUZZ, cbor_values, garbage, mutated, only

PAYER = NodeKey.from_seed(bytes(range(32)))
PAYEE = NodeKey.from_seed(bytes(range(1, 33)))
TERMS = ChannelTerms(network_id="devnet-1", driver="testnet-ledger", channel_id="ch-0001", agreement_id="ag-0001",
                     payer=PAYER.node_id, payee=PAYEE.node_id, currency="tGLM", deposit=1_000)
VOUCHER = sign_voucher(PAYER, TERMS, 1, 500)
NOTE = sign_debit_note(PAYEE, TERMS, seq=1, amount_due=400, usage=Usage(1000, 500, 1 << 20), issued_at_ms=1)
OPEN = seal_channel_open(PAYER, network_id="devnet-1", driver="testnet-ledger", channel_id="ch-0001",
                         agreement_id="ag-0001", payee=PAYEE.node_id, currency="tGLM", deposit=1_000)


def _payload(sealed: bytes) -> object:
    return decode(decode(sealed)[0], max_depth=8)[2]  # type: ignore[index]


def signed(valid: bytes, key: NodeKey, domain: str) -> st.SearchStrategy[bytes]:
    """Garbage in place of ``valid``, plus wrong payloads properly signed by ``key`` under ``domain``."""
    resealed = st.one_of(mutated(_payload(valid)), cbor_values).map(lambda p: seal(key, domain, p))
    return st.one_of(garbage(valid), resealed, mutated(decode(valid)).map(encode))


@FUZZ
@given(signed(VOUCHER, PAYER, VOUCHER_DOMAIN))
def test_voucher_decoders_raise_only_voucher_rejected(raw: bytes) -> None:
    only(VoucherRejected, peek_channel_id, raw)
    only(VoucherRejected, open_voucher, raw, TERMS)


@FUZZ
@given(signed(NOTE, PAYEE, DEBIT_NOTE_DOMAIN))
def test_debit_note_decoder_raises_only_debit_note_rejected(raw: bytes) -> None:
    only(DebitNoteRejected, open_debit_note, raw, terms=TERMS)


@FUZZ
@given(signed(OPEN, PAYER, CHANNEL_OPEN_DOMAIN))
def test_channel_open_decoder_raises_only_channel_open_rejected(raw: bytes) -> None:
    only(ChannelOpenRejected, open_channel_open, raw, network_id="devnet-1", payer=PAYER.node_id,
         payee=PAYEE.node_id, agreement_id="ag-0001")


# -- the protocol's messages (payments.messages) --------------------------------------------------

REQUESTS: list[dict[str, object]] = [
    {"op": "open", "channel_open": OPEN},
    {"op": "voucher", "raw": VOUCHER},
    {"op": "debit_note", "channel_id": "ch-0001", "raw": NOTE},
    {"op": "notice", "agreement_id": "ag-0001", "kind": "paused", "reason": "late"},
]
REPLIES: list[dict[str, object]] = [
    {"ack_seq": 3},
    {"accepted": True, "code": None, "reason": "ok", "voucher_seq": 2},
    {"accepted": False, "code": "too-much", "reason": "no", "voucher_seq": None},
]


@FUZZ
@given(st.one_of(cbor_values, *(mutated(m) for m in REQUESTS), *(mutated(m) for m in REPLIES)))
@example({"accepted": False, "code": [], "reason": "", "voucher_seq": None})  # an unhashable code
@example({"op": "notice", "agreement_id": "a", "kind": [], "reason": ""})
def test_payment_message_decoders_raise_only_message_rejected(obj: object) -> None:
    only(MessageRejected, decode_request, obj)
    only(MessageRejected, decode_voucher_ack, obj)
    only(MessageRejected, decode_answer, obj)


@FUZZ
@given(signed(OPEN, PAYER, CHANNEL_OPEN_DOMAIN))
def test_channel_open_peek_raises_only_message_rejected(raw: bytes) -> None:
    only(MessageRejected, peek_agreement_id, raw)
