"""Time to a first result of ``yagna batch run`` on a local devnet (3 providers, a funded requestor).

The script starts its own devnet (``yagna devnet up --providers 3 --root <tmp> --json``),
funds the requestor with test tokens, and measures:

* **1-task job** (``echo hello``) through the CLI: ``yagna batch run JOB --out DIR
  --json --quiet`` spawned ``--runs`` times (default 8); spawn -> process exit. The
  result is in ``DIR/manifest.json`` only then (the manifest is written after the
  teardown). Also read from the manifest: its ``wall_s`` (the CLI's own clock, which
  starts after the imports, the job file and the balance check) and the attempt's
  seconds (activity create + deploy + start + run on the provider).
* **12-task job** (``sh -c 'echo {x} | md5sum'``) through the CLI without ``--quiet``:
  stderr is not a terminal, so the CLI prints plain progress lines; their arrival
  is timed. Spawn -> first ``provider ... joined``, first ``task ... ok``, last one,
  process exit (``--runs12``, default 4).
* **the split**: the same two jobs run in this process through the SDK
  (``requestor_sdk.Requestor``) with an event callback, and every REST call of the
  SDK's ``Api`` is timed (the class is wrapped here, not changed). The provider's own
  ``started_at``/``finished_at`` of ``deploy``, ``start`` and ``run`` come back in the
  batch results (same machine clock). ``--sdk-runs`` (default 3) each.
* **baselines, same run, interleaved with the 1-task runs**:
  ``docker run --rm --network none local/busybox:1 echo hello`` (CLI);
  ``yagna --help`` (the bare CLI's start-up); ``python -c "import yagna.cli.batch_cmd,
  requestor_sdk, trio, httpx"`` (what the batch command imports before its clock starts).

Reference: Golem's SDK takes 30 s to minutes to a first result. Aim: under 2 s.

Run: ``python bench/batch_first_result.py [--runs 8] [--runs12 4] [--sdk-runs 3]``. Takes ~1.5 min.
The devnet lives in a temporary folder and is stopped in a ``finally`` (``yagna devnet
down --root``, then SIGKILL by PID of any node still alive); the providers' containers
are removed by their ``network.yagna.node`` label.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PYTHON, REPO, SMOKE_HELP, apply_smoke, loadavg, machine, summary, table, time_budget  # noqa: E402
from exeunit_activity import IMAGE, LABEL_NODE, cleanup_docker, ensure_image  # noqa: E402

YAGNA = [PYTHON, "-m", "yagna"]


# -- the devnet ---------------------------------------------------------------------------------
class Devnet:
    """``yagna devnet up`` under a temporary root; ``down()`` (call it from a ``finally``) stops it by PID."""

    def __init__(self, tmp: Path, providers: int = 3) -> None:
        self.tmp, self.providers = tmp, providers
        self.root = tmp / "net"
        self.env = dict(os.environ, XDG_DATA_HOME=str(tmp / "xdg"))
        self.env.pop("YAGNA_DATA_DIR", None)
        self.env.pop("YAGNA_API_URL", None)
        self.nodes: list[dict[str, Any]] = []
        self.up_s = 0.0

    def up(self) -> Devnet:
        t = time.perf_counter()
        out = subprocess.run([*YAGNA, "devnet", "up", "--providers", str(self.providers), "--root", str(self.root),
                              "--json"], cwd=str(REPO), env=self.env, capture_output=True, text=True, timeout=120)
        self.up_s = time.perf_counter() - t
        if out.returncode != 0:
            self.nodes = self._recorded()
            raise SystemExit(f"yagna devnet up failed: {out.stderr.strip()[-2000:]}")
        self.nodes = json.loads(out.stdout)
        return self

    def _recorded(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads((self.root / "devnet.json").read_text()).get("nodes", []))
        except (OSError, ValueError):
            return []

    @property
    def requestor(self) -> dict[str, Any]:
        return next(n for n in self.nodes if n["role"] == "requestor")

    @property
    def provider_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["role"] == "provider"]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*YAGNA, "--data-dir", self.requestor["data_dir"], *args], cwd=str(REPO), env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise SystemExit(f"yagna {' '.join(args[:3])}: {out.stderr.strip()[-2000:]}")
        return out

    def batch_argv(self, job: Path, out: Path, *extra: str) -> list[str]:
        return [*YAGNA, "--data-dir", self.requestor["data_dir"], "batch", "run", str(job), "--out", str(out), *extra]

    def down(self) -> None:
        nodes = self.nodes or self._recorded()
        try:
            subprocess.run([*YAGNA, "devnet", "down", "--root", str(self.root)], cwd=str(REPO), env=self.env,
                           capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for n in nodes:  # anything still alive: by PID, only if its command line names our root
            pid = int(n.get("pid") or 0)
            try:
                if pid and str(self.root) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        ids = [n["node_id"] for n in nodes if n.get("node_id") and n.get("role") == "provider"]
        if ids:
            removed = cleanup_docker(*(f"{LABEL_NODE}={i}" for i in ids))
            if removed:
                print(f"(removed {removed} leftover containers/volumes of the providers)", file=sys.stderr)


def write_job(path: Path, command: list[str], params: list[dict[str, str]], *, budget: str = "1",
              max_providers: int = 3, timeout: str = "30s", redundancy: int = 1) -> Path:
    lines = ["[job]", f'image = "{IMAGE}"', f"command = {json.dumps(command)}", f'timeout = "{timeout}"',
             f"redundancy = {redundancy}", f'budget = "{budget}"', f"max_providers = {max_providers}", ""]
    for p in params:
        inner = ", ".join(f'{k} = "{v}"' for k, v in p.items())
        lines += ["[[task]]", f"params = {{ {inner} }}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- CLI runs -----------------------------------------------------------------------------------
def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    out = subprocess.run(argv, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ...: exit {out.returncode}: {out.stderr.strip()[-1000:]}")
    return dt


def cli_one(net: Devnet, job: Path, out: Path) -> dict[str, float]:
    """``yagna batch run --json --quiet``: spawn -> exit, plus the manifest's own figures."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.run(net.batch_argv(job, out, "--json", "--quiet"), cwd=str(REPO), env=net.env,
                          capture_output=True, text=True, timeout=180)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"batch run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    task = manifest["tasks"][0]
    if task["status"] != "ok" or task["stdout"].strip() != "hello":
        raise SystemExit(f"unexpected result: {task}")
    return {"exit": dt, "wall_s": float(manifest["totals"]["wall_s"]), "attempt": float(task["attempts"][-1]["seconds"])}


