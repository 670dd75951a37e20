"""The provider's enforcement rules: unit steps, then whole agreements on trio's virtual clock."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from payments.enforcement import Action, Enforcement, EnforcementState, Step


def _enforcement(max_unpaid: int = 1_000, approved_at: float = 0.0) -> Enforcement:
    return Enforcement(approved_at=approved_at, debit_note_interval_s=10.0, payment_timeout_s=30.0, max_unpaid=max_unpaid)


def test_paid_on_time_never_pauses() -> None:
    e = _enforcement()
    assert e.next_note_at == 10.0
    assert e.note_sent(10.0, 100) == Step(Action.NONE)
    assert e.next_note_at == 20.0 and e.next_deadline() == 40.0
    assert e.voucher_accepted(12.0, 100) == Step(Action.NONE)
    assert e.next_deadline() is None
    assert e.tick(1_000.0) == Step(Action.NONE)
    assert (e.state, e.unpaid) == (EnforcementState.RUNNING, 0)


def test_debt_over_bound_pauses_at_once_and_payment_resumes() -> None:
    e = _enforcement(max_unpaid=250)
    assert e.note_sent(10.0, 200).action is Action.NONE
    assert e.note_sent(20.0, 300) == Step(Action.PAUSE, "debt-over-bound")
    assert (e.state, e.reason, e.paused_at) == (EnforcementState.PAUSED, "debt-over-bound", 20.0)
    assert e.voucher_accepted(21.0, 40).action is Action.NONE  # unpaid 260 > 250: still paused
    assert e.voucher_accepted(22.0, 50) == Step(Action.RESUME)  # unpaid 250 <= bound, nothing overdue
    assert (e.state, e.reason, e.paused_at) == (EnforcementState.RUNNING, None, None)


def test_late_payment_pauses_at_the_deadline_inclusive() -> None:
    e = _enforcement()
    e.note_sent(10.0, 100)
    assert e.tick(39.999).action is Action.NONE
    assert e.tick(40.0) == Step(Action.PAUSE, "payment-late")


def test_partial_payment_keeps_older_note_overdue() -> None:
    e = _enforcement()
    e.note_sent(10.0, 100)
    e.note_sent(20.0, 200)
    e.voucher_accepted(25.0, 150)  # covers note 1 only
    assert e.next_deadline() == 50.0
    assert e.tick(49.0).action is Action.NONE
    assert e.tick(50.0) == Step(Action.PAUSE, "payment-late")
    assert e.voucher_accepted(51.0, 199).action is Action.NONE
    assert e.voucher_accepted(52.0, 200) == Step(Action.RESUME)


def test_terminates_after_a_continuous_pause_of_one_timeout() -> None:
    e = _enforcement()
    e.note_sent(10.0, 100)
    assert e.tick(40.0).action is Action.PAUSE
    assert e.next_deadline() == 70.0
    assert e.tick(69.9).action is Action.NONE
    assert e.tick(70.0) == Step(Action.TERMINATE, "not-paid")
    assert (e.state, e.reason) == (EnforcementState.TERMINATED, "not-paid")
    # Terminal: a late voucher is still recorded (the best voucher is kept) but changes nothing.
    assert e.voucher_accepted(71.0, 100) == Step(Action.NONE)
    assert e.paid == 100 and e.tick(100.0) == Step(Action.NONE) and e.next_deadline() is None


def test_payment_during_pause_resets_the_termination_timer() -> None:
    e = _enforcement()
    e.note_sent(10.0, 100)
    e.tick(40.0)  # paused
    e.voucher_accepted(60.0, 100)  # resumed before 70
    assert e.state is EnforcementState.RUNNING
    e.note_sent(60.0, 200)
    assert e.tick(90.0) == Step(Action.PAUSE, "payment-late")
    assert e.tick(119.0).action is Action.NONE  # a fresh timeout from the new pause
    assert e.tick(120.0) == Step(Action.TERMINATE, "not-paid")


def test_payment_exactly_at_termination_time_wins() -> None:
    e = _enforcement()
    e.note_sent(10.0, 100)
    e.tick(40.0)
    assert e.voucher_accepted(70.0, 100) == Step(Action.RESUME)


def test_inputs_are_validated() -> None:
    e = _enforcement()
    e.note_sent(10.0, 100)
    for bad in (99, -1, 1.5, True):  # cumulative, int money
        with pytest.raises(ValueError):
            e.note_sent(20.0, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        e.voucher_accepted(20.0, 1.0)  # type: ignore[arg-type]
    for kwargs in ({"debit_note_interval_s": 0.0}, {"payment_timeout_s": math.inf}, {"max_unpaid": -1}):
        args = {"approved_at": 0.0, "debit_note_interval_s": 1.0, "payment_timeout_s": 1.0, "max_unpaid": 0, **kwargs}
        with pytest.raises(ValueError):
            Enforcement(**args)  # type: ignore[arg-type]
    assert e.voucher_accepted(20.0, 50).action is Action.NONE
    assert e.voucher_accepted(21.0, 10).action is Action.NONE and e.paid == 50  # cumulative: never goes down


# -- whole agreements on virtual time ------------------------------------------------------------

INTERVAL = 10.0
TIMEOUT = 30.0
PRICE = 100  # base units per interval of work


async def _provider(
    enforcement: Enforcement, start: float, log: list[tuple[float, str, str | None]],
    notes: trio.MemorySendChannel[int], until: float,
) -> None:
    """The provider's loop as the service would run it: wake every second, send due notes, tick."""
    k = 0
    while True:
        k += 1
        await trio.sleep_until(start + k)
        now = trio.current_time()
        if now - start > until:
            return
        steps = []
        if enforcement.state is EnforcementState.RUNNING and now >= enforcement.next_note_at:
            due = enforcement.due + PRICE
            steps.append(enforcement.note_sent(now, due))
            await notes.send(due)
        steps.append(enforcement.tick(now))
        for step in steps:
            if step.action is not Action.NONE:
                log.append((round(now - start, 3), step.action.value, step.reason))
            if step.action is Action.TERMINATE:
                return


