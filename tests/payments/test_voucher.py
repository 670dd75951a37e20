"""Vouchers: signing, and the payee's checks 1-4 in the reference's order."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.errors import VOUCHER_CODES, ChannelError, VoucherRejected
from payments.voucher import (
    MAX_VOUCHER_SIZE,
    MAX_WIRE_AMOUNT,
    VOUCHER_DOMAIN,
    ChannelTerms,
    open_voucher,
    peek_channel_id,
    sign_voucher,
)
from yagna.core.envelope import seal
from tests.payments.parties import MALLORY, PAYEE, PAYER, TERMS
from yagna.core.wire import decode, encode



def _payload(terms: ChannelTerms, seq: int, amount: int) -> list[object]:
    t = terms
    return [t.network_id, t.driver, t.channel_id, t.agreement_id, t.payer, t.payee, t.currency, seq, amount]


def test_round_trip() -> None:
    raw = sign_voucher(PAYER, TERMS, 3, 250)
    v = open_voucher(raw, TERMS)
    assert (v.seq, v.amount, v.raw, v.channel_id, v.payer, v.payee) == (
        3, 250, raw, "ch-0001", PAYER.node_id, PAYEE.node_id,
    )
    assert len(raw) < MAX_VOUCHER_SIZE // 2
    assert peek_channel_id(raw) == "ch-0001"


def test_signing_is_deterministic() -> None:
    assert sign_voucher(PAYER, TERMS, 1, 10) == sign_voucher(PAYER, TERMS, 1, 10)


def test_amount_above_deposit_is_a_valid_voucher() -> None:
    """Check 6 caps it at the channel, not here."""
    assert open_voucher(sign_voucher(PAYER, TERMS, 1, 2**64 - 1), TERMS).amount == 2**64 - 1


def test_amounts_are_unsigned_256_bit_and_sequence_numbers_64_bit() -> None:
    """Amounts as on an EVM chain (issue 14); above 2**256 - 1 they are refused locally."""
    with pytest.raises(ChannelError):
        sign_voucher(PAYER, TERMS, 1, 2**256)
    with pytest.raises(ChannelError):
        sign_voucher(PAYER, TERMS, 2**64, 1)
    with pytest.raises(ValueError):
        dataclasses.replace(TERMS, deposit=2**256)
    assert MAX_WIRE_AMOUNT == 2**256 - 1
    big = dataclasses.replace(TERMS, deposit=MAX_WIRE_AMOUNT)
    # the edges travel and verify: 2**64 - 1 (the old limit, a plain int), 2**64, the maximum
    for amount in (2**64 - 1, 2**64, 10**20, MAX_WIRE_AMOUNT):
        got = open_voucher(sign_voucher(PAYER, big, 1, amount), terms=big)
        assert got.amount == amount
    # an amount that fits 64 bits signs to the same bytes as before the change (no bignum)
    assert b"\xc2" not in sign_voucher(PAYER, TERMS, 1, 2**64 - 1)[-80:]


@pytest.mark.parametrize(
    "field, code",
    [
        ("network_id", "wrong-network"),
        ("driver", "wrong-driver"),
        ("channel_id", "wrong-channel"),
        ("agreement_id", "wrong-agreement"),
        ("payee", "wrong-payee"),
        ("currency", "wrong-currency"),
    ],
)
def test_voucher_replayed_in_another_context_is_rejected(field: str, code: str) -> None:
    """Attack: a voucher replayed on another channel / agreement / network / driver / payee."""
    value = MALLORY.node_id if field == "payee" else "other"
    raw = sign_voucher(PAYER, TERMS, 1, 100)
    with pytest.raises(VoucherRejected) as info:
        open_voucher(raw, dataclasses.replace(TERMS, **{field: value}))
    assert info.value.code == code and not info.value.terminate


def test_wrong_payer_field_is_rejected() -> None:
    """Signed by the payer, but the payload names someone else as payer."""
    raw = seal(PAYER, VOUCHER_DOMAIN, [*_payload(TERMS, 1, 5)[:4], MALLORY.node_id, *_payload(TERMS, 1, 5)[5:]])
    with pytest.raises(VoucherRejected) as info:
        open_voucher(raw, TERMS)
    assert info.value.code == "wrong-payer"


def test_forged_signature_is_rejected() -> None:
    """Attack: a voucher signed by another key, even one that names the payer."""
    forged = seal(MALLORY, VOUCHER_DOMAIN, _payload(TERMS, 1, 999))
    with pytest.raises(VoucherRejected) as info:
        open_voucher(forged, TERMS)
    assert info.value.code == "bad-signature"
    # Mallory as the payer of its own terms: still not our channel's payer.
    mallory_terms = dataclasses.replace(TERMS, payer=MALLORY.node_id)
    with pytest.raises(VoucherRejected) as info:
        open_voucher(sign_voucher(MALLORY, mallory_terms, 1, 999), TERMS)
    assert info.value.code == "bad-signature"


def test_tampered_bytes_break_the_signature() -> None:
    body, sig = decode(sign_voucher(PAYER, TERMS, 1, 100))  # type: ignore[misc]
    tampered = encode([body.replace(b"\x18\x64", b"\x18\x65"), sig])
    with pytest.raises(VoucherRejected) as info:
        open_voucher(tampered, TERMS)
    assert info.value.code == "bad-signature"


def test_body_naming_another_signer_is_rejected() -> None:
    """The payer signs a body naming Mallory's key: the signature is the payer's, the claim is not."""
    body = encode([VOUCHER_DOMAIN, MALLORY.public_key, _payload(TERMS, 1, 5)])
    with pytest.raises(VoucherRejected) as info:
        open_voucher(encode([body, PAYER.sign(body)]), TERMS)
    assert info.value.code == "bad-signature"


def test_other_domain_is_rejected() -> None:
    """A payer's signature on another kind of object is never a voucher."""
    raw = seal(PAYER, "yagna/debit-note/1", _payload(TERMS, 1, 5))
    with pytest.raises(VoucherRejected) as info:
        open_voucher(raw, TERMS)
    assert info.value.code == "wrong-domain"


