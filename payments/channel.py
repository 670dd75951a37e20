"""Both ends of one payment channel, as pure state (sans-io).

The payee (provider) side, :class:`PayeeChannel`, runs checks 5-6 of
``reference/payments.md`` on vouchers that passed 1-4
(:func:`payments.voucher.open_voucher`) and keeps the best one::

    seq == best.seq, same bytes       -> DUPLICATE: acknowledge again, nothing new
    seq == best.seq, other bytes      -> VoucherRejected("equivocation", terminate), both kept
    seq <  best.seq                   -> STALE: ignored (a late re-send), acknowledge the best
    seq >  best.seq, amount < best    -> VoucherRejected("decreased", terminate), both kept
    seq >  best.seq, amount >= best   -> ACCEPTED: new best; paid = min(amount, deposit)

A stale voucher is *not* an error: with re-sends and reordering an honest
payer produces them, and it changes nothing (amounts are cumulative). Check 7
is the caller's: on ACCEPTED, durably store :attr:`Receipt.commit` (the new
best voucher's bytes, or :meth:`PayeeChannel.to_record`) and only then send
the acknowledgement.

The payer (requestor) side, :class:`PayerChannel`, numbers vouchers, never
signs less than before nor more than the deposit, and keeps the latest
unacknowledged voucher to re-send. The caller stores :meth:`PayerChannel.to_record`
*before* sending the voucher, so after a crash it can never sign two amounts
for one seq (which the payee would take as equivocation).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payments.errors import ChannelError, VoucherRejected
from payments.voucher import ChannelTerms, Voucher, is_amount, open_voucher, sign_voucher
from yagna.core.identity import NodeKey

__all__ = ["Evidence", "Outcome", "PayeeChannel", "PayerChannel", "Receipt"]


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True)
class Receipt:
    """What :meth:`PayeeChannel.receive` decided. Every outcome is acknowledged with :attr:`ack_seq`."""

    outcome: Outcome
    seq: int
    """The received voucher's seq."""
    ack_seq: int
    """The best seq now held: what the acknowledgement names (after committing, if ACCEPTED)."""
    paid: int
    """Counted as paid now: min(best amount, deposit)."""
    newly_paid: int
    """What this voucher added to :attr:`paid` (0 unless ACCEPTED)."""
    commit: bytes | None
    """ACCEPTED: the new best voucher's bytes, to store durably *before* acknowledging."""


@dataclass(frozen=True)
class Evidence:
    """Two vouchers the payer signed that no honest payer would: keep them for disputes."""

    code: str
    """``equivocation`` or ``decreased``."""
    held: bytes
    """The best voucher held when the other one arrived."""
    received: bytes


class PayeeChannel:
    """The payee's view of one channel: the best voucher and any evidence against the payer."""

    def __init__(self, terms: ChannelTerms, check_proof: Callable[[int, bytes], None] | None = None) -> None:
        self.terms = terms
        self.check_proof = check_proof
        """The driver's check of a voucher's settlement proof (``amount, proof``), raising
        :class:`VoucherRejected`; run on every voucher that would become the best."""
        self.best: Voucher | None = None
        self.evidence: list[Evidence] = []

    @property
    def best_seq(self) -> int:
        return self.best.seq if self.best else 0

    @property
    def paid(self) -> int:
        """What the best voucher is worth: its amount, capped at the deposit (check 6)."""
        return min(self.best.amount, self.terms.deposit) if self.best else 0

    def receive(self, raw: bytes) -> Receipt:
        """Checks 1-6 on ``raw``; see the module's table. Raises only :class:`VoucherRejected`.

        A rejection with ``terminate`` set (equivocation, decrease) has already
        appended the :class:`Evidence`; the best voucher is unchanged.
        """
        voucher = open_voucher(raw, self.terms)
        best = self.best
        if best is not None and voucher.seq == best.seq:
            if voucher.raw == best.raw:
                return self._receipt(Outcome.DUPLICATE, voucher.seq, 0, None)
            self.evidence.append(Evidence("equivocation", best.raw, voucher.raw))
            raise VoucherRejected(
                "equivocation", f"two different vouchers for seq {voucher.seq}", terminate=True
            )
        if best is not None and voucher.seq < best.seq:
            return self._receipt(Outcome.STALE, voucher.seq, 0, None)
        if best is not None and voucher.amount < best.amount:
            self.evidence.append(Evidence("decreased", best.raw, voucher.raw))
            raise VoucherRejected(
                "decreased",
                f"seq {voucher.seq} promises {voucher.amount}, less than {best.amount} at seq {best.seq}",
                terminate=True,
            )
        if self.check_proof is not None:
            self.check_proof(voucher.amount, voucher.proof)  # a voucher the chain would refuse is worth nothing
        before = self.paid
        self.best = voucher
        return self._receipt(Outcome.ACCEPTED, voucher.seq, self.paid - before, voucher.raw)

    def _receipt(self, outcome: Outcome, seq: int, newly_paid: int, commit: bytes | None) -> Receipt:
        return Receipt(outcome, seq, self.best_seq, self.paid, newly_paid, commit)

    def to_record(self) -> dict[str, Any]:
        """CBOR-encodable state: the best voucher's bytes and the evidence (terms are stored apart)."""
        return {
            "best": self.best.raw if self.best else None,
            "evidence": [[e.code, e.held, e.received] for e in self.evidence],
        }

    @classmethod
    def from_record(cls, terms: ChannelTerms, record: dict[str, Any]) -> PayeeChannel:
        """Reload after a restart: the stored best voucher is verified again (checks 1-4)."""
        channel = cls(terms)
        if record.get("best") is not None:
            channel.best = open_voucher(record["best"], terms)
        channel.evidence = [Evidence(code, held, received) for code, held, received in record.get("evidence", [])]
        return channel


