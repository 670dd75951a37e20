"""`yagna batch run` against real daemons and containers: 3 providers, a funded requestor, 6 md5sum tasks.

Redundancy 1, then 2: every task ok, stdout equal to the real md5 of its
input, several providers used, cost above 0 and within the budget, and (the
root conftest checks it) no container left behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from e2e.daemons import Daemon, run_cli, wait_until

JOB = '''\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "md5sum /work/in/{{f}} | cut -d' ' -f1; cp /work/in/{{f}} /work/out/copy.txt"]
timeout = "30s"
redundancy = {redundancy}
budget = "1"
max_providers = 3
inputs = ["data/{{f}}"]
outputs = ["copy.txt"]
'''


def _network(tmp_path: Path, daemons: list[Daemon], providers: int = 3) -> Daemon:
    first = Daemon(tmp_path / "prov-1", ["--role", "provider", "--activity-keepalive", "10"]).start()
    daemons.append(first)
    for i in range(2, providers + 1):
        daemons.append(Daemon(tmp_path / f"prov-{i}", ["--role", "provider", "--activity-keepalive", "10",
                                                       "--bootstrap", first.p2p_addr]).start())
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", first.p2p_addr]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == providers, timeout=30,
               what="the requestor sees every offer")
    return req


def _job(tmp_path: Path, redundancy: int) -> tuple[Path, dict[str, str]]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    expected = {}
    text = JOB.format(redundancy=redundancy)
    for i in range(1, 7):
        name = f"in{i}.txt"
        body = f"input number {i}\n".encode() * (i * 100)
        (data / name).write_bytes(body)
        expected[name] = hashlib.md5(body).hexdigest()  # noqa: S324 - what md5sum prints
        text += f'\n[[task]]\nparams = {{ f = "{name}" }}\n'
    path = tmp_path / f"job-r{redundancy}.toml"
    path.write_text(text)
    return path, expected


def _run(req: Daemon, job: Path, out: Path, *extra: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    proc = run_cli("batch", "run", str(job), "--out", str(out), "--json", *extra, data_dir=req.data_dir,
                   timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout), json.loads((out / "manifest.json").read_text())


def test_batch_md5_redundancy_1_then_2(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    req = _network(tmp_path, daemons)
    job1, expected = _job(tmp_path, 1)

    # Unfunded: refused before anything is bought, with the command that fixes it.
    refused = run_cli("batch", "run", str(job1), "--json", data_dir=req.data_dir, check=False)
    assert refused.returncode != 0 and "yagna payment fund --amount 1" in refused.stderr
    run_cli("payment", "fund", "--amount", "2", data_dir=req.data_dir)

    for redundancy, job in ((1, job1), (2, _job(tmp_path, 2)[0])):
        out = tmp_path / f"out-r{redundancy}"
        summary, manifest = _run(req, job, out)
        assert summary["tasks"] == summary["succeeded"] == 6 and summary["failed"] == 0, summary
        assert summary["providers"] >= 2, summary
        assert 0 < float(summary["cost"]) <= 1, summary
        assert manifest["status"] == "ok" and manifest["totals"]["cost"] == summary["cost"]
        by_task = {t["params"]["f"]: t for t in manifest["tasks"]}
        assert set(by_task) == set(expected)
        for name, md5 in expected.items():
            t = by_task[name]
            assert t["status"] == "ok" and t["exit_code"] == 0 and t["stdout"].strip() == md5, t
            assert len(t["providers"]) == redundancy and len(set(t["providers"])) == redundancy
            assert (out / t["id"] / "copy.txt").read_bytes() == (tmp_path / "data" / name).read_bytes()
            assert float(t["cost"]) > 0
        # Task costs are shares of what was signed: they add up to the job's cost.
        assert sum(t["cost_units"] for t in manifest["tasks"]) == manifest["totals"]["cost_units"]

    # Everything was terminated and settled: no agreement left open, nothing locked.
    agreements = json.loads(run_cli("market", "agreements", "--json", data_dir=req.data_dir).stdout)
    assert agreements and {a["state"] for a in agreements} == {"terminated"}
    status = json.loads(run_cli("payment", "status", "--json", data_dir=req.data_dir).stdout)
    assert status["balance"]["locked_units"] == 0
    reputation = json.loads(run_cli("reputation", "--json", data_dir=req.data_dir).stdout)
    assert sum(int(r["successes"]) for r in reputation) >= 6 + 12


def test_batch_budget_too_small_starts_nothing(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    req = _network(tmp_path, daemons, providers=1)
    job, _ = _job(tmp_path, 1)
    job.write_text(job.read_text().replace('budget = "1"', 'budget = "0.0001"'))
    proc = run_cli("batch", "run", str(job), "--out", str(tmp_path / "out"), "--json", "--fund",
                   data_dir=req.data_dir, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stopped"].startswith("budget:") and manifest["totals"]["succeeded"] == 0
    assert all(t["reason"].startswith("budget:") for t in manifest["tasks"])
    assert manifest["totals"]["cost_units"] == 0
