"""The activity protocol's messages, typed, with their wire codecs (sans-io, pure).

``/yagna/activity/1.0.0`` (requestor -> provider of the agreement)::

    {"op": "create", "agreement_id": str}                 -> {"activity_id": str, "keepalive_s": number}
    {"op": "exec", "activity_id": str, "script": [...]}   -> {"batch_id": str}
    {"op": "events", "activity_id": str, "batch_id": str, "after": int, "wait_ms": int}
        -> {"events": [event, ...], "done": bool, "receipt": bytes | None}
    {"op": "state", "activity_id": str}                   -> {"state": str, "reason": str | None, "usage": {...} | None}
    {"op": "destroy", "activity_id": str}                 -> {"state": str, "usage": {...} | None}

Events (see :class:`exeunit.activity.Batch`) carry output as *bytes*, exactly as
the command wrote it::

    {"seq": n, "index": i, "kind": "started"}
    {"seq": n, "index": i, "kind": "stdout" | "stderr", "data": bytes}
    {"seq": n, "index": i, "kind": "finished", "result": {...}}
    {"seq": n, "index": i, "kind": "dropped", "from_seq": m, "bytes": k}
    {"seq": n, "index": None, "kind": "done", "reason": str | None}

A batch's results travel in its ``finished`` events (one per command that
ran), never all at once: an ``events`` answer is paged to
:data:`PAGE_BYTES`, so no answer nears the protocol's reply limit however
much a batch wrote. ``done`` is true once the answer holds the batch's last
event. ``after`` also acknowledges: the provider may forget events up to it.

Every decoder here is total on remote input: it returns a typed message or
raises :class:`MessageInvalid` (or :class:`~exeunit.errors.ScriptError` for a
malformed exe-script), never anything else.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from exeunit.activity import EVENT_OVERHEAD_BYTES, MAX_EVENT_DATA_BYTES, State
from exeunit.commands import Command, parse_script, script_to_wire
from exeunit.errors import ExeUnitError
from yagna.core.errors import WireError

__all__ = [
    "ID_MAX",
    "MAX_EVENTS_PER_PAGE",
    "MAX_RESULT_STREAM_BYTES",
    "MAX_TEXT_CHARS",
    "PAGE_BYTES",
    "WAIT_MS_MAX",
    "ActivityCreated",
    "BatchEvent",
    "BatchStarted",
    "CommandResult",
    "Create",
    "Destroy",
    "Destroyed",
    "EventKind",
    "EventsPage",
    "Exec",
    "GetEvents",
    "GetState",
    "MessageInvalid",
    "Request",
    "StateReply",
    "decode_created",
    "decode_event",
    "decode_destroyed",
    "decode_events_page",
    "decode_request",
    "decode_result",
    "decode_started",
    "decode_state",
    "encode_request",
    "events_page_to_wire",
    "result_to_wire",
]

ID_MAX = 128
"""Longest activity, agreement or batch id."""
WAIT_MS_MAX = 10_000
"""Longest long poll of ``events``; stays below the protocol's 30 s timeout."""
PAGE_BYTES = 2 * 1024 * 1024
"""An ``events`` answer stops adding events past this many bytes of output and
results (it holds at least one event), far below the 8 MiB reply limit."""
MAX_EVENTS_PER_PAGE = 1000
MAX_RESULT_STREAM_BYTES = 64 * 1024
"""A result keeps at most this tail of each stream (see ``DEFAULT_MAX_RESULT_OUTPUT_BYTES``)."""
MAX_TEXT_CHARS = 16 * 1024
"""Longest reason or error text a peer may send."""
MAX_USAGE_KEYS = 32
MAX_COMMAND_INDEX = 1000


class MessageInvalid(ExeUnitError, WireError):
    """A peer's activity message has the wrong shape (the peer broke the rules)."""

    code = "bad-message"


class EventKind(enum.Enum):
    STARTED = "started"
    STDOUT = "stdout"
    STDERR = "stderr"
    FINISHED = "finished"
    DROPPED = "dropped"
    DONE = "done"


# -- field checks ---------------------------------------------------------------------------


