"""Exe-unit latency through the requestor's REST API: activity creation to ready, and one exe-script round trip.

A provider daemon (``--role provider --max-threads 2 --max-mem-gib 2``, its
default preset: 1 thread, 1 GiB memory, 2 GiB disk) and a requestor daemon
bootstrapped to it sign one agreement (counter + ``POST /market/agreements``,
as in ``market_agreement.py``). Then, from the client's point of view (HTTP on
loopback included, one keep-alive connection to the requestor):

**(a) creation to ready**, ``--create-runs`` times (default 20, after 2
warm-up runs): ``POST /activity`` -> ``POST /activity/{id}/exec [deploy,
start]`` -> ``POST .../wait`` until the batch is done (the hardened container
created, started and ``/work/in`` + ``/work/out`` laid out). Each activity is
deleted after its run (``DELETE /activity/{id}``, timed apart). Baselines,
interleaved with it in the same run:

* the same hardened container created and started in-process through
  :class:`exeunit.docker_runtime.DockerRuntime` (``create`` + ``start``, the
  calls the provider makes; the limits of the same agreement), removed after;
* ``docker run -d --network none local/busybox:1 sleep 60`` via the docker CLI
  (the CLI process start included), ``docker rm -f`` after.

**(b) exe-script round trip**, ``--exec-runs`` times (default 100, after 5
warm-up): in one ready activity, ``POST .../exec [run ["true"]]`` -> ``POST
.../wait`` returns ``done``. Baselines, interleaved in rounds of 20:
``docker exec <that container> true`` through docker-py
(``exec_create`` + ``exec_start`` + ``exec_inspect``), and
:meth:`DockerRuntime.exec` in-process on a container it made (what the
provider calls for a ``run``: OOM counters read before and after, output
pumped on a thread, exit code polled).

Reference, Golem yagna 0.17.6: creating an activity takes 762 ms (its
activity service polls its database every 750 ms).

Run: ``python bench/exeunit_activity.py [--create-runs 20] [--exec-runs 100]``.
Takes ~60 s. Needs Docker and the test image (built by
``scripts/build-test-image.sh`` when missing). Every container this script
makes is removed in a ``finally`` (the provider's by their
``network.yagna.node`` label, ours by a ``network.yagna.bench`` label).

The helpers (:class:`ExePair`, :func:`cleanup_docker`, ...) are shared with
``exeunit_overhead.py`` and ``exeunit_transfer.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import MATCH_ALL, ApiError, Daemon, report_logs, wait_for  # noqa: E402
from _util import SMOKE_HELP, apply_smoke, REPO, Procs, machine, summary, table, time_budget  # noqa: E402

IMAGE = "local/busybox:1"
LABEL_NODE = "network.yagna.node"
LABEL_BENCH = "network.yagna.bench"
"""On every container and volume the benchmarks make themselves (value: the run's tag)."""
DEFAULT_PRESET = {"threads": 1, "mem_gib": 1.0, "storage_gib": 2.0}
"""The provider's default preset (market.presets.Preset defaults): what each agreement gets."""


# -- shared helpers (also used by exeunit_overhead.py and exeunit_transfer.py) ------------
def ensure_image() -> str:
    """The test image's id; builds it (seconds, no registry) when missing."""
    out = subprocess.run(["sh", str(REPO / "scripts" / "build-test-image.sh")], cwd=str(REPO),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"cannot build {IMAGE}: {out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1]


def run_tag() -> str:
    return f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Session:
    """One keep-alive HTTP connection to the requestor's activity API (one per thread)."""

    def __init__(self, base_url: Any, headers: dict[str, str]) -> None:
        import httpx

        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=90.0)

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: object, **kw: Any) -> Any:
        resp = self.client.post(path, json=body, **kw)
        if resp.status_code not in (200, 201):
            raise SystemExit(f"POST {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json()

    def create(self, agreement_id: str) -> str:
        return str(self._post("/activity", {"agreement_id": agreement_id})["activity_id"])

    def exec(self, activity_id: str, script: list[Any]) -> str:
        return str(self._post(f"/activity/{activity_id}/exec", {"script": script})["batch_id"])

    def wait(self, activity_id: str, batch_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Long-poll the wait endpoint until the batch is done; SystemExit on an error or a failed command."""
        deadline = time.monotonic() + timeout
        while True:
            view = self._post(f"/activity/{activity_id}/exec/{batch_id}/wait", {},
                              params={"timeout": max(0.1, min(20.0, deadline - time.monotonic()))})
            if view["done"]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"batch {batch_id} not done within {timeout} s")
        bad = [r for r in (view.get("results") or []) if r.get("error") or r.get("exit_code") not in (None, 0)]
        if view.get("error") or bad:
            raise SystemExit(f"batch {batch_id} failed: {view.get('error')} {bad[:1]}")
        return view  # type: ignore[no-any-return]

    def run(self, activity_id: str, script: list[Any], timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(activity_id, self.exec(activity_id, script), timeout)

    def destroy(self, activity_id: str) -> None:
        resp = self.client.delete(f"/activity/{activity_id}")
        if resp.status_code != 200:
            raise SystemExit(f"DELETE /activity/{activity_id}: HTTP {resp.status_code}: {resp.text[:300]}")


class ExePair:
    """A provider daemon and a requestor daemon bootstrapped to it, with a demand that matches every offer.

    ``preset`` (a name and its fields) is created on the provider; agreements are
    signed against its offer. Without it, the provider's default preset is used.
    """

    def __init__(self, procs: Procs, tmp: Path, *, max_threads: int = 2, max_mem_gib: float = 2.0,
                 max_storage_gib: float = 8.0, preset: dict[str, Any] | None = None,
                 keepalive_s: float = 30.0) -> None:
        self.procs, self.tmp = procs, tmp
        self.max_threads, self.max_mem_gib, self.max_storage_gib = max_threads, max_mem_gib, max_storage_gib
        self.preset = preset
        self.preset_name = preset["name"] if preset else "default"
        self.keepalive_s = keepalive_s
        self.prov: Daemon | None = None
        self.req: Daemon | None = None
        self.offer_id = ""
        self.demand_id = ""
        self.agreements: list[str] = []
        self._session: Session | None = None

    def start(self) -> ExePair:
        self.prov = Daemon(self.procs, self.tmp, "provider", [
            "--role", "provider", "--max-threads", str(self.max_threads), "--max-mem-gib", str(self.max_mem_gib),
            "--max-storage-gib", str(self.max_storage_gib), "--px-interval", "2",
            "--activity-keepalive", str(self.keepalive_s)]).start()
        self.req = Daemon(self.procs, self.tmp, "requestor", ["--role", "requestor", "--px-interval", "2",
                                                              "--bootstrap", self.prov.p2p_addr]).start()
        # An activity needs a funded requestor: its payment channel's deposit is taken at
        # `POST /activity` (409 insufficient-funds otherwise). Test-network tokens, plenty for every run.
        self.req.post("/payment/fund", {"amount": "100000"})
        if self.preset:
            self.prov.post("/provider/presets", {"runtime": "docker", "subnet": "public", **self.preset})
        wait_for(lambda: self._offer() is not None, 30, f"requestor lists the {self.preset_name!r} offer")
        self.offer_id = str(self._offer())
        demand = self.req.post("/market/demands", {"properties": {}, "constraints": MATCH_ALL, "subnet": "public"})
        self.demand_id = demand["demand_id"]
        return self

    def _offer(self) -> str | None:
        assert self.req is not None and self.prov is not None
        for o in self.req.get("/market/offers"):
            if o["provider_id"] == self.prov.node_id and o["properties"].get("yagna.preset") == self.preset_name:
                return str(o["offer_id"])
        return None

    def agreement(self) -> str:
        """Counter + agreement on the offer; returns the approved agreement's id."""
        assert self.req is not None
        # A signed agreement changes the provider's free capacity: it replaces its offers (new ids).
        wait_for(lambda: self._offer() is not None, 30, f"requestor lists a live {self.preset_name!r} offer")
        self.offer_id = str(self._offer())
        for attempt in range(50):
            try:
                self.req.post(f"/market/demands/{self.demand_id}/proposals/{self.offer_id}/counter", {})
                break
            except ApiError as exc:
                if exc.status != 404 or attempt == 49:
                    raise
                time.sleep(0.1)
                self.offer_id = str(self._offer())
        a = self.req.post("/market/agreements", {"demand_id": self.demand_id, "offer_id": self.offer_id})
        if a.get("state") != "approved":
            raise SystemExit(f"agreement not approved: {a}")
        self.agreements.append(a["agreement_id"])
        return str(a["agreement_id"])

    # -- activities (through the default session; see :class:`Session` for other threads) --------
    def session(self) -> Session:
        """A REST session of its own on the requestor (one per worker thread)."""
        assert self.req is not None and self.req.client is not None
        return Session(self.req.client.base_url, dict(self.req.client.headers))

    def _default(self) -> Session:
        if self._session is None:
            self._session = self.session()
        return self._session

    def create(self, agreement_id: str) -> str:
        return self._default().create(agreement_id)

    def exec(self, activity_id: str, script: list[Any]) -> str:
        return self._default().exec(activity_id, script)

    def wait(self, activity_id: str, batch_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return self._default().wait(activity_id, batch_id, timeout)

    def run(self, activity_id: str, script: list[Any], timeout: float = 60.0) -> dict[str, Any]:
        return self._default().run(activity_id, script, timeout)

    def destroy(self, activity_id: str) -> None:
        self._default().destroy(activity_id)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def container_of(self, activity_id: str) -> str:
        import docker

        found = docker.from_env().containers.list(all=True, filters={"label": f"network.yagna.activity={activity_id}"}, ignore_removed=True)
        if len(found) != 1:
            raise SystemExit(f"expected one container of activity {activity_id}, found {len(found)}")
        return str(found[0].id)

    @property
    def node_id(self) -> str:
        assert self.prov is not None
        return self.prov.node_id


def deploy_script(image: str = IMAGE) -> list[dict[str, Any]]:
    return [{"deploy": {"image": image}}, {"start": {}}]


def cleanup_docker(*labels: str) -> int:
    """Remove every container, then every volume, carrying one of ``labels`` (``key=value``); returns the count."""
    import docker

    removed = 0
    try:
        client = docker.from_env()
        for label in labels:
            for c in client.containers.list(all=True, filters={"label": label}, ignore_removed=True):
                try:
                    c.remove(force=True, v=True)
                    removed += 1
                except docker.errors.NotFound:
                    pass
            for v in client.volumes.list(filters={"label": label}):
                try:
                    v.remove(force=True)
                    removed += 1
                except docker.errors.NotFound:
                    pass
        client.close()
    except Exception as exc:  # noqa: BLE001 - a cleanup reports, never hides the benchmark's own error
        print(f"docker cleanup failed: {exc}", file=sys.stderr)
    return removed


def docker_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])}...: {out.stderr.strip()}")
    return out


