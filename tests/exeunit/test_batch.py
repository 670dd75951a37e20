"""Batch bookkeeping: results, the seq-numbered event log, and its bounded buffer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.activity import EVENT_OVERHEAD_BYTES, MAX_EVENT_DATA_BYTES, Batch
from exeunit.commands import Command, Deploy, Run, Start, TransferIn
from exeunit.errors import IllegalTransition
from exeunit.runtime import ExecResult
from yagna.core.wire import decode, encode

IMAGE = "sha256:" + "ab" * 32
SCRIPT: list[Command] = [Deploy(image=IMAGE), Start(), Run(argv=["echo", "hi"]), Run(argv=["false"])]


def drain(batch: Batch, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        events = batch.events_after(after, limit)
        if not events:
            return out
        out += events
        after = events[-1]["seq"]


def exec_result(**kw: Any) -> ExecResult:
    base: dict[str, Any] = {"exit_code": 0, "stdout": b"", "stderr": b"", "started_at": 10.0, "finished_at": 11.0}
    return ExecResult(**{**base, **kw})


def test_a_whole_batch() -> None:
    batch = Batch("b1", SCRIPT)
    batch.begin(0, now=1.0)
    assert batch.current == 0
    r0 = batch.finish(0, now=2.0)
    batch.begin(1, now=2.0)
    batch.finish(1, now=3.0)
    batch.begin(2, now=3.0)
    batch.output(2, "stdout", b"hi\n")
    r2 = batch.finish(2, now=4.0, exec_result=exec_result(stdout=b"hi\n"))
    batch.begin(3, now=4.0)
    r3 = batch.finish(3, now=5.0, exec_result=exec_result(exit_code=1, stderr=b"no"))
    batch.close()
    assert batch.done and batch.done_reason is None and batch.current is None

    assert r0 == {
        "index": 0,
        "command": "deploy",
        "exit_code": None,
        "stdout": b"",
        "stderr": b"",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "stdout_dropped": 0,
        "stderr_dropped": 0,
        "started_at": 1.0,
        "finished_at": 2.0,
        "timed_out": False,
        "oom_killed": False,
        "error": None,
    }
    assert r2["stdout"] == b"hi\n" and r2["exit_code"] == 0 and (r2["started_at"], r2["finished_at"]) == (10.0, 11.0)
    assert r3["stderr"] == b"no" and r3["exit_code"] == 1
    assert batch.results == [r0, batch.results[1], r2, r3]

    events = drain(batch)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)) == list(range(1, batch.last_seq + 1))
    assert [(e["index"], e["kind"]) for e in events] == [
        (0, "started"),
        (0, "finished"),
        (1, "started"),
        (1, "finished"),
        (2, "started"),
        (2, "stdout"),
        (2, "finished"),
        (3, "started"),
        (3, "stderr"),  # not streamed: emitted from the ExecResult
        (3, "finished"),
        (None, "done"),
    ]
    assert events[5]["data"] == b"hi\n" and events[8]["data"] == b"no"
    assert events[6]["result"] == r2
    assert events[-1] == {"seq": 11, "index": None, "kind": "done", "reason": None}
    assert decode(encode(events)) == events  # events and results travel as canonical CBOR


def test_events_after_pages_and_copies() -> None:
    batch = Batch("b", [Run(argv=["x"])])
    batch.begin(0, now=0.0)
    for i in range(10):
        batch.output(0, "stdout", f"{i}".encode())
    page = batch.events_after(0, 3)
    assert [e["seq"] for e in page] == [1, 2, 3]
    assert [e["seq"] for e in batch.events_after(3, 100)] == list(range(4, 12))
    assert batch.events_after(11, 100) == [] and batch.events_after(0, 0) == []
    page[1]["data"] = b"mutated"
    assert batch.events_after(1, 1)[0]["data"] == b"0"


def test_error_results_and_early_close() -> None:
    batch = Batch("b", [Start(), TransferIn(dest="/work/in/x", sha256="00" * 32, size=1), Run(argv=["x"])])
    batch.begin(0, now=0.0)
    batch.finish(0, now=1.0)
    batch.begin(1, now=1.0)
    result = batch.finish(1, now=2.0, error="hash-mismatch: content has sha256 ...")
    assert result["error"].startswith("hash-mismatch") and result["command"] == "transfer_in"
    batch.close("command 1 failed")
    assert batch.results[2] is None
    assert drain(batch)[-1] == {"seq": batch.last_seq, "index": None, "kind": "done", "reason": "command 1 failed"}
    batch.close("again")  # no-op
    assert batch.done_reason == "command 1 failed"
    with pytest.raises(IllegalTransition):
        batch.begin(2, now=3.0)


def test_order_is_enforced() -> None:
    batch = Batch("b", SCRIPT)
    with pytest.raises(IllegalTransition):
        batch.begin(1, now=0.0)
    with pytest.raises(IllegalTransition):
        batch.output(0, "stdout", b"x")
    with pytest.raises(IllegalTransition):
        batch.finish(0, now=0.0)
    batch.begin(0, now=0.0)
    with pytest.raises(IllegalTransition):
        batch.begin(0, now=0.0)
    with pytest.raises(IllegalTransition):
        batch.output(1, "stdout", b"x")
    with pytest.raises(ValueError):
        batch.output(0, "stdin", b"x")
    batch.finish(0, now=1.0)
    with pytest.raises(IllegalTransition):
        batch.finish(0, now=1.0)
    with pytest.raises(IllegalTransition):
        batch.begin(0, now=1.0)


def test_run_flags_come_from_the_exec_result() -> None:
    batch = Batch("b", [Run(argv=["sleep", "1000"])])
    batch.begin(0, now=0.0)
    result = batch.finish(
        0, now=5.0, exec_result=exec_result(exit_code=None, timed_out=True, oom_killed=True, stderr_truncated=True)
    )
    assert result["exit_code"] is None and result["timed_out"] and result["oom_killed"]
    assert result["stderr_truncated"] and not result["stdout_truncated"]


def test_streamed_output_wins_over_the_exec_result_copy() -> None:
    batch = Batch("b", [Run(argv=["x"])])
    batch.begin(0, now=0.0)
    batch.output(0, "stdout", b"streamed")
    result = batch.finish(0, now=1.0, exec_result=exec_result(stdout=b"streamed"))
    assert result["stdout"] == b"streamed"
    assert [e["kind"] for e in drain(batch)] == ["started", "stdout", "finished"]


def test_output_is_binary_safe_and_utf8_splits_are_held_back() -> None:
    batch = Batch("b", [Run(argv=["x"])])
    batch.begin(0, now=0.0)
    snow = "☃".encode()
    batch.output(0, "stdout", b"a" + snow[:1])
    batch.output(0, "stdout", snow[1:] + b"b")
    batch.output(0, "stderr", b"\xff")
    batch.output(0, "stderr", snow[:2])  # incomplete at the end: flushed as it is on finish
    result = batch.finish(0, now=1.0)
    events = drain(batch)
    stdout = [e["data"] for e in events if e["kind"] == "stdout"]
    assert stdout == [b"a", snow + b"b"]  # every piece is valid UTF-8: the split character waited
    assert b"".join(e["data"] for e in events if e["kind"] == "stderr") == b"\xff" + snow[:2]
    assert result["stdout"] == "a☃b".encode() and result["stderr"] == b"\xff" + snow[:2]


def test_big_chunks_become_events_of_bounded_size() -> None:
    batch = Batch("b", [Run(argv=["x"])])
    batch.begin(0, now=0.0)
    data = "é".encode() * (MAX_EVENT_DATA_BYTES + 5)  # 2-byte characters, cut at character boundaries
    batch.output(0, "stdout", data)
    batch.finish(0, now=1.0)
    pieces = [e["data"] for e in drain(batch) if e["kind"] == "stdout"]
    assert len(pieces) == 3 and all(len(p) <= MAX_EVENT_DATA_BYTES for p in pieces)
    assert b"".join(pieces) == data and all(p.decode() for p in pieces)


def test_events_after_pages_by_bytes_and_always_returns_one() -> None:
    batch = Batch("b", [Run(argv=["x"])])
    batch.begin(0, now=0.0)
    for _ in range(10):
        batch.output(0, "stdout", b"\xff" * 1000)
    page = batch.events_after(0, 100, max_bytes=2500)
    assert [e["seq"] for e in page] == [1, 2, 3]  # 64 + 2 x 1064 fit, a third chunk would not
    assert len(batch.events_after(1, 100, max_bytes=1)) == 1


def test_ack_forgets_delivered_events_and_discard_forgets_all() -> None:
    batch = Batch("b", [Run(argv=["x"])])
    batch.begin(0, now=0.0)
    for _ in range(5):
        batch.output(0, "stdout", b"y" * 100)
    assert batch.buffered_bytes == 5 * (100 + EVENT_OVERHEAD_BYTES)
    batch.ack(3)  # started, two chunks
    assert batch.buffered_bytes == 3 * (100 + EVENT_OVERHEAD_BYTES)
    assert [e["seq"] for e in drain(batch)] == [4, 5, 6]
    assert [e["seq"] for e in drain(batch, 2)] == [4, 5, 6]  # nothing older is kept
    batch.discard()
    batch.output(0, "stdout", b"z")
    batch.finish(0, now=1.0)
    batch.close()
    assert batch.buffered_bytes == 0 and drain(batch) == []
    assert batch.results[0] is not None and batch.results[0]["stdout"].endswith(b"z")


def test_result_output_keeps_the_tail_and_counts_what_was_cut() -> None:
    batch = Batch("b", [Run(argv=["x"])], max_result_output_bytes=10)
    batch.begin(0, now=0.0)
    batch.output(0, "stdout", b"0123456789")
    batch.output(0, "stdout", b"\xff\xfeabc")
    result = batch.finish(0, now=1.0, exec_result=exec_result(exit_code=3))
    assert result["stdout_truncated"] and result["stdout"] == b"56789\xff\xfeabc"  # the exact last 10 bytes
    assert result["stdout_dropped"] == 5 and result["exit_code"] == 3
    assert not result["stderr_truncated"] and result["stderr_dropped"] == 0


def test_buffer_drops_oldest_output_and_leaves_a_marker() -> None:
    chunk = b"x" * 100
    cost = len(chunk) + EVENT_OVERHEAD_BYTES
    batch = Batch("b", [Run(argv=["a"]), Run(argv=["b"])], max_buffered_bytes=3 * cost)
    batch.begin(0, now=0.0)  # seq 1
    for _ in range(5):  # seqs 2..6; 2 and 3 are dropped
        batch.output(0, "stdout", chunk)
    assert batch.buffered_bytes == 3 * cost and batch.dropped_events == 2
    events = drain(batch)
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "started"), (3, "dropped"), (4, "stdout"), (5, "stdout"), (6, "stdout")]
    assert events[1] == {"seq": 3, "index": 0, "kind": "dropped", "from_seq": 2, "bytes": 200}

    # a reader that had already seen seq 2 is told only about seq 3
    assert batch.events_after(2, 1) == [{"seq": 3, "index": 0, "kind": "dropped", "from_seq": 3, "bytes": 200}]
    # a reader that saw everything up to 3 sees no marker
    assert batch.events_after(3, 1)[0]["seq"] == 4

    batch.finish(0, now=1.0)  # seq 7
    batch.begin(1, now=1.0)  # seq 8
    for _ in range(4):  # seqs 9..12: drops 4, 5, 6 (run of cmd 0) and 9 (run of cmd 1)
        batch.output(1, "stdout", chunk)
    events = drain(batch)
    assert [(e["seq"], e["index"], e["kind"]) for e in events] == [
        (1, 0, "started"),
        (6, 0, "dropped"),  # one marker for the whole run 2..6
        (7, 0, "finished"),
        (8, 1, "started"),
        (9, 1, "dropped"),
        (10, 1, "stdout"),
        (11, 1, "stdout"),
        (12, 1, "stdout"),
    ]
    assert events[1]["from_seq"] == 2 and events[4]["from_seq"] == 9
    # the result still has the tail
    assert batch.results[0] is not None and batch.results[0]["stdout"].endswith(b"x" * 100)


def test_a_chunk_bigger_than_the_buffer_is_dropped_at_once() -> None:
    batch = Batch("b", [Run(argv=["a"])], max_buffered_bytes=50)
    batch.begin(0, now=0.0)
    batch.output(0, "stderr", b"y" * 1000)
    assert batch.buffered_bytes == 0
    assert [e["kind"] for e in drain(batch)] == ["started", "dropped"]


def test_many_tiny_chunks_are_bounded_by_count() -> None:
    batch = Batch("b", [Run(argv=["a"])], max_buffered_bytes=100 * (1 + EVENT_OVERHEAD_BYTES))
    batch.begin(0, now=0.0)
    for _ in range(50_000):
        batch.output(0, "stdout", b"z")
    assert batch.buffered_bytes <= batch.max_buffered_bytes
    events = drain(batch)
    assert len(events) == 1 + 1 + 100  # started, one marker, the last 100 chunks
    assert batch.dropped_events == 50_000 - 100


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.lists(st.binary(min_size=0, max_size=40), max_size=6)),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 400),
    st.integers(0, 60),
)
def test_property_log_invariants(plan: list[tuple[int, list[bytes]]], buffer: int, reader_at: int) -> None:
    commands: list[Command] = [Run(argv=["x"]) for _ in plan]
    batch = Batch("b", commands, max_buffered_bytes=buffer)
    for index, (_, chunks) in enumerate(plan):
        batch.begin(index, now=float(index))
        for chunk in chunks:
            batch.output(index, "stdout", chunk)
        batch.finish(index, now=float(index) + 0.5)
    batch.close()
    assert 0 <= batch.buffered_bytes <= buffer
    events = drain(batch)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and seqs[-1] == batch.last_seq
    # every started/finished/done is kept, in order
    control = [(e["index"], e["kind"]) for e in events if e["kind"] in ("started", "finished", "done")]
    assert control == [p for i in range(len(plan)) for p in ((i, "started"), (i, "finished"))] + [(None, "done")]
    # every seq is either present or covered by exactly one marker
    covered: set[int] = set()
    for e in events:
        if e["kind"] == "dropped":
            span = set(range(e["from_seq"], e["seq"] + 1))
            assert not span & covered and not span & set(seqs[: seqs.index(e["seq"])])
            covered |= span
    assert set(range(1, batch.last_seq + 1)) == (set(seqs) - {e["seq"] for e in events if e["kind"] == "dropped"}) | covered
    # a reader resuming anywhere sees a suffix of the log, markers clamped to what it missed
    later = drain(batch, reader_at)
    assert all(e["seq"] > reader_at for e in later)
    assert all(e["from_seq"] > reader_at for e in later if e["kind"] == "dropped")
    assert [e["seq"] for e in later] == [s for s in seqs if s > reader_at]
