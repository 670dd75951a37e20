"""Log setup for the daemon: one line per event, text or JSON."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 4
"""A log file is rotated at 10 MiB and 4 old ones are kept: at most 50 MiB of logs per node."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]  # typeshed: (float | None); gmtime takes that too

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")


def setup_logging(level: str = "info", fmt: str = "text", file: Path | None = None, *,
                  max_bytes: int = LOG_FILE_MAX_BYTES, backups: int = LOG_FILE_BACKUPS) -> None:
    """Log to stderr, or to ``file`` rotated at ``max_bytes`` keeping ``backups`` old files."""
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # py-libp2p logs normal events (unsupported protocols, redial failures, a
    # peer closing during identify) at ERROR with multi-line dumps; our own
    # layer reports what matters. LIBP2P_DEBUG still works for deep dives.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL if level.lower() != "debug" else logging.WARNING)
    for noisy in ("hypercorn.error", "multiaddr", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
