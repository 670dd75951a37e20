"""One activity's life and one batch's bookkeeping, as pure state (sans-io).

Like :mod:`market.negotiation`, no I/O and no clock: the activity service feeds
events with the current time (``now``, wall-clock seconds) and reads the state.

Activity states, one table (:data:`TRANSITIONS`)::

    NEW --deploy_ok--> DEPLOYED --start_ok--> READY --run_begin--> RUNNING
     |                  |                       ^                     |
     |deploy_failed     |start_failed           +------run_end--------+
     v                  v
    FAILED(reason)    FAILED(reason)

    NEW / DEPLOYED / READY / RUNNING --terminate--> TERMINATED(reason, default "requested")
    NEW / DEPLOYED / READY / RUNNING --lost-------> TERMINATED(reason)  (container vanished,
                                                     or found left behind after a restart)

``run_begin``/``run_end`` bracket *every* command that works in the container
(``run``, ``transfer_in``, ``transfer_out``), so one command runs at a time and a
terminate that arrives meanwhile is visible as RUNNING -> TERMINATED. A failed
``run`` (non-zero exit, timeout, OOM kill) is a result, not a state: it ends with
``run_end`` like any other.

TERMINATED and FAILED are terminal: nothing leaves them. ``terminate`` on a
terminal activity is an idempotent no-op (the requestor always ends with a
terminate, even after a failed deploy; the service removes the container either
way) and records nothing; every other event there raises
:class:`~exeunit.errors.IllegalTransition`. An illegal move changes nothing.

Which *commands* each state accepts is a second, smaller table
(:data:`COMMAND_STATES`), checked by :meth:`Activity.check_command` before a
command runs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from exeunit.runtime import ExecResult

__all__ = [
    "COMMAND_STATES",
    "DEFAULT_MAX_BUFFERED_BYTES",
    "DEFAULT_MAX_RESULT_OUTPUT_BYTES",
    "DEFAULT_TERMINATE_REASON",
    "EVENT_OVERHEAD_BYTES",
    "MAX_EVENT_DATA_BYTES",
    "LIVE",
    "REASON_REQUIRED",
    "TERMINAL",
    "TRANSITIONS",
    "Activity",
    "Batch",
    "Event",
    "State",
    "Transition",
]


class State(enum.Enum):
    NEW = "new"
    DEPLOYED = "deployed"
    READY = "ready"
    RUNNING = "running"
    TERMINATED = "terminated"
    FAILED = "failed"


class Event(enum.Enum):
    DEPLOY_OK = "deploy_ok"
    DEPLOY_FAILED = "deploy_failed"
    START_OK = "start_ok"
    START_FAILED = "start_failed"
    RUN_BEGIN = "run_begin"
    RUN_END = "run_end"
    TERMINATE = "terminate"
    LOST = "lost"


LIVE = frozenset({State.NEW, State.DEPLOYED, State.READY, State.RUNNING})
TERMINAL = frozenset({State.TERMINATED, State.FAILED})

TRANSITIONS: Mapping[tuple[State, Event], State] = {
    (State.NEW, Event.DEPLOY_OK): State.DEPLOYED,
    (State.NEW, Event.DEPLOY_FAILED): State.FAILED,
    (State.DEPLOYED, Event.START_OK): State.READY,
    (State.DEPLOYED, Event.START_FAILED): State.FAILED,
    (State.READY, Event.RUN_BEGIN): State.RUNNING,
    (State.RUNNING, Event.RUN_END): State.READY,
    (State.NEW, Event.TERMINATE): State.TERMINATED,
    (State.DEPLOYED, Event.TERMINATE): State.TERMINATED,
    (State.READY, Event.TERMINATE): State.TERMINATED,
    (State.RUNNING, Event.TERMINATE): State.TERMINATED,
    (State.NEW, Event.LOST): State.TERMINATED,
    (State.DEPLOYED, Event.LOST): State.TERMINATED,
    (State.READY, Event.LOST): State.TERMINATED,
    (State.RUNNING, Event.LOST): State.TERMINATED,
}
"""Every legal move: ``(state, event) -> next state``. Nothing else is legal
(except the documented no-op: ``terminate`` on a terminal state)."""

REASON_REQUIRED = frozenset({Event.DEPLOY_FAILED, Event.START_FAILED, Event.LOST})
"""Events that end the activity for a cause the user must be told."""
_REASON_ALLOWED = REASON_REQUIRED | {Event.TERMINATE}
DEFAULT_TERMINATE_REASON = "requested"

COMMAND_STATES: Mapping[type, frozenset[State]] = {
    Deploy: frozenset({State.NEW}),
    Start: frozenset({State.DEPLOYED}),
    Run: frozenset({State.READY}),
    Serve: frozenset({State.READY}),
    TransferIn: frozenset({State.READY}),
    TransferOut: frozenset({State.READY}),
    CacheRestore: frozenset({State.READY}),
    CacheSave: frozenset({State.READY}),
    Terminate: frozenset(State),
}
"""Command type -> the states it may be issued in (``terminate`` always: idempotent)."""

_HINTS: Mapping[State, str] = {
    State.NEW: "deploy an image first",
    State.DEPLOYED: "start the container first",
    State.READY: "the container is ready: run, transfer or terminate",
    State.RUNNING: "another command is still running; wait for it or terminate",
    State.TERMINATED: "the activity has ended; create a new one",
    State.FAILED: "the activity has failed; terminate it and create a new one",
}


@dataclass(frozen=True)
class Transition:
    """One applied move, kept for the activity's history (and its storage record)."""

    at: float
    event: Event
    before: State
    after: State
    reason: str | None = None