def runtime_limits() -> Any:
    """The container limits of an agreement on the default preset (as the provider computes them)."""
    from exeunit.limits import CPU_THREADS, MEM_GIB, STORAGE_GIB, limits_from_agreement

    return limits_from_agreement({CPU_THREADS: DEFAULT_PRESET["threads"], MEM_GIB: DEFAULT_PRESET["mem_gib"],
                                  STORAGE_GIB: DEFAULT_PRESET["storage_gib"]})


def ms(seconds: float) -> float:
    return seconds * 1000


# -- (a) creation to ready -----------------------------------------------------------------
def create_ours(pair: ExePair, agreement_id: str) -> dict[str, float]:
    t0 = time.perf_counter()
    act = pair.create(agreement_id)
    t1 = time.perf_counter()
    batch = pair.exec(act, deploy_script())
    t2 = time.perf_counter()
    pair.wait(act, batch)
    t3 = time.perf_counter()
    pair.destroy(act)
    t4 = time.perf_counter()
    return {"create": ms(t1 - t0), "exec": ms(t2 - t1), "wait": ms(t3 - t2), "total": ms(t3 - t0),
            "delete": ms(t4 - t3)}


def create_runtime(image_id: str, tag: str, n: int) -> list[tuple[float, float]]:
    """``n`` times DockerRuntime.create + start (ms), then remove (ms), in one trio run."""
    import trio

    from exeunit.docker_runtime import DockerRuntime
    from exeunit.runtime import ContainerSpec

    async def main() -> list[tuple[float, float]]:
        rt = DockerRuntime(extra_labels={LABEL_BENCH: tag})
        out = []
        for _ in range(n):
            spec = ContainerSpec(image_id=image_id, limits=runtime_limits(), labels={LABEL_BENCH: tag})
            t0 = time.perf_counter()
            cid = await rt.create(spec)
            await rt.start(cid)
            t1 = time.perf_counter()
            await rt.remove(cid)
            out.append((ms(t1 - t0), ms(time.perf_counter() - t1)))
        return out

    return trio.run(main)


