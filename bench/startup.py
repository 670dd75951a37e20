"""Daemon start-up time, idle memory and shutdown time, against bare Python.

Measured, each in fresh OS processes started by this script:

* **cold start** (5 times, a fresh data dir each): from spawning
  ``python -m yagna --data-dir <tmp> service run --api-port 0`` until
  ``node.json`` exists, and until ``GET /api/v1/health`` answers 200
  (polled every 5 ms); RSS (VmRSS) at that moment;
* **SIGTERM to exit** of each of those daemons (no peers), split into the
  node's own shutdown (until it logs "stopped") and interpreter teardown;
* **warm start** (3 by default): the same, started again on a data dir a cold run left
  (identity, database and app key exist);
* **idle RSS** of one daemon after 10 s of idling, VmRSS and RssAnon (anonymous
  memory: heap, module objects; the rest of VmRSS is shared library and file pages);
* **a CLI read command** end to end, ``yagna market offers --json`` against that
  running daemon (7 runs, interleaved with ``python -c pass``; median);
* **SIGTERM to exit with one connected peer** (a second daemon bootstraps to the
  first; the first is stopped once ``/api/v1/net/peers`` shows the peer);
* baselines in the same run: ``python -c "pass"``, ``python -c "import libp2p"``
  and ``python -c "import yagna.node"`` (every module the daemon imports):
  spawn until the code has run (median of 5) and RSS then.

Reference (Golem's yagna 0.17.6 on this machine): ready in ~0.5 s, ~137 MB RSS.

Our packages' bytecode is compiled first (``compileall``, as ``pip install``
does): this checkout runs with ``PYTHONDONTWRITEBYTECODE=1`` and an editable
install, so without it every start compiles ~100 of our modules (~0.3 s);
``--no-compile`` measures that case. Likewise the daemon caches the compiled methods of its
dataclasses in the user's cache directory (``yagna/cli/dataclass_cache.py``; the first daemon
of a run writes it if absent); ``--no-dataclass-cache`` measures without it.

Run: ``python bench/startup.py [--runs 5] [--idle 10] [--role requestor]``. Takes ~40 s; prints figures only.
``--ab REF``: instead, cold starts of git ``REF``'s tree and ours interleaved in one run (``--runs``
of each; time to ``/health`` and RssAnon 1 s later): the only fair before/after on a shared machine.
``--smoke``: one run of each, 1 s idle, a few seconds in all (CI: "it runs").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PYTHON, Lines, Procs, machine, rss_mib, table, tail, time_budget  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("yagna", "market", "payments", "exeunit", "requestor_sdk")

POLL = 0.005
READY_TIMEOUT = 15.0
YAGNA_REF = "Golem yagna 0.17.6: ready ~0.5 s, ~137 MB RSS"


def rss_anon_mib(pid: int) -> float:
    """Anonymous resident memory (RssAnon from /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RssAnon for pid {pid}")


def compile_bytecode() -> None:
    """Write our packages' .pyc files, as an install would (PYTHONDONTWRITEBYTECODE may be set)."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", *[str(ROOT / p) for p in OUR_PACKAGES]],
                   check=True, stdout=subprocess.DEVNULL)


def cli_runs(data_dir: Path, runs: int) -> dict[str, list[float]]:
    """``yagna market offers --json`` against a running daemon, interleaved with ``python -c pass``."""
    cmds = {
        'python -c "pass"': [PYTHON, "-c", "pass"],
        "yagna market offers --json": [PYTHON, "-m", "yagna", "--data-dir", str(data_dir), "market", "offers", "--json"],
    }
    out: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            out[name].append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise RuntimeError(f"{name} exited with {done.returncode}: {done.stderr.decode(errors='replace')}")
            if name.startswith("yagna"):
                json.loads(done.stdout)  # it did answer
    return out


def http_get(url: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


class Daemon:
    def __init__(self, procs: Procs, data_dir: Path, log: Path, extra: list[str] | None = None,
                 tree: Path | None = None) -> None:
        """``tree``: run the daemon from this source tree (another commit's, for --ab) instead of ours."""
        self.procs = procs
        self.data_dir = data_dir
        self.log = log
        self.extra = extra or []
        self.tree = tree
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, object] = {}

    def start(self) -> dict[str, float]:
        """Spawn and wait until the API answers; the timings in seconds."""
        node_file = self.data_dir / "node.json"
        args = [PYTHON, "-m", "yagna", "--data-dir", str(self.data_dir), "service", "run",
                "--api-port", "0", *self.extra]
        with open(self.log, "ab") as out:
            t0 = time.perf_counter()
            if self.tree is None:
                self.proc = self.procs.spawn(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            else:
                self.proc = self.procs.spawn(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             cwd=str(self.tree), env={**os.environ, "PYTHONPATH": str(self.tree)})
        deadline = t0 + READY_TIMEOUT
        while True:  # a node.json left by an earlier, killed run names another pid
            try:
                self.info = json.loads(node_file.read_text())
                if self.info.get("pid") == self.proc.pid:
                    break
            except (json.JSONDecodeError, OSError):  # written atomically; absent until ready
                pass
            self._check(deadline)
            time.sleep(POLL)
        t_file = time.perf_counter() - t0
        url = f"{self.info['api_url']}/api/v1/health"
        while http_get(url, timeout=1.0)[0] != 200:
            self._check(deadline)
            time.sleep(POLL)
        t_ready = time.perf_counter() - t0
        return {"node_json": t_file, "ready": t_ready, "rss": rss_mib(self.proc.pid),
                "anon": rss_anon_mib(self.proc.pid)}

    def _check(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{tail(self.log)}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"daemon not ready within {READY_TIMEOUT}s:\n{tail(self.log)}")

    def sigterm(self) -> tuple[float, float]:
        """Seconds from SIGTERM until the process has exited, and until it logged "stopped".

        The second figure comes from the daemon's log line timestamp (ms
        resolution, same wall clock); the difference is interpreter teardown.
        """
        assert self.proc is not None
        sent = time.time()
        t0 = time.perf_counter()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.procs.stop(self.proc, grace=0)
            return float("nan"), float("nan")
        took = time.perf_counter() - t0
        if self.proc.returncode != 0:
            print(f"  note: daemon exited with code {self.proc.returncode}", file=sys.stderr)
        return took, _stopped_at(self.log) - sent

    def get(self, path: str) -> object:
        key = (self.data_dir / "app-key").read_text().strip()
        status, body = http_get(f"{self.info['api_url']}/api/v1{path}", key)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return json.loads(body)


def _stopped_at(log: Path) -> float:
    """Wall-clock time of the last "yagna: stopped" line of a daemon log."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.rstrip().endswith("yagna: stopped"):
            stamp = datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            return stamp.replace(tzinfo=timezone.utc).timestamp()
    return float("nan")


def python_baseline(procs: Procs, code: str, runs: int) -> dict[str, float]:
    """``python -c code``: spawn until it has run ``code`` (it then prints a line), and RSS then.

    The process is parked on stdin after the line so /proc can be read, then
    stopped; interpreter teardown is not counted (it is not for the daemon either).
    """
    parked = f"{code}\nimport sys\nprint('ready', flush=True)\nsys.stdin.readline()"
    times, rss, anon = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = procs.spawn([PYTHON, "-c", parked], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        Lines(proc).wait_for("ready", 30)
        times.append(time.perf_counter() - t0)
        rss.append(rss_mib(proc.pid))
        anon.append(rss_anon_mib(proc.pid))
        procs.stop(proc)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "rss": statistics.median(rss), "anon": statistics.median(anon)}


def ab_runs(procs: Procs, tmp: Path, ref: str, runs: int, extra: list[str]) -> None:
    """Cold starts of ``ref``'s tree and ours, interleaved (A B B A ...), each on a fresh data dir.

    Both trees run in this interpreter and venv; only our packages differ. On a shared machine the
    load drifts within a run, so only a same-run, interleaved comparison says what a change did.
    """
    base = tmp / "ab-base"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    subprocess.run([PYTHON, "-m", "compileall", "-q", *[str(base / p) for p in OUR_PACKAGES if (base / p).exists()]],
                   check=True, stdout=subprocess.DEVNULL)
    got: dict[str, dict[str, list[float]]] = {ref: {"ready": [], "anon": [], "rss": []}, "ours": {"ready": [], "anon": [], "rss": []}}
    for i in range(runs):
        order = [(ref, base), ("ours", None)] if i % 2 == 0 else [("ours", None), (ref, base)]
        for name, tree in order:
            d = Daemon(procs, tmp / f"ab-{name.replace('/', '_')}-{i}", tmp / f"ab-{i}.log", extra, tree=tree)
            got[name]["ready"].append(d.start()["ready"] * 1000)
            time.sleep(1.0)  # settled: what an idle daemon holds
            assert d.proc is not None
            got[name]["anon"].append(rss_anon_mib(d.proc.pid))
            got[name]["rss"].append(rss_mib(d.proc.pid))
            d.sigterm()
    print(f"\n## A/B, interleaved: {ref} against ours ({runs} cold starts each{', ' + ' '.join(extra) if extra else ''})")
    print(table(["tree", "ready median ms", "min", "max", "RssAnon MiB at ready + 1 s", "VmRSS MiB"],
                [[name, statistics.median(g["ready"]), min(g["ready"]), max(g["ready"]),
                  statistics.median(g["anon"]), statistics.median(g["rss"])] for name, g in got.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts (and baseline runs)")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm starts (the first data dirs again)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idling before the RSS reading")
    parser.add_argument("--cli-runs", type=int, default=7, help="runs of `yagna market offers --json`")
    parser.add_argument("--no-compile", action="store_true", help="do not write our packages' bytecode first")
    parser.add_argument("--smoke", action="store_true", help="one run of each, 1 s idle: checks that it runs")
    parser.add_argument("--no-dataclass-cache", action="store_true",
                        help="daemons compile their dataclasses' methods (YAGNA_DATACLASS_CACHE=0)")
    parser.add_argument("--role", choices=["provider", "requestor", "both"],
                        help="the daemons' --role [default: the daemon's default, both]")
    parser.add_argument("--ab", metavar="REF", help="only: cold starts of git REF's tree and ours, interleaved "
                        "(same run, same venv), --runs of each")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.warm_runs, args.idle, args.cli_runs = 1, 1, 1.0, 1
    if not args.no_compile:
        compile_bytecode()

    print(f"# startup: {machine()}, load average {os.getloadavg()[0]:.2f}")
    if args.no_dataclass_cache:
        os.environ["YAGNA_DATACLASS_CACHE"] = "0"  # inherited by every daemon
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yagna"
    print(f"# dataclass code cache ({cache}): "
          + ("off" if args.no_dataclass_cache else "present" if any(cache.glob("dataclass-code.*")) else
             "absent (the first daemon writes it)"))
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="yagna-bench-startup-"))
    extra = ["--role", args.role] if args.role else []
    if args.ab:
        time_budget(60 + 10 * args.runs)
        try:
            ab_runs(procs, tmp, args.ab, args.runs, extra)
        finally:
            signal.alarm(0)
            procs.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    time_budget(120)
    try:
        base = {
            'python -c "pass"': python_baseline(procs, "pass", args.runs),
            'python -c "import libp2p"': python_baseline(procs, "import libp2p", args.runs),
            'python -c "import yagna.node"': python_baseline(procs, "import yagna.node", args.runs),
        }

        cold, warm, term, term_warm = [], [], [], []
        daemon = None
        daemons = []
        for i in range(args.runs):
            daemon = Daemon(procs, tmp / f"node{i}", tmp / f"node{i}.log", extra)
            cold.append(daemon.start())
            term.append(daemon.sigterm())
            daemons.append(daemon)
        for i, daemon in enumerate(daemons[: max(1, args.warm_runs)]):
            warm.append(daemon.start())
            if i < max(1, args.warm_runs) - 1:
                term_warm.append(daemon.sigterm())
        assert daemon is not None
        # The last warm daemon idles, then its RSS is read.
        time.sleep(args.idle)
        idle_rss = rss_mib(daemon.proc.pid)  # type: ignore[union-attr]
        idle_anon = rss_anon_mib(daemon.proc.pid)  # type: ignore[union-attr]
        cli = cli_runs(daemon.data_dir, args.cli_runs)
        term_warm.append(daemon.sigterm())

        # SIGTERM with one connected peer.
        a = Daemon(procs, tmp / "peerA", tmp / "peerA.log")
        a.start()
        addr = a.info["p2p_addrs"][0]  # type: ignore[index]
        b = Daemon(procs, tmp / "peerB", tmp / "peerB.log", ["--bootstrap", str(addr)])
        b.start()
        t_connect = time.perf_counter()
        deadline = t_connect + 15
        while not any(p.get("node_id") == a.info["node_id"] for p in b.get("/net/peers")):  # type: ignore[union-attr,attr-defined]
            if time.perf_counter() > deadline:
                raise TimeoutError(f"peer never connected:\n{tail(b.log)}")
            time.sleep(0.02)
        t_connect = time.perf_counter() - t_connect
        term_peer = a.sigterm()
        term_peer_b = b.sigterm()
    finally:
        signal.alarm(0)
        procs.close()
        for log in sorted(tmp.glob("*.log")):
            bad = [ln for ln in log.read_text(errors="replace").splitlines()
                   if " ERROR " in ln or "Traceback" in ln or " WARNING " in ln]
            if bad:
                print(f"{log.name}:\n" + "\n".join(bad[-10:]), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    def row(name: str, xs: list[float], scale: float = 1000.0) -> list[object]:
        xs = [x * scale for x in xs]
        return [name, statistics.median(xs), min(xs), max(xs)]

    print()
    print(f"## Start-up time, ms (spawn until ready; {args.runs} runs each, {len(warm)} warm starts)")
    rows = [
        [f"baseline: {name}", b["median"] * 1000, b["min"] * 1000, b["max"] * 1000]
        for name, b in base.items()
    ]
    rows += [
        row("yagna cold start: node.json written", [c["node_json"] for c in cold]),
        row("yagna cold start: GET /health = 200", [c["ready"] for c in cold]),
        row("yagna warm start (existing data dir): node.json", [c["node_json"] for c in warm]),
        row("yagna warm start (existing data dir): /health = 200", [c["ready"] for c in warm]),
    ]
    print(table(["what", "median", "min", "max"], rows))
    imports = base['python -c "import yagna.node"']["median"] * 1000
    ready = statistics.median(c["ready"] for c in cold) * 1000
    print(f"cold start = {imports:.0f} ms interpreter + imports (baseline above) "
          f"+ {ready - imports:.0f} ms of the node's own start (identity, store, host, API)")
    print(f"bytecode: {'not compiled first (--no-compile)' if args.no_compile else 'compiled first'}")

    print()
    print(f"## CLI read command end to end, ms ({args.cli_runs} runs, interleaved, against the idle daemon)")
    print(table(["what", "median", "min", "max"], [row(name, xs) for name, xs in cli.items()]))

    print()
    print("## Memory, MiB (VmRSS and RssAnon)")
    rows = [[f"baseline: {name}", b["rss"], b["anon"]] for name, b in base.items()]
    rows += [
        ["yagna at ready, cold (median)", statistics.median(c["rss"] for c in cold),
         statistics.median(c["anon"] for c in cold)],
        ["yagna at ready, warm (median)", statistics.median(c["rss"] for c in warm),
         statistics.median(c["anon"] for c in warm)],
        [f"yagna after {args.idle:.0f} s idle", idle_rss, idle_anon],
    ]
    print(table(["what", "RSS", "RssAnon"], rows))

    print()
    print("## Shutdown, ms (SIGTERM until the process has exited | until it logged \"stopped\")")
    everyone = term + term_warm
    rows = [
        row(f"no peers ({len(everyone)} runs): exited", [t[0] for t in everyone]),
        row(f"no peers ({len(everyone)} runs): logged stopped", [t[1] for t in everyone]),
        row("one connected peer: exited", [term_peer[0]]),
        row("one connected peer: logged stopped", [term_peer[1]]),
        row("its peer, stopped after it: exited", [term_peer_b[0]]),
    ]
    print(table(["what", "median", "min", "max"], rows))
    print(f"\nbootstrap connect seen in /net/peers after {t_connect * 1000:.0f} ms (polled every 20 ms)")
    print(f"reference: {YAGNA_REF}")


if __name__ == "__main__":
    main()