@dataclass
class Activity:
    """One activity under one agreement, as the provider's exe-unit sees it."""

    activity_id: str
    agreement_id: str
    requestor_id: str
    created_at: float
    state: State = State.NEW
    reason: str | None = None
    """Why it failed or was terminated (None while live)."""
    history: list[Transition] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def legal_events(self) -> list[Event]:
        """Events the table allows now (no-op ``terminate`` on a terminal state excluded)."""
        return [event for (state, event) in TRANSITIONS if state is self.state]

    def apply(self, event: Event, reason: str | None = None, *, now: float) -> State:
        """Apply ``event`` at wall-clock time ``now``; returns the new state.

        :class:`IllegalTransition` (state unchanged) if the table does not allow it.
        ``reason`` is required for ``deploy_failed``, ``start_failed`` and ``lost``,
        optional for ``terminate`` and refused (``ValueError``: a caller bug) for
        the rest.
        """
        if not isinstance(event, Event):
            raise ValueError(f"not an activity event: {event!r}")
        if reason is not None and (event not in _REASON_ALLOWED or not isinstance(reason, str) or not reason):
            raise ValueError(f"event {event.value} takes no reason (or an empty one): {reason!r}")
        if event in REASON_REQUIRED and reason is None:
            raise ValueError(f"event {event.value} needs a reason")
        if event is Event.TERMINATE and self.state in TERMINAL:
            return self.state  # idempotent no-op, nothing recorded
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            raise IllegalTransition(
                f"activity {self.activity_id}: {event.value} is not allowed in state {self.state.value}"
                f" ({_HINTS[self.state]})"
            )
        if event is Event.TERMINATE and reason is None:
            reason = DEFAULT_TERMINATE_REASON
        self.history.append(Transition(now, event, self.state, after, reason))
        self.state = after
        if after in TERMINAL:
            self.reason = reason
        return after

    def check_command(self, cmd: Command) -> None:
        """Raise :class:`IllegalTransition` unless ``cmd`` may be issued in this state."""
        allowed = COMMAND_STATES.get(type(cmd))
        if allowed is None:
            raise ValueError(f"not a command: {cmd!r}")
        if self.state not in allowed:
            raise IllegalTransition(
                f"activity {self.activity_id}: cannot {cmd.kind} in state {self.state.value}"
                f" ({_HINTS[self.state]})"
            )

    # -- storage ---------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A plain dict (str/float/None/list) for the store; :meth:`from_record` inverts it."""
        return {
            "activity_id": self.activity_id,
            "agreement_id": self.agreement_id,
            "requestor_id": self.requestor_id,
            "created_at": self.created_at,
            "state": self.state.value,
            "reason": self.reason,
            "history": [
                {"at": t.at, "event": t.event.value, "from": t.before.value, "to": t.after.value, "reason": t.reason}
                for t in self.history
            ],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Activity:
        """Rebuild from :meth:`to_record`, replaying the history through the table.

        A record whose history is not a legal path from NEW to its state, or whose
        reason disagrees with it, raises :class:`ExeUnitError` (a corrupt store).
        """
        try:
            activity = cls(
                activity_id=_rec_str(record, "activity_id"),
                agreement_id=_rec_str(record, "agreement_id"),
                requestor_id=_rec_str(record, "requestor_id"),
                created_at=float(record["created_at"]),
            )
            entries = record["history"]
            if not isinstance(entries, Sequence):
                raise TypeError("history is not a list")
            for entry in entries:
                event = Event(entry["event"])
                before, after = State(entry["from"]), State(entry["to"])
                if before is not activity.state:
                    raise ValueError(f"history jumps from {activity.state.value} to {before.value}")
                activity.apply(event, entry["reason"], now=float(entry["at"]))
                if activity.state is not after:
                    raise ValueError(f"history says {event.value} led to {after.value}, the table says {activity.state.value}")
            state, reason = State(record["state"]), record["reason"]
        except (KeyError, TypeError, ValueError, IllegalTransition) as exc:
            raise ExeUnitError(f"corrupt activity record: {type(exc).__name__}: {exc}") from None
        if state is not activity.state or reason != activity.reason:
            raise ExeUnitError(
                f"corrupt activity record {activity.activity_id}: state {state.value}/{reason!r}"
                f" does not match its history ({activity.state.value}/{activity.reason!r})"
            )
        return activity


def _rec_str(record: Mapping[str, Any], key: str) -> str:
    value = record[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


# -- batches ---------------------------------------------------------------------------

DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024
"""Output not yet delivered to the reader, per batch; past it the oldest output is dropped (with a marker)."""
DEFAULT_MAX_RESULT_OUTPUT_BYTES = 64 * 1024
"""Tail of stdout/stderr kept in each command's result; the stream itself is in the events."""
EVENT_OVERHEAD_BYTES = 64
"""Charged per buffered output event on top of its data, so a flood of tiny
chunks is bounded in count as well as in bytes."""
MAX_EVENT_DATA_BYTES = 64 * 1024
"""Output is cut into events of at most this many bytes."""

_OUTPUT_KINDS = ("stdout", "stderr")


def _incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a UTF-8 character that is not complete yet (0..3)."""
    for k in range(1, min(3, len(data)) + 1):
        byte = data[-k]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for its lead
        if 0xC0 <= byte < 0xF8:
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return k if needed > k else 0
        return 0
    return 0


def _pieces(data: bytes, limit: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``limit`` bytes, at character boundaries where UTF-8 allows."""
    out, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        if end < len(data):
            back = end
            while back > start + 1 and end - back < 3 and data[back] & 0xC0 == 0x80:
                back -= 1
            if data[back] & 0xC0 != 0x80:
                end = back
        out.append(data[start:end])
        start = end
    return out


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes before them were cut."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            cut = len(self.data) - self.limit
            del self.data[:cut]
            self.dropped += cut


class Batch:
    """One exe-script run: per-command results and a bounded, seq-numbered event log.

    The executor drives it strictly in order: :meth:`begin` command ``i``, feed
    :meth:`output`, :meth:`finish` it, then ``i + 1``; :meth:`close` ends the batch
    (after the last command, or early: a failed command stops the script).
    Calls out of order raise :class:`IllegalTransition` (an executor bug).

    Events, for long-polling readers (:meth:`events_after`; their wire form is
    in :mod:`exeunit.messages`)::

        {"seq": n, "index": i, "kind": "started"}
        {"seq": n, "index": i, "kind": "stdout" | "stderr", "data": b"<bytes>"}
        {"seq": n, "index": i, "kind": "finished", "result": {...}}
        {"seq": n, "index": i, "kind": "dropped", "from_seq": m, "bytes": k}
        {"seq": n, "index": None, "kind": "done", "reason": str | None}

    ``seq`` grows by one per event, from 1. Output is kept as the exact bytes
    written (binary-safe), cut into events of at most
    :data:`MAX_EVENT_DATA_BYTES`; a UTF-8 character split across chunks is held
    back until it is complete, so text output arrives as valid UTF-8 pieces.

    Bounds: output events are charged their size plus
    :data:`EVENT_OVERHEAD_BYTES`; past ``max_buffered_bytes`` the *oldest output*
    events are dropped (started/finished/done are few and always kept), and one
    ``dropped`` marker stands in for each run of dropped events: it says seqs
    ``from_seq..seq`` and ``bytes`` bytes of output are gone. A result keeps the
    last ``max_result_output_bytes`` of each stream and says how many bytes
    before them were cut (``stdout_dropped``); its exit code is never lost.
    :meth:`ack` forgets what the reader has; :meth:`discard` forgets everything.
    """

    def __init__(
        self,
        batch_id: str,
        commands: Sequence[Command],
        *,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        max_result_output_bytes: int = DEFAULT_MAX_RESULT_OUTPUT_BYTES,
    ) -> None:
        if max_buffered_bytes < 0 or max_result_output_bytes < 0:
            raise ValueError("limits must not be negative")
        self.batch_id = batch_id
        self.commands: list[Command] = list(commands)
        self.results: list[dict[str, Any] | None] = [None] * len(self.commands)
        self.max_buffered_bytes = max_buffered_bytes
        self.max_result_output_bytes = max_result_output_bytes
        self.done = False
        self.done_reason: str | None = None
        self.buffered_bytes = 0
        self.dropped_events = 0
        self.discarded = False
        self._seq = 0
        self._current: int | None = None
        self._next = 0
        self._started_at = 0.0
        self._streamed = False
        self._pending: dict[str, bytes] = {}
        self._tails: dict[str, _Tail] = {}
        # Two seq-ordered logs: few control events (started/finished/done and the
        # dropped markers), many output events (dropped from the front).
        self._control: list[dict[str, Any]] = []
        self._output: list[dict[str, Any]] = []
        self._output_costs: list[int] = []
        self._output_head = 0

    # -- the executor's side -----------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def current(self) -> int | None:
        """Index of the command in progress, if any."""
        return self._current

    def begin(self, index: int, *, now: float) -> None:
        """Command ``index`` starts (it must be the next one)."""
        if self.done or self._current is not None or index != self._next:
            raise IllegalTransition(
                f"batch {self.batch_id}: cannot begin command {index}"
                f" (next is {self._next}, in progress {self._current}, done {self.done})"
            )
        self._current = index
        self._started_at = now
        self._streamed = False
        self._pending = {k: b"" for k in _OUTPUT_KINDS}
        self._tails = {k: _Tail(self.max_result_output_bytes) for k in _OUTPUT_KINDS}
        self._add_control({"index": index, "kind": "started"})

    def output(self, index: int, stream: str, data: bytes) -> None:
        """A chunk of the running command's ``stdout`` or ``stderr``."""
        self._check_current(index)
        if stream not in _OUTPUT_KINDS:
            raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
        self._streamed = True
        self._tails[stream].add(data)
        buf = self._pending[stream] + bytes(data)
        keep = _incomplete_tail(buf)
        self._pending[stream] = buf[len(buf) - keep:] if keep else b""
        self._emit(index, stream, buf[: len(buf) - keep])

    def finish(
        self,
        index: int,
        *,
        now: float,
        exit_code: int | None = None,
        error: str | None = None,
        exec_result: ExecResult | None = None,
        file: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """Command ``index`` ended; records and returns its result dict.

        With ``exec_result`` (a ``run``), its exit code, times and flags make the
        result; its stdout/stderr are used only if nothing was streamed through
        :meth:`output` (they are then emitted as events, so readers see them too).
        Otherwise the result has ``exit_code`` (default None) and ``error``. The
        result's stdout/stderr are the streams' tails (``max_result_output_bytes``),
        ``*_truncated`` if we cut them or the runtime did. ``file`` is the
        ``(sha256, size)`` of a transferred file.
        """
        self._check_current(index)
        started_at, finished_at = self._started_at, now
        timed_out = oom_killed = False
        stdout_cut = stderr_cut = False
        if exec_result is not None:
            if not self._streamed:
                for stream, data in (("stdout", exec_result.stdout), ("stderr", exec_result.stderr)):
                    if data:
                        self.output(index, stream, data)
            exit_code = exec_result.exit_code
            started_at, finished_at = exec_result.started_at, exec_result.finished_at
            timed_out, oom_killed = exec_result.timed_out, exec_result.oom_killed
            stdout_cut, stderr_cut = exec_result.stdout_truncated, exec_result.stderr_truncated
        for stream in _OUTPUT_KINDS:  # flush a character left incomplete at the end
            self._emit(index, stream, self._pending[stream])
            self._pending[stream] = b""
        out, err = self._tails["stdout"], self._tails["stderr"]
        result: dict[str, Any] = {
            "index": index,
            "command": self.commands[index].kind,
            "exit_code": exit_code,
            "stdout": bytes(out.data),
            "stderr": bytes(err.data),
            "stdout_truncated": stdout_cut or out.dropped > 0,
            "stderr_truncated": stderr_cut or err.dropped > 0,
            "stdout_dropped": out.dropped,
            "stderr_dropped": err.dropped,
            "started_at": started_at,
            "finished_at": finished_at,
            "timed_out": timed_out,
            "oom_killed": oom_killed,
            "error": error,
        }
        if file is not None:
            result["sha256"], result["size"] = file
        self.results[index] = result
        self._current = None
        self._next = index + 1
        self._add_control({"index": index, "kind": "finished", "result": result})
        return result

    def close(self, reason: str | None = None) -> None:
        """End the batch: after its last command (``reason`` None) or early, saying why.

        A command still in progress is left without a result (the caller finishes
        it first if it has one). Closing twice is a no-op.
        """
        if self.done:
            return
        self.done = True
        self.done_reason = reason
        self._current = None
        self._add_control({"index": None, "kind": "done", "reason": reason})

    # -- the readers' side -------------------------------------------------------------

    def events_after(self, seq: int, limit: int = 100, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` events with a seq greater than ``seq``, oldest first.

        With ``max_bytes``, events stop once their cost (data, result output and
        :data:`EVENT_OVERHEAD_BYTES` each) passes it; the first is always returned.
        A ``dropped`` marker is returned while its range reaches past ``seq``;
        its ``from_seq`` is then clamped to ``seq + 1`` (what *this* reader missed).
        Returned dicts are copies.
        """
        if limit <= 0:
            return []
        out: list[dict[str, Any]] = []
        spent = 0
        c = _first_after(self._control, seq, 0)
        o = _first_after(self._output, seq, self._output_head)
        while len(out) < limit and (c < len(self._control) or o < len(self._output)):
            take_control = o >= len(self._output) or (
                c < len(self._control) and self._control[c]["seq"] < self._output[o]["seq"]
            )
            if take_control:
                event = dict(self._control[c])
                cost = _control_cost(event)
                c += 1
                if event["kind"] == "dropped":
                    event["from_seq"] = max(event["from_seq"], seq + 1)
            else:
                event = dict(self._output[o])
                cost = self._output_costs[o]
                o += 1
            if max_bytes is not None and out and spent + cost > max_bytes:
                break
            spent += cost
            out.append(event)
        return out

    def ack(self, seq: int) -> None:
        """The reader has every event up to ``seq``: forget them (their memory goes back to the budget)."""
        while self._output_head < len(self._output) and self._output[self._output_head]["seq"] <= seq:
            self.buffered_bytes -= self._output_costs[self._output_head]
            self._output_head += 1
        self._compact()
        drop = _first_after(self._control, seq, 0)
        if drop:
            del self._control[:drop]

    def discard(self) -> None:
        """Forget every event (the activity was destroyed: nobody will read them). Results stay."""
        self.discarded = True
        self._control.clear()
        self._output.clear()
        self._output_costs.clear()
        self._output_head = 0
        self.buffered_bytes = 0

    # -- internals ---------------------------------------------------------------------

    def _check_current(self, index: int) -> None:
        if self._current is None or index != self._current:
            raise IllegalTransition(
                f"batch {self.batch_id}: command {index} is not in progress (current: {self._current})"
            )

    def _add_control(self, event: dict[str, Any]) -> None:
        self._seq += 1
        if not self.discarded:
            self._control.append({"seq": self._seq, **event})

    def _emit(self, index: int, stream: str, data: bytes) -> None:
        for piece in _pieces(data, MAX_EVENT_DATA_BYTES):
            self._seq += 1
            if self.discarded:
                continue
            cost = len(piece) + EVENT_OVERHEAD_BYTES
            self._output.append({"seq": self._seq, "index": index, "kind": stream, "data": piece})
            self._output_costs.append(cost)
            self.buffered_bytes += cost
            while self.buffered_bytes > self.max_buffered_bytes and self._output_head < len(self._output):
                self._drop_oldest_output()

    def _drop_oldest_output(self) -> None:
        event = self._output[self._output_head]
        self.buffered_bytes -= self._output_costs[self._output_head]
        self._output_head += 1
        self.dropped_events += 1
        seq = event["seq"]
        # Extend the marker of the run this event continues: the latest control
        # event before it is a marker, so no started/finished lies in between.
        pos = _first_after(self._control, seq, 0)
        previous = self._control[pos - 1] if pos > 0 else None
        if previous is not None and previous["kind"] == "dropped" and previous["index"] == event["index"]:
            previous["seq"] = seq
            previous["bytes"] += len(event["data"])
        else:
            self._control.insert(pos, {"seq": seq, "index": event["index"], "kind": "dropped", "from_seq": seq,
                                       "bytes": len(event["data"])})
        self._compact()

    def _compact(self) -> None:
        if self._output_head > 1024 and self._output_head * 2 > len(self._output):
            del self._output[: self._output_head]
            del self._output_costs[: self._output_head]
            self._output_head = 0


def _control_cost(event: dict[str, Any]) -> int:
    result = event.get("result")
    size = len(result["stdout"]) + len(result["stderr"]) + len(result["error"] or "") if result else 0
    return size + len(event.get("reason") or "") + EVENT_OVERHEAD_BYTES


def _first_after(events: list[dict[str, Any]], seq: int, lo: int) -> int:
    """Position of the first event in ``events[lo:]`` (seq-ordered) with a seq above ``seq``."""
    hi = len(events)
    while lo < hi:
        mid = (lo + hi) // 2
        if events[mid]["seq"] <= seq:
            lo = mid + 1
        else:
            hi = mid
    return lo
