"""The activity protocol's codecs: round trips, the provider's pages within the reply limit, and garbage in
yielding only the typed error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.activity import MAX_EVENT_DATA_BYTES, Batch, State
from exeunit.commands import Run, Start
from exeunit.errors import ScriptError
from exeunit.messages import (
    MAX_EVENTS_PER_PAGE,
    PAGE_BYTES,
    ActivityCreated,
    BatchStarted,
    Create,
    Destroy,
    Destroyed,
    EventKind,
    Exec,
    GetEvents,
    GetState,
    MessageInvalid,
    StateReply,
    decode_created,
    decode_destroyed,
    decode_event,
    decode_events_page,
    decode_request,
    decode_result,
    decode_started,
    decode_state,
    encode_request,
    events_page_to_wire,
)
from exeunit.runtime import ExecResult
from tests.fuzz.strategies import FUZZ, cbor_values, mutated
from yagna.activity_service.protocol import ACTIVITY
from yagna.core.errors import WireError
from yagna.core.wire import decode, encode


def test_requests_round_trip() -> None:
    for req in (Create("agr"), Exec("act", (Start(), Run(argv=["echo", "hi"]))), GetEvents("act", "b", 7, 5000),
                GetState("act"), Destroy("act")):
        assert decode_request(decode(encode(encode_request(req)))) == req


def test_replies_round_trip() -> None:
    assert decode_created(ActivityCreated("a", 30.0).to_wire()) == ActivityCreated("a", 30.0)
    assert decode_started(BatchStarted("b").to_wire()) == BatchStarted("b")
    reply = StateReply(State.RUNNING, None, {"golem.usage.duration_sec": 2.5})
    assert decode_state(decode(encode(reply.to_wire()))) == reply
    assert decode_destroyed(Destroyed(State.TERMINATED).to_wire()) == Destroyed(State.TERMINATED)


def test_the_malformed_answers_of_the_report_are_typed_errors() -> None:
    with pytest.raises(MessageInvalid) as exc:
        decode_state(["a", "list"])  # issue 11 row 2
    assert isinstance(exc.value, WireError) and exc.value.code == "bad-message"
    with pytest.raises(MessageInvalid):
        decode_events_page({"events": [{"seq": "x", "index": 0, "kind": "started"}], "done": False}, after=0)  # row 3
    with pytest.raises(ScriptError):
        decode_request({"op": "exec", "activity_id": "a", "script": "rm -rf /"})
    with pytest.raises(MessageInvalid):
        decode_request({"op": "events", "activity_id": "a", "batch_id": "b", "after": -1, "wait_ms": 0})


def _batch(plan: list[list[bytes]], exit_code: int = 0, buffer: int = 4 * 1024 * 1024) -> Batch:
    batch = Batch("b", [Run(argv=["x"]) for _ in plan], max_buffered_bytes=buffer)
    for index, chunks in enumerate(plan):
        batch.begin(index, now=float(index))
        for chunk in chunks:
            batch.output(index, "stdout" if len(chunk) % 2 else "stderr", chunk)
        batch.finish(index, now=index + 0.5, exec_result=ExecResult(exit_code=exit_code, stdout=b"", stderr=b"",
                                                                    started_at=0.0, finished_at=1.0))
    batch.close()
    return batch


def _read_all(batch: Batch) -> tuple[list[Any], int]:
    """Page through the batch as the provider answers and the requestor decodes; (events, largest frame)."""
    after, largest = 0, 0
    events: list[Any] = []
    while True:
        page = batch.events_after(after, MAX_EVENTS_PER_PAGE, max_bytes=PAGE_BYTES)
        done = not page or page[-1]["seq"] >= batch.last_seq
        frame = encode({"ok": events_page_to_wire(page, done=done, receipt=b"r" * 200)})
        largest = max(largest, len(frame))
        reply = decode(frame, max_size=ACTIVITY.max_response_size)
        assert isinstance(reply, dict)
        decoded = decode_events_page(reply["ok"], after=after)
        events += decoded.events
        if decoded.done:
            return events, largest
        after = decoded.events[-1].seq


def test_invalid_utf8_past_the_reply_limit_is_paged_and_exact() -> None:
    """Issue 11 row 11: 6 MB of 0xFF grew 3x as text and the answer went past the 8 MiB limit."""
    size = 6 * 1000 * 1000
    batch = _batch([[b"\xff" * 100_000] * (size // 100_000)], exit_code=3, buffer=size * 2)
    events, largest = _read_all(batch)
    assert largest < ACTIVITY.max_response_size // 3
    data = b"".join(e.data for e in events if e.kind is EventKind.STDERR)
    assert data == b"\xff" * size
    result = next(e.result for e in events if e.result is not None)
    assert result.exit_code == 3 and result.stdout == b"" and result.stderr == b"\xff" * 64 * 1024
    assert result.stderr_dropped == size - 64 * 1024 and result.stderr_truncated


@FUZZ
@given(st.lists(st.lists(st.binary(max_size=3 * MAX_EVENT_DATA_BYTES), max_size=4), min_size=1, max_size=3))
def test_every_batch_decodes_and_every_page_fits(plan: list[list[bytes]]) -> None:
    batch = _batch(plan)
    events, largest = _read_all(batch)
    assert largest <= PAGE_BYTES + 2 * MAX_EVENT_DATA_BYTES + 64 * 1024
    assert [e.seq for e in events] == list(range(1, batch.last_seq + 1))
    for index, chunks in enumerate(plan):
        for stream in (EventKind.STDOUT, EventKind.STDERR):
            want = b"".join(c for c in chunks if (len(c) % 2 == 1) == (stream is EventKind.STDOUT))
            assert b"".join(e.data for e in events if e.kind is stream and e.index == index) == want


VALID_REQUEST = {"op": "events", "activity_id": "a", "batch_id": "b", "after": 3, "wait_ms": 100}
VALID_PAGE = {"events": [{"seq": 1, "index": 0, "kind": "stdout", "data": b"hi"},
                         {"seq": 2, "index": 0, "kind": "finished", "result": {
                             "index": 0, "command": "run", "exit_code": 0, "stdout": b"hi", "stderr": b"",
                             "started_at": 1.0, "finished_at": 2.0, "error": None}},
                         {"seq": 3, "index": 0, "kind": "dropped", "from_seq": 1, "bytes": 5},
                         {"seq": 4, "index": None, "kind": "done", "reason": None}], "done": True, "receipt": None}


@FUZZ
@given(st.one_of(cbor_values, mutated(VALID_PAGE), mutated(VALID_REQUEST),
                 mutated({"state": "ready", "reason": None, "usage": {"a": 1}})))
def test_garbage_yields_only_the_typed_error(value: object) -> None:
    for decoder in (decode_request, decode_created, decode_started, decode_state, decode_destroyed, decode_event,
                    decode_result, lambda v: decode_events_page(v, after=0)):
        try:
            decoder(value)
        except (MessageInvalid, ScriptError):
            pass
