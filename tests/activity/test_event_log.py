"""The requestor's per-batch event log: bounded by count and bytes, forgetting what was read."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from yagna.activity_service.events import EventLog


def _log(**kw: Any) -> EventLog[bytes]:
    return EventLog(lambda e: {"kind": "stdout", "n": len(e)}, len, **kw)


def test_bounded_by_bytes_and_by_count() -> None:
    log = _log(max_events=100, max_bytes=1000)
    for seq in range(1, 21):
        log.append(seq, b"x" * 100)
    assert log.bytes == 1000 and len(log) == 10 and log.dropped == 10
    log = _log(max_events=5, max_bytes=10**9)
    for seq in range(1, 1001):
        log.append(seq, b"")
    assert len(log) == 5 and log.dropped == 995
    assert [e["seq"] for e in log.after(0)] == [0, 996, 997, 998, 999, 1000]
    assert log.after(0)[0] == {"seq": 0, "kind": "dropped", "from_seq": 1, "first_kept": 996}


def test_a_huge_event_is_kept_alone() -> None:
    log = _log(max_bytes=10)
    log.append(1, b"a")
    log.append(2, b"b" * 50)  # the newest is always kept: it may be the batch's end
    assert [e["seq"] for e in log.after(1)] == [2]


def test_ack_forgets_and_a_seq_past_the_end_loses_nothing_later() -> None:
    log = _log()
    for seq in (1, 2, 3):
        log.append(seq, b"abc")
    log.ack(2)
    assert len(log) == 1 and log.bytes == 3
    log.ack(10**9)  # a confused reader: nothing still to come is skipped
    log.append(4, b"d")
    assert [e["seq"] for e in log.after(3)] == [4]


def test_clear_keeps_only_the_end_of_a_closed_log() -> None:
    log = _log()
    log.append(1, b"abc")
    log.clear()
    assert len(log) == 0 and log.closed
    log = _log()
    log.append(1, b"abc")
    log.append(2, b"end")
    log.close()
    log.clear()
    assert [e["seq"] for e in log.after(1)] == [2] and log.bytes == 3


async def test_readers_wait_for_news(autojump_clock: trio.testing.MockClock) -> None:
    log = _log()

    async def later() -> None:
        await trio.sleep(1)
        log.append(1, b"hi")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        assert await log.wait_after(0, 0.5) == []
        assert [e["seq"] for e in await log.wait_after(0, 5)] == [1]
