"""Batches across the NAT testbed (issue 13): a requestor behind NAT runs a redundancy-2 job, knowing
only the public bootstrap node, with 20 ms per link (40 ms RTT between sites).

* on two public providers (works without relays: the requestor dials out through its NAT);
* on providers behind two other NATs: provider-1 behind an `easy` one (hole punching can
  traverse it), provider-2 behind a `hard` one (only a relay reaches it), so every task runs
  once on each kind, through the public nodes' circuit relays (yagna/net/relay.py) until hole
  punching upgrades what it can.

Root, Linux, Docker and local/busybox:1 needed (CI has them); skipped with the reason elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from e2e.daemons import run_cli
from e2e.natbed import NatNode, nat_devnet, require_root

TASKS = 3
JOB = '''\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "md5sum /work/in/{f} | cut -d' ' -f1"]
timeout = "60s"
redundancy = 2
budget = "1"
max_providers = 2
inputs = ["data/{f}"]
'''


def _job(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data = tmp_path / "data"
    data.mkdir()
    text, expected = JOB, {}
    for i in range(1, TASKS + 1):
        name = f"in{i}.txt"
        body = f"behind NAT {i}\n".encode() * (i * 50)
        (data / name).write_bytes(body)
        expected[name] = hashlib.md5(body).hexdigest()  # noqa: S324 - what md5sum prints
        text += f'\n[[task]]\nparams = {{ f = "{name}" }}\n'
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path, expected


def _relay_built() -> bool:
    """Circuit relay v2 is part of the daemon (its flag exists): until then no private node
    can reach another one, and this test has nothing to test."""
    return "--relay-service" in run_cli("service", "run", "--help").stdout


def _run_redundancy_2(tmp_path: Path, req: NatNode, providers: list[NatNode]) -> None:
    offers = req.cli_json("market", "offers")
    assert {p.node_id for p in providers} <= {o["provider_id"] for o in offers}
    job, expected = _job(tmp_path)
    req.cli("payment", "fund", "--amount", "2")
    out = tmp_path / "out"
    proc = req.cli("batch", "run", str(job), "--out", str(out), "--json", timeout=150, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["tasks"] == summary["succeeded"] == TASKS and summary["failed"] == 0, summary
    manifest = json.loads((out / "manifest.json").read_text())
    for t in manifest["tasks"]:
        assert t["status"] == "ok" and t["stdout"].strip() == expected[t["params"]["f"]], t
        assert sorted(t["providers"]) == sorted(p.node_id for p in providers), t


def test_redundancy_2_batch_from_behind_nat_on_public_providers(tmp_path: Path, test_image: str) -> None:
    """Every byte crosses the requestor's NAT and two links of 20 ms each way; only public-1 is known."""
    with nat_devnet(tmp_path, 2, "--nat", "provider-1=public", "--nat", "provider-2=public") as net:
        req, p1, p2 = net["requestor"], net["provider-1"], net["provider-2"]
        assert (req.nat, p1.nat, p2.nat) == ("easy", None, None)
        assert p1.ip.startswith("198.18.") and not req.ip.startswith("198.18.")
        _run_redundancy_2(tmp_path, req, [p1, p2])
        # the requestor dialled the providers itself, through its NAT: they see its router's address
        for p in (p1, p2):
            seen = {x["node_id"]: x for x in p.cli_json("net", "peers")}
            assert seen[req.node_id]["remote_addrs"][0].startswith("/ip4/198.18.0."), seen[req.node_id]


def test_redundancy_2_batch_across_easy_and_hard_nats(tmp_path: Path, test_image: str) -> None:
    require_root()
    if not _relay_built():
        pytest.skip("needs circuit relay v2 (service run --relay-service), not in the daemon yet")
    with nat_devnet(tmp_path, 2) as net:
        req, easy, hard = net["requestor"], net["provider-1"], net["provider-2"]
        assert (req.nat, easy.nat, hard.nat) == ("easy", "easy", "hard")
        _run_redundancy_2(tmp_path, req, [easy, hard])
        # no hole punching traverses the hard NAT: the requestor reaches that provider through a relay
        seen = {x["node_id"]: x for x in req.cli_json("net", "peers")}
        assert seen[hard.node_id]["connection"] == "relayed", seen[hard.node_id]
        assert seen[hard.node_id]["relay"] in {n.node_id for n in net.nodes.values() if n.nat is None}
