"""Every example runs, against a real local network (`yagna devnet up`), as a user would run it.

- ``examples/minimal.py``: the SDK in a few lines, three tasks verified by two providers each;
- ``examples/render``: the render job (a shortened copy: 6 frames) through ``yagna batch run``,
  then ``assemble.py`` builds the animated GIF from the downloaded frames.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.daemons import run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def devnet(tmp_path: Path, test_image: str):  # type: ignore[no-untyped-def]
    root = tmp_path / "devnet"
    nodes = json.loads(run_cli("devnet", "up", "--providers", "3", "--root", str(root), "--json", timeout=90).stdout)
    try:
        yield next(n for n in nodes if n["role"] == "requestor")
    finally:
        run_cli("devnet", "down", "--root", str(root), timeout=60, check=False)


def test_minimal_sdk_script(tmp_path: Path, test_image: str) -> None:
    """As the README says: `yagna devnet up`, then the script with no settings (the SDK finds the devnet's
    requestor under the default root, funds it if short, downloads nothing into the current folder)."""
    run_cli("devnet", "up", "--providers", "3", timeout=90)  # the default root, under the test's XDG_DATA_HOME
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / "minimal.py")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=240)
    finally:
        run_cli("devnet", "down", timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for n in (2, 3, 4):
        assert f"square-{n} ok {n * n} agreed by 2 providers" in proc.stdout, proc.stdout
    assert "spent " in proc.stdout and not (tmp_path / "yagna-results").exists()


def test_render_job_and_gif(devnet: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build-render-image.sh")], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr
    job = (ROOT / "examples" / "render" / "job.toml").read_text()
    head, _, tasks = job.partition("[[task]]")
    short = tmp_path / "render6.toml"  # the same job, its first 6 frames (of 24)
    short.write_text(head + "".join(f"[[task]]\nparams = {{ frame = \"{i}\" }}\n" for i in range(6)))
    assert re.search(r'redundancy\s*=\s*2', head)
    out = tmp_path / "out"
    proc = run_cli("batch", "run", str(short), "--out", str(out), "--json", "--fund", data_dir=Path(devnet["data_dir"]),
                   timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["succeeded"] == 6 and 0 < float(summary["cost"]) <= 1
    gif = tmp_path / "anim.gif"
    assembled = subprocess.run([sys.executable, str(ROOT / "examples" / "render" / "assemble.py"), str(out),
                                "--out", str(gif)], capture_output=True, text=True, timeout=60)
    assert assembled.returncode == 0, assembled.stderr
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 6
