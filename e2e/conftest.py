from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.daemons import Daemon


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """A list to put started daemons in; all are stopped (by PID) at teardown.

    SIGTERM first: a provider that shuts down removes its containers and work
    volumes (a SIGKILL mid-removal would leave one behind for the suite's check).
    """
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.terminate()
    for d in started:
        d.stop(timeout=15)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real data dir or API environment."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for var in ("YAGNA_DATA_DIR", "YAGNA_API_URL", "YAGNA_APPKEY", "YAGNA_API_PORT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def test_image() -> str:
    """The local busybox test image (built without a registry); its id."""
    import os
    import subprocess

    if not _docker_up():
        if os.environ.get("CI"):
            pytest.fail("no Docker engine reachable; CI must run the exe-unit tests for real")
        pytest.skip("no Docker engine reachable")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(["bash", str(root / "scripts" / "build-test-image.sh")], capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def _docker_up() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False
