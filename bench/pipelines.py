"""CI pipelines on the network: ``yagna pipeline run --json`` against the same steps run locally with Docker.

The script starts its own devnet (2 providers, 1 requestor bootstrapped to both, daemons in a temporary
folder, like the other benches), funds the requestor (``yagna payment fund --amount 100``) and makes two
small source trees in the temporary folder (three ``src/*.txt`` files, a ``deps.lock``, a ``.gitignore``
and ``.yagna/pipeline.yml``; no git). Both sides run the pipeline file as parsed by
``requestor_sdk.pipeline_file`` (the same steps, env and artifacts). Measured, in one run:

* **plain pipeline** (``build``: ``mkdir -p out && cat src/*.txt > out/app``; ``test``: ``grep -q hello
  out/app``; artifacts ``[out/app]``), ``--runs`` times (default 3, after ``--warmup`` unmeasured runs of
  each side), local and network interleaved:

  - **local** (the baseline): ``docker run -d --network none local/busybox:1 sleep 3600`` (plain, not
    the provider's hardened container), the tree copied in as a tar on the stdin of ``docker exec -i
    ... tar -xf - -C /work/ws`` (the image runs as uid 1000, which ``docker cp`` would not give the
    files), each step as ``docker exec -w /work/ws CID sh -ec '<run>'`` in order, the artifacts out with
    ``docker cp``, then ``docker rm -f``. Timed per step (each docker CLI call, its spawn included) and
    per job (before ``docker run`` -> container removed).
  - **network**: ``yagna --data-dir REQ pipeline run FILE --json --out DIR`` spawned in the tree: wall
    time per job (spawn -> exit) and the JSON's per-step ``seconds`` (the requestor's clock: exec ->
    the step's batch done). The CLI's stderr is read line by line as it comes, to split the wall time:
    spawn -> ``--- workspace`` (interpreter, imports, the file, the balance, packing), -> ``--- running
    on`` (demand, negotiation, agreement), -> the first ``==>`` (activity, deploy, start, the workspace
    uploaded and unpacked, caches restored), -> the last step's ``--- NAME: passed`` line, -> the last
    ``--- artifact`` line (caches saved, artifacts packed, brought back and unpacked), -> exit (activity
    destroyed, agreement terminated, the cost read once the channel settled, the JSON printed).

  Overhead per job = network job wall - local job wall of the same round; overhead per step = mean over
  the steps of (network step seconds - local step seconds). Median and best of the rounds.
* **cold vs warm cache**: a second tree whose pipeline has ``cache: {key: deps-${{ hashFiles('deps.lock')
  }}, paths: [.deps]}`` and a first step ``deps`` that, when ``.deps`` is missing, writes ``--deps-mib``
  MiB of random bytes there and sleeps ``--deps-sleep`` s (the cost of fetching dependencies), and does
  nothing when it is there. Per round, ``deps.lock`` gets new content (a new key, so the first run is
  cold), then the pipeline runs twice with the same requestor: **cold** (``caches[0].status`` ``miss``,
  saved after the job) and **warm** (``hit`` on the provider that saved it, or ``uploaded`` from the
  requestor's copy). Printed: job wall and the ``deps`` step's seconds of each, the JSON's cache status
  (``n/a`` when a run's JSON has no ``caches``), whether it was saved, its bytes and seconds, and which
  provider ran each. Local baselines: the same steps in a fresh container without ``.deps`` (cold) and
  with a ``.deps/blob`` of the same size copied in with the tree (warm).

Goals (ours; the 1-task batch aims at < 2 s from spawn to result): a network job at most 2 s longer than
the same job run locally; each step at most 0.1 s longer; a warm ``deps`` step as cheap as locally with
``.deps`` present and a warm job faster than a cold one. No timing is asserted.

Every daemon is stopped by PID in a ``finally``; the local containers carry a ``network.yagna.bench``
label and are removed after each job (and by that label at the end), the providers' containers and
volumes are removed by their ``network.yagna.node`` label; the temporary folder goes.

Run: ``python bench/pipelines.py [--runs 3] [--warmup 1] [--deps-mib 8] [--deps-sleep 2]``. Takes ~45 s.
``--smoke``: 1 round, no warm-up, 1 MiB and 0.5 s of dependencies; ~15 s (CI). Needs Docker and
``local/busybox:1``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import Devnet, report_logs, wait_for  # noqa: E402
from _util import REPO, SMOKE_HELP, Procs, apply_smoke, loadavg, machine, table, time_budget  # noqa: E402
from exeunit_activity import IMAGE, LABEL_BENCH, LABEL_NODE, cleanup_docker, ensure_image, run_tag  # noqa: E402

sys.path.insert(0, str(REPO))
from requestor_sdk.pipeline_file import Job, load_pipeline  # noqa: E402

SOURCES = {
    "src/a.txt": "hello from a\n",
    "src/b.txt": "the second part\n",
    "src/c.txt": "and the third\n",
    ".gitignore": "out/\n.deps/\n",
    "README": "a tiny tree for bench/pipelines.py\n",
}
PLAIN = """\
image: @IMAGE@
steps:
  - name: build
    run: mkdir -p out && cat src/*.txt > out/app
  - name: test
    run: grep -q hello out/app
artifacts: [out/app]
"""
CACHED = """\
image: @IMAGE@
cache:
  key: deps-${{ hashFiles('deps.lock') }}
  paths: [.deps]
steps:
  - name: deps
    run: |
      [ -d .deps ] || { mkdir .deps; dd if=/dev/urandom of=.deps/blob bs=1M count=@MIB@ 2>/dev/null; sleep @SLEEP@; }
  - name: build
    run: mkdir -p out && cat src/*.txt > out/app && [ -s .deps/blob ]
  - name: test
    run: grep -q hello out/app
artifacts: [out/app]
"""
STEP_DONE = re.compile(r"^--- (?P<name>.+): (?:passed|failed.*|timed-out|skipped) \(exit code [^)]*\) in [0-9.]+ s$")


# -- the source trees -----------------------------------------------------------------------------
def make_tree(root: Path, pipeline: str) -> Path:
    """The tree with its ``.yagna/pipeline.yml``; returns the file."""
    for rel, text in SOURCES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "deps.lock").write_text("libdeps==1.0\n")
    file = root / ".yagna" / "pipeline.yml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(pipeline)
    return file


def tree_tar(root: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The tree (without ``.yagna/artifacts``) as an uncompressed tar, plus ``extra`` files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if rel == ".yagna/artifacts" or rel.startswith(".yagna/artifacts/"):
                continue
            tf.add(path, arcname=rel, recursive=False)
        for rel, data in (extra or {}).items():
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- local: plain Docker ----------------------------------------------------------------------------
def docker(*args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
    out = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:4])}: exit {out.returncode}: "
                         f"{out.stderr.decode(errors='replace').strip()[-2000:]}")
    return out.stdout.decode(errors="replace")


@dataclass
class Local:
    wall: float
    steps: dict[str, float]
    setup: float
    """``docker run -d`` + the tree copied in."""
    artifacts: float
    """The artifacts out (``docker cp``)."""
    remove: float
    """``docker rm -f``."""


def local_job(job: Job, artifacts: tuple[str, ...], tree: Path, out: Path, tag: str,
              extra: dict[str, bytes] | None = None) -> Local:
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    cid = docker("run", "-d", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", IMAGE, "sleep", "3600").strip()
    try:
        docker("exec", "-i", cid, "sh", "-ec", "mkdir -p /work/ws && tar -xf - -C /work/ws",
               stdin=tree_tar(tree, extra))
        t_setup = time.perf_counter()
        for step in job.steps:
            env = [x for k, v in {**job.env, **step.env}.items() for x in ("-e", f"{k}={v}")]
            workdir = "/work/ws" + ("" if step.workdir == "." else f"/{step.workdir}")
            t = time.perf_counter()
            docker("exec", "-w", workdir, *env, cid, "sh", "-ec", step.run, timeout=step.timeout_s + 10)
            steps[step.name] = time.perf_counter() - t
        t_steps = time.perf_counter()
        for rel in artifacts:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            docker("cp", f"{cid}:/work/ws/{rel}", str(out / rel))
        t_artifacts = time.perf_counter()
    finally:
        docker("rm", "-f", cid)
    t_end = time.perf_counter()
    return Local(wall=t_end - t0, steps=steps, setup=t_setup - t0, artifacts=t_artifacts - t_steps,
                 remove=t_end - t_artifacts)


# -- network: yagna pipeline run --------------------------------------------------------------------
class Net(Devnet):
    def name_of(self, node_id: str | None) -> str:
        return next((d.name for d in self.provs if d.node_id == node_id), str(node_id)[:12])


@dataclass
class Remote:
    wall: float
    result: dict[str, Any]
    lines: list[tuple[float, str]] = field(default_factory=list)
    """The CLI's stderr: (seconds since spawn, line)."""

    @property
    def steps(self) -> dict[str, float]:
        return {str(s["name"]): float(s["seconds"]) for s in self.result["steps"]}

    def mark(self, prefix: str, last: bool = False) -> float | None:
        found = [t for t, line in self.lines if line.startswith(prefix)]
        return (found[-1] if last else found[0]) if found else None

    def phases(self) -> dict[str, float]:
        """Spawn -> workspace packed -> leased -> first step -> last step done -> last artifact line -> exit,
        as durations (``artifacts``: caches saved and artifacts brought back; ``teardown``: the rest)."""
        packed, leased, first = self.mark("--- workspace "), self.mark("--- running on "), self.mark("==> ")
        done = [t for t, line in self.lines if STEP_DONE.match(line)]
        artifact = self.mark("--- artifact ", last=True)
        marks = [0.0, packed, leased, first, done[-1] if done else None, artifact, self.wall]
        if any(m is None for m in marks):
            return {}
        m = [float(x) for x in marks if x is not None]
        return {"startup": m[1] - m[0], "lease": m[2] - m[1], "setup": m[3] - m[2], "steps": m[4] - m[3],
                "artifacts": m[5] - m[4], "teardown": m[6] - m[5]}

    def cache(self) -> dict[str, Any] | None:
        caches = self.result.get("caches")
        return caches[0] if caches else None


def net_job(net: Net, file: Path, out: Path, timeout: float = 300) -> Remote:
    tree = file.parent.parent
    argv = net.argv("pipeline", "run", str(file), "--json", "--out", str(out))
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = net.procs.spawn(argv, cwd=str(tree), env=net.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = proc.stderr

    def pump() -> None:
        for raw in stderr:
            lines.append((time.perf_counter() - t0, raw.decode(errors="replace").rstrip("\n")))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stdout = proc.stdout.read()
    proc.wait(timeout)
    wall = time.perf_counter() - t0
    reader.join(10)
    net.procs.stop(proc)  # closes its pipes
    log = "\n".join(line for _, line in lines[-40:])
    if proc.returncode != 0:
        raise SystemExit(f"yagna pipeline run {file}: exit {proc.returncode}:\n"
                         f"{stdout.decode(errors='replace')}\n{log}")
    result = json.loads(stdout)
    if result.get("status") != "passed":
        raise SystemExit(f"yagna pipeline run {file}: {result.get('status')}: {result}\n{log}")
    return Remote(wall=wall, result=result, lines=lines)


# -- figures -----------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def best(values: list[float]) -> float:
    return min(values) if values else float("nan")


def each(values: list[Any]) -> str:
    return ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)


def plain_tables(net: Net, locs: list[Local], nets: list[Remote], names: list[str]) -> None:
    print(f"\n## Plain pipeline ({', '.join(names)}; 1 artifact): network vs local Docker, s "
          f"({len(nets)} round(s), interleaved; load average {loadavg()})")
    job_over = [n.wall - lo.wall for n, lo in zip(nets, locs)]
    step_over = [statistics.mean(n.steps[s] - lo.steps[s] for s in names) for n, lo in zip(nets, locs)]
    rows: list[list[object]] = [
        ["job wall (spawn -> exit | docker run -> rm)", med([n.wall for n in nets]), best([n.wall for n in nets]),
         med([lo.wall for lo in locs]), best([lo.wall for lo in locs]), med(job_over), best(job_over), "< 2 s"],
    ]
    for s in names:
        ns, ls = [n.steps[s] for n in nets], [lo.steps[s] for lo in locs]
        over = [a - b for a, b in zip(ns, ls)]
        rows.append([f"step {s} (JSON seconds | docker exec)", med(ns), best(ns), med(ls), best(ls), med(over),
                     best(over), "< 0.10 s"])
    rows.append(["overhead per step (mean over the steps)", "-", "-", "-", "-", med(step_over), best(step_over),
                 "< 0.10 s"])
    print(table(["measure", "network median", "network best", "local median", "local best",
                 "overhead median", "overhead best", "goal"], rows))
    print(f"each round, job wall s: network {each([n.wall for n in nets])}; local {each([lo.wall for lo in locs])}")

    ph = [n.phases() for n in nets]
    ph = [p for p in ph if p]

    def pm(key: str) -> float:
        return med([p[key] for p in ph]) if ph else float("nan")

    print(f"\n## Where a job's time goes, median s ({len(ph)} network round(s) split by the CLI's stderr lines)")
    print(table(["phase", "network", "local"], [
        ["spawn -> `--- workspace` (interpreter, imports, file, balance, pack)", pm("startup"), "-"],
        ["-> `--- running on` (demand, negotiation, agreement)", pm("lease"), "-"],
        ["-> first `==>` (activity, deploy, start, workspace in | docker run -d, tar in)", pm("setup"),
         med([lo.setup for lo in locs])],
        ["-> last step done (the steps | docker exec each)", pm("steps"), med([sum(lo.steps.values()) for lo in locs])],
        ["-> last `--- artifact` (artifacts packed, brought back, unpacked | docker cp)", pm("artifacts"),
         med([lo.artifacts for lo in locs])],
        ["-> exit (destroy, terminate, cost once settled, JSON | docker rm -f)", pm("teardown"),
         med([lo.remove for lo in locs])],
        ["total", med([n.wall for n in nets]), med([lo.wall for lo in locs])],
        ["the JSON's `seconds` (run_job: lease -> cost read)", med([float(n.result["seconds"]) for n in nets]), "-"],
    ]))
    print(f"cost per job: {', '.join(str(n.result.get('cost')) for n in nets)}; "
          f"providers: {', '.join(net.name_of(n.result.get('provider_id')) for n in nets)}")


def cache_tables(net: Net, pairs: list[tuple[Local, Remote, Local, Remote]], args: argparse.Namespace) -> None:
    lc, lw = [p[0] for p in pairs], [p[2] for p in pairs]
    nc, nw = [p[1] for p in pairs], [p[3] for p in pairs]

    def status(r: Remote) -> str:
        c = r.cache()
        return "n/a" if c is None else str(c.get("status", "n/a"))

    def cfield(r: Remote, key: str) -> str:
        c = r.cache()
        if c is None or key not in c:
            return "n/a"
        v = c[key]
        return ("yes" if v else "no") if isinstance(v, bool) else f"{v:.2f}" if isinstance(v, float) else str(v)

    def sided(rs: list[Remote], fn: Callable[[Remote], str]) -> str:
        return ", ".join(fn(r) for r in rs)

    dc, dw = [r.steps["deps"] for r in nc], [r.steps["deps"] for r in nw]
    print(f"\n## Cold vs warm cache ({args.deps_mib} MiB in .deps, {args.deps_sleep} s of work when it misses; "
          f"{len(pairs)} round(s), a new deps.lock each; load average {loadavg()})")
    print(table(["measure", "cold", "warm", "local cold", "local warm", "goal"], [
        ["job wall, s (median)", med([r.wall for r in nc]), med([r.wall for r in nw]), med([lo.wall for lo in lc]),
         med([lo.wall for lo in lw]), "warm < cold"],
        ["job wall, s (each)", each([r.wall for r in nc]), each([r.wall for r in nw]), each([lo.wall for lo in lc]),
         each([lo.wall for lo in lw]), "-"],
        ["deps step, s (median)", med(dc), med(dw), med([lo.steps["deps"] for lo in lc]),
         med([lo.steps["deps"] for lo in lw]), "warm ~ local warm"],
        ["deps step, s (each)", each(dc), each(dw), each([lo.steps["deps"] for lo in lc]),
         each([lo.steps["deps"] for lo in lw]), "-"],
        ["cache status (JSON caches[0].status)", sided(nc, status), sided(nw, status), "-", "-", "miss / hit"],
        ["cache saved", sided(nc, lambda r: cfield(r, "saved")), sided(nw, lambda r: cfield(r, "saved")), "-", "-",
         "-"],
        ["cache bytes", sided(nc, lambda r: cfield(r, "bytes")), sided(nw, lambda r: cfield(r, "bytes")), "-", "-",
         "-"],
        ["cache seconds (restore + save)", sided(nc, lambda r: cfield(r, "seconds")),
         sided(nw, lambda r: cfield(r, "seconds")), "-", "-", "-"],
        ["provider", sided(nc, lambda r: net.name_of(r.result.get("provider_id"))),
         sided(nw, lambda r: net.name_of(r.result.get("provider_id"))), "-", "-", "warm on cold's"],
    ]))
    ph_c = [p for p in (r.phases() for r in nc) if p]
    ph_w = [p for p in (r.phases() for r in nw) if p]
    if ph_c and ph_w:
        print("split, median s (cold | warm): " + "; ".join(
            f"{k} {med([p[k] for p in ph_c]):.2f} | {med([p[k] for p in ph_w]):.2f}"
            for k in ("startup", "lease", "setup", "steps", "artifacts", "teardown")))


# -- the run -------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> None:
    print(f"# pipelines: {machine()}, load average {loadavg()}")
    ensure_image()
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-pipelines-")
    tmp = Path(tmpdir.name)
    tag = run_tag()
    net = Net(procs, tmp)
    try:
        plain_file = make_tree(tmp / "plain", PLAIN.replace("@IMAGE@", IMAGE))
        cached_file = make_tree(tmp / "cached", CACHED.replace("@IMAGE@", IMAGE).replace("@MIB@", str(args.deps_mib))
                                .replace("@SLEEP@", f"{args.deps_sleep:g}"))
        plain, cached = load_pipeline(plain_file), load_pipeline(cached_file)
        (plain_job,), (cached_job,) = plain.jobs(), cached.jobs()
        names = [s.name for s in plain_job.steps]
        blob = {".deps/blob": os.urandom(args.deps_mib * 2**20)}
        outs = tmp / "out"

        t = time.perf_counter()
        net.up()
        print(f"devnet: 2 providers + 1 requestor up and funded in {time.perf_counter() - t:.1f} s")

        for i in range(args.warmup):
            local_job(plain_job, plain.artifacts, plain_file.parent.parent, outs / f"warm-local-{i}", tag)
            net_job(net, plain_file, outs / f"warm-net-{i}")

        locs: list[Local] = []
        nets: list[Remote] = []
        pairs: list[tuple[Local, Remote, Local, Remote]] = []
        for i in range(args.runs):
            locs.append(local_job(plain_job, plain.artifacts, plain_file.parent.parent, outs / f"local-{i}", tag))
            nets.append(net_job(net, plain_file, outs / f"net-{i}"))
            if (outs / f"net-{i}" / "out" / "app").read_bytes() != (outs / f"local-{i}" / "out" / "app").read_bytes():
                raise SystemExit("the network's out/app differs from the local one")

        for i in range(args.runs):
            (cached_file.parent.parent / "deps.lock").write_text(f"libdeps=={i}.{secrets.token_hex(4)}\n")
            cached_tree = cached_file.parent.parent
            cold_l = local_job(cached_job, cached.artifacts, cached_tree, outs / f"cold-local-{i}", tag)
            cold_n = net_job(net, cached_file, outs / f"cold-net-{i}")
            warm_l = local_job(cached_job, cached.artifacts, cached_tree, outs / f"warm-local-{i}", tag, extra=blob)
            warm_n = net_job(net, cached_file, outs / f"warm-net-{i}")
            pairs.append((cold_l, cold_n, warm_l, warm_n))

        plain_tables(net, locs, nets, names)
        cache_tables(net, pairs, args)
        print("goals (ours): network job <= local + 2 s; each step <= local + 0.1 s; a warm deps step about as cheap "
              "as locally with .deps present, a warm job faster than a cold one. No timing is asserted.")
    finally:
        signal.alarm(0)
        node_ids = net.node_ids
        for daemon in [*net.provs, net.req]:
            if daemon is not None and daemon.client is not None:
                daemon.client.close()
                daemon.client = None
        procs.close()
        report_logs(tmp)
        left = cleanup_docker(f"{LABEL_BENCH}={tag}", *(f"{LABEL_NODE}={i}" for i in node_ids))
        if left:
            print(f"(removed {left} leftover containers/volumes)", file=sys.stderr)
        tmpdir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds of each measure (local and network interleaved)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs of the plain pipeline, each side")
    parser.add_argument("--deps-mib", type=int, default=8, help="MiB the deps step writes into .deps when it misses")
    parser.add_argument("--deps-sleep", type=float, default=2.0, help="seconds the deps step sleeps when it misses")
    parser.add_argument("--budget", type=int, default=600, help="seconds before the run gives up")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, runs=1, warmup=0, deps_mib=1, deps_sleep=0.5, budget=150)
    time_budget(args.budget)
    run(args)


if __name__ == "__main__":
    main()