def create_cli(tag: str) -> tuple[float, float]:
    name = f"{tag}-run-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    docker_cli("run", "-d", "--network", "none", "--label", f"{LABEL_BENCH}={tag}", "--name", name, IMAGE, "sleep", "60")
    t1 = time.perf_counter()
    docker_cli("rm", "-f", name)
    return ms(t1 - t0), ms(time.perf_counter() - t1)


# -- (b) exe-script round trip -----------------------------------------------------------
def exec_ours(pair: ExePair, act: str, n: int, split: dict[str, list[float]] | None = None) -> list[float]:
    """``n`` round trips (ms); ``split`` gets the POST exec / wait parts and a GET /id before each."""
    assert pair.req is not None
    out = []
    for _ in range(n):
        t = time.perf_counter()
        pair.req.get("/id")
        t0 = time.perf_counter()
        batch = pair.exec(act, [{"run": {"argv": ["true"]}}])
        t1 = time.perf_counter()
        pair.wait(act, batch)
        t2 = time.perf_counter()
        out.append(ms(t2 - t0))
        if split is not None:
            split["id"].append(ms(t0 - t))
            split["exec"].append(ms(t1 - t0))
            split["wait"].append(ms(t2 - t1))
    return out


def exec_dockerpy(client: Any, container_id: str, n: int) -> list[float]:
    api = client.api
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        ex = api.exec_create(container_id, ["true"], stdout=True, stderr=True, user="1000:1000")
        api.exec_start(ex["Id"])
        code = api.exec_inspect(ex["Id"])["ExitCode"]
        out.append(ms(time.perf_counter() - t0))
        if code != 0:
            raise SystemExit(f"docker exec true exited {code}")
    return out