async def _requestor(
    enforcement: Enforcement, start: float, log: list[tuple[float, str, str | None]],
    notes: trio.MemoryReceiveChannel[int], delay: float | None,
) -> None:
    """Pays every note ``delay`` seconds after it arrives (never, if None)."""

    async def pay(amount: int) -> None:
        await trio.sleep(delay)  # type: ignore[arg-type]
        step = enforcement.voucher_accepted(trio.current_time(), amount)
        if step.action is not Action.NONE:
            log.append((round(trio.current_time() - start, 3), step.action.value, step.reason))

    async with trio.open_nursery() as nursery:
        async for amount in notes:
            if delay is not None:
                nursery.start_soon(pay, amount)


async def _run(*, max_unpaid: int, delay: float | None, until: float) -> tuple[list[tuple[float, str, str | None]], Enforcement]:
    start = trio.current_time()
    enforcement = Enforcement(
        approved_at=start, debit_note_interval_s=INTERVAL, payment_timeout_s=TIMEOUT, max_unpaid=max_unpaid
    )
    log: list[tuple[float, str, str | None]] = []
    send, receive = trio.open_memory_channel[int](100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_requestor, enforcement, start, log, receive, delay)
        async with send:
            await _provider(enforcement, start, log, send, until)
        nursery.cancel_scope.cancel()  # the observation window ends: payments still in flight are dropped
    return log, enforcement


async def test_requestor_that_never_pays_is_paused_then_terminated(autojump_clock: trio.testing.MockClock) -> None:
    """Attack: the requestor stops paying. First note at 10 s, late at 40 s, terminated at 70 s."""
    log, e = await _run(max_unpaid=10_000, delay=None, until=1_000)
    assert log == [(40.0, "pause", "payment-late"), (70.0, "terminate", "not-paid")]
    assert (e.due, e.paid, e.notes_sent) == (400, 0, 4)  # no notes while paused


async def test_debt_bound_pauses_before_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    """Bound 250: the third note (300 due at 30 s) crosses it; terminated one timeout later."""
    log, e = await _run(max_unpaid=250, delay=None, until=1_000)
    assert log == [(30.0, "pause", "debt-over-bound"), (60.0, "terminate", "not-paid")]
    assert e.due == 300


async def test_prompt_payer_is_never_paused(autojump_clock: trio.testing.MockClock) -> None:
    log, e = await _run(max_unpaid=250, delay=2.5, until=300)
    assert log == []
    assert e.state is EnforcementState.RUNNING and e.due == 3_000 and e.paid == 2_900


async def test_late_payer_is_paused_and_resumed_but_not_terminated(autojump_clock: trio.testing.MockClock) -> None:
    """Pays each note 35.5 s after it (timeout 30 s): paused at 10k s, resumed at 10k + 5.5 s."""
    log, e = await _run(max_unpaid=10_000, delay=35.5, until=100)
    assert log == [
        (40.0, "pause", "payment-late"),
        (45.5, "resume", None),
        (50.0, "pause", "payment-late"),
        (55.5, "resume", None),
        (60.0, "pause", "payment-late"),
        (65.5, "resume", None),
        (70.0, "pause", "payment-late"),
        (75.5, "resume", None),
        (80.0, "pause", "payment-late"),
        (85.5, "resume", None),
        (90.0, "pause", "payment-late"),
        (95.5, "resume", None),
        (100.0, "pause", "payment-late"),
    ]
    assert e.state is EnforcementState.PAUSED
