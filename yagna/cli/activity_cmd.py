"""``yagna activity ...`` (requestor) and ``yagna provider activities``: the exe-unit from the command line.

``yagna activity run AGREEMENT -- CMD ARGS...`` is the quickest way to run a
command on a provider you hold an agreement with: it creates an activity,
deploys the image, starts the container, streams the command's output line by
line, and removes the activity again (also on Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from yagna.cli.output import emit
from yagna.core.errors import YagnaError


def _usage_line(usage: dict[str, Any] | None) -> str:
    if not usage:
        return "-"
    return (f"{usage.get('golem.usage.duration_sec', 0):.1f}s {usage.get('golem.usage.cpu_sec', 0):.2f}cpu-s "
            f"{usage.get('golem.usage.gib', 0) * 1024:.0f}MiB")


@click.group()
def activity() -> None:
    """Run commands in containers on providers you hold agreements with."""


@activity.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def activity_list(obj: Any, as_json: bool) -> None:
    """Activities this node drives as a requestor."""
    _activities(obj.client().call("GET", "/activity"), "provider_id", as_json)


def _activities(rows: list[dict[str, Any]], peer: str, as_json: bool) -> None:
    lines = [f"{'ACTIVITY':34} {'AGREEMENT':14} {'STATE':11} {peer.split('_')[0].upper():54} USAGE"]
    for a in rows:
        lines.append(f"{a['activity_id']:34} {a['agreement_id'][:12]:14} {a['state']:11} {a[peer]:54} "
                     f"{_usage_line(a.get('usage'))}")
    emit(rows, as_json, "\n".join(lines) if rows else "no activities")


@activity.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("agreement_id")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--image", default="local/busybox:1", show_default=True, help="Image name or id (sent to the provider if it lacks it).")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds before the command is killed.")
@click.option("--upload", multiple=True, metavar="LOCAL:/work/in/NAME", help="Copy a local file in first (repeatable).")
@click.option("--download", multiple=True, metavar="/work/out/NAME:LOCAL", help="Copy a result file out after (repeatable).")
@click.option("--keep", is_flag=True, help="Keep the activity (and its container) for more commands.")
@click.option("--json", "as_json", is_flag=True, help="Print the batch results as JSON instead of streaming output.")
@click.pass_obj
def activity_run(obj: Any, agreement_id: str, argv: tuple[str, ...], image: str, env: tuple[str, ...], timeout: float,
                 upload: tuple[str, ...], download: tuple[str, ...], keep: bool, as_json: bool) -> None:
    """Run ARGV in a fresh container on the provider of AGREEMENT_ID; exits with its exit code."""
    envs: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep:
            raise YagnaError(f"--env {item!r}: expected NAME=VALUE")
        envs[name] = value
    script: list[dict[str, Any]] = [{"deploy": {"image": image}}, {"start": {}}]
    for item in upload:
        local, sep, remote = item.rpartition(":")
        if not sep:
            raise YagnaError(f"--upload {item!r}: expected LOCAL:/work/in/NAME")
        script.append({"transfer_in": {"from": str(Path(local).resolve()), "to": remote}})
    script.append({"run": {"argv": list(argv), "env": envs, "timeout": timeout}})
    for item in download:
        remote, sep, local = item.partition(":")
        if not sep:
            raise YagnaError(f"--download {item!r}: expected /work/out/NAME:LOCAL")
        script.append({"transfer_out": {"from": remote, "to": str(Path(local).resolve())}})
    client = obj.client()
    act = client.call("POST", "/activity", json={"agreement_id": agreement_id})
    activity_id = act["activity_id"]
    try:
        batch = client.call("POST", f"/activity/{activity_id}/exec", json={"script": script})
        path = f"/activity/{activity_id}/exec/{batch['batch_id']}"
        after, done = 0, False
        while not done:
            for event in client.call("GET", f"{path}/events", params={"after": after, "timeout": 5}):
                after = max(after, int(event["seq"]))
                if event.get("kind") in ("stdout", "stderr") and not as_json:
                    stream = sys.stdout if event["kind"] == "stdout" else sys.stderr
                    stream.write(event.get("data", ""))
                    stream.flush()
                done = done or event.get("kind") == "batch_done"
        result = client.call("POST", f"{path}/wait", params={"timeout": 10})
    finally:
        if not keep:
            client.call("DELETE", f"/activity/{activity_id}")
    results = result.get("results") or []
    if as_json:
        click.echo(json.dumps(result, indent=2))
    run = next((r for r in results if r and r.get("command") == "run"), None)
    if run is not None and run.get("timed_out"):
        raise YagnaError(f"the command was killed after its timeout of {timeout:g} s")
    if run is not None and run.get("oom_killed"):
        raise YagnaError("the command was killed: out of memory (the agreement's limit)")
    failed = result.get("error") or next((r["error"] for r in results if r and r.get("error")), None)
    if failed:
        raise YagnaError(failed)
    if run is None:
        raise YagnaError(f"the command did not run: {result.get('error') or 'an earlier command failed'}")
    if keep and not as_json:
        click.echo(f"activity {activity_id} kept", err=True)
    sys.exit(int(run["exit_code"] or 0))


@click.command("activities")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def provider_activities(obj: Any, as_json: bool) -> None:
    """Activities this provider runs or ran, with their usage."""
    _activities(obj.client().call("GET", "/provider/activities"), "requestor_id", as_json)