def exec_runtime(client: Any, container_id: str, n: int) -> list[float]:
    import trio

    from exeunit.docker_runtime import DockerRuntime

    async def main() -> list[float]:
        rt = DockerRuntime(lambda: client)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            res = await rt.exec(container_id, ["true"], env={}, workdir="/work", timeout_s=60)
            out.append(ms(time.perf_counter() - t0))
            if res.exit_code != 0:
                raise SystemExit(f"DockerRuntime.exec true exited {res.exit_code}")
        return out

    return trio.run(main)


def runtime_container(image_id: str, tag: str) -> str:
    import trio

    from exeunit.docker_runtime import DockerRuntime
    from exeunit.runtime import ContainerSpec

    async def main() -> str:
        rt = DockerRuntime(extra_labels={LABEL_BENCH: tag})
        cid = await rt.create(ContainerSpec(image_id=image_id, limits=runtime_limits(), labels={LABEL_BENCH: tag}))
        await rt.start(cid)
        return cid

    return trio.run(main)


def remove_runtime_container(client: Any, container_id: str) -> None:
    import trio

    from exeunit.docker_runtime import DockerRuntime

    trio.run(DockerRuntime(lambda: client).remove, container_id)


def row(label: str, values: list[float]) -> list[object]:
    s = summary(values)
    return [label, s["n"], s["median"], s["p99"], s["min"], s["max"]]


