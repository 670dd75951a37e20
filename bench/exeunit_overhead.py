"""Per-task overhead of the exe-unit: the same 50 short commands through our daemons and through plain Docker.

Each task is ``sh -c 'echo <i> | md5sum'`` (its output is checked). The tasks
run with the same parallelism everywhere (``--parallel``, default 3: three
worker threads take tasks from one queue), in these modes:

* **ours, fresh activity per task** (fair against ``docker run --rm``): a task
  is ``POST /activity`` -> ``exec [deploy, start, run]`` -> wait until done ->
  ``DELETE /activity``. Each worker holds one agreement (the provider's default
  preset: 1 thread, 1 GiB, 2 GiB disk; provider ``--max-threads 3
  --max-mem-gib 3``), signed before the clock starts.
* **ours, one activity per worker** (the reuse mode an SDK uses): each worker
  deploys and starts one activity before the clock starts; a task is one
  ``exec [run]`` batch -> wait until done. The activities are deleted after.
* **plain docker run**: ``docker run --rm --network none local/busybox:1 sh -c
  ...`` via the docker CLI (its process start included).
* **plain docker exec** (the counterpart of reuse): ``docker exec <c> sh -c
  ...`` via the docker CLI into one long-lived ``--network none`` container
  per worker, started before the clock.

The four modes run in ``--rounds`` rounds (default 2), in the opposite order in
the second round, so that load drift hits them alike. Printed: wall time of the
50 tasks per mode and round, per-task latency (p50/p99), and the ratios
ours/plain (aim: <= 1.3x).

Run: ``python bench/exeunit_overhead.py [--tasks 50] [--parallel 3] [--rounds 2]``.
Takes ~60 s. Every container is removed in a ``finally`` (the provider's by
their ``network.yagna.node`` label, the CLI's by a ``network.yagna.bench``
label).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import cpu_seconds, report_logs  # noqa: E402
from _util import SMOKE_HELP, apply_smoke, Procs, machine, summary, table, time_budget  # noqa: E402
from exeunit_activity import (  # noqa: E402
    IMAGE, LABEL_BENCH, LABEL_NODE, ExePair, Session, cleanup_docker, deploy_script, docker_cli, ensure_image, run_tag,
)


def command(i: int) -> list[str]:
    return ["sh", "-c", f"echo {i} | md5sum"]


def expected(i: int) -> str:
    return hashlib.md5(f"{i}\n".encode()).hexdigest()


def check(i: int, stdout: str) -> None:
    if expected(i) not in stdout:
        raise SystemExit(f"task {i}: unexpected output {stdout[:200]!r}")


def stdout_of(view: dict[str, Any]) -> str:
    return str((view.get("results") or [{}])[-1].get("stdout") or "")


def engine_pids() -> dict[str, int]:
    """dockerd and containerd, when this user can see them (their CPU is part of every mode's cost)."""
    out = {}
    for name in ("dockerd", "containerd"):
        try:
            pid = subprocess.run(["pidof", "-s", name], capture_output=True, text=True).stdout.strip()
            if pid:
                cpu_seconds(int(pid))
                out[name] = int(pid)
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named pid, plus "docker CLI": the reaped children of this driver."""
    snap = {}
    for name, pid in pids.items():
        try:
            snap[name] = cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            snap[name] = 0.0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    snap["docker CLI"] = ru.ru_utime + ru.ru_stime
    return snap


def parallel(workers: list[Callable[[int], None]], tasks: int) -> tuple[float, list[float]]:
    """Run tasks 0..tasks-1 on one thread per worker; returns (wall seconds, per-task ms)."""
    todo: queue.Queue[int] = queue.Queue()
    for i in range(tasks):
        todo.put(i)
    lat: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def loop(work: Callable[[int], None]) -> None:
        while not errors:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            t = time.perf_counter()
            try:
                work(i)
            except BaseException as exc:  # noqa: BLE001 - reported by the driver
                errors.append(exc)
                return
            with lock:
                lat.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"a task failed: {errors[0]}")
    return wall, lat


def run(args: argparse.Namespace) -> None:
    print(f"# exeunit_overhead: {machine()}, load average {os.getloadavg()[0]:.2f}")
    ensure_image()
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-exeovh-")
    tmp = Path(tmpdir.name)
    tag = run_tag()
    time_budget(args.budget)
    p = asked = args.parallel
    pair = ExePair(procs, tmp, max_threads=p, max_mem_gib=float(p), max_storage_gib=2.0 * p + 1)
    sessions: list[Session] = []
    walls: dict[str, list[float]] = {}
    lats: dict[str, list[float]] = {}
    setup: dict[str, float] = {}
    n_agreements = 0
    cpu: dict[str, dict[str, float]] = {}
    try:
        t = time.monotonic()
        pair.start()
        # The provider sells at most one thread per CPU of this machine (--max-threads is capped
        # there) and an agreement runs one activity at a time: with fewer threads than asked,
        # every mode (ours and the docker baselines) runs with that many workers.
        cap = int(pair.prov.get("/provider/status")["capacity"]["threads"]) if pair.prov else p
        asked, p = p, min(p, cap)
        signed = [pair.agreement() for _ in range(p)]
        agreements = signed
        n_agreements = len(signed)
        setup["daemons + agreements"] = time.monotonic() - t
        sessions = [pair.session() for _ in range(p)]

        def fresh(w: int) -> Callable[[int], None]:
            s, agreement = sessions[w], agreements[w]

            def work(i: int) -> None:
                act = s.create(agreement)
                try:
                    check(i, stdout_of(s.run(act, [*deploy_script(), {"run": {"argv": command(i)}}])))
                finally:
                    s.destroy(act)
            return work

        def reuse_mode() -> tuple[float, list[float]]:
            t = time.perf_counter()
            acts = [sessions[w].create(agreements[w]) for w in range(p)]
            try:
                for w in range(p):
                    sessions[w].run(acts[w], deploy_script())
                setup.setdefault("reuse: create + deploy + start, 3 activities one after the other (s)", 0.0)
                setup["reuse: create + deploy + start, 3 activities one after the other (s)"] += \
                    time.perf_counter() - t

                def reuse(w: int) -> Callable[[int], None]:
                    s, act = sessions[w], acts[w]

                    def work(i: int) -> None:
                        check(i, stdout_of(s.run(act, [{"run": {"argv": command(i)}}])))
                    return work
                return parallel([reuse(w) for w in range(p)], args.tasks)
            finally:
                for w in range(p):
                    sessions[w].destroy(acts[w])

        def plain_run(w: int) -> Callable[[int], None]:
            def work(i: int) -> None:
                out = docker_cli("run", "--rm", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", IMAGE,
                                 *command(i))
                check(i, out.stdout)
            return work

        def exec_mode() -> tuple[float, list[float]]:
            names = [f"{tag}-exec-{w}-{uuid.uuid4().hex[:4]}" for w in range(p)]
            for name in names:
                docker_cli("run", "-d", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", "--name", name,
                           IMAGE, "sleep", "600")
            try:
                def plain_exec(w: int) -> Callable[[int], None]:
                    def work(i: int) -> None:
                        check(i, docker_cli("exec", names[w], *command(i)).stdout)
                    return work
                return parallel([plain_exec(w) for w in range(p)], args.tasks)
            finally:
                docker_cli("rm", "-f", *names, check=False)

        modes: list[tuple[str, Callable[[], tuple[float, list[float]]]]] = [
            ("ours, fresh activity per task (create, deploy, start, run, DELETE)",
             lambda: parallel([fresh(w) for w in range(p)], args.tasks)),
            ("plain docker run --rm --network none (CLI)",
             lambda: parallel([plain_run(w) for w in range(p)], args.tasks)),
            ("ours, one activity per worker, a task = one exec batch", reuse_mode),
            ("plain docker exec into one container per worker (CLI)", exec_mode),
        ]
        # Warm-up: a few tasks of each mode.
        for _, mode in modes:
            saved = args.tasks
            args.tasks = p
            mode()
            args.tasks = saved
        setup.pop("reuse: create + deploy + start, 3 activities one after the other (s)", None)
        pids = {**engine_pids(), **{d.name: d.proc.pid for d in (pair.prov, pair.req) if d and d.proc}}
        for r in range(args.rounds):
            order = modes if r % 2 == 0 else list(reversed(modes))
            for name, mode in order:
                c0 = cpu_snapshot(pids)
                wall, lat = mode()
                c1 = cpu_snapshot(pids)
                acc = cpu.setdefault(name, {})
                for k in c1:
                    acc[k] = acc.get(k, 0.0) + c1[k] - c0[k]
                walls.setdefault(name, []).append(wall)
                lats.setdefault(name, []).extend(lat)
    finally:
        signal.alarm(0)
        for s in sessions:
            s.close()
        pair.close()
        procs.close()
        n = cleanup_docker(f"{LABEL_BENCH}={tag}", *([f"{LABEL_NODE}={pair.node_id}"] if pair.prov else []))
        report_logs(tmp)
        tmpdir.cleanup()
    if n:
        print(f"(removed {n} containers/volumes left behind)")

    print(f"\nprovider + requestor up, {n_agreements} agreements signed in {setup['daemons + agreements']:.1f} s"
          + (f" (the provider sells {n_agreements} threads on this machine: {n_agreements} workers, not {asked})"
             if n_agreements < asked else ""))
    print(f"\n## {args.tasks} tasks `sh -c 'echo i | md5sum'`, {p} in parallel; wall time in s per round, "
          f"per-task latency in ms")
    names = list(walls)
    rows = []
    for name in names:
        s = summary(lats[name])
        rows.append([name, *[f"{w:.2f}" for w in walls[name]], f"{sum(walls[name]) / len(walls[name]):.2f}",
                     f"{args.tasks * len(walls[name]) / sum(walls[name]):.1f}", s["median"], s["p99"]])
    print(table(["mode", *[f"round {r + 1} (s)" for r in range(args.rounds)], "mean (s)", "tasks/s",
                 "task p50 (ms)", "task p99 (ms)"], rows))
    if reuse_s := setup.get("reuse: create + deploy + start, 3 activities one after the other (s)"):
        print(f"(reuse mode: creating, deploying and starting the {p} activities took {reuse_s / args.rounds:.2f} s "
              f"per round, before the clock)")

    who = sorted({k for acc in cpu.values() for k in acc})
    print(f"\n## CPU ms per task (all rounds; {os.cpu_count()} CPUs; the machine is shared, load above)")
    rows = []
    for name in names:
        acc = cpu.get(name, {})
        per = {k: acc.get(k, 0.0) * 1000 / (args.tasks * len(walls[name])) for k in who}
        rows.append([name, *[f"{per[k]:.0f}" for k in who], f"{sum(per.values()):.0f}"])
    print(table(["mode", *who, "sum"], rows))

    def mean(name: str) -> float:
        return sum(walls[name]) / len(walls[name])

    fresh_n, run_n, reuse_n, exec_n = names[0], names[1], names[2], names[3]
    print("\n## Ratios (mean wall time)")
    print(table(["ours", "plain", "ours / plain"], [
        ["fresh activity per task", "docker run --rm", f"{mean(fresh_n) / mean(run_n):.2f}x"],
        ["one activity per worker", "docker run --rm", f"{mean(reuse_n) / mean(run_n):.2f}x"],
        ["one activity per worker", "docker exec (CLI)", f"{mean(reuse_n) / mean(exec_n):.2f}x"],
    ]))
    print(f"load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=3, help="workers (agreements / docker runs) at once")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the four modes (the order alternates)")
    parser.add_argument("--budget", type=int, default=170, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, tasks=3, rounds=1)
    run(args)


if __name__ == "__main__":
    main()
