"""Golem's own SDK against our daemons: yapapi 0.13.1's unmodified hello.py, beside our SDK, same run.

NEEDS_ROOT: the Golem world is a network namespace (e2e/golem_net.py: our provider and requestor,
a stand-in for Golem's image registry with a self-signed certificate). Not root: the bench says
so and exits 0 without figures; e2e/test_bench_smoke.py skips it there.

Per round, in the same namespace and against the same two daemons:

* **yapapi hello.py** (`.venv-golem`, pinned by `make setup`): process start -> the date printed
  from the provider, and start -> "Agreement confirmed" (yapapi's own log line, its timestamp).
  Its task package is a Golem VM image (a `.gvmi` of busybox made by `yagna image pack`): the
  provider downloads and imports it in the first round, then has it cached.
* **our SDK**: `yagna batch run` of a 1-task job running `date` on the same provider (a
  container image sent peer to peer), process start -> exit with the result.

Golem's figures on its own network (reference/golem-rest-compat.md, real yagna 0.17.6): first
offer ~6 s after subscribing, agreement ~9 s, 0.76 s to create an activity.

Run: ``sudo python bench/golem_hello.py [--rounds 5]`` (~30 s); ``--smoke`` (1 round).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import SMOKE_HELP, apply_smoke, machine, table  # noqa: E402

NEEDS_ROOT = True
JOB = """\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "date"]
timeout = "30s"
redundancy = 1
budget = "1"
max_providers = 1

[[task]]
params = {}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, rounds=1)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print("bench/golem_hello.py needs Linux and root (a network namespace); nothing measured")
        return
    from e2e.golem_net import GOLEM_PYTHON, HELLO, PY, golem_net, yapapi

    if not GOLEM_PYTHON.exists():
        raise SystemExit("yapapi is not installed: run `make setup` (it makes .venv-golem)")
    hello_s: list[float] = []
    agreement_s: list[float] = []
    ours_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-golem-") as d:
        tmp = Path(d)
        with golem_net(tmp) as (ns, nodes):
            job = tmp / "job.toml"
            job.write_text(JOB)
            for i in range(args.rounds):
                work = tmp / f"hello-{i}"
                work.mkdir()
                started = time.time()
                run = yapapi(ns, nodes, tmp, work, str(HELLO))
                ended = time.time()
                if run.returncode != 0 or not re.search(r"\d\d:\d\d:\d\d", run.stdout):
                    raise SystemExit(f"hello.py failed:\n{run.stdout}\n{run.stderr[-3000:]}")
                hello_s.append(ended - started)
                confirmed = re.search(r"^\[(\S+) INFO yapapi.summary\] \[Job 1\] Agreement confirmed", run.stderr, re.M)
                if confirmed:
                    at = datetime.strptime(confirmed.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                    agreement_s.append(at - started)
                t0 = time.time()
                ours = ns.run([*PY, "-m", "yagna", "--data-dir", str(nodes["req"]), "batch", "run", str(job),
                               "--out", str(tmp / f"out-{i}"), "--json", "--quiet"], timeout=120)
                if ours.returncode != 0:
                    raise SystemExit(f"yagna batch run failed:\n{ours.stdout}\n{ours.stderr[-3000:]}")
                ours_s.append(time.time() - t0)
    print(f"\n{machine()}; {args.rounds} round(s); yapapi 0.13.1 (unmodified hello.py) vs our SDK\n")

    def row(name: str, values: list[float]) -> list[str]:
        return [name, f"{values[0]:.2f}", f"{statistics.median(values):.2f}" if values else "-",
                f"{min(values):.2f}" if values else "-"]

    print(table(["step", "first round s", "median s", "best s"], [
        row("yapapi hello.py: start -> date printed", hello_s),
        row("yapapi hello.py: start -> agreement confirmed", agreement_s),
        row("our SDK (yagna batch run, 1 task): start -> result", ours_s),
        ["Golem's own network (report): agreement", "9", "-", "-"],
    ]))


if __name__ == "__main__":
    main()