def test_size_is_checked_first() -> None:
    """Check 1 before anything: an oversized forgery is 'too-large', not 'bad-signature'."""
    big = seal(MALLORY, VOUCHER_DOMAIN, [*_payload(TERMS, 1, 5)[:-1], 5, "x" * 2000])
    with pytest.raises(VoucherRejected) as info:
        open_voucher(big, TERMS)
    assert info.value.code == "too-large"
    assert open_voucher(sign_voucher(PAYER, TERMS, 1, 5), TERMS, max_size=300).seq == 1


def test_signature_is_checked_before_fields() -> None:
    """Check 3 before 4: a forgery for another channel says 'bad-signature', leaking nothing."""
    forged = seal(MALLORY, VOUCHER_DOMAIN, _payload(dataclasses.replace(TERMS, channel_id="x"), 1, 5))
    with pytest.raises(VoucherRejected) as info:
        open_voucher(forged, TERMS)
    assert info.value.code == "bad-signature"


@pytest.mark.parametrize(
    "payload",
    [
        _payload(TERMS, 0, 5),          # seq starts at 1
        _payload(TERMS, 1, -5),         # negative amount
        _payload(TERMS, 1, 5.0),        # float money
        _payload(TERMS, True, 5),       # bool is not an int here
        _payload(TERMS, 1, 5)[:-1],     # short
        [*_payload(TERMS, 1, 5), 0],    # long
        {"seq": 1},                     # not a list
        [1, *_payload(TERMS, 1, 5)[1:]],  # id not a string
    ],
)
def test_malformed_payloads_are_rejected(payload: object) -> None:
    with pytest.raises(VoucherRejected) as info:
        open_voucher(seal(PAYER, VOUCHER_DOMAIN, payload), TERMS)
    assert info.value.code == "malformed"


def test_non_canonical_envelope_is_malformed() -> None:
    raw = sign_voucher(PAYER, TERMS, 1, 5)
    body, sig = decode(raw)  # type: ignore[misc]
    # Same values, non-shortest length head for the body byte string.
    non_canonical = b"\x82" + b"\x59" + len(body).to_bytes(2, "big") + body + encode(sig)
    assert len(body) < 256
    with pytest.raises(VoucherRejected) as info:
        open_voucher(non_canonical, TERMS)
    assert info.value.code == "malformed"


def test_sign_voucher_refuses_misuse() -> None:
    with pytest.raises(ChannelError):
        sign_voucher(MALLORY, TERMS, 1, 5)
    for seq, amount in ((0, 5), (1, -1), (1, 1.5), (True, 1)):
        with pytest.raises(ChannelError):
            sign_voucher(PAYER, TERMS, seq, amount)  # type: ignore[arg-type]


def test_terms_validate_and_round_trip() -> None:
    assert ChannelTerms.from_record(TERMS.to_record()) == TERMS
    assert decode(encode(TERMS.to_record())) == TERMS.to_record()
    with pytest.raises(ValueError):
        dataclasses.replace(TERMS, deposit=0)
    with pytest.raises(ValueError):
        dataclasses.replace(TERMS, deposit=1.5)
    with pytest.raises(ValueError):
        dataclasses.replace(TERMS, payer="not-a-node-id")
    with pytest.raises(ValueError):
        dataclasses.replace(TERMS, channel_id="")


@given(st.binary(max_size=2048))
def test_garbage_raises_only_voucher_rejected(data: bytes) -> None:
    with pytest.raises(VoucherRejected) as info:
        open_voucher(data, TERMS)
    assert info.value.code in VOUCHER_CODES
    with pytest.raises(VoucherRejected):
        peek_channel_id(data)


_cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=70),
    lambda children: st.lists(children, max_size=10),
    max_leaves=20,
)


@given(_cbor_values)
def test_well_formed_cbor_garbage_raises_only_voucher_rejected(value: object) -> None:
    """Garbage that gets past the CBOR decoder: envelopes of any shape, signed or not."""
    for raw in (encode(value), encode([encode(value), bytes(64)]), seal(PAYER, VOUCHER_DOMAIN, value)):
        try:
            open_voucher(raw, TERMS)
        except VoucherRejected as exc:
            assert exc.code in VOUCHER_CODES
