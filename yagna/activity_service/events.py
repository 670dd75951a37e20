"""A bounded, long-pollable event log (one per batch on the requestor side)."""

from __future__ import annotations

from typing import Any

import trio


class EventLog:
    """Events with increasing ``seq``; readers wait for news with a timeout.

    At most ``max_events`` are kept: older ones are dropped and a reader that
    asks for them is told by a ``dropped`` event (it fell behind).
    """

    def __init__(self, max_events: int = 10_000) -> None:
        self._events: list[dict[str, Any]] = []
        self._max = max_events
        self._changed = trio.Event()
        self.closed = False

    def append(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if len(self._events) > self._max:
            del self._events[: len(self._events) - self._max]
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def last_seq(self) -> int:
        return int(self._events[-1]["seq"]) if self._events else 0

    def after(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        out = [e for e in self._events if e["seq"] > seq][:limit]
        if self._events and seq + 1 < self._events[0]["seq"]:
            out.insert(0, {"seq": seq, "kind": "dropped", "first_kept": self._events[0]["seq"]})
        return out

    async def wait_after(self, seq: int, timeout: float, limit: int = 1000) -> list[dict[str, Any]]:
        with trio.move_on_after(timeout):
            while not self.after(seq, 1) and not self.closed:
                await self._changed.wait()
        return self.after(seq, limit)
