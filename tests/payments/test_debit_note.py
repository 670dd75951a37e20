"""Debit notes: signing, verification, and the requestor's payment decision."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.debit_note import (
    DEBIT_NOTE_CODES,
    DEBIT_NOTE_DOMAIN,
    DebitNote,
    Usage,
    decide_payment,
    open_debit_note,
    sign_debit_note,
)
from payments.errors import ChannelError, DebitNoteRejected
from payments.voucher import VOUCHER_DOMAIN, sign_voucher
from yagna.core.envelope import seal
from tests.payments.parties import MALLORY, PAYEE, PAYER, TERMS
from yagna.core.wire import encode

USAGE = Usage(duration_ms=60_000, cpu_ms=45_500, peak_mem_bytes=256 * 2**20)


def _note(amount_due: int = 300, seq: int = 1, final: bool = False) -> DebitNote:
    raw = sign_debit_note(PAYEE, TERMS, seq=seq, amount_due=amount_due, usage=USAGE, issued_at_ms=1_700_000_000_000, final=final)
    return open_debit_note(raw, terms=TERMS)


def _payload(**changes: object) -> list[object]:
    fields = {
        "network_id": TERMS.network_id, "agreement_id": TERMS.agreement_id, "channel_id": TERMS.channel_id,
        "seq": 1, "amount_due": 10, "usage": USAGE.to_wire(), "issued_at_ms": 0, "final": False,
    }
    fields.update(changes)
    return list(fields.values())


def test_round_trip() -> None:
    note = _note(amount_due=420, seq=7, final=True)
    assert (note.seq, note.amount_due, note.usage, note.final, note.payee, note.channel_id) == (
        7, 420, USAGE, True, PAYEE.node_id, TERMS.channel_id,
    )
    assert note.issued_at_ms == 1_700_000_000_000


@pytest.mark.parametrize(
    "field, code",
    [("network_id", "wrong-network"), ("agreement_id", "wrong-agreement"), ("channel_id", "wrong-channel")],
)
def test_note_for_another_context_is_rejected(field: str, code: str) -> None:
    raw = sign_debit_note(PAYEE, TERMS, seq=1, amount_due=5, usage=USAGE, issued_at_ms=0)
    with pytest.raises(DebitNoteRejected) as info:
        open_debit_note(raw, terms=dataclasses.replace(TERMS, **{field: "other"}))
    assert info.value.code == code


def test_note_signed_by_anyone_but_the_payee_is_rejected() -> None:
    for key in (MALLORY, PAYER):
        with pytest.raises(DebitNoteRejected) as info:
            open_debit_note(seal(key, DEBIT_NOTE_DOMAIN, _payload()), terms=TERMS)
        assert info.value.code == "bad-signature"
    with pytest.raises(ChannelError):
        sign_debit_note(PAYER, TERMS, seq=1, amount_due=5, usage=USAGE, issued_at_ms=0)


def test_a_voucher_is_not_a_debit_note() -> None:
    with pytest.raises(DebitNoteRejected) as info:
        open_debit_note(seal(PAYEE, VOUCHER_DOMAIN, _payload()), terms=TERMS)
    assert info.value.code == "wrong-domain"
    with pytest.raises(DebitNoteRejected) as info:
        open_debit_note(sign_voucher(PAYER, TERMS, 1, 5), terms=TERMS)
    assert info.value.code == "bad-signature"


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": 0},
        {"amount_due": -1},
        {"amount_due": 1.5},
        {"amount_due": True},
        {"issued_at_ms": -1},
        {"final": 1},
        {"usage": {"duration_ms": 1.5, "cpu_ms": 0, "peak_mem_bytes": 0}},
        {"usage": {"duration_ms": 1}},
        {"usage": {**USAGE.to_wire(), "extra": 1}},
        {"usage": [1, 2, 3]},
    ],
)
def test_malformed_notes_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(DebitNoteRejected) as info:
        open_debit_note(seal(PAYEE, DEBIT_NOTE_DOMAIN, _payload(**changes)), terms=TERMS)
    assert info.value.code == "malformed"


def test_size_cap() -> None:
    raw = seal(PAYEE, DEBIT_NOTE_DOMAIN, _payload(channel_id="x" * 3000))
    with pytest.raises(DebitNoteRejected) as info:
        open_debit_note(raw, terms=TERMS)
    assert info.value.code == "too-large"


def test_sign_refuses_bad_values() -> None:
    for kwargs in ({"seq": 0}, {"seq": 2**64}, {"amount_due": -1}, {"amount_due": 2**256}, {"issued_at_ms": 2**64}, {"final": "yes"}):
        args = {"seq": 1, "amount_due": 5, "usage": USAGE, "issued_at_ms": 0, **kwargs}
        with pytest.raises(ChannelError):
            sign_debit_note(PAYEE, TERMS, **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Usage(duration_ms=1.5)  # type: ignore[arg-type]


@given(st.binary(max_size=3000))
def test_garbage_raises_only_debit_note_rejected(data: bytes) -> None:
    with pytest.raises(DebitNoteRejected) as info:
        open_debit_note(data, terms=TERMS)
    assert info.value.code in DEBIT_NOTE_CODES


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_signed_garbage_raises_only_debit_note_rejected(value: object) -> None:
    for raw in (seal(PAYEE, DEBIT_NOTE_DOMAIN, value), encode([encode(value), bytes(64)])):
        try:
            open_debit_note(raw, terms=TERMS)
        except DebitNoteRejected as exc:
            assert exc.code in DEBIT_NOTE_CODES


# -- the requestor's decision --------------------------------------------------------------


def test_honest_note_is_accepted_and_paid() -> None:
    d = decide_payment(_note(300), own_estimate=300, last_signed=100, deposit=1_000, tolerance=10)
    assert (d.accepted, d.code, d.agreed, d.voucher_amount) == (True, None, 300, 300)


def test_note_within_tolerance_is_accepted_but_paid_up_to_own_estimate() -> None:
    d = decide_payment(_note(305), own_estimate=300, last_signed=100, deposit=1_000, tolerance=10)
    assert (d.accepted, d.agreed, d.voucher_amount) == (True, 300, 300)


def test_note_above_agreed_price_is_rejected_but_honest_work_is_paid() -> None:
    """Attack: debit note above the agreed price. Rejected; the requestor pays its own estimate."""
    d = decide_payment(_note(900), own_estimate=300, last_signed=100, deposit=1_000, tolerance=10)
    assert (d.accepted, d.code, d.agreed, d.voucher_amount) == (False, "above-agreed-price", 300, 300)
    assert "900" in d.reason and "300" in d.reason


def test_overcharge_already_paid_signs_nothing_new() -> None:
    d = decide_payment(_note(900), own_estimate=300, last_signed=300, deposit=1_000, tolerance=10)
    assert (d.accepted, d.code, d.agreed, d.voucher_amount) == (False, "above-agreed-price", 300, None)


def test_never_more_than_the_deposit() -> None:
    d = decide_payment(_note(1_200), own_estimate=1_200, last_signed=900, deposit=1_000, tolerance=0)
    assert (d.accepted, d.code, d.agreed, d.voucher_amount) == (False, "above-deposit", 1_000, 1_000)
    d = decide_payment(_note(5_000), own_estimate=2_000, last_signed=900, deposit=1_000, tolerance=0)
    assert (d.code, d.agreed, d.voucher_amount) == ("above-agreed-price", 1_000, 1_000)


def test_never_less_than_already_signed() -> None:
    d = decide_payment(_note(50), own_estimate=400, last_signed=200, deposit=1_000, tolerance=0)
    assert (d.accepted, d.agreed, d.voucher_amount) == (True, 200, None)
    d = decide_payment(_note(300), own_estimate=150, last_signed=200, deposit=1_000, tolerance=0)
    assert (d.accepted, d.code, d.agreed, d.voucher_amount) == (False, "above-agreed-price", 200, None)


@given(
    due=st.integers(0, 3_000),
    own=st.integers(0, 3_000),
    last=st.integers(0, 1_000),
    tolerance=st.integers(0, 100),
)
def test_decision_invariants(due: int, own: int, last: int, tolerance: int) -> None:
    d = decide_payment(_note(due), own_estimate=own, last_signed=last, deposit=1_000, tolerance=tolerance)
    assert type(d.agreed) is int
    assert d.agreed >= last
    assert d.agreed <= max(last, min(own, 1_000))
    assert d.agreed <= max(last, due)
    assert (d.voucher_amount is None) == (d.agreed == last)
    assert d.accepted == (d.code is None)
    assert d.accepted == (due <= own + tolerance and due <= 1_000)


def test_decide_refuses_bad_inputs() -> None:
    note = _note(10)
    for kwargs in ({"own_estimate": -1}, {"tolerance": 1.5}, {"last_signed": 2_000}):
        args = {"own_estimate": 10, "last_signed": 0, "deposit": 1_000, "tolerance": 0, **kwargs}
        with pytest.raises(ValueError):
            decide_payment(note, **args)  # type: ignore[arg-type]


def test_usage_capped_by_the_payers_own_clock() -> None:
    usage = Usage(duration_ms=50_000, cpu_ms=150_000, peak_mem_bytes=7)
    assert usage.capped(60_000, 2) == Usage(50_000, 120_000, 7)
    assert usage.capped(10_000, 4) == Usage(10_000, 40_000, 7)