_TASK_OK = re.compile(r"^task \S+ ok \(")


def cli_progress(net: Devnet, job: Path, out: Path, tasks: int) -> dict[str, float]:
    """``yagna batch run --json`` (progress lines on stderr, timed as they arrive)."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(net.batch_argv(job, out, "--json"), cwd=str(REPO), env=net.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    ok: list[float] = []
    tail: list[str] = []
    try:
        stdout_box: list[str] = []
        reader = threading.Thread(target=lambda: stdout_box.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.perf_counter() - t0
            tail.append(line.rstrip())
            if line.startswith("provider ") and " joined " in line:
                marks.setdefault("joined", now)
            elif _TASK_OK.match(line):
                ok.append(now)
        proc.wait(timeout=180)
        marks["exit"] = time.perf_counter() - t0
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode != 0 or len(ok) != tasks:
        raise SystemExit(f"batch run failed ({proc.returncode}, {len(ok)}/{tasks} ok): " + "\n".join(tail[-20:]))
    marks.update(first=ok[0], last=ok[-1])
    return marks


# -- the SDK in this process, every REST call timed ----------------------------------------------
def sdk_split(location: Any, tasks: list[Any], work_dir: Path) -> dict[str, Any]:
    import trio

    from requestor_sdk import Requestor, TaskFinished
    from requestor_sdk.client import Api

    calls: list[tuple[str, str, float, float, Any, Any]] = []
    events: list[tuple[float, Any]] = []
    orig = Api.call

    async def call(self: Any, method: str, path: str, **kw: Any) -> Any:
        t = time.time()
        res = None
        try:
            res = await orig(self, method, path, **kw)
            return res
        finally:
            calls.append((method, path, t, time.time(), kw.get("json"), res))

    marks: dict[str, float] = {}

    async def main() -> None:
        marks["t0"] = time.time()
        r = Requestor(image=IMAGE, budget="1", max_providers=3, location=location, work_dir=work_dir,
                      on_event=lambda ev: events.append((time.time(), ev)))
        async with r:
            marks["demand"] = time.time()
            results = await r.run(tasks, redundancy=1, retries=2)
            marks["run"] = time.time()
        marks["closed"] = time.time()
        bad = [x for x in results if not x.ok]
        if bad:
            raise SystemExit(f"SDK run: {len(bad)} failed, first: {bad[0].reason}")

    shutil.rmtree(work_dir, ignore_errors=True)
    Api.call = call  # type: ignore[method-assign]
    try:
        trio.run(main)
    finally:
        Api.call = orig  # type: ignore[method-assign]

    t0 = marks["t0"]
    finished = [(t, ev) for t, ev in events if isinstance(ev, TaskFinished)]
    t_first, first = finished[0]
    attempt = first.result.attempts[-1]
    neg = next(c for c in calls if c[1].endswith("/negotiate")
               and any(a["agreement_id"] == attempt.agreement_id for a in (c[5] or {}).get("agreements", [])))
    create = next(c for c in calls if c[0] == "POST" and c[1] == "/activity"
                  and (c[4] or {}).get("agreement_id") == attempt.agreement_id)
    act = create[5]["activity_id"]
    exec_call = next(c for c in calls if c[0] == "POST" and c[1] == f"/activity/{act}/exec")
    batch = exec_call[5]["batch_id"]
    ev_calls = [c for c in calls if c[1] == f"/activity/{act}/exec/{batch}/events"]
    wait = next(c for c in calls if c[1] == f"/activity/{act}/exec/{batch}/wait")
    results = {r["command"]: r for r in wait[5]["results"] if r}
    prov = {k: results[k]["finished_at"] - results[k]["started_at"] for k in ("deploy", "start", "run")}
    prov_first, prov_last = results["deploy"]["started_at"], results["run"]["finished_at"]
    settle_polls = sum(1 for c in calls if c[1] == "/payment/status" and c[2] >= marks["run"])
    split = {
        "SDK set-up, POST /market/demands": marks["demand"] - t0,
        "recruiter -> negotiate called (GET /reputation)": neg[2] - marks["demand"],
        "negotiate: offers -> signed agreement (1 call)": neg[3] - neg[2],
        "worker -> POST /activity returned (create)": create[3] - neg[3],
        "POST exec [deploy, start, run] -> provider starts deploy": prov_first - create[3],
        "provider: deploy (image check, volume + container create)": prov["deploy"],
        "provider: start (docker start)": prov["start"],
        "provider: run (docker exec of the command)": prov["run"],
        "provider gaps between commands": (prov_last - prov_first) - sum(prov.values()),
        "run finished -> events poll returned batch_done": ev_calls[-1][3] - prov_last,
        "wait + verify receipt + reputation -> TaskFinished": t_first - ev_calls[-1][3],
    }
    return {
        "split": split, "first": t_first - t0, "last": finished[-1][0] - t0, "run": marks["run"] - t0,
        "closed": marks["closed"] - t0, "teardown": marks["run"] - finished[-1][0],
        "settle": marks["closed"] - marks["run"], "settle_polls": settle_polls,
        "calls": len(calls), "check": sum(split.values()),
    }


# -- the driver -----------------------------------------------------------------------------------
def ms(x: float) -> float:
    return x * 1000


def row(label: str, values: list[float]) -> list[object]:
    s = summary([ms(v) for v in values])
    return [label, s["n"], s["median"], s["min"], s["max"]]


def run(args: argparse.Namespace) -> None:
    print(f"# batch_first_result: {machine()}, load average {loadavg()}")
    ensure_image()
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-first-"))
    net = Devnet(tmp, providers=3)
    try:
        net.up()
        print(f"devnet up (1 requestor + {len(net.provider_nodes)} providers, full mesh) in {net.up_s:.1f} s")
        net.cli("payment", "fund", "--amount", "100")
        job1 = write_job(tmp / "hello.toml", ["echo", "hello"], [{}])
        job12 = write_job(tmp / "md5-12.toml", ["sh", "-c", "echo {x} | md5sum"], [{"x": str(i)} for i in range(12)])
        # Warm-up: one run of each job (first image inspect, first channel, page cache).
        cli_one(net, job1, tmp / "out-warm")
        cli_progress(net, job12, tmp / "out-warm12", 12)
        time.sleep(args.gap)

        docker_s, help_s, import_s, one = [], [], [], []
        for _ in range(args.runs):
            docker_s.append(timed(["docker", "run", "--rm", "--network", "none", IMAGE, "echo", "hello"]))
            help_s.append(timed([*YAGNA, "--help"], env=net.env))
            import_s.append(timed([PYTHON, "-c", "import yagna.cli.main, yagna.cli.batch_cmd, requestor_sdk, trio, httpx"],
                                  env=net.env))
            one.append(cli_one(net, job1, tmp / "out-1"))
            time.sleep(args.gap)
        print(f"\n## 1-task job (`echo hello`) through `yagna batch run --json --quiet`, ms ({args.runs} runs, "
              f"{args.gap:g} s apart; load average {loadavg()})")
        print(table(["what", "n", "p50", "min", "max"], [
            row("yagna batch run: spawn -> exit (result in the manifest)", [o["exit"] for o in one]),
            row("  of it: the CLI's own clock (manifest wall_s)", [o["wall_s"] for o in one]),
            row("  of it: the attempt (activity create + deploy + start + run)", [o["attempt"] for o in one]),
            row("  outside the CLI's clock (interpreter, imports, job, balance, exit)",
                [o["exit"] - o["wall_s"] for o in one]),
            row("baseline: docker run --rm --network none busybox echo hello", docker_s),
            row("baseline: yagna --help", help_s),
            row("baseline: python -c 'import yagna.cli.main, batch_cmd, requestor_sdk, trio, httpx'", import_s),
        ]))

        twelve = []
        for _ in range(args.runs12):
            twelve.append(cli_progress(net, job12, tmp / "out-12", 12))
            time.sleep(args.gap)
        print(f"\n## 12-task job (`sh -c 'echo {{x}} | md5sum'`, 3 providers), `yagna batch run --json`, "
              f"progress lines on stderr timed as they arrive, ms ({args.runs12} runs)")
        print(table(["spawn ->", "n", "p50", "min", "max"], [
            row("first `provider ... joined` line (agreement signed)", [m["joined"] for m in twelve]),
            row("first `task ... ok` line (first result)", [m["first"] for m in twelve]),
            row("last `task ... ok` line (12/12)", [m["last"] for m in twelve]),
            row("process exit (manifest written)", [m["exit"] for m in twelve]),
        ]))

        from requestor_sdk import Task, locate

        location = locate(net.requestor["data_dir"])
        splits: dict[str, list[dict[str, Any]]] = {"1 task": [], "12 tasks": []}
        for _ in range(args.sdk_runs):
            for name, tasks in (("1 task", [Task("hello", ["echo", "hello"], timeout=30)]),
                                ("12 tasks", [Task(f"t{i}", ["sh", "-c", f"echo {i} | md5sum"], timeout=30)
                                              for i in range(12)])):
                splits[name].append(sdk_split(location, tasks, tmp / "sdk-out"))
                time.sleep(args.gap)
        print(f"\n## Where the time goes: the SDK in this process, each REST call and SDK event timed, "
              f"p50 ms ({args.sdk_runs} runs each; 12 tasks: the task that finished first)")
        keys = list(splits["1 task"][0]["split"])
        rows = []
        for k in keys:
            rows.append([k, *(summary([ms(s["split"][k]) for s in splits[n]])["median"] for n in splits)])
        rows.append(["= first TaskFinished (sum of the steps above)",
                     *(summary([ms(s["check"]) for s in splits[n]])["median"] for n in splits)])
        rows.append(["start -> first TaskFinished (measured)",
                     *(summary([ms(s["first"]) for s in splits[n]])["median"] for n in splits)])
        rows.append(["start -> last TaskFinished",
                     *(summary([ms(s["last"]) for s in splits[n]])["median"] for n in splits)])
        rows.append(["last TaskFinished -> run() returned (destroy activities, terminate agreements)",
                     *(summary([ms(s["teardown"]) for s in splits[n]])["median"] for n in splits)])
        rows.append(["run() -> close() returned (wait until every payment channel is closed)",
                     *(summary([ms(s["settle"]) for s in splits[n]])["median"] for n in splits)])
        rows.append(["start -> close() returned",
                     *(summary([ms(s["closed"]) for s in splits[n]])["median"] for n in splits)])
        print(table(["step", "1 task", "12 tasks"], rows))
        settle = [ms(s["settle"]) for n in splits for s in splits[n]]
        print(f"settle waits, every SDK run: {', '.join(f'{x:.0f}' for x in settle)} ms "
              f"(GET /payment/status polled every 0.5 s until the channels are closed)")
        print("reference: Golem's SDK takes 30 s to minutes to a first result; aim: under 2 s")
    finally:
        net.down()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="1-task CLI runs (and baseline runs)")
    parser.add_argument("--runs12", type=int, default=4, help="12-task CLI runs")
    parser.add_argument("--sdk-runs", type=int, default=3, help="in-process SDK runs of each job")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, runs=1, runs12=1, sdk_runs=1, gap=0.2)
    time_budget(600)
    run(args)


if __name__ == "__main__":
    main()