def run(args: argparse.Namespace) -> None:
    import docker

    print(f"# exeunit_activity: {machine()}, load average {os.getloadavg()[0]:.2f}")
    image_id = ensure_image()
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-exeact-")
    tmp = Path(tmpdir.name)
    tag = run_tag()
    time_budget(args.budget)
    pair = ExePair(procs, tmp, max_threads=2, max_mem_gib=2.0)
    ours: dict[str, list[float]] = {k: [] for k in ("create", "exec", "wait", "total", "delete")}
    rt_create: list[float] = []
    rt_remove: list[float] = []
    cli_create: list[float] = []
    cli_remove: list[float] = []
    ex_ours: list[float] = []
    ex_py: list[float] = []
    ex_rt: list[float] = []
    ex_split: dict[str, list[float]] = {"id": [], "exec": [], "wait": []}
    setup_s = 0.0
    client = docker.from_env()
    try:
        t = time.monotonic()
        pair.start()
        agreement_id = pair.agreement()
        setup_s = time.monotonic() - t

        # (a) warm-up, then interleaved: ours, runtime, CLI.
        for _ in range(2):
            create_ours(pair, agreement_id)
            create_runtime(image_id, tag, 1)
            create_cli(tag)
        for _ in range(args.create_runs):
            for k, v in create_ours(pair, agreement_id).items():
                ours[k].append(v)
            (c, r), = create_runtime(image_id, tag, 1)
            rt_create.append(c)
            rt_remove.append(r)
            c, r = create_cli(tag)
            cli_create.append(c)
            cli_remove.append(r)

        # (b) one ready activity of ours, one container of the runtime's; rounds of 20 of each kind.
        act = pair.create(agreement_id)
        pair.run(act, deploy_script())
        theirs = pair.container_of(act)
        mine = runtime_container(image_id, tag)
        exec_ours(pair, act, 5)
        exec_dockerpy(client, theirs, 5)
        exec_runtime(client, mine, 5)
        left = args.exec_runs
        while left > 0:
            k = min(20, left)
            ex_ours += exec_ours(pair, act, k, ex_split)
            ex_py += exec_dockerpy(client, theirs, k)
            ex_rt += exec_runtime(client, mine, k)
            left -= k
        pair.destroy(act)
        remove_runtime_container(client, mine)
    finally:
        signal.alarm(0)
        pair.close()
        procs.close()
        n = cleanup_docker(f"{LABEL_BENCH}={tag}", *([f"{LABEL_NODE}={pair.node_id}"] if pair.prov else []))
        client.close()
        report_logs(tmp)
        tmpdir.cleanup()
    if n:
        print(f"(removed {n} containers/volumes left behind)")

    print(f"\nprovider + requestor up, agreement signed in {setup_s:.1f} s")
    print(f"\n## (a) Activity creation -> ready, ms ({len(ours['total'])} runs after 2 warm-up, interleaved)")
    rows = [
        row("ours: POST /activity -> exec [deploy, start] -> batch done", ours["total"]),
        row("  of which POST /activity (libp2p create + DB rows)", ours["create"]),
        row("  of which POST .../exec (script to wire, libp2p exec)", ours["exec"]),
        row("  of which .../wait until done (deploy + start + events)", ours["wait"]),
        row("baseline: DockerRuntime.create + start in-process", rt_create),
        row("baseline: docker run -d --network none ... sleep 60 (CLI)", cli_create),
        ["reference: Golem yagna 0.17.6, create activity", "", 762.0, "", "", ""],
        row("(ours: DELETE /activity, not in the figure)", ours["delete"]),
        row("(DockerRuntime.remove, not in the figure)", rt_remove),
        row("(docker rm -f (CLI), not in the figure)", cli_remove),
    ]
    print(table(["what", "n", "p50", "p99", "min", "max"], rows))
    med = summary(ours["total"])["median"]
    print(f"ours / DockerRuntime: {med / summary(rt_create)['median']:.2f}x; "
          f"ours / docker run CLI: {med / summary(cli_create)['median']:.2f}x; "
          f"ours - DockerRuntime = {med - summary(rt_create)['median']:.0f} ms of daemon, HTTP and libp2p")

    print(f"\n## (b) Exe-script round trip, run [\"true\"] in a ready activity, ms ({len(ex_ours)} each, "
          f"rounds of 20 interleaved)")
    rows = [
        row("ours: POST .../exec -> POST .../wait says done", ex_ours),
        row("  of which POST .../exec -> batch id (libp2p exec)", ex_split["exec"]),
        row("  of which POST .../wait -> done (run + event pump)", ex_split["wait"]),
        row("baseline: GET /api/v1/id (HTTP + auth, same connection)", ex_split["id"]),
        row("baseline: DockerRuntime.exec in-process", ex_rt),
        row("baseline: docker exec via docker-py (create+start+inspect)", ex_py),
    ]
    print(table(["what", "n", "p50", "p99", "min", "max"], rows))
    print(f"ours / DockerRuntime.exec: {summary(ex_ours)['median'] / summary(ex_rt)['median']:.2f}x; "
          f"ours / docker-py exec: {summary(ex_ours)['median'] / summary(ex_py)['median']:.2f}x")
    print(f"load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--create-runs", type=int, default=20, help="activities created to ready (a)")
    parser.add_argument("--exec-runs", type=int, default=100, help="run [true] round trips (b)")
    parser.add_argument("--budget", type=int, default=170, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, create_runs=2, exec_runs=5)
    run(args)


if __name__ == "__main__":
    main()
