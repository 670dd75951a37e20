from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.daemons import Daemon


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """A list to put started daemons in; all are killed (by PID) at teardown."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real data dir or API environment."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for var in ("YAGNA_DATA_DIR", "YAGNA_API_URL", "YAGNA_APPKEY", "YAGNA_API_PORT"):
        monkeypatch.delenv(var, raising=False)
