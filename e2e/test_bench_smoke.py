"""Every benchmark still runs: each ``bench/*.py --smoke`` (tiny sizes, one round) exits 0 and prints figures.

A broken bench fails CI here instead of rotting until someone needs its
figures. No timing is asserted. Each run gets a temporary directory of its
own as ``TMPDIR``; afterwards it must be empty and no process may still name
it (every bench stops its daemons by PID and removes its temporary files).
Benches that drive Docker need the engine and ``local/busybox:1`` (the
machine set-up provides both). A bench whose source says ``NEEDS_ROOT = True``
(network namespaces) is skipped when not root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 240
FIGURE = re.compile(r"^\|.*\d.*\|\s*$", re.M)
"""A table row holding a number: every bench prints its figures as markdown tables."""


def _processes_naming(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_every_bench_script_is_covered() -> None:
    assert len(SCRIPTS) >= 15, SCRIPTS
    for name in SCRIPTS:
        assert "--smoke" in (BENCH / name).read_text(), f"bench/{name} has no --smoke mode"


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_smoke(script: str, tmp_path: Path) -> None:
    if "\nNEEDS_ROOT = True\n" in (BENCH / script).read_text() and os.geteuid() != 0:
        pytest.skip(f"bench/{script} needs root (network namespaces); CI runs as root")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    env.pop("BENCH_PROFILE_DIR", None)
    t = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], cwd=BENCH.parent, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench/{script} --smoke ran over {TIMEOUT_S} s:\n{exc.stdout!s:.3000}\n{exc.stderr!s:.3000}")
    took = time.monotonic() - t
    out = proc.stdout
    assert proc.returncode == 0, f"bench/{script} --smoke exited {proc.returncode} after {took:.1f} s:\n" \
                                 f"{out[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert FIGURE.search(out), f"bench/{script} --smoke printed no figures:\n{out[-3000:]}"
    # Nothing left behind: no process naming its temporary directory, no file in it.
    deadline = time.monotonic() + 5
    while (left := _processes_naming(str(tmp))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"bench/{script} left processes behind: {left}"
    assert not list(tmp.iterdir()), f"bench/{script} left files in TMPDIR: {sorted(p.name for p in tmp.iterdir())}"