def _map(obj: object, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MessageInvalid(f"{what} must be a map, not {type(obj).__name__}")
    return obj


def _ident(msg: Mapping[str, Any], name: str) -> str:
    value = msg.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX:
        raise MessageInvalid(f"field {name!r} must be a string of 1 to {ID_MAX} characters")
    return value


def _int(msg: Mapping[str, Any], name: str, lo: int, hi: int) -> int:
    value = msg.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise MessageInvalid(f"field {name!r} must be an integer from {lo} to {hi}")
    return value


def _opt_int(msg: Mapping[str, Any], name: str, lo: int, hi: int) -> int | None:
    return None if msg.get(name) is None else _int(msg, name, lo, hi)


def _bool(msg: Mapping[str, Any], name: str, default: bool | None = None) -> bool:
    value = msg.get(name, default)
    if not isinstance(value, bool):
        raise MessageInvalid(f"field {name!r} must be true or false")
    return value


def _number(msg: Mapping[str, Any], name: str) -> float:
    value = msg.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > 2**53:
        raise MessageInvalid(f"field {name!r} must be a finite number")
    return float(value)


def _text(msg: Mapping[str, Any], name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise MessageInvalid(f"field {name!r} must be a string of at most {MAX_TEXT_CHARS} characters, or null")
    return value


def _bytes(msg: Mapping[str, Any], name: str, limit: int) -> bytes:
    value = msg.get(name, b"")
    if not isinstance(value, bytes) or len(value) > limit:
        raise MessageInvalid(f"field {name!r} must be at most {limit} bytes")
    return value


def _state(msg: Mapping[str, Any]) -> State:
    value = msg.get("state")
    try:
        return State(value)
    except (ValueError, TypeError):
        raise MessageInvalid(f"field 'state' must be one of {', '.join(s.value for s in State)}") from None


def _usage(msg: Mapping[str, Any]) -> dict[str, float] | None:
    value = msg.get("usage")
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_USAGE_KEYS:
        raise MessageInvalid(f"field 'usage' must be a map of at most {MAX_USAGE_KEYS} numbers, or null")
    usage: dict[str, float] = {}
    for key in value:
        if not isinstance(key, str) or len(key) > ID_MAX:
            raise MessageInvalid("field 'usage' has a key that is not a short string")
        number = _number(value, key)
        if number < 0:
            raise MessageInvalid(f"usage {key!r} must not be negative")
        usage[key] = number
    return usage


def _only(msg: Mapping[str, Any], known: frozenset[str], what: str) -> None:
    extra = [k for k in msg if k not in known]
    if extra:
        raise MessageInvalid(f"{what}: unknown field {str(extra[0])[:64]!r}")


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    agreement_id: str


@dataclass(frozen=True)
class Exec:
    activity_id: str
    script: tuple[Command, ...]


@dataclass(frozen=True)
class GetEvents:
    activity_id: str
    batch_id: str
    after: int
    """The reader has every event up to this seq (the provider may forget them)."""
    wait_ms: int


@dataclass(frozen=True)
class GetState:
    """Also the keep-alive ping."""

    activity_id: str


@dataclass(frozen=True)
class Destroy:
    activity_id: str


Request: TypeAlias = Create | Exec | GetEvents | GetState | Destroy

_SEQ_MAX = 2**62


def decode_request(obj: object) -> Request:
    """A decoded request -> a typed one; :class:`MessageInvalid` or :class:`ScriptError` otherwise."""
    msg = _map(obj, "a request")
    op = msg.get("op")
    if op == "create":
        return Create(_ident(msg, "agreement_id"))
    activity_id = _ident(msg, "activity_id")
    if op == "exec":
        return Exec(activity_id, tuple(parse_script(msg.get("script"))))
    if op == "events":
        return GetEvents(activity_id, _ident(msg, "batch_id"), _int(msg, "after", 0, _SEQ_MAX),
                         _int(msg, "wait_ms", 0, 2**31))
    if op == "state":
        return GetState(activity_id)
    if op == "destroy":
        return Destroy(activity_id)
    raise MessageInvalid(f"unknown op {str(op)[:32]!r} (known: create, exec, events, state, destroy)")


def encode_request(req: Request) -> dict[str, Any]:
    if isinstance(req, Create):
        return {"op": "create", "agreement_id": req.agreement_id}
    if isinstance(req, Exec):
        return {"op": "exec", "activity_id": req.activity_id, "script": script_to_wire(list(req.script))}
    if isinstance(req, GetEvents):
        return {"op": "events", "activity_id": req.activity_id, "batch_id": req.batch_id, "after": req.after,
                "wait_ms": min(req.wait_ms, WAIT_MS_MAX)}
    if isinstance(req, GetState):
        return {"op": "state", "activity_id": req.activity_id}
    if isinstance(req, Destroy):
        return {"op": "destroy", "activity_id": req.activity_id}
    raise TypeError(f"not a request: {req!r}")


# -- replies ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityCreated:
    activity_id: str
    keepalive_s: float

    def to_wire(self) -> dict[str, Any]:
        return {"activity_id": self.activity_id, "keepalive_s": self.keepalive_s}


def decode_created(obj: object) -> ActivityCreated:
    msg = _map(obj, "a create answer")
    keepalive = _number(msg, "keepalive_s") if msg.get("keepalive_s") is not None else 30.0
    if not 0 < keepalive <= 86_400:
        raise MessageInvalid("field 'keepalive_s' must be between 0 and one day")
    return ActivityCreated(_ident(msg, "activity_id"), keepalive)


@dataclass(frozen=True)
class BatchStarted:
    batch_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id}


def decode_started(obj: object) -> BatchStarted:
    return BatchStarted(_ident(_map(obj, "an exec answer"), "batch_id"))


@dataclass(frozen=True)
class StateReply:
    state: State
    reason: str | None = None
    usage: dict[str, float] | None = None
    service: dict[str, Any] | None = None
    """A ``serve`` command's report (:func:`decode_service`), absent for batch work."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state.value, "reason": self.reason, "usage": self.usage}
        if self.service is not None:
            out["service"] = self.service
        return out


def decode_state(obj: object) -> StateReply:
    msg = _map(obj, "a state answer")
    service = msg.get("service")
    return StateReply(_state(msg), _text(msg, "reason"), _usage(msg),
                      decode_service(service) if service is not None else None)


def decode_service(obj: object) -> dict[str, Any]:
    """A service report: running, restarts, last exit, health, ports, tunnel readiness, start time."""
    if not isinstance(obj, dict):
        raise MessageInvalid("a service report must be a map")
    out: dict[str, Any] = {}
    for name in ("running", "tunnel_ready"):
        if not isinstance(obj.get(name), bool):
            raise MessageInvalid(f"service report: {name} must be a boolean")
        out[name] = obj[name]
    restarts = obj.get("restarts")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or not 0 <= restarts < 2**53:
        raise MessageInvalid("service report: restarts must be a count")
    out["restarts"] = restarts
    last_exit = obj.get("last_exit")
    if last_exit is not None and (isinstance(last_exit, bool) or not isinstance(last_exit, int) or abs(last_exit) > 2**31):
        raise MessageInvalid("service report: last_exit must be an exit code or null")
    out["last_exit"] = last_exit
    healthy = obj.get("healthy")
    if healthy is not None and not isinstance(healthy, bool):
        raise MessageInvalid("service report: healthy must be a boolean or null")
    out["healthy"] = healthy
    ports = obj.get("ports")
    if not isinstance(ports, list) or len(ports) > 16 or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports):
        raise MessageInvalid("service report: ports must be a list of at most 16 TCP ports")
    out["ports"] = list(ports)
    started = obj.get("started_at")
    if started is not None and (isinstance(started, bool) or not isinstance(started, (int, float))
                                or not math.isfinite(started)):
        raise MessageInvalid("service report: started_at must be a time or null")
    out["started_at"] = started
    return out


@dataclass(frozen=True)
class Destroyed:
    state: State
    usage: dict[str, float] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"state": self.state.value, "usage": self.usage}


def decode_destroyed(obj: object) -> Destroyed:
    msg = _map(obj, "a destroy answer")
    return Destroyed(_state(msg), _usage(msg))


@dataclass(frozen=True)
class CommandResult:
    """What one command of a batch produced. Output is the *tail* of each stream, as bytes."""

    index: int
    command: str
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_dropped: int = 0
    """Bytes of stdout before the kept tail (0 when nothing was cut by us)."""
    stderr_dropped: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    timed_out: bool = False
    oom_killed: bool = False
    error: str | None = None
    sha256: str | None = None
    """``transfer_in``/``transfer_out``: the file's sha256 and size."""
    size: int | None = None


_RESULT_FIELDS = frozenset({"index", "command", "exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
                            "stdout_dropped", "stderr_dropped", "started_at", "finished_at", "timed_out", "oom_killed",
                            "error", "sha256", "size"})


def result_to_wire(result: CommandResult) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(result, name) for name in sorted(_RESULT_FIELDS)}
    if result.sha256 is None:
        del out["sha256"], out["size"]
    return out


