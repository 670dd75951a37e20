"""The manifest of a batch: ``<out>/manifest.json``, every task with its outcome and cost.

``cost`` (per task and in total) is in tokens, a decimal string: the amounts
the requestor **signed** to providers (payment-channel vouchers, read back
from the daemon after the agreements were terminated and settled). Each
agreement's signed amount is split over the attempts that ran on it in
proportion to their measured run time (failed and redundant attempts
included), so the task costs add up to the job's cost; the job total also
counts agreements that ran nothing (none, normally).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from requestor_sdk.budget import tokens
from requestor_sdk.tasks import TaskResult

__all__ = ["COST_NOTE", "build_manifest", "task_entry", "write_manifest"]

COST_NOTE = ("tokens signed to providers (vouchers), per agreement, split over the attempts on it in proportion "
             "to their run time; a task's cost includes its failed and redundant attempts")


def task_entry(r: TaskResult, out_dir: Path | None = None) -> dict[str, Any]:
    def rel(p: Path) -> str:
        if out_dir is not None:
            try:
                return str(p.relative_to(out_dir))
            except ValueError:
                pass
        return str(p)

    return {
        "id": r.task.id,
        "params": dict(r.task.params),
        "status": r.status,
        "reason": r.reason,
        "exit_code": r.exit_code,
        "stdout": r.stdout,
        "stderr": r.stderr,
        "stdout_sha256": r.stdout_sha256,
        "outputs": {n: {"path": rel(p), "sha256": r.output_sha256.get(n)} for n, p in sorted(r.outputs.items())},
        "providers": list(r.providers),
        "verification": r.verification,
        "attempts": [{"provider_id": a.provider_id, "agreement_id": a.agreement_id, "outcome": a.outcome,
                      "seconds": round(a.seconds, 3), "exit_code": a.exit_code, "error": a.error,
                      "digest": a.digest, "cost": tokens(a.cost)} for a in r.attempts],
        "cost": tokens(r.cost),
        "cost_units": r.cost,
    }


def build_manifest(results: Sequence[TaskResult], *, job: dict[str, Any], spent_units: int, budget_units: int,
                   wall_s: float, status: str, stopped: str | None = None, out_dir: Path | None = None,
                   pending: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The manifest as a dict. ``pending`` lists tasks that never got a result (already shaped as entries)."""
    entries = [task_entry(r, out_dir) for r in results] + list(pending)
    providers = sorted({a.provider_id for r in results for a in r.attempts})
    accepted = sorted({p for r in results for p in r.providers})
    ok = sum(1 for e in entries if e["status"] == "ok")
    return {
        "version": 1,
        "status": status,
        "stopped": stopped,
        "job": job,
        "totals": {
            "tasks": len(entries), "succeeded": ok, "failed": len(entries) - ok,
            "cost": tokens(spent_units), "cost_units": spent_units,
            "budget": tokens(budget_units), "budget_units": budget_units,
            "providers": providers, "providers_accepted": accepted, "wall_s": round(wall_s, 3),
        },
        "cost_note": COST_NOTE,
        "tasks": entries,
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a manifest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
