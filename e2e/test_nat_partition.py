"""A link cut mid-batch and healed, on the NAT testbed (issue 13): a requestor behind NAT runs a batch
on three public providers; while one of them runs a task, its link is cut (every packet dropped,
no RST: connections hang as in a real outage) and healed seconds later. The batch finishes with
every task right, and the money adds up: what the requestor spent is what the job cost and what
the providers earned, nothing locked (nothing double-counted or lost).

Root, Linux, Docker and local/busybox:1 needed (CI has them); skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import docker

from e2e.daemons import wait_until
from e2e.natbed import NatNode, nat_devnet

LABEL_NODE = "network.yagna.node"
TASKS = 8
CUT_S = 8.0


def _running(node: NatNode) -> bool:
    return any(c.status == "running" for c in docker.from_env().containers.list(
        all=True, filters={"label": f"{LABEL_NODE}={node.node_id}"}, ignore_removed=True))


def _balance(node: NatNode) -> dict:  # type: ignore[type-arg]
    return node.cli_json("payment", "status")["balance"]  # type: ignore[no-any-return]


def test_link_cut_mid_batch_and_healed(tmp_path: Path, test_image: str) -> None:
    job = tmp_path / "job.toml"
    text = ('[job]\nimage = "local/busybox:1"\ncommand = ["sh", "-c", "sleep 2; echo done-{n}"]\n'
            'timeout = "60s"\nredundancy = 1\nbudget = "1"\nmax_providers = 3\n')
    for i in range(TASKS):
        text += f'\n[[task]]\nparams = {{ n = "{i}" }}\n'
    job.write_text(text)
    public = [arg for i in (1, 2, 3) for arg in ("--nat", f"provider-{i}=public")]
    with nat_devnet(tmp_path, 3, *public) as net:
        req, victim = net["requestor"], net["provider-1"]
        providers = [net[f"provider-{i}"] for i in (1, 2, 3)]
        req.cli("payment", "fund", "--amount", "2")
        out = tmp_path / "out"
        batch = subprocess.Popen(["ip", "netns", "exec", req.netns, sys.executable, "-m", "yagna", "--data-dir",
                                  str(req.data_dir), "batch", "run", str(job), "--out", str(out), "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: _running(victim), timeout=60, interval=0.05, what="a task runs on provider-1")
            net.link("provider-1", "--cut")
            time.sleep(CUT_S)  # the partition lasts this long (no result is timed)
            net.link("provider-1", "--heal")
            stdout, stderr = batch.communicate(timeout=180)
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.communicate()
        assert batch.returncode == 0, stdout[-3000:] + stderr[-3000:]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "ok"
        for t in manifest["tasks"]:
            assert t["status"] == "ok" and t["stdout"] == f"done-{t['params']['n']}\n", t
        assert victim.node_id in {p for t in manifest["tasks"] for p in t["providers"]} or any(
            a["provider_id"] == victim.node_id for t in manifest["tasks"] for a in t["attempts"])

        wait_until(lambda: _balance(req)["locked_units"] == 0, timeout=60, interval=0.5,
                   what="every channel of the requestor settled")
        spent = _balance(req)["spent_units"]
        assert spent == manifest["totals"]["cost_units"] > 0
        wait_until(lambda: sum(_balance(p)["earned_units"] for p in providers) == spent, timeout=60, interval=0.5,
                   what="the providers earned exactly what the requestor spent")
