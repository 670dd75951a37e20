"""Real ``yagna`` daemons for the market benchmarks (separate processes).

:class:`Daemon` spawns ``python -m yagna --data-dir DIR service run --api-port 0 ...``
through :class:`_util.Procs` (so the caller's ``finally: procs.close()`` ends it by
PID), waits for ``DIR/node.json`` to name its PID, and talks to its REST API
with the app key from ``DIR/app-key`` over one keep-alive ``httpx.Client``.
Children get ``XDG_DATA_HOME`` set to the benchmark's temporary directory and
listen on 127.0.0.1 only (the daemon's default).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from _util import PYTHON, REPO, Procs, tail

OFFERS_TOPIC = "yagna/market/1/testnet/public/offers"
MATCH_ALL = "(golem.inf.cpu.threads>=1)"
SMALL_PRESET = {"runtime": "docker", "threads": 1, "mem_gib": 0.01, "storage_gib": 0.01, "subnet": "public"}


def child_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(tmp)
    env.pop("YAGNA_API_PORT", None)
    return env


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Daemon:
    """One daemon process; ``spawn()`` then ``wait_ready()`` (or ``start()`` for both)."""

    def __init__(self, procs: Procs, tmp: Path, name: str, args: list[str]) -> None:
        self.procs = procs
        self.tmp = tmp
        self.name = name
        self.args = args
        self.data_dir = tmp / name
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.client: httpx.Client | None = None
        self.t_spawn = 0.0
        self.t_ready = 0.0

    # -- lifecycle ----------------------------------------------------------------
    def spawn(self) -> Daemon:
        with open(self.log, "ab") as log:
            self.t_spawn = time.time()
            # BENCH_PROFILE_DIR=DIR: run the daemon under cProfile, stats in DIR/<name>.prof at its exit
            prof_dir = os.environ.get("BENCH_PROFILE_DIR")
            prof = ["-m", "cProfile", "-o", str(Path(prof_dir) / f"{self.name}.prof")] if prof_dir else []
            self.proc = self.procs.spawn(
                [PYTHON, *prof, "-m", "yagna", "--data-dir", str(self.data_dir), "service", "run", "--api-port", "0",
                 *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env(self.tmp),
            )
        return self

    def wait_ready(self, timeout: float = 40.0, poll: float = 0.005) -> Daemon:
        """Wait until node.json names this PID; ``t_ready`` is when it was seen."""
        assert self.proc is not None
        node_file = self.data_dir / "node.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log, 30)}")
            try:
                info = json.loads(node_file.read_text())
                if info.get("pid") == self.proc.pid:
                    self.t_ready = time.time()
                    self.info = info
                    key = (self.data_dir / "app-key").read_text().strip()
                    self.client = httpx.Client(base_url=f"{info['api_url']}/api/v1",
                                               headers={"Authorization": f"Bearer {key}"}, timeout=30.0)
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(poll)
        raise SystemExit(f"{self.name} not ready within {timeout} s:\n{tail(self.log, 30)}")

    def start(self, timeout: float = 40.0) -> Daemon:
        return self.spawn().wait_ready(timeout)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            self.procs.stop(self.proc)

    # -- API ------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return str(self.info["node_id"])

    @property
    def p2p_addr(self) -> str:
        return str(self.info["p2p_addrs"][0])

    def api(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202, 204), **kw: Any) -> Any:
        assert self.client is not None, f"{self.name} is not running"
        resp = self.client.request(method, path, **kw)
        if resp.status_code not in ok:
            raise ApiError(resp.status_code, resp.text, f"{self.name} {method} {path}")
        return resp.json() if resp.content else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.api("GET", path, **kw)

    def post(self, path: str, body: object | None = None, **kw: Any) -> Any:
        return self.api("POST", path, json=body if body is not None else {}, **kw)

    def connected(self) -> set[str]:
        return {p["node_id"] for p in self.get("/net/peers") if p["connected"]}

    def offer_ids(self) -> set[str]:
        return {o["offer_id"] for o in self.get("/market/offers")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the seconds it took (SystemExit on timeout)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{what}: not reached within {timeout} s")
        time.sleep(interval)


def report_logs(tmp: Path, names: list[str] | None = None) -> None:
    """Print the stderr tail of any daemon that logged an error or a traceback.

    With ``BENCH_KEEP_LOGS=DIR`` in the environment, every log is also copied there.
    """
    import shutil
    import sys

    keep = os.environ.get("BENCH_KEEP_LOGS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for path in tmp.glob("*.log"):
            shutil.copy(path, Path(keep) / path.name)

    for path in sorted(tmp.glob("*.log")):
        if names is not None and path.stem not in names:
            continue
        text = path.read_text(errors="replace")
        bad = [ln for ln in text.splitlines() if "Traceback" in ln or " ERROR " in ln or "CRITICAL" in ln]
        if bad:
            print(f"\n{path.name}: {len(bad)} ERROR/Traceback lines; last lines of its log:\n"
                  f"{tail(path, 25)}", file=sys.stderr)


class Devnet:
    """Two providers and a requestor bootstrapped to both, funded with 100 test tokens (``up``)."""

    def __init__(self, procs: Procs, tmp: Path) -> None:
        self.procs, self.tmp = procs, tmp
        self.env = child_env(tmp)
        self.provs: list[Daemon] = []
        self.req: Daemon | None = None

    def up(self) -> Devnet:
        args = ["--role", "provider", "--px-interval", "2", "--activity-keepalive", "10"]
        first = Daemon(self.procs, self.tmp, "prov-1", args).start()
        second = Daemon(self.procs, self.tmp, "prov-2", [*args, "--bootstrap", first.p2p_addr]).start()
        self.provs = [first, second]
        req = self.req = Daemon(self.procs, self.tmp, "req", ["--role", "requestor", "--px-interval", "2",
                                                             "--bootstrap", first.p2p_addr,
                                                             "--bootstrap", second.p2p_addr]).start()
        wait_for(lambda: {o["provider_id"] for o in req.get("/market/offers")} >= {first.node_id, second.node_id},
                 30, "the requestor lists both providers' offers")
        self.cli("payment", "fund", "--amount", "100")
        return self

    def argv(self, *args: str) -> list[str]:
        """``yagna --data-dir <the requestor's> ARGS``."""
        assert self.req is not None
        return [PYTHON, "-m", "yagna", "--data-dir", str(self.req.data_dir), *args]

    def cli(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(self.argv(*args), cwd=str(REPO), env=self.env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise SystemExit(f"yagna {' '.join(args[:3])}: exit {out.returncode}: {out.stderr.strip()[-2000:]}")
        return out.stdout

    @property
    def node_ids(self) -> list[str]:
        """The daemons that started (for clean-up after a failed ``up`` too)."""
        return [d.node_id for d in (*self.provs, self.req) if d is not None and d.info]

    def provider(self, node_id: str) -> Daemon:
        return next(d for d in self.provs if d.node_id == node_id)
