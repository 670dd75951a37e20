"""Both ends of a channel: checks 5-6, evidence, records, and redeeming through a ledger."""

from __future__ import annotations

import dataclasses

import pytest

from payments.channel import Evidence, Outcome, PayeeChannel, PayerChannel
from payments.errors import ChannelError, VoucherRejected
from payments.testnet_ledger import MemoryLedger
from payments.voucher import VOUCHER_DOMAIN, sign_voucher
from yagna.core.envelope import seal
from tests.payments.parties import MALLORY, PAYEE, PAYER, TERMS
from yagna.core.wire import decode, encode



def test_accept_then_duplicate_is_acknowledged_again_without_credit() -> None:
    """Attack: replayed voucher. Idempotent; cumulative amounts give no double credit."""
    payee = PayeeChannel(TERMS)
    raw = sign_voucher(PAYER, TERMS, 1, 300)
    first = payee.receive(raw)
    assert (first.outcome, first.ack_seq, first.paid, first.newly_paid, first.commit) == (
        Outcome.ACCEPTED, 1, 300, 300, raw,
    )
    for _ in range(3):
        again = payee.receive(raw)
        assert (again.outcome, again.ack_seq, again.paid, again.newly_paid, again.commit) == (
            Outcome.DUPLICATE, 1, 300, 0, None,
        )
    assert payee.paid == 300 and not payee.evidence


def test_cumulative_vouchers_pay_the_difference() -> None:
    payee = PayeeChannel(TERMS)
    assert [payee.receive(sign_voucher(PAYER, TERMS, s, a)).newly_paid for s, a in ((1, 100), (2, 250), (5, 250))] == [
        100, 150, 0,
    ]
    assert (payee.best_seq, payee.paid) == (5, 250)


def test_stale_voucher_is_ignored_not_an_error() -> None:
    """Lower seq: a late re-send. Nothing changes; acknowledge the best held."""
    payee = PayeeChannel(TERMS)
    old = sign_voucher(PAYER, TERMS, 1, 100)
    payee.receive(old)
    payee.receive(sign_voucher(PAYER, TERMS, 2, 200))
    receipt = payee.receive(old)
    assert (receipt.outcome, receipt.seq, receipt.ack_seq, receipt.paid, receipt.newly_paid, receipt.commit) == (
        Outcome.STALE, 1, 2, 200, 0, None,
    )
    # Even a stale seq with a *higher* amount pays nothing: it is not the best voucher's seq order.
    receipt = payee.receive(sign_voucher(PAYER, TERMS, 1, 900))
    assert receipt.outcome is Outcome.STALE and payee.paid == 200


def test_equivocation_keeps_both_and_terminates() -> None:
    payee = PayeeChannel(TERMS)
    first = sign_voucher(PAYER, TERMS, 3, 100)
    second = sign_voucher(PAYER, TERMS, 3, 120)
    payee.receive(first)
    with pytest.raises(VoucherRejected) as info:
        payee.receive(second)
    assert info.value.code == "equivocation" and info.value.terminate
    assert payee.evidence == [Evidence("equivocation", first, second)]
    assert payee.best is not None and payee.best.raw == first and payee.paid == 100


def test_decreased_amount_is_rejected_with_evidence() -> None:
    """Attack: decreased amount. Rejected, evidence kept, agreement terminated."""
    payee = PayeeChannel(TERMS)
    high = sign_voucher(PAYER, TERMS, 1, 500)
    low = sign_voucher(PAYER, TERMS, 2, 400)
    payee.receive(high)
    with pytest.raises(VoucherRejected) as info:
        payee.receive(low)
    assert info.value.code == "decreased" and info.value.terminate
    assert payee.evidence == [Evidence("decreased", high, low)]
    assert (payee.best_seq, payee.paid) == (1, 500)


def test_paid_is_capped_at_the_deposit() -> None:
    payee = PayeeChannel(TERMS)
    receipt = payee.receive(sign_voucher(PAYER, TERMS, 1, 5_000))
    assert (receipt.outcome, receipt.paid, receipt.newly_paid) == (Outcome.ACCEPTED, 1_000, 1_000)
    receipt = payee.receive(sign_voucher(PAYER, TERMS, 2, 6_000))
    assert (receipt.paid, receipt.newly_paid) == (1_000, 0)


def test_rejections_from_checks_1_to_4_change_nothing() -> None:
    payee = PayeeChannel(TERMS)
    payee.receive(sign_voucher(PAYER, TERMS, 1, 100))
    other = dataclasses.replace(TERMS, channel_id="ch-0002")
    t = TERMS
    forged = seal(
        MALLORY, VOUCHER_DOMAIN,
        [t.network_id, t.driver, t.channel_id, t.agreement_id, t.payer, t.payee, t.currency, 2, 900],
    )
    for raw, code in (
        (sign_voucher(PAYER, other, 2, 900), "wrong-channel"),
        (forged, "bad-signature"),
        (b"\xff" * 10, "malformed"),
    ):
        with pytest.raises(VoucherRejected) as info:
            payee.receive(raw)
        assert info.value.code == code and not info.value.terminate
    assert (payee.best_seq, payee.paid, payee.evidence) == (1, 100, [])


