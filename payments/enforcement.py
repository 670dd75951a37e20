"""The provider's payment enforcement for one agreement, as a pure state machine (sans-io).

No clock of its own: the service passes ``now`` (seconds, any monotonic clock,
e.g. ``trio.current_time()``) with every input and acts on the returned
:class:`Step` (pause or resume the activity's container, terminate the
agreement with the reason code). States::

    RUNNING --violation--> PAUSED --paid up--> RUNNING
                           PAUSED --still violating at paused_at + payment_timeout_s--> TERMINATED

A *violation* is either (checked in this order):

* ``debt-over-bound``: ``due - paid > max_unpaid`` (the agreed unpaid bound,
  Filecoin's payment interval);
* ``payment-late``: a debit note sent at ``t`` is still not covered by the
  vouchers (its ``amount_due > paid``) at ``t + payment_timeout_s``.

Paid up means neither holds. Termination (reason ``not-paid``) comes after
``payment_timeout_s`` of *continuous* pause: a requestor that pays during the
pause resumes the work and the timer starts over at the next pause. So a
requestor that never pays is paused at ``first_note + payment_timeout_s`` (or
earlier, when the debt bound is crossed) and terminated one timeout later.
Everything is inclusive: a deadline is reached at ``now >= deadline``.

Debit notes are due every ``debit_note_interval_s`` from ``approved_at``
(Golem: deadlines count from the agreement's approval): :meth:`Enforcement.next_note_at`.
TERMINATED is terminal: inputs are still recorded (the provider keeps its best
voucher), but every step is NONE.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from payments.voucher import is_amount

__all__ = ["DEBT_OVER_BOUND", "NOT_PAID", "PAYMENT_LATE", "Action", "Enforcement", "EnforcementState", "Step"]

DEBT_OVER_BOUND = "debt-over-bound"
PAYMENT_LATE = "payment-late"
NOT_PAID = "not-paid"


class Action(enum.Enum):
    NONE = "none"
    PAUSE = "pause"
    RESUME = "resume"
    TERMINATE = "terminate"


class EnforcementState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Step:
    """What the service must do now; ``reason`` is a code for PAUSE and TERMINATE."""

    action: Action
    reason: str | None = None


_NONE = Step(Action.NONE)


class Enforcement:
    """Enforcement rules for one agreement (see the module's docstring)."""

    def __init__(
        self,
        *,
        approved_at: float,
        debit_note_interval_s: float,
        payment_timeout_s: float,
        max_unpaid: int,
    ) -> None:
        if not (math.isfinite(debit_note_interval_s) and debit_note_interval_s > 0):
            raise ValueError("debit_note_interval_s must be > 0")
        if not (math.isfinite(payment_timeout_s) and payment_timeout_s > 0):
            raise ValueError("payment_timeout_s must be > 0")
        if not is_amount(max_unpaid):
            raise ValueError(f"max_unpaid must be an int >= 0, got {max_unpaid!r}")
        self.approved_at = approved_at
        self.debit_note_interval_s = debit_note_interval_s
        self.payment_timeout_s = payment_timeout_s
        self.max_unpaid = max_unpaid
        self.state = EnforcementState.RUNNING
        self.due = 0
        self.paid = 0
        self.notes_sent = 0
        self.paused_at: float | None = None
        self.reason: str | None = None
        """Why paused or terminated (a code), else None."""
        self._unpaid_notes: list[tuple[float, int]] = []  # (sent_at, amount_due), oldest first

    @property
    def unpaid(self) -> int:
        return max(0, self.due - self.paid)

    @property
    def next_note_at(self) -> float:
        """When the next debit note is due: ``approved_at + (notes_sent + 1) * interval``."""
        return self.approved_at + (self.notes_sent + 1) * self.debit_note_interval_s

    def next_deadline(self) -> float | None:
        """The earliest ``now`` at which :meth:`tick` may act without any new input (or None)."""
        if self.state is EnforcementState.PAUSED:
            assert self.paused_at is not None
            return self.paused_at + self.payment_timeout_s
        if self.state is EnforcementState.RUNNING and self._unpaid_notes:
            return self._unpaid_notes[0][0] + self.payment_timeout_s
        return None

    def note_sent(self, now: float, amount_due: int) -> Step:
        """A debit note for cumulative ``amount_due`` went out at ``now``."""
        if not is_amount(amount_due):
            raise ValueError(f"amount_due must be an int >= 0, got {amount_due!r}")
        if amount_due < self.due:
            raise ValueError(f"amount_due is cumulative: {amount_due} < {self.due} already claimed")
        self.due = amount_due
        self.notes_sent += 1
        if amount_due > self.paid:
            self._unpaid_notes.append((now, amount_due))
        return self._evaluate(now)

    def voucher_accepted(self, now: float, amount: int) -> Step:
        """The payee channel accepted a voucher now counting ``amount`` as paid (cumulative)."""
        if not is_amount(amount):
            raise ValueError(f"amount must be an int >= 0, got {amount!r}")
        self.paid = max(self.paid, amount)
        self._unpaid_notes = [(t, due) for t, due in self._unpaid_notes if due > self.paid]
        return self._evaluate(now)

    def tick(self, now: float) -> Step:
        """Time passed: pause on a late payment, terminate after a long pause."""
        return self._evaluate(now)

    def _violation(self, now: float) -> str | None:
        if self.unpaid > self.max_unpaid:
            return DEBT_OVER_BOUND
        if self._unpaid_notes and now >= self._unpaid_notes[0][0] + self.payment_timeout_s:
            return PAYMENT_LATE
        return None

    def _evaluate(self, now: float) -> Step:
        if self.state is EnforcementState.TERMINATED:
            return _NONE
        violation = self._violation(now)
        if self.state is EnforcementState.RUNNING:
            if violation is None:
                return _NONE
            self.state, self.paused_at, self.reason = EnforcementState.PAUSED, now, violation
            return Step(Action.PAUSE, violation)
        assert self.paused_at is not None
        if violation is None:
            self.state, self.paused_at, self.reason = EnforcementState.RUNNING, None, None
            return Step(Action.RESUME)
        if now >= self.paused_at + self.payment_timeout_s:
            self.state, self.reason = EnforcementState.TERMINATED, NOT_PAID
            return Step(Action.TERMINATE, NOT_PAID)
        return _NONE
