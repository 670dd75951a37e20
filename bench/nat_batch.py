"""Time to the first result of a 1-task ``yagna batch run`` across the NAT testbed (with its delay) vs loopback.

NEEDS_ROOT: the testbed is made of network namespaces (Linux, root). Not root: the bench says
so and exits 0 without figures; e2e/test_bench_smoke.py skips it there. Needs Docker and
``local/busybox:1`` (built when missing, as the other batch benches do).

Each layout runs a bootstrap node (``--role requestor``), a funded requestor and one provider;
the requestor knows only the bootstrap. ``--runs`` times (after one uncounted warm-up) the
requestor's CLI runs a 1-task job (``echo hello``, redundancy 1): ``yagna batch run JOB --out
DIR --json --quiet``, spawn -> exit (the result is in the manifest then), checked to say hello.

* **loopback**: every daemon on 127.0.0.1 (``yagna devnet up``'s layout);
* **NAT -> public provider**: the testbed with ``--delay-ms`` (default 20) one way per link
  (40 ms RTT between sites; netem or the user-space delay): the bootstrap public-1 and the
  provider on the internet segment, the requestor behind an ``easy`` NAT: every byte of the
  job crosses the requestor's NAT and two delayed links;
* **NAT -> NAT (easy / hard) provider**: the provider behind an ``easy`` NAT (a direct
  connection needs hole punching) or a ``hard`` one (only a relay reaches it): the requestor
  meets it through public-1's circuit relay; behind the easy NAT DCUtR then punches a direct
  connection (yagna/net/holepunch.py). Skipped (and said so) with a daemon without
  ``service run --relay-service``.

Printed per layout, s: median, min, max of spawn -> exit.

Run: ``python bench/nat_batch.py [--runs 5] [--delay-ms 20]`` (~1 min); ``--smoke`` (1 run) ~30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import PYTHON, REPO, SMOKE_HELP, Procs, apply_smoke, machine, table  # noqa: E402
from batch_first_result import write_job  # noqa: E402
from exeunit_activity import LABEL_NODE, cleanup_docker, ensure_image  # noqa: E402
from nat_offer import PORT, Node, _wait  # noqa: E402

NEEDS_ROOT = True


def _cli(req: Node, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    argv = [PYTHON, "-m", "yagna", "--data-dir", str(req.data_dir), *args]
    if req.netns is not None:
        argv = ["ip", "netns", "exec", req.netns, *argv]
    env = dict(os.environ, XDG_DATA_HOME=str(req.data_dir.parent))
    return subprocess.run(argv, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _layout(procs: Procs, tmp: Path, runs: int, namespaces: dict[str, str | None], boot_ip: str | None,
            job: Path) -> list[float]:
    """Start boot, requestor, provider (in ``namespaces``); fund; time ``runs`` batch runs (after a warm-up)."""
    tmp.mkdir()
    boot = Node(procs, tmp, "boot", ["--role", "requestor"], namespaces["boot"]).spawn().wait_ready()
    addr = f"/ip4/{boot_ip}/tcp/{PORT}/p2p/{boot.node_id}" if boot_ip else boot.info["p2p_addrs"][0]
    req = Node(procs, tmp, "req", ["--role", "requestor", "--bootstrap", addr], namespaces["req"]).spawn()
    prov = Node(procs, tmp, "prov", ["--role", "provider", "--bootstrap", addr], namespaces["prov"]).spawn()
    req.wait_ready()
    prov.wait_ready()
    try:
        _wait(lambda: prov.node_id in {o.get("provider_id") for o in req.get("/market/offers")}, 60,
              "the provider's offer at the requestor")
        # as `devnet up` waits: the requestor knows an address of the provider (on the testbed it
        # is told one once the provider advertises it: public after dial-backs, or a relay's)
        _wait(lambda: any(p["node_id"] == prov.node_id and p.get("addrs") for p in req.get("/net/peers?all=true")),
              60, "an address of the provider at the requestor")
        funded = _cli(req, "payment", "fund", "--amount", "5")
        if funded.returncode != 0:
            raise SystemExit(f"payment fund: {funded.stderr[-1000:]}")
        out = []
        for i in range(runs + 1):
            dest = tmp / f"out{i}"
            t = time.perf_counter()
            proc = _cli(req, "batch", "run", str(job), "--out", str(dest), "--json", "--quiet")
            took = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(f"batch run failed ({proc.returncode}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
            task = json.loads((dest / "manifest.json").read_text())["tasks"][0]
            if task["status"] != "ok" or task["stdout"].strip() != "hello":
                raise SystemExit(f"unexpected result: {task}")
            if i:
                out.append(took)
            shutil.rmtree(dest)
        return out
    finally:
        provider_id = prov.info.get("node_id")
        for node in (req, prov, boot):
            node.stop()
        if provider_id:
            cleanup_docker(f"{LABEL_NODE}={provider_id}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay per link on the testbed")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, runs=1)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print("bench/nat_batch.py needs Linux and root (network namespaces); nothing measured")
        return
    ensure_image()

    from yagna.netlab.testbed import Testbed
    from yagna.netlab.topology import Impairment, NatKind, Site, Topology, new_tag

    relay = "--relay-service" in subprocess.run([PYTHON, "-m", "yagna", "service", "run", "--help"],
                                                capture_output=True, text=True, cwd=str(REPO)).stdout
    print(f"# 1-task batch: spawn -> result, testbed vs loopback ({machine()}, "
          f"load average {os.getloadavg()[0]:.2f})\n")
    results: dict[str, list[float]] = {}
    providers: list[tuple[str, NatKind | None]] = [("public provider", None)]
    if relay:
        providers += [("easy-NAT provider", "easy"), ("hard-NAT provider", "hard")]
    else:
        print("(the daemon has no circuit relay yet: providers behind NAT are unreachable, not measured)\n")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        job = write_job(tmp / "job.toml", ["echo", "hello"], [{"n": "1"}], max_providers=1)
        procs = Procs()
        try:
            results["loopback"] = _layout(procs, tmp / "lo", args.runs, {"boot": None, "req": None, "prov": None},
                                          None, job)
            procs.close()
            link = Impairment(delay_ms=args.delay_ms)
            for label, kind in providers:
                topo = Topology(new_tag(), (Site("public-1", None, link), Site("requestor", "easy", link),
                                            Site("provider", kind, link)))
                bed = Testbed(tmp / f"bed-{kind}")
                try:
                    built = bed.up(topo)
                    delay = f"{args.delay_ms:g} ms/link ({built.delay})" if built.topology == topo else "no delay"
                    namespaces = {"boot": topo.site("public-1").node_ns, "req": topo.site("requestor").node_ns,
                                  "prov": topo.site("provider").node_ns}
                    results[f"NAT requestor -> {label}, {delay}"] = _layout(
                        procs, tmp / f"nat-{kind}", args.runs, namespaces, topo.site("public-1").node_ip, job)
                finally:
                    procs.close()
                    bed.down()
        finally:
            procs.close()
    rows = [[name, len(v), statistics.median(v), min(v), max(v)] for name, v in results.items()]
    print(table(["layout", "runs", "median s", "min s", "max s"], rows))


if __name__ == "__main__":
    main()
