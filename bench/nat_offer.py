"""A private provider's start -> its offer listed by a private requestor, across the NAT testbed vs loopback.

NEEDS_ROOT: the testbed is made of network namespaces (Linux, root). Not root: the bench says
so and exits 0 without figures; e2e/test_bench_smoke.py skips it there.

Both layouts run a bootstrap node (``--role requestor``) and a requestor bootstrapped to it;
then, ``--runs`` times (after one uncounted warm-up), a provider with a fresh data dir (a new identity) is spawned,
bootstrapped to the same node, and the requestor's ``GET /market/offers`` is polled every
5 ms until the new provider's offer is there; the provider is then stopped.

* **loopback**: every daemon on 127.0.0.1 (as ``yagna devnet up``);
* **NAT testbed**: the bootstrap is public-1 on the internet segment, the requestor and the
  provider each behind its own ``easy`` NAT (docs/testbed.md), every daemon started with
  ``ip netns exec``; the offer reaches the requestor by gossip through public-1 (neither
  private node can dial the other). The requestor's API is asked from a thread inside its
  namespace (``yagna.netlab.netns``). Once without delay (what the NATs and the bridge cost),
  once with ``--delay-ms`` (default 20) one way per link (40 ms RTT between sites; netem, or
  the testbed's user-space delay).

Printed per layout, ms (median, max): spawn -> the provider's ``node.json`` (its start),
ready -> offer at the requestor, spawn -> offer at the requestor.

Run: ``python bench/nat_offer.py [--runs 5] [--delay-ms 20]`` (~40 s); ``--smoke`` (1 run) ~30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import PYTHON, SMOKE_HELP, Procs, apply_smoke, machine, table, tail  # noqa: E402

NEEDS_ROOT = True
PORT = 4001


class Node:
    """A daemon, in a namespace or not; its API asked from inside that namespace."""

    def __init__(self, procs: Procs, tmp: Path, name: str, args: list[str], netns: str | None = None) -> None:
        self.procs, self.name, self.args, self.netns = procs, name, args, netns
        self.data_dir = tmp / name
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.t_spawn = self.t_ready = 0.0

    def spawn(self) -> Node:
        cmd = [PYTHON, "-m", "yagna", "--data-dir", str(self.data_dir), "service", "run", "--api-port", "0",
               "--px-interval", "2", *self.args]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd, "--listen", f"/ip4/0.0.0.0/tcp/{PORT}"]
        env = dict(os.environ, XDG_DATA_HOME=str(self.data_dir.parent))
        with open(self.log, "ab") as log:
            self.t_spawn = time.monotonic()
            self.proc = self.procs.spawn(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        return self

    def wait_ready(self, timeout: float = 60.0) -> Node:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log, 30)}")
            try:
                info = json.loads((self.data_dir / "node.json").read_text())
                if info.get("pid") == self.proc.pid:
                    self.t_ready = time.monotonic()
                    self.info = info
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        raise SystemExit(f"{self.name} not ready within {timeout} s:\n{tail(self.log, 30)}")

    def get(self, path: str) -> Any:
        key = (self.data_dir / "app-key").read_text().strip()

        def call() -> Any:
            resp = httpx.get(f"{self.info['api_url']}/api/v1{path}", headers={"Authorization": f"Bearer {key}"},
                             timeout=10.0)
            resp.raise_for_status()
            return resp.json()

        if self.netns is None:
            return call()
        from yagna.netlab.netns import run_in_netns

        return run_in_netns(self.netns, call, timeout=30.0)

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)

    @property
    def node_id(self) -> str:
        return str(self.info["node_id"])


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.005)
    raise SystemExit(f"timed out: {what}")


def _runs(procs: Procs, tmp: Path, runs: int, sites: dict[str, str | None], boot_ip: str | None) -> list[list[float]]:
    """``sites``: role name -> namespace (or None on loopback). Returns [start, propagate, total] ms per run."""
    boot = Node(procs, tmp, "boot", ["--role", "requestor"], sites["boot"]).spawn().wait_ready()
    addr = (f"/ip4/{boot_ip}/tcp/{PORT}/p2p/{boot.node_id}" if boot_ip else boot.info["p2p_addrs"][0])
    req = Node(procs, tmp, "req", ["--role", "requestor", "--bootstrap", addr], sites["req"]).spawn().wait_ready()
    _wait(lambda: any(p["node_id"] == boot.node_id and p["connected"] for p in req.get("/net/peers")), 60,
          "requestor connected to the bootstrap")
    out = []
    for i in range(runs + 1):  # the first one warms up (page cache, Docker client, code caches): not counted
        prov = Node(procs, tmp, f"prov{i}", ["--role", "provider", "--bootstrap", addr], sites["prov"]).spawn()
        prov.wait_ready()
        seen = _wait(lambda: prov.node_id in {o.get("provider_id") for o in req.get("/market/offers")}, 60,
                     f"offer of provider {i} at the requestor")
        if i:
            out.append([(prov.t_ready - prov.t_spawn) * 1e3, (seen - prov.t_ready) * 1e3, (seen - prov.t_spawn) * 1e3])
        prov.stop()
    req.stop()
    boot.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay per link of the delayed layout")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, runs=1)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print("bench/nat_offer.py needs Linux and root (network namespaces); nothing measured")
        return

    from yagna.netlab.testbed import Testbed
    from yagna.netlab.topology import Impairment, Site, Topology, new_tag

    print(f"# a private provider's start -> its offer at a private requestor ({machine()}, "
          f"load average {os.getloadavg()[0]:.2f})\n")
    results: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        procs = Procs()
        try:
            (tmp / "lo").mkdir()
            results["loopback"] = _runs(procs, tmp / "lo", args.runs, {"boot": None, "req": None, "prov": None}, None)
            procs.close()
            for delay_ms in (0.0, args.delay_ms):
                link = Impairment(delay_ms=delay_ms)
                topo = Topology(new_tag(), (Site("public-1", None, link), Site("requestor", "easy", link),
                                            Site("provider", "easy", link)))
                bed = Testbed(tmp / f"bed{delay_ms:g}")
                try:
                    built = bed.up(topo)
                    name = "NAT testbed" + (f", {delay_ms:g} ms/link ({built.delay})" if delay_ms else "")
                    if delay_ms and built.topology != topo:
                        print(f"(no way to add delay on this kernel: {name} not measured)")
                        continue
                    work = tmp / f"nat{delay_ms:g}"
                    work.mkdir()
                    sites = {"boot": topo.site("public-1").node_ns, "req": topo.site("requestor").node_ns,
                             "prov": topo.site("provider").node_ns}
                    results[name] = _runs(procs, work, args.runs, sites, topo.site("public-1").node_ip)
                finally:
                    procs.close()
                    bed.down()
        finally:
            procs.close()

    rows = []
    for name, runs in results.items():
        cols = list(zip(*runs))
        rows.append([name, len(runs)] + [v for c in cols for v in (statistics.median(c), max(c))])
    print(table(["layout", "runs", "start med", "start max", "ready->offer med", "ready->offer max",
                 "spawn->offer med", "spawn->offer max"], rows))


if __name__ == "__main__":
    main()
