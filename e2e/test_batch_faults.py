"""`yagna batch run` when things go wrong, with real daemons and containers.

- a provider that returns wrong results (``--test-fault wrong-results``): caught
  by redundancy 2, recorded in reputation, the job's results are correct;
- a provider killed with ``kill -9`` mid-batch: its tasks run elsewhere, the
  batch completes, the requestor pays only what it signed for work received;
- Ctrl-C of ``yagna batch run``: agreements terminated and settled, nothing
  left running, the manifest keeps what finished.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import docker

from e2e.daemons import YAGNA, Daemon, run_cli, wait_until

LABEL_NODE = "network.yagna.node"


def _network(tmp_path: Path, daemons: list[Daemon], faults: dict[int, list[str]] | None = None,
             providers: int = 3) -> tuple[Daemon, list[Daemon]]:
    provs: list[Daemon] = []
    for i in range(1, providers + 1):
        args = ["--role", "provider", "--activity-keepalive", "10", *(faults or {}).get(i, [])]
        if provs:
            args += ["--bootstrap", provs[0].p2p_addr]
        provs.append(Daemon(tmp_path / f"prov-{i}", args).start())
        daemons.append(provs[-1])
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", provs[0].p2p_addr]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == providers, timeout=30, what="every offer seen")
    run_cli("payment", "fund", "--amount", "2", data_dir=req.data_dir)
    return req, provs


def _job(tmp_path: Path, command: str, tasks: int, *, redundancy: int = 1, timeout: str = "30s") -> Path:
    text = (f'[job]\nimage = "local/busybox:1"\ncommand = ["sh", "-c", "{command}"]\ntimeout = "{timeout}"\n'
            f'redundancy = {redundancy}\nbudget = "1"\nmax_providers = 3\n')
    for i in range(1, tasks + 1):
        text += f'\n[[task]]\nparams = {{ x = "{i}" }}\n'
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def _containers(node_id: str) -> list:  # type: ignore[type-arg]
    return docker.from_env().containers.list(all=True, filters={"label": f"{LABEL_NODE}={node_id}"}, ignore_removed=True)


def _leftovers(node_id: str) -> list:  # type: ignore[type-arg]
    """Containers and their work volumes (a volume goes a moment after its container)."""
    return _containers(node_id) + docker.from_env().volumes.list(filters={"label": f"{LABEL_NODE}={node_id}"})


def test_wrong_results_are_outvoted_and_remembered(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    req, provs = _network(tmp_path, daemons, faults={3: ["--test-fault", "wrong-results"]})
    liar = provs[2].node_id
    job = _job(tmp_path, "echo result-{x}", 6, redundancy=2)
    proc = run_cli("batch", "run", str(job), "--out", str(tmp_path / "out"), "--json", data_dir=req.data_dir,
                   timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for t in manifest["tasks"]:
        assert t["status"] == "ok" and t["stdout"] == f"result-{t['params']['x']}\n", t
        assert liar not in t["providers"], t  # never among the accepted results
    outvoted = [a for t in manifest["tasks"] for a in t["attempts"] if a["outcome"] == "disagreement"]
    assert outvoted and {a["provider_id"] for a in outvoted} == {liar}
    reputation = {r["provider_id"]: r for r in json.loads(run_cli("reputation", "--json", data_dir=req.data_dir).stdout)}
    assert reputation[liar]["disagreements"] == len(outvoted)
    assert reputation[liar]["reputation"] < min(r["reputation"] for p, r in reputation.items() if p != liar)


def test_provider_killed_mid_batch_its_tasks_run_elsewhere(tmp_path: Path, daemons: list[Daemon],
                                                           test_image: str) -> None:
    req, provs = _network(tmp_path, daemons)
    job = _job(tmp_path, "sleep 3; echo done-{x}", 6)
    batch = subprocess.Popen([*YAGNA, "--data-dir", str(req.data_dir), "batch", "run", str(job),
                              "--out", str(tmp_path / "out"), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim = provs[1]
        wait_until(lambda: any(c.status == "running" for c in _containers(victim.node_id)), timeout=60,
                   what="the victim runs a task")
        victim.kill()
        out, err = batch.communicate(timeout=240)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 0, out + err
    summary = json.loads(out)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert summary["succeeded"] == summary["tasks"] == 6
    lost = [a for t in manifest["tasks"] for a in t["attempts"] if a["provider_id"] == victim.node_id
            and a["outcome"] != "success"]
    assert lost, "the killed provider's running task was retried elsewhere"
    for t in manifest["tasks"]:
        assert t["status"] == "ok" and t["stdout"] == f"done-{t['params']['x']}\n"
        assert victim.node_id not in t["providers"] or any(
            a["provider_id"] == victim.node_id and a["outcome"] == "success" for a in t["attempts"])
    # The requestor paid what it signed and nothing more: the job's cost is what was signed in all,
    # and everything else of the deposits is free again.
    status = json.loads(run_cli("payment", "status", "--json", data_dir=req.data_dir).stdout)
    assert status["balance"]["locked_units"] == 0
    assert status["balance"]["spent_units"] == manifest["totals"]["cost_units"] <= 10**18
    victim.start()  # a provider that comes back removes what it left behind
    wait_until(lambda: _leftovers(victim.node_id) == [], timeout=30, what="the victim cleans up")


def test_ctrl_c_terminates_and_settles_everything(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    req, provs = _network(tmp_path, daemons, providers=2)
    job = _job(tmp_path, "sleep 4; echo done-{x}", 8)
    batch = subprocess.Popen([*YAGNA, "--data-dir", str(req.data_dir), "batch", "run", str(job),
                              "--out", str(tmp_path / "out"), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(c.status == "running" for p in provs for c in _containers(p.node_id)),
                   timeout=60, what="a task runs")
        time.sleep(1.0)
        batch.send_signal(signal.SIGINT)
        out, err = batch.communicate(timeout=90)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 130, out + err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert all(t["status"] == "ok" or "interrupted" in (t["reason"] or "") for t in manifest["tasks"])
    agreements = json.loads(run_cli("market", "agreements", "--json", data_dir=req.data_dir).stdout)
    assert agreements and {a["state"] for a in agreements} == {"terminated"}
    wait_until(lambda: all(_leftovers(p.node_id) == [] for p in provs), timeout=30, what="nothing left running")
    wait_until(lambda: json.loads(run_cli("payment", "status", "--json", data_dir=req.data_dir).stdout)
               ["balance"]["locked_units"] == 0, timeout=30, what="every channel settled")
    wait_until(lambda: sum(json.loads(run_cli("payment", "status", "--json", data_dir=p.data_dir).stdout)
                           ["balance"]["earned_units"] for p in provs) > 0, timeout=30, what="providers paid")
