"""A bounded, numbered log of one replica's output, for any number of followers."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import trio

MAX_LOG_BYTES = 1024 * 1024
"""Output kept per replica (the oldest lines go first)."""
MAX_LINE_BYTES = 16 * 1024
"""A longer line is cut into pieces of this size."""


@dataclass(frozen=True)
class LogLine:
    seq: int
    at: float
    source: str
    """The replica (``web-0``), or ``deployment`` for the deployment's own news."""
    stream: str
    """``stdout``, ``stderr``, or ``yagna`` for what the requestor's daemon says."""
    text: str

    def view(self) -> dict[str, object]:
        return {"seq": self.seq, "at": self.at, "source": self.source, "stream": self.stream, "text": self.text}


class LogRing:
    """Lines numbered from 1; ``after(seq)`` gives what followed, ``wait`` blocks for more."""

    def __init__(self, max_bytes: int = MAX_LOG_BYTES) -> None:
        self._lines: deque[LogLine] = deque()
        self._bytes = 0
        self._max = max_bytes
        self.last_seq = 0
        self._partial: dict[str, bytes] = {}
        """``source/stream`` -> the start of a line not ended yet (at most MAX_LINE_BYTES)."""
        self._changed = trio.Event()

    def feed(self, source: str, stream: str, data: bytes) -> None:
        """Raw output of a stream; complete lines are logged, a partial one waits for its end."""
        key = f"{source}/{stream}"
        buf = self._partial.pop(key, b"") + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self.add(stream, source, line.decode("utf-8", errors="replace"))
        while len(rest) > MAX_LINE_BYTES:
            self.add(stream, source, rest[:MAX_LINE_BYTES].decode("utf-8", errors="replace"))
            rest = rest[MAX_LINE_BYTES:]
        if rest:
            self._partial[key] = rest

    def add(self, stream: str, source: str, text: str) -> None:
        self.last_seq += 1
        line = LogLine(self.last_seq, time.time(), source, stream, text)
        self._lines.append(line)
        self._bytes += len(text) + 64
        while self._bytes > self._max and len(self._lines) > 1:
            old = self._lines.popleft()
            self._bytes -= len(old.text) + 64
        self._changed.set()
        self._changed = trio.Event()

    def after(self, seq: int, limit: int = 1000) -> list[LogLine]:
        out = [line for line in self._lines if line.seq > seq]
        return out[:limit]

    def tail(self, n: int) -> list[LogLine]:
        return list(self._lines)[-n:] if n > 0 else []

    async def wait(self, seq: int, timeout: float) -> None:
        """Until a line after ``seq`` exists, or ``timeout`` passed."""
        with trio.move_on_after(timeout):
            while self.last_seq <= seq:
                await self._changed.wait()