def test_payee_record_round_trip_reverifies() -> None:
    """Crash mid-update: recovery reloads the best voucher (re-verified) and the evidence."""
    payee = PayeeChannel(TERMS)
    empty = PayeeChannel.from_record(TERMS, decode(encode(payee.to_record())))  # type: ignore[arg-type]
    assert empty.best is None and empty.paid == 0
    first, second = sign_voucher(PAYER, TERMS, 1, 100), sign_voucher(PAYER, TERMS, 1, 150)
    payee.receive(first)
    with pytest.raises(VoucherRejected):
        payee.receive(second)
    record = decode(encode(payee.to_record()))  # what the store keeps, as CBOR
    again = PayeeChannel.from_record(TERMS, record)  # type: ignore[arg-type]
    assert again.best == payee.best and again.evidence == payee.evidence and again.paid == 100
    assert again.receive(first).outcome is Outcome.DUPLICATE
    # A record tampered with (or for other terms) does not load.
    with pytest.raises(VoucherRejected):
        PayeeChannel.from_record(dataclasses.replace(TERMS, agreement_id="other"), record)  # type: ignore[arg-type]


def test_payer_numbers_vouchers_and_resends_until_acked() -> None:
    payer = PayerChannel(TERMS, PAYER)
    assert payer.pending() is None
    seq, raw = payer.next_voucher(100)
    assert seq == 1 and payer.pending() == raw
    seq2, raw2 = payer.next_voucher(100)  # same amount again: allowed, fresh seq
    assert seq2 == 2 and payer.pending() == raw2
    assert payer.acked(1) is True and payer.pending() == raw2
    assert payer.acked(3) is False  # never signed: ignored
    assert payer.acked(2) is True and payer.pending() is None
    assert payer.acked(1) is False and payer.acked_seq == 2


def test_payer_refuses_decrease_over_deposit_and_misuse() -> None:
    payer = PayerChannel(TERMS, PAYER)
    payer.next_voucher(500)
    for amount in (499, 1_001, -1, 1.5):
        with pytest.raises(ChannelError):
            payer.next_voucher(amount)  # type: ignore[arg-type]
    assert (payer.last_seq, payer.last_amount) == (1, 500)
    payer.next_voucher(1_000)
    payer.close()
    with pytest.raises(ChannelError):
        payer.next_voucher(1_000)
    assert payer.pending() is not None  # the last one still goes out
    with pytest.raises(ChannelError):
        PayerChannel(TERMS, MALLORY)


def test_payer_record_round_trip() -> None:
    payer = PayerChannel(TERMS, PAYER)
    assert PayerChannel.from_record(TERMS, PAYER, payer.to_record()).to_record() == payer.to_record()
    payer.next_voucher(10)
    payer.next_voucher(20)
    payer.acked(1)
    record = decode(encode(payer.to_record()))
    again = PayerChannel.from_record(TERMS, PAYER, record)  # type: ignore[arg-type]
    assert again.to_record() == payer.to_record()
    assert again.next_voucher(30)[0] == 3  # numbering continues: no seq is signed twice
    bad = dict(record, last_amount=25)  # type: ignore[call-overload]
    with pytest.raises(ChannelError):
        PayerChannel.from_record(TERMS, PAYER, bad)
    with pytest.raises(ChannelError):
        PayerChannel.from_record(TERMS, PAYER, dict(record, acked_seq=9))  # type: ignore[call-overload]


def test_payer_and_payee_agree_end_to_end() -> None:
    payer, payee = PayerChannel(TERMS, PAYER), PayeeChannel(TERMS)
    for amount in (100, 200, 200, 700):
        _, raw = payer.next_voucher(amount)
        receipt = payee.receive(raw)
        payer.acked(receipt.ack_seq)
    assert payer.pending() is None and payee.paid == 700 and payee.best_seq == 4


async def test_provider_cannot_redeem_more_than_signed() -> None:
    """Attack: the provider claims more than was signed. It can only redeem what its best voucher says."""
    payer_ledger, payee_ledger = MemoryLedger(), MemoryLedger()  # one ledger per node
    await payer_ledger.fund(PAYER.node_id, 5_000)
    await payer_ledger.lock_deposit(TERMS.channel_id, TERMS.payer, TERMS.payee, TERMS.deposit)
    await payee_ledger.accept_deposit(TERMS.channel_id, TERMS.payer, TERMS.payee, TERMS.deposit)
    payer, payee = PayerChannel(TERMS, PAYER), PayeeChannel(TERMS)
    for amount in (150, 400):
        payee.receive(payer.next_voucher(amount)[1])
    # The service redeems what the channel counts as paid, never a claimed figure.
    r = await payee_ledger.redeem(TERMS.channel_id, payee.paid, close=False)
    assert r.paid == 400
    assert (await payee_ledger.balance(PAYEE.node_id)).earned == 400
    # The payer settles what it signed and gets the rest back.
    r = await payer_ledger.redeem(TERMS.channel_id, payer.last_amount, close=True)
    assert (r.paid, r.released) == (400, 600)
    b = await payer_ledger.balance(PAYER.node_id)
    assert (b.total, b.locked, b.spent) == (4_600, 0, 400)


async def test_redeeming_a_capped_voucher_pays_at_most_the_deposit() -> None:
    ledger = MemoryLedger()
    await ledger.fund(PAYER.node_id, 5_000)
    await ledger.lock_deposit(TERMS.channel_id, TERMS.payer, TERMS.payee, TERMS.deposit)
    payee = PayeeChannel(TERMS)
    payee.receive(sign_voucher(PAYER, TERMS, 1, 4_000))
    assert payee.paid == 1_000
    assert (await ledger.redeem(TERMS.channel_id, payee.best.amount, close=True)).paid == 1_000  # type: ignore[union-attr]
    assert (await ledger.balance(PAYER.node_id)).total == 4_000