def decode_result(obj: object) -> CommandResult:
    msg = _map(obj, "a result")
    _only(msg, _RESULT_FIELDS, "a result")
    command = msg.get("command")
    if not isinstance(command, str) or len(command) > 32:
        raise MessageInvalid("result field 'command' must be a command name")
    sha256 = msg.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and len(sha256) == 64
                                   and all(c in "0123456789abcdef" for c in sha256)):
        raise MessageInvalid("result field 'sha256' must be 64 lowercase hex digits")
    return CommandResult(
        index=_int(msg, "index", 0, MAX_COMMAND_INDEX),
        command=command,
        exit_code=_opt_int(msg, "exit_code", -2**31, 2**32),
        stdout=_bytes(msg, "stdout", MAX_RESULT_STREAM_BYTES),
        stderr=_bytes(msg, "stderr", MAX_RESULT_STREAM_BYTES),
        stdout_truncated=_bool(msg, "stdout_truncated", False),
        stderr_truncated=_bool(msg, "stderr_truncated", False),
        stdout_dropped=_int(msg, "stdout_dropped", 0, 2**62) if "stdout_dropped" in msg else 0,
        stderr_dropped=_int(msg, "stderr_dropped", 0, 2**62) if "stderr_dropped" in msg else 0,
        started_at=_number(msg, "started_at"),
        finished_at=_number(msg, "finished_at"),
        timed_out=_bool(msg, "timed_out", False),
        oom_killed=_bool(msg, "oom_killed", False),
        error=_text(msg, "error"),
        sha256=sha256,
        size=_opt_int(msg, "size", 0, 2**62),
    )


