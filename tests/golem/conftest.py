from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def image_id() -> str:
    """``local/busybox:1`` (built from Debian's static busybox when missing); its id."""
    import subprocess

    from tests.test_activity_service import _docker

    _docker()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image.sh")], capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]
