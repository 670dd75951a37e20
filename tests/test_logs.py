"""Daemon logs: a log file is rotated, so logs never grow without bound."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from yagna.logs import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        h.close()
    root.handlers[:], root.level = handlers, level


def test_log_file_is_rotated_and_bounded(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "yagna.log"
    setup_logging("info", "json", log_file, max_bytes=10_000, backups=2)
    log = logging.getLogger("yagna.test")
    for i in range(2_000):
        log.info("line %d %s", i, "x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["yagna.log", "yagna.log.1", "yagna.log.2"]
    assert all((tmp_path / f).stat().st_size <= 10_000 + 200 for f in files)
    assert '"line 1999' in log_file.read_text()
