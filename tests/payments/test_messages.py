"""The payment protocol's messages: typed round trips; garbage yields only MessageRejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.channel_open import MAX_CHANNEL_OPEN_SIZE, seal_channel_open
from payments.debit_note import MAX_DEBIT_NOTE_SIZE
from payments.errors import MessageRejected, PaymentError
from payments.messages import (
    MAX_ID,
    MAX_REASON,
    ChannelOpenMsg,
    DebitNoteAnswer,
    DebitNoteMsg,
    NoticeKind,
    NoticeMsg,
    VoucherAck,
    VoucherMsg,
    decode_answer,
    decode_request,
    decode_voucher_ack,
    encode_answer,
    encode_request,
    encode_voucher_ack,
    peek_agreement_id,
)
from payments.voucher import MAX_VOUCHER_SIZE, sign_voucher
from tests.payments.parties import PAYER, PAYEE, TERMS
from yagna.core import wire


def _open_raw() -> bytes:
    return seal_channel_open(PAYER, network_id=TERMS.network_id, driver=TERMS.driver, channel_id=TERMS.channel_id,
                             agreement_id=TERMS.agreement_id, payee=PAYEE.node_id, currency=TERMS.currency,
                             deposit=TERMS.deposit)


def test_requests_round_trip_through_the_wire() -> None:
    voucher = sign_voucher(PAYER, TERMS, 1, 10)
    for msg in (
        ChannelOpenMsg(_open_raw(), TERMS.agreement_id),
        VoucherMsg(voucher, TERMS.channel_id),
        DebitNoteMsg(TERMS.channel_id, b"note"),
        NoticeMsg(TERMS.agreement_id, NoticeKind.PAUSED, "late"),
    ):
        assert decode_request(wire.decode(wire.encode(encode_request(msg)))) == msg


def test_replies_round_trip() -> None:
    assert decode_voucher_ack(encode_voucher_ack(VoucherAck(7))) == VoucherAck(7)
    for answer in (DebitNoteAnswer(True, None, "ok", 3), DebitNoteAnswer(False, "above-agreed-price", "no", None),
                   DebitNoteAnswer(True, None, "", 4, b"voucher")):
        assert decode_answer(encode_answer(answer)) == answer
    assert "voucher" not in encode_answer(DebitNoteAnswer(True, None, "ok", 3))  # as before, when there is none


def test_a_long_reason_is_cut_when_encoding() -> None:
    msg = encode_request(NoticeMsg("ag", NoticeKind.RESUMED, "x" * 10_000))
    assert decode_request(msg) == NoticeMsg("ag", NoticeKind.RESUMED, "x" * MAX_REASON)


@pytest.mark.parametrize(("obj", "code"), [
    ([], "bad-request"),
    ({"op": "ack", "channel_id": "c", "seq": 1}, "bad-request"),  # acknowledgements are replies now, not messages
    ({"op": "voucher"}, "bad-request"),
    ({"op": "voucher", "raw": "text"}, "bad-request"),
    ({"op": "voucher", "raw": b"x" * (MAX_VOUCHER_SIZE + 1)}, "too-large"),
    ({"op": "voucher", "raw": b"\x82\x41a\x41b"}, "malformed"),
    ({"op": "voucher", "raw": b"", "extra": 1}, "bad-request"),
    ({"op": "open", "channel_open": b"x" * (MAX_CHANNEL_OPEN_SIZE + 1)}, "too-large"),
    ({"op": "open", "channel_open": b"\x01"}, "bad-request"),
    ({"op": "debit_note", "channel_id": "c" * (MAX_ID + 1), "raw": b""}, "too-large"),
    ({"op": "debit_note", "channel_id": "", "raw": b""}, "bad-request"),
    ({"op": "debit_note", "channel_id": "c", "raw": b"x" * (MAX_DEBIT_NOTE_SIZE + 1)}, "too-large"),
    ({"op": "notice", "agreement_id": "a", "kind": "exploded", "reason": ""}, "bad-request"),
    ({"op": "notice", "agreement_id": "a", "kind": ["paused"], "reason": ""}, "bad-request"),
    ({"op": "notice", "agreement_id": "a", "kind": "paused", "reason": "r" * (MAX_REASON + 1)}, "too-large"),
])
def test_wrong_requests_are_typed_errors(obj: object, code: str) -> None:
    with pytest.raises(MessageRejected) as exc:
        decode_request(obj)
    assert exc.value.code == code and isinstance(exc.value, PaymentError)


@pytest.mark.parametrize("obj", [
    None, {}, {"ack_seq": -1}, {"ack_seq": True}, {"ack_seq": 2**64}, {"ack_seq": 1, "x": 2},
])
def test_wrong_acks_are_typed_errors(obj: object) -> None:
    with pytest.raises(MessageRejected):
        decode_voucher_ack(obj)


@pytest.mark.parametrize("obj", [
    {"accepted": True, "code": "above-deposit", "reason": "", "voucher_seq": None},
    {"accepted": False, "code": None, "reason": "", "voucher_seq": None},
    {"accepted": False, "code": "made-up", "reason": "", "voucher_seq": None},
    {"accepted": 1, "code": None, "reason": "", "voucher_seq": None},
    {"accepted": True, "code": None, "reason": "", "voucher_seq": 0},
    {"accepted": True, "code": None, "reason": 5, "voucher_seq": 1},
    {"accepted": True, "code": None, "reason": ""},
    {"accepted": True, "code": None, "reason": "", "voucher_seq": None, "voucher": b"v"},
    {"accepted": True, "code": None, "reason": "", "voucher_seq": 1, "voucher": "v"},
    {"accepted": True, "code": None, "reason": "", "voucher_seq": 1, "voucher": b"v" * 100_000},
    {"accepted": True, "code": None, "reason": "", "voucher_seq": 1, "voucher": b"v", "extra": 1},
])
def test_wrong_answers_are_typed_errors(obj: object) -> None:
    with pytest.raises(MessageRejected):
        decode_answer(obj)


def test_peek_agreement_id_of_a_channel_open() -> None:
    assert peek_agreement_id(_open_raw()) == TERMS.agreement_id
    with pytest.raises(MessageRejected):
        peek_agreement_id(wire.encode([wire.encode(["d", b"k", [1, 2, 3, 4]]), b"sig"]))


_cbor = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_shaped = st.fixed_dictionaries(
    {"op": st.sampled_from(["open", "voucher", "debit_note", "notice", "ack", "x"])},
    optional={k: _cbor for k in ("raw", "channel_open", "channel_id", "agreement_id", "kind", "reason", "seq")},
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_cbor, _shaped))
def test_garbage_yields_only_the_typed_error(obj: object) -> None:
    for decoder in (decode_request, decode_voucher_ack, decode_answer):
        try:
            decoder(obj)
        except MessageRejected:
            pass
