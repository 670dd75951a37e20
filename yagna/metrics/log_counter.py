"""Warnings and errors counted by level and logger: the node's "errors by kind".

:class:`LogCounter` is a logging handler the node attaches to the root logger
while it runs. Every record at WARNING or above adds one to ``(level, logger)``;
levels are folded to ``warning``, ``error`` and ``critical``, and at most
:data:`MAX_LOGGERS` logger names are kept, later ones count as ``other``.
A logger name is ours or a library's, never a peer's text, but the bound holds
whatever the names. Counting is a dict update under the handler's lock.
"""

from __future__ import annotations

import logging

from yagna.metrics.bounded import BoundedLabels
from yagna.metrics.exposition import Family

MAX_LOGGERS = 50


def level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    return "warning"


class LogCounter(logging.Handler):
    def __init__(self, max_loggers: int = MAX_LOGGERS) -> None:
        super().__init__(logging.WARNING)
        self._names = BoundedLabels(max_loggers)
        self._counts: dict[tuple[str, str], int] = {}

    def emit(self, record: logging.LogRecord) -> None:  # under self.lock (Handler.handle)
        key = (level_name(record.levelno), self._names(record.name))
        self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self) -> dict[tuple[str, str], int]:
        """``(level, logger) -> records`` since the handler was made."""
        self.acquire()  # emit runs under this lock, from any thread
        try:
            return dict(self._counts)
        finally:
            self.release()

    def family(self) -> Family:
        f = Family("yagna_errors_total", "counter",
                   "Log records at WARNING or above since start, by level (warning, error, critical) and logger "
                   f"(at most {self._names.limit} loggers, then logger=\"other\").")
        for (level, logger), n in sorted(self.counts().items()):
            f.add(n, level=level, logger=logger)
        return f