class PayerChannel:
    """The payer's side: numbers vouchers and remembers what is not yet acknowledged."""

    def __init__(self, terms: ChannelTerms, key: NodeKey, proof: Callable[[int], bytes] | None = None) -> None:
        if key.node_id != terms.payer:
            raise ChannelError(f"key {key.node_id} is not the payer of channel {terms.channel_id}")
        self.terms = terms
        self._key = key
        self._proof = proof
        """The driver's settlement proof for a cumulative amount (chains), signed into each voucher."""
        self.last_seq = 0
        self.last_amount = 0
        self.last_raw: bytes | None = None
        self.acked_seq = 0
        self.closed = False

    def next_voucher(self, amount: int) -> tuple[int, bytes]:
        """Sign ``amount`` (cumulative) under the next seq; store :meth:`to_record` before sending.

        :class:`ChannelError` for an amount below the last signed one (a decrease
        ends the agreement at the payee), above the deposit, not an int, or on a
        closed channel. The same amount again is allowed (a fresh seq, no new money).
        """
        if self.closed:
            raise ChannelError(f"channel {self.terms.channel_id} is closed")
        if not is_amount(amount):
            raise ChannelError(f"amount must be an int >= 0, got {amount!r}")
        if amount < self.last_amount:
            raise ChannelError(f"cannot sign {amount}: {self.last_amount} was signed already (cumulative)")
        if amount > self.terms.deposit:
            raise ChannelError(f"cannot sign {amount}: the deposit is {self.terms.deposit}")
        seq = self.last_seq + 1
        raw = sign_voucher(self._key, self.terms, seq, amount, self._proof(amount) if self._proof else b"")
        self.last_seq, self.last_amount, self.last_raw = seq, amount, raw
        return seq, raw

    def acked(self, seq: int) -> bool:
        """The payee acknowledged ``seq`` (it holds a voucher at least that good); True if news.

        A seq we never signed (above :attr:`last_seq`) or an old one changes nothing.
        """
        if not is_amount(seq) or seq > self.last_seq or seq <= self.acked_seq:
            return False
        self.acked_seq = seq
        return True

    def pending(self) -> bytes | None:
        """The latest voucher while it is unacknowledged: re-send it (on reconnect, on a timer)."""
        return self.last_raw if self.last_seq > self.acked_seq else None

    def close(self) -> None:
        """No more vouchers (the agreement ended); :meth:`pending` still re-sends the last one."""
        self.closed = True

    def to_record(self) -> dict[str, Any]:
        return {
            "last_seq": self.last_seq,
            "last_amount": self.last_amount,
            "last": self.last_raw,
            "acked_seq": self.acked_seq,
            "closed": self.closed,
        }

    @classmethod
    def from_record(cls, terms: ChannelTerms, key: NodeKey, record: dict[str, Any],
                    proof: Callable[[int], bytes] | None = None) -> PayerChannel:
        """Reload; the stored voucher is verified again and must match the stored seq/amount."""
        channel = cls(terms, key, proof)
        last = record.get("last")
        if last is not None:
            voucher = open_voucher(last, terms)
            if (voucher.seq, voucher.amount) != (record["last_seq"], record["last_amount"]):
                raise ChannelError("stored voucher does not match the stored seq/amount")
            channel.last_seq, channel.last_amount, channel.last_raw = voucher.seq, voucher.amount, voucher.raw
        elif record.get("last_seq", 0) != 0:
            raise ChannelError("stored seq without its voucher")
        acked = record.get("acked_seq", 0)
        if not is_amount(acked) or acked > channel.last_seq:
            raise ChannelError(f"stored acked seq {acked!r} is not one we signed")
        channel.acked_seq = acked
        channel.closed = bool(record.get("closed", False))
        return channel