@dataclass(frozen=True)
class BatchEvent:
    seq: int
    kind: EventKind
    index: int | None = None
    data: bytes = b""
    """``stdout``/``stderr``: the bytes, exactly as written."""
    result: CommandResult | None = None
    """``finished``."""
    from_seq: int | None = None
    """``dropped``: events ``from_seq..seq`` are gone ..."""
    dropped_bytes: int = 0
    """... with this many bytes of output."""
    reason: str | None = None
    """``done``: why the batch ended early (None: every command ran)."""

    @property
    def cost(self) -> int:
        """Bytes this event is charged in pages and buffers."""
        size = len(self.data)
        if self.result is not None:
            size += len(self.result.stdout) + len(self.result.stderr) + len(self.result.error or "")
        return size + len(self.reason or "") + EVENT_OVERHEAD_BYTES


def decode_event(obj: object) -> BatchEvent:
    msg = _map(obj, "an event")
    seq = _int(msg, "seq", 1, _SEQ_MAX)
    try:
        kind = EventKind(msg.get("kind"))
    except (ValueError, TypeError):
        raise MessageInvalid(f"event kind must be one of {', '.join(k.value for k in EventKind)}") from None
    if kind is EventKind.DONE:
        if msg.get("index") is not None:
            raise MessageInvalid("a done event has no command index")
        return BatchEvent(seq, kind, reason=_text(msg, "reason"))
    index = _int(msg, "index", 0, MAX_COMMAND_INDEX)
    if kind in (EventKind.STDOUT, EventKind.STDERR):
        data = _bytes(msg, "data", MAX_EVENT_DATA_BYTES)
        return BatchEvent(seq, kind, index, data=data)
    if kind is EventKind.FINISHED:
        result = decode_result(msg.get("result"))
        if result.index != index:
            raise MessageInvalid("a finished event's result is for another command")
        return BatchEvent(seq, kind, index, result=result)
    if kind is EventKind.DROPPED:
        from_seq = _int(msg, "from_seq", 1, seq)
        return BatchEvent(seq, kind, index, from_seq=from_seq, dropped_bytes=_int(msg, "bytes", 0, 2**62)
                          if "bytes" in msg else 0)
    return BatchEvent(seq, kind, index)


@dataclass(frozen=True)
class EventsPage:
    events: tuple[BatchEvent, ...] = ()
    done: bool = False
    receipt: bytes | None = None
    """The provider's signed result receipt, with the last page (see :mod:`exeunit.receipt`)."""


MAX_RECEIPT_BYTES = 64 * 1024


def decode_events_page(obj: object, *, after: int) -> EventsPage:
    """An ``events`` answer to a request for events after ``after``.

    Seqs must be above ``after`` and strictly increasing (a provider that
    repeats or reorders them would make a reader loop or lose its place).
    """
    msg = _map(obj, "an events answer")
    raw = msg.get("events")
    if not isinstance(raw, list) or len(raw) > MAX_EVENTS_PER_PAGE:
        raise MessageInvalid(f"field 'events' must be a list of at most {MAX_EVENTS_PER_PAGE} events")
    events: list[BatchEvent] = []
    last = after
    for item in raw:
        event = decode_event(item)
        if event.seq <= last:
            raise MessageInvalid(f"event seq {event.seq} does not follow {last}")
        last = event.seq
        events.append(event)
    receipt = msg.get("receipt")
    if receipt is not None and (not isinstance(receipt, bytes) or len(receipt) > MAX_RECEIPT_BYTES):
        raise MessageInvalid(f"field 'receipt' must be at most {MAX_RECEIPT_BYTES} bytes, or null")
    return EventsPage(tuple(events), _bool(msg, "done"), receipt)


def events_page_to_wire(events: Sequence[Mapping[str, Any]], *, done: bool, receipt: bytes | None) -> dict[str, Any]:
    """The provider's answer from a :meth:`exeunit.activity.Batch.events_after` page (already wire-shaped)."""
    return {"events": list(events), "done": done, "receipt": receipt}
