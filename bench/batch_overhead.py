"""100 short tasks through ``yagna batch run`` on a 3-provider devnet, against plain Docker doing the same.

Each task is ``sh -c 'echo <x> | md5sum'`` (x = 0..99; every output is checked
against the real md5). Modes, same run:

* **yagna batch run**: one job file with 100 tasks, redundancy 1, max_providers 3
  (each provider's default preset sells 1 thread, so 3 tasks run at once),
  ``yagna batch run JOB --out DIR --json --quiet``; wall time = spawn -> exit (the
  manifest is written then). Includes the CLI start, negotiation of 3 agreements,
  3 deploys, and the teardown with payment settlement.
* **docker run** (the aim's baseline): the same 100 commands as
  ``docker run --rm --network none local/busybox:1 sh -c ...``, 3 threads each
  running the docker CLI (parallelism 3).
* **docker exec**: 3 long-lived ``--network none`` containers started before the
  clock, 3 threads each running ``docker exec <c> sh -c ...``. This is what the
  SDK does (it keeps one activity per provider and runs one exe-script per task).

``--rounds`` rounds (default 2), the order reversed in the second, so load drift
hits every mode alike. Printed: wall times, ratios (aim: yagna / docker run <= 1.3x),
the load average, and the CPU seconds of the daemons (requestor, providers), of the
``yagna batch run`` process or the docker CLI processes, and of dockerd/containerd
when this user can read them.

Run: ``python bench/batch_overhead.py [--tasks 100] [--rounds 2]``. Takes ~2.5 min.
The devnet and its containers are removed in a ``finally`` (see batch_first_result.py);
the baseline containers carry a ``network.yagna.bench`` label and are removed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import cpu_seconds  # noqa: E402
from _util import SMOKE_HELP, apply_smoke, REPO, machine, summary, table, time_budget  # noqa: E402
from batch_first_result import Devnet, loadavg, write_job  # noqa: E402
from exeunit_activity import IMAGE, LABEL_BENCH, cleanup_docker, docker_cli, ensure_image, run_tag  # noqa: E402
from exeunit_overhead import check, command, engine_pids, expected, parallel  # noqa: E402


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            out[name] = 0.0
    out["children"] = children_cpu()
    return out


def run(args: argparse.Namespace) -> None:
    print(f"# batch_overhead: {machine()}, load average {loadavg()}")
    ensure_image()
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-overhead-"))
    tag = run_tag()
    net = Devnet(tmp, providers=3)
    names: list[str] = []
    try:
        net.up()
        print(f"devnet up (1 requestor + {len(net.provider_nodes)} providers) in {net.up_s:.1f} s")
        net.cli("payment", "fund", "--amount", "100")
        job = write_job(tmp / "md5-100.toml", ["sh", "-c", "echo {x} | md5sum"],
                        [{"x": str(i)} for i in range(args.tasks)], max_providers=3)
        pids = {"requestor daemon": int(net.requestor["pid"])}
        for i, n in enumerate(net.provider_nodes, 1):
            pids[f"provider {i} daemon"] = int(n["pid"])
        engine = engine_pids()
        watched = {**pids, **engine}
        # Warm-up: every mode once on a few tasks (image, first channel, page cache).
        warm = write_job(tmp / "warm.toml", ["sh", "-c", "echo {x} | md5sum"], [{"x": str(i)} for i in range(6)])
        subprocess.run(net.batch_argv(warm, tmp / "out-warm", "--json", "--quiet"), cwd=str(REPO), env=net.env,
                       capture_output=True, timeout=180, check=True)
        docker_cli("run", "--rm", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", IMAGE, *command(0))
        time.sleep(1.0)

        batch_info: list[dict[str, Any]] = []

        def yagna_mode() -> float:
            out = tmp / "out"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            proc = subprocess.run(net.batch_argv(job, out, "--json", "--quiet"), cwd=str(REPO), env=net.env,
                                  capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(f"batch run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
            summary_ = json.loads(proc.stdout)
            manifest = json.loads((out / "manifest.json").read_text())
            by_provider: Counter[str] = Counter()
            for i, t_ in enumerate(manifest["tasks"]):
                if t_["status"] != "ok" or expected(int(t_["params"]["x"])) not in t_["stdout"]:
                    raise SystemExit(f"task {t_['id']}: {t_['status']} {t_['reason']} {t_['stdout'][:100]!r}")
                by_provider[t_["attempts"][-1]["provider_id"]] += 1
            batch_info.append({"wall_s": summary_["wall_s"], "cost": summary_["cost"],
                               "attempts": [a["seconds"] for t_ in manifest["tasks"] for a in t_["attempts"]],
                               "per_provider": sorted(by_provider.values(), reverse=True)})
            return wall

        def docker_run_mode() -> float:
            def worker(w: int) -> Any:
                def work(i: int) -> None:
                    out = docker_cli("run", "--rm", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", IMAGE,
                                     *command(i))
                    check(i, out.stdout)
                return work
            wall, _ = parallel([worker(w) for w in range(3)], args.tasks)
            return wall

        def docker_exec_mode() -> float:
            these = [f"{tag}-{w}" for w in range(3)]
            names.extend(these)
            for name in these:
                docker_cli("run", "-d", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", "--name", name,
                           IMAGE, "sleep", "3600")
            try:
                def worker(w: int) -> Any:
                    def work(i: int) -> None:
                        check(i, docker_cli("exec", these[w], *command(i)).stdout)
                    return work
                wall, _ = parallel([worker(w) for w in range(3)], args.tasks)
            finally:
                docker_cli("rm", "-f", *these, check=False)
            return wall

        modes = [("yagna batch run (redundancy 1, 3 providers)", yagna_mode),
                 ("docker run --rm --network none (CLI), 3 threads", docker_run_mode),
                 ("docker exec into 3 long-lived containers (CLI), 3 threads", docker_exec_mode)]
        walls: dict[str, list[float]] = {m: [] for m, _ in modes}
        cpu: dict[str, dict[str, float]] = {m: {} for m, _ in modes}
        loads: dict[str, list[float]] = {m: [] for m, _ in modes}
        for rnd in range(args.rounds):
            order = modes if rnd % 2 == 0 else list(reversed(modes))
            for name, fn in order:
                before = cpu_of(watched)
                walls[name].append(fn())
                after = cpu_of(watched)
                loads[name].append(os.getloadavg()[0])
                for k in after:
                    cpu[name][k] = cpu[name].get(k, 0.0) + after[k] - before[k]
                time.sleep(1.0)

        print(f"\n## {args.tasks} tasks `sh -c 'echo x | md5sum'`, parallelism 3, wall time in s "
              f"({args.rounds} rounds, order reversed in round 2)")
        rows = []
        for name, _ in modes:
            w = walls[name]
            rows.append([name, *[f"{x:.2f}" for x in w], f"{sum(w) / len(w):.2f}",
                         f"{sum(w) / len(w) / args.tasks * 3 * 1000:.0f}",
                         " / ".join(f"{x:.2f}" for x in loads[name])])
        print(table(["mode", *[f"round {i + 1}" for i in range(args.rounds)], "mean",
                     "ms per task per slot", "load avg after"], rows))
        mean = {n: sum(w) / len(w) for n, w in walls.items()}
        y, r, e = (n for n, _ in modes)
        print(f"ratios: yagna / docker run {mean[y] / mean[r]:.2f}x (aim <= 1.3x); "
              f"yagna / docker exec {mean[y] / mean[e]:.2f}x; docker run / docker exec {mean[r] / mean[e]:.2f}x")

        print(f"\n## CPU seconds per mode (sum over {args.rounds} rounds, 2 CPUs)")
        keys = list(watched) + ["children"]
        labels = {k: k for k in keys}
        labels["children"] = "yagna batch run process / docker CLI processes"
        rows = []
        for k in keys:
            rows.append([labels[k], *[f"{cpu[n].get(k, 0.0):.2f}" for n, _ in modes]])
        daemons = [k for k in pids]
        rows.append(["all yagna daemons", *[f"{sum(cpu[n].get(k, 0.0) for k in daemons):.2f}" for n, _ in modes]])
        rows.append(["CPU ms per task (everything above)",
                     *[f"{sum(cpu[n].values()) / (args.tasks * args.rounds) * 1000:.0f}" for n, _ in modes]])
        print(table(["process", "yagna batch run", "docker run", "docker exec"], rows))
        if not engine:
            print("(dockerd/containerd not readable by this user: their CPU is not counted)")

        att = [a for b in batch_info for a in b["attempts"]]
        s = summary([a * 1000 for a in att])
        print(f"\nyagna batch run, from the manifests: wall_s (CLI's own clock) "
              f"{', '.join(str(b['wall_s']) for b in batch_info)} s; attempt seconds p50 {s['median']:.0f} ms, "
              f"p99 {s['p99']:.0f} ms, max {s['max']:.0f} ms (first attempt per provider includes the deploy); "
              f"tasks per provider {[b['per_provider'] for b in batch_info]}; cost {batch_info[-1]['cost']} tokens")
        print(f"load average at the end: {loadavg()}")
    finally:
        if names:
            docker_cli("rm", "-f", *names, check=False)
        cleanup_docker(f"{LABEL_BENCH}={tag}")
        net.down()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, tasks=6, rounds=1)
    time_budget(900)
    run(args)


if __name__ == "__main__":
    main()
