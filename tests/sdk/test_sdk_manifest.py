"""The manifest: every task, its status and reason, costs that add up."""

from __future__ import annotations

import json
from pathlib import Path

from requestor_sdk.manifest import build_manifest, write_manifest
from requestor_sdk.tasks import Attempt, Task, TaskResult


def test_manifest_lists_tasks_and_totals(tmp_path: Path) -> None:
    ok = TaskResult(Task("t1", ["echo"], params={"x": "1"}), status="ok", exit_code=0, stdout="hi\n",
                    stdout_sha256="ab", outputs={"o.txt": tmp_path / "t1" / "o.txt"}, output_sha256={"o.txt": "cd"},
                    providers=("P1", "P2"), attempts=[Attempt("P1", "A1", seconds=1.0, outcome="success", cost=7),
                                                      Attempt("P2", "A2", seconds=1.0, outcome="success", cost=5)])
    bad = TaskResult(Task("t2", ["false"]), status="failed", reason="the command exited with 1", exit_code=1,
                     attempts=[Attempt("P3", "A3", seconds=2.0, outcome="failure", error="boom", cost=3)])
    pending = [{"id": "t3", "params": {}, "status": "failed", "reason": "interrupted", "providers": [],
                "attempts": [], "cost": "0", "cost_units": 0}]
    m = build_manifest([ok, bad], job={"image": "i"}, spent_units=15, budget_units=100, wall_s=1.23456,
                       status="interrupted", stopped="interrupted", out_dir=tmp_path, pending=pending)
    t = m["totals"]
    assert (t["tasks"], t["succeeded"], t["failed"], t["cost_units"], t["wall_s"]) == (3, 1, 2, 15, 1.235)
    assert t["providers"] == ["P1", "P2", "P3"] and t["providers_accepted"] == ["P1", "P2"]
    e1, e2, e3 = m["tasks"]
    assert e1["outputs"] == {"o.txt": {"path": "t1/o.txt", "sha256": "cd"}} and e1["cost_units"] == 12
    assert e1["cost"] == "0.000000000000000012" and e1["params"] == {"x": "1"}
    assert e2["status"] == "failed" and e2["reason"] == "the command exited with 1" and e2["attempts"][0]["error"] == "boom"
    assert e3["reason"] == "interrupted"
    path = tmp_path / "out" / "manifest.json"
    write_manifest(path, m)
    assert json.loads(path.read_text()) == m
    assert not list(path.parent.glob(".*.tmp"))
