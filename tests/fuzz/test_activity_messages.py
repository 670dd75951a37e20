"""Fuzz the activity protocol's typed codecs (``exeunit.messages``): requests a provider decodes,
and the answers a requestor decodes (created, started, state, destroyed, events pages). Only
:class:`MessageInvalid` (and :class:`ScriptError` for an exec's script) may escape."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from exeunit.errors import ScriptError
from exeunit.messages import (
    CommandResult,
    MessageInvalid,
    decode_created,
    decode_destroyed,
    decode_event,
    decode_events_page,
    decode_request,
    decode_result,
    decode_started,
    decode_state,
    result_to_wire,
)

from .strategies import FUZZ, cbor_values, mutated, only

HEX = "ab" * 32
REQUESTS: list[dict[str, object]] = [
    {"op": "create", "agreement_id": "ag"},
    {"op": "exec", "activity_id": "a1", "script": [{"deploy": {"image": "sha256:" + HEX}}, {"run": {"argv": ["true"]}}]},
    {"op": "events", "activity_id": "a1", "batch_id": "b1", "after": 0, "wait_ms": 100},
    {"op": "state", "activity_id": "a1"},
    {"op": "destroy", "activity_id": "a1"},
]
RESULT = result_to_wire(CommandResult(index=0, command="run", exit_code=0, stdout=b"hi\xff", stderr=b"",
                                      started_at=1.0, finished_at=2.0))
PAGE: dict[str, object] = {"events": [{"seq": 1, "kind": "stdout", "index": 0, "data": b"hi\xff"},
                                      {"seq": 2, "kind": "finished", "index": 0, "result": RESULT},
                                      {"seq": 3, "kind": "dropped", "index": 0, "from_seq": 1, "bytes": 10},
                                      {"seq": 4, "kind": "done", "reason": None}],
                           "done": True, "receipt": b"\x00" * 8}
REPLIES: list[dict[str, object]] = [
    {"activity_id": "a1", "keepalive_s": 30.0},
    {"batch_id": "b1"},
    {"state": "ready", "reason": None, "usage": {"golem.usage.duration_sec": 1.5}},
    {"state": "terminated", "usage": None},
    PAGE,
]


@FUZZ
@given(st.one_of(cbor_values, *(mutated(m) for m in REQUESTS)))
@example({"op": "events", "activity_id": "a", "batch_id": "b", "after": 2**70, "wait_ms": -1})
def test_activity_request_decoder_raises_only_typed_errors(obj: object) -> None:
    only((MessageInvalid, ScriptError), decode_request, obj)


@FUZZ
@given(st.one_of(cbor_values, *(mutated(m) for m in REPLIES)), st.integers(0, 5))
@example({"state": [], "reason": None, "usage": None}, 0)  # issue 11 row 2
@example({"events": [{"seq": "1", "kind": "stdout", "index": 0, "data": b""}], "done": False}, 0)  # row 3
def test_activity_reply_decoders_raise_only_message_invalid(obj: object, after: int) -> None:
    for decode in (decode_created, decode_started, decode_state, decode_destroyed, decode_result, decode_event):
        only(MessageInvalid, decode, obj)
    only(MessageInvalid, decode_events_page, obj, after=after)


@FUZZ
@given(mutated(RESULT))
def test_command_result_decoder_raises_only_message_invalid(obj: object) -> None:
    only(MessageInvalid, decode_result, obj)
