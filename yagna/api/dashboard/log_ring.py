"""The node's recent warnings and errors, kept in memory for the dashboard.

:class:`RecentLogs` is a logging handler the node attaches to the root logger
while it runs: the last :data:`KEEP` records at WARNING or above, each message
cut to :data:`MAX_MESSAGE` characters (a peer's text can end up in a log line).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

KEEP = 100
MAX_MESSAGE = 500


@dataclass(frozen=True)
class LogLine:
    created: float
    level: str
    logger: str
    message: str


class RecentLogs(logging.Handler):
    def __init__(self, keep: int = KEEP, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._lines: deque[LogLine] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            message += f" ({record.exc_info[0].__name__})"
        self._lines.append(LogLine(record.created, record.levelname, record.name, message[:MAX_MESSAGE]))

    def lines(self) -> list[LogLine]:
        """Newest first."""
        self.acquire()  # emit runs under this lock (Handler.handle), from any thread
        try:
            return list(reversed(self._lines))
        finally:
            self.release()
