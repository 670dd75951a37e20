"""The activity state machine: every row of the table, every move not in it, storage."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.activity import (
    COMMAND_STATES,
    LIVE,
    REASON_REQUIRED,
    TERMINAL,
    TRANSITIONS,
    Activity,
    Event,
    State,
    Transition,
)
from exeunit.commands import (
    CacheRestore,
    CacheSave,
    Command,
    Deploy,
    Run,
    Serve,
    Start,
    Terminate,
    TransferIn,
    TransferOut,
)
from exeunit.errors import ExeUnitError, IllegalTransition
from yagna.core.wire import decode, encode

S, E = State, Event

# Written out by hand, independently of the module's table: if either changes,
# this test fails until both agree.
EXPECTED: dict[tuple[State, Event], State] = {
    (S.NEW, E.DEPLOY_OK): S.DEPLOYED,
    (S.NEW, E.DEPLOY_FAILED): S.FAILED,
    (S.NEW, E.TERMINATE): S.TERMINATED,
    (S.NEW, E.LOST): S.TERMINATED,
    (S.DEPLOYED, E.START_OK): S.READY,
    (S.DEPLOYED, E.START_FAILED): S.FAILED,
    (S.DEPLOYED, E.TERMINATE): S.TERMINATED,
    (S.DEPLOYED, E.LOST): S.TERMINATED,
    (S.READY, E.RUN_BEGIN): S.RUNNING,
    (S.READY, E.TERMINATE): S.TERMINATED,
    (S.READY, E.LOST): S.TERMINATED,
    (S.RUNNING, E.RUN_END): S.READY,
    (S.RUNNING, E.TERMINATE): S.TERMINATED,
    (S.RUNNING, E.LOST): S.TERMINATED,
}

# The shortest way to each state from NEW, to set up a test from a real path.
PATH_TO: dict[State, list[Event]] = {
    S.NEW: [],
    S.DEPLOYED: [E.DEPLOY_OK],
    S.READY: [E.DEPLOY_OK, E.START_OK],
    S.RUNNING: [E.DEPLOY_OK, E.START_OK, E.RUN_BEGIN],
    S.TERMINATED: [E.TERMINATE],
    S.FAILED: [E.DEPLOY_FAILED],
}

IMAGE = "sha256:" + "ab" * 32
COMMANDS: dict[type, Command] = {
    Deploy: Deploy(image=IMAGE),
    Start: Start(),
    Run: Run(argv=["true"]),
    Serve: Serve(),
    TransferIn: TransferIn(dest="/work/in/x", sha256="00" * 32, size=0),
    TransferOut: TransferOut(src="/work/out/x"),
    CacheRestore: CacheRestore(key="k", dest="/work/in/x"),
    CacheSave: CacheSave(key="k", src="/work/out/x"),
    Terminate: Terminate(),
}
EXPECTED_COMMANDS: dict[type, set[State]] = {
    Deploy: {S.NEW},
    Start: {S.DEPLOYED},
    Run: {S.READY},
    Serve: {S.READY},
    TransferIn: {S.READY},
    CacheRestore: {S.READY},
    CacheSave: {S.READY},
    TransferOut: {S.READY},
    Terminate: set(State),
}


def reason_for(event: Event) -> str | None:
    return f"because {event.value}" if event in REASON_REQUIRED else None


def activity_in(state: State) -> Activity:
    activity = Activity("act-1", "agr-1", "req-1", created_at=100.0)
    for i, event in enumerate(PATH_TO[state]):
        activity.apply(event, reason_for(event), now=101.0 + i)
    assert activity.state is state
    return activity


def test_table_is_exactly_the_expected_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_terminal_and_live_partition_the_states() -> None:
    assert TERMINAL == {S.TERMINATED, S.FAILED}
    assert LIVE | TERMINAL == set(State) and not LIVE & TERMINAL
    assert not any(state in TERMINAL for state, _ in TRANSITIONS)


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS, key=lambda k: (k[0].value, k[1].value)))
def test_every_row_of_the_table(state: State, event: Event) -> None:
    activity = activity_in(state)
    before = len(activity.history)
    reason = reason_for(event)
    assert activity.apply(event, reason, now=500.0) is EXPECTED[(state, event)]
    assert activity.state is EXPECTED[(state, event)]
    assert activity.history[-1] == Transition(500.0, event, state, activity.state, reason or (
        "requested" if event is E.TERMINATE else None
    ))
    assert len(activity.history) == before + 1
    if activity.state in TERMINAL:
        assert activity.reason == activity.history[-1].reason and activity.reason
    else:
        assert activity.reason is None


ILLEGAL = [
    (state, event)
    for state, event in itertools.product(State, Event)
    if (state, event) not in EXPECTED and not (state in TERMINAL and event is E.TERMINATE)
]


def test_illegal_list_is_not_empty_and_covers_terminal_states() -> None:
    assert len(ILLEGAL) == len(State) * len(Event) - len(EXPECTED) - len(TERMINAL)
    assert {(S.TERMINATED, E.LOST), (S.FAILED, E.DEPLOY_OK), (S.READY, E.RUN_END)} <= set(ILLEGAL)


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_every_illegal_move_raises_and_changes_nothing(state: State, event: Event) -> None:
    activity = activity_in(state)
    snapshot = activity.to_record()
    with pytest.raises(IllegalTransition) as info:
        activity.apply(event, reason_for(event), now=500.0)
    assert event.value in str(info.value) and state.value in str(info.value)
    assert activity.to_record() == snapshot


@pytest.mark.parametrize("state", sorted(TERMINAL, key=lambda s: s.value))
def test_terminate_on_a_terminal_state_is_a_no_op(state: State) -> None:
    activity = activity_in(state)
    snapshot = activity.to_record()
    assert activity.apply(E.TERMINATE, now=900.0) is state
    assert activity.apply(E.TERMINATE, "again", now=901.0) is state
    assert activity.to_record() == snapshot


def test_legal_events_come_from_the_table() -> None:
    for state in State:
        expected = {event for (s, event) in EXPECTED if s is state}
        assert set(activity_in(state).legal_events()) == expected


def test_reasons() -> None:
    for event in REASON_REQUIRED:
        with pytest.raises(ValueError, match="needs a reason"):
            activity_in(S.NEW if event is not E.START_FAILED else S.DEPLOYED).apply(event, now=1.0)
    with pytest.raises(ValueError):
        activity_in(S.NEW).apply(E.DEPLOY_OK, "why", now=1.0)
    with pytest.raises(ValueError):
        activity_in(S.NEW).apply(E.DEPLOY_FAILED, "", now=1.0)
    with pytest.raises(ValueError):
        activity_in(S.NEW).apply("deploy_ok", now=1.0)  # type: ignore[arg-type]
    activity = activity_in(S.READY)
    activity.apply(E.TERMINATE, "debit-note-unpaid", now=2.0)
    assert activity.reason == "debit-note-unpaid"
    lost = activity_in(S.RUNNING)
    lost.apply(E.LOST, "container vanished", now=3.0)
    assert (lost.state, lost.reason) == (S.TERMINATED, "container vanished")


# -- commands per state -------------------------------------------------------------------


def test_command_table_is_exactly_the_expected_one() -> None:
    assert {cls: set(states) for cls, states in COMMAND_STATES.items()} == EXPECTED_COMMANDS


@pytest.mark.parametrize(
    ("cls", "state"), list(itertools.product(EXPECTED_COMMANDS, State)), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_check_command(cls: type, state: State) -> None:
    activity = activity_in(state)
    if state in EXPECTED_COMMANDS[cls]:
        activity.check_command(COMMANDS[cls])
    else:
        with pytest.raises(IllegalTransition) as info:
            activity.check_command(COMMANDS[cls])
        message = str(info.value)
        assert COMMANDS[cls].kind in message and state.value in message and "(" in message  # has a hint
    assert activity.state is state


def test_check_command_refuses_non_commands() -> None:
    with pytest.raises(ValueError):
        activity_in(S.NEW).check_command("deploy")  # type: ignore[arg-type]


# -- storage ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State))
def test_record_round_trip(state: State) -> None:
    activity = activity_in(state)
    record = activity.to_record()
    again = Activity.from_record(record)
    assert again == activity
    assert again.to_record() == record
    assert Activity.from_record(decode(encode(record))) == activity  # storable as canonical CBOR


def test_record_of_a_busy_life() -> None:
    activity = activity_in(S.READY)
    for i in range(3):
        activity.apply(E.RUN_BEGIN, now=200.0 + i)
        activity.apply(E.RUN_END, now=200.5 + i)
    activity.apply(E.LOST, "left behind after a restart", now=300.0)
    again = Activity.from_record(activity.to_record())
    assert again == activity and len(again.history) == 2 + 6 + 1
    assert [t.at for t in again.history][-1] == 300.0


def _corrupt(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**record, **changes}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: _corrupt(r, state="ready"),
        lambda r: _corrupt(r, reason="made up"),
        lambda r: _corrupt(r, state="bogus"),
        lambda r: _corrupt(r, activity_id=""),
        lambda r: _corrupt(r, agreement_id=None),
        lambda r: _corrupt(r, history=None),
        lambda r: _corrupt(r, history=[{"at": 1.0, "event": "start_ok", "from": "new", "to": "ready", "reason": None}]),
        lambda r: _corrupt(r, history=r["history"][1:]),
        lambda r: _corrupt(r, history=[{**r["history"][0], "to": "ready"}, *r["history"][1:]]),
        lambda r: _corrupt(r, history=[{**r["history"][0], "event": "nope"}, *r["history"][1:]]),
        lambda r: {k: v for k, v in r.items() if k != "created_at"},
    ],
)
def test_corrupt_records_are_refused(mutate: Any) -> None:
    activity = activity_in(S.RUNNING)
    activity.apply(E.TERMINATE, now=400.0)
    with pytest.raises(ExeUnitError, match="corrupt"):
        Activity.from_record(mutate(activity.to_record()))


@given(st.lists(st.sampled_from(list(Event)), max_size=30))
def test_property_random_event_sequences_follow_the_table(events: list[Event]) -> None:
    activity = Activity("a", "g", "r", created_at=0.0)
    for t, event in enumerate(events):
        before = activity.state
        try:
            activity.apply(event, reason_for(event), now=float(t))
        except IllegalTransition:
            assert (before, event) not in EXPECTED
            assert activity.state is before
        else:
            expected = EXPECTED.get((before, event), before)  # terminate on terminal: no-op
            assert activity.state is expected
    assert Activity.from_record(activity.to_record()) == activity
    # the history is a chain of table rows from NEW
    state = S.NEW
    for entry in activity.history:
        assert entry.before is state and EXPECTED[(state, entry.event)] is entry.after
        state = entry.after
    assert state is activity.state
