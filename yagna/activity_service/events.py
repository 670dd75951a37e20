"""A bounded, long-pollable event log (one per batch on the requestor side).

What a provider can make a requestor hold per batch is bounded by count
(:data:`MAX_EVENTS`) and by bytes (:data:`MAX_BYTES`, each event charged its
output plus a fixed overhead); older events are dropped first and a reader that
asks for them is told by a ``dropped`` event. Events the reader has (it asks
for those after them) are evicted at once, and :meth:`EventLog.clear` frees
everything when the activity is destroyed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

MAX_EVENTS = 10_000
MAX_BYTES = 4 * 1024 * 1024
"""Same as the provider's buffer of undelivered output per batch."""

T = TypeVar("T")


class EventLog(Generic[T]):
    """Events with increasing ``seq``; readers wait for news with a timeout.

    ``render`` turns a kept event into the dict readers get; ``cost`` is its
    size in bytes for the byte bound.
    """

    def __init__(self, render: Callable[[T], dict[str, Any]], cost: Callable[[T], int], *,
                 max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES) -> None:
        self._events: deque[tuple[int, int, T]] = deque()
        self._render = render
        self._cost = cost
        self._max = max_events
        self._max_bytes = max_bytes
        self.bytes = 0
        self._changed = trio.Event()
        self._last_seq = 0
        self._acked = 0
        self.dropped = 0
        """Events dropped unread (past a bound, or cleared)."""
        self.closed = False

    def __len__(self) -> int:
        return len(self._events)

    def append(self, seq: int, event: T) -> None:
        """Add ``event`` (``seq`` above every earlier one)."""
        if seq <= self._last_seq:
            raise ValueError(f"seq {seq} does not follow {self._last_seq}")
        self._last_seq = seq
        if seq <= self._acked:
            return
        cost = self._cost(event)
        self._events.append((seq, cost, event))
        self.bytes += cost
        while len(self._events) > self._max or (self.bytes > self._max_bytes and len(self._events) > 1):
            self._pop()
            self.dropped += 1
        self._wake()

    def ack(self, seq: int) -> None:
        """The reader has every event up to ``seq``: forget them (a ``seq`` past the log's end counts as its end)."""
        self._acked = max(self._acked, min(seq, self._last_seq))
        while self._events and self._events[0][0] <= seq:
            self._pop()

    def clear(self) -> None:
        """Forget every event (nobody will read them) and end the log.

        The last event of a closed log (the batch's end) stays, so a late reader still learns it ended.
        """
        last = self._events[-1] if self.closed and self._events else None
        self.dropped += len(self._events) - (last is not None)
        self._events.clear()
        self.bytes = 0
        if last is not None:
            self._events.append(last)
            self.bytes = last[1]
        self.close()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _pop(self) -> None:
        _, cost, _ = self._events.popleft()
        self.bytes -= cost

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def after(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        out = [{"seq": s, **self._render(e)} for s, _, e in self._events if s > seq][:limit]
        first = self._events[0][0] if self._events else self._last_seq + 1
        if seq + 1 < first and seq < self._last_seq:
            out.insert(0, {"seq": seq, "kind": "dropped", "from_seq": seq + 1, "first_kept": first})
        return out

    async def wait_after(self, seq: int, timeout: float, limit: int = 1000) -> list[dict[str, Any]]:
        with trio.move_on_after(timeout):
            while not self.after(seq, 1) and not self.closed:
                await self._changed.wait()
        return self.after(seq, limit)
