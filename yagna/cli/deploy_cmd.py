"""``yagna deploy``: long-running services from an Akash-style manifest (docs/services.md).

``check`` reads a manifest and prints what it asks for (services, ports, replicas, price caps), or
the first key it cannot honour with its line; ``create`` deploys it through the local node and
prints the local ports of its services; ``status``, ``logs`` and ``close`` follow and end it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
import time
from pathlib import Path
from typing import Any

import click

from yagna.cli.output import emit


@click.group()
def deploy() -> None:
    """Services from an Akash-style manifest (SDL v2.0): check, create, status, logs, close."""


def _rates(values: tuple[str, ...]) -> dict[str, Decimal]:
    out = {}
    for item in values:
        denom, sep, rate = item.partition("=")
        try:
            out[denom.strip().lower()] = Decimal(rate)
        except InvalidOperation:
            sep = ""
        if not sep or not denom.strip():
            raise click.BadParameter(f"{item!r}: expected DENOM=TOKENS, e.g. uakt=0.000001", param_hint="--rate")
    return out


@deploy.command("check")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", "rates", multiple=True, metavar="DENOM=TOKENS",
              help="Tokens per unit of a foreign denomination (e.g. uakt=0.000001), to convert Akash's per-block "
                   "prices into price caps per hour.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deploy_check(manifest: Path, rates: tuple[str, ...], as_json: bool) -> None:
    """Check MANIFEST: what it deploys, or the first key it cannot honour (with its line)."""
    import json

    from requestor_sdk.sdl import ManifestError, parse_manifest

    try:
        m = parse_manifest(manifest.read_text(errors="replace"), source=str(manifest), rates=_rates(rates))
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({
            "version": m.version, "replicas": m.replicas(), "notes": m.notes,
            "services": {n: {"image": s.image, "command": s.command, "args": s.args, "env": s.env,
                             "expose": [{"port": p.port, "as": p.as_port, "global": p.to_global} for p in s.expose]}
                         for n, s in m.services.items()},
            "deployments": [{"service": d.service, "placement": d.placement, "profile": d.profile, "count": d.count,
                             "cpu": str(m.profiles[d.profile].cpu_units),
                             "memory_bytes": m.profiles[d.profile].memory_bytes,
                             "price_cap_per_hour": str(m.placements[d.placement].pricing[d.service].tokens_per_hour)
                             if d.service in m.placements[d.placement].pricing else None}
                            for d in m.deployments]}, indent=2))
        return
    click.echo(f"{manifest}: SDL {m.version}, {len(m.services)} service(s), {m.replicas()} replica(s)")
    for d in m.deployments:
        s, prof, place = m.services[d.service], m.profiles[d.profile], m.placements[d.placement]
        cap = place.pricing.get(d.service)
        ports = ", ".join(f"{p.port}" + (f" as {p.as_port}" if p.as_port != p.port else "") for p in s.expose) or "-"
        click.echo(f"  {d.service} x{d.count}: {s.image}; cpu {prof.cpu_units}, memory {prof.memory_bytes // 2**20} MiB;"
                   f" ports {ports}; cap {cap.tokens_per_hour.normalize() if cap else '-'} tokens/h")
    for note in m.notes:
        click.echo(f"note: {note}")


def _port_maps(values: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for item in values:
        left, sep, local = item.partition("=")
        service, sep2, port = left.rpartition(":")
        try:
            if not (sep and sep2 and service):
                raise ValueError
            out.append({"service": service, "container_port": int(port), "local_port": int(local)})
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected SERVICE:CONTAINER_PORT=LOCAL_PORT, e.g. web:80=8080",
                                     param_hint="--port") from None
    return out


def _replica_lines(d: dict[str, Any]) -> list[str]:
    lines = [f"deployment {d['deployment_id']}  {d['state']}  ({d['source']})" + (f": {d['reason']}" if d.get("reason") else "")]
    for r in d["replicas"]:
        ports = ", ".join(f"127.0.0.1:{p['local_port']} -> {p['container_port']}" for p in r["ports"]) or "no ports"
        health = {True: "healthy", False: "UNHEALTHY", None: ""}[r.get("healthy")]
        provider = (r["provider_id"] or "-")[:20]
        extra = f"  restarts {r['restarts']}" + (f"  failovers {r['failovers']}" if r["failovers"] else "")
        lines.append(f"  {r['name']:14} {r['state']:12} {health:9} {provider:20} {ports}{extra}"
                     f"  cost {r['cost']} paid {r['paid']}")
        if r.get("reason") and r["state"] != "running":
            lines.append(f"  {'':14} {r['reason']}")
    return lines


@deploy.command("create")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--port", "ports", multiple=True, metavar="SERVICE:CONTAINER_PORT=LOCAL_PORT",
              help="The local port of a service's exposed port (replica i gets LOCAL_PORT + i); any free port "
                   "otherwise.")
@click.option("--rate", "rates", multiple=True, metavar="DENOM=TOKENS",
              help="Tokens per unit of a foreign denomination (e.g. uakt=0.000001), for Akash price caps.")
@click.option("--payment-interval", type=click.IntRange(1, 3600), default=None, metavar="SECONDS",
              help="Ask providers for a debit note (and so a voucher) every SECONDS; their presets' interval "
                   "otherwise.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until every replica serves (or --timeout passes).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait with --wait.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deploy_create(obj: Any, manifest: Path, ports: tuple[str, ...], rates: tuple[str, ...],
                  payment_interval: int | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Deploy MANIFEST on the network: lease a provider per replica, forward its ports to 127.0.0.1."""
    client = obj.client()
    body = {"manifest": manifest.read_text(errors="replace"), "source": str(manifest),
            "rates": {k: str(v) for k, v in _rates(rates).items()}, "ports": _port_maps(ports),
            "payment_interval_s": payment_interval}
    d = client.call("POST", "/deployments", json=body, timeout=60)
    if wait:
        deadline = time.monotonic() + timeout
        while not all(r["state"] == "running" for r in d["replicas"]) and time.monotonic() < deadline:
            time.sleep(0.2)
            d = client.call("GET", f"/deployments/{d['deployment_id']}")
    emit(d, as_json, "\n".join(_replica_lines(d)))
    if wait and not all(r["state"] == "running" for r in d["replicas"]):
        raise click.ClickException(f"not every replica serves after {timeout:g} s (still deploying; see "
                                   f"yagna deploy status {d['deployment_id']})")


@deploy.command("status")
@click.argument("deployment_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deploy_status(obj: Any, deployment_id: str | None, as_json: bool) -> None:
    """Each deployment and its replicas: provider, state, restarts, local ports, cost and paid."""
    client = obj.client()
    if deployment_id:
        d = client.call("GET", f"/deployments/{deployment_id}")
        emit(d, as_json, "\n".join(_replica_lines(d)))
        return
    ds = client.call("GET", "/deployments")
    emit(ds, as_json, "\n".join(line for d in ds for line in _replica_lines(d)) or "no deployments")


@deploy.command("logs")
@click.argument("deployment_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the deployment closes (Ctrl-C stops).")
@click.option("--tail", type=int, default=None, help="Only the last N lines first.")
@click.option("--service", default=None, help="Only this service's replicas.")
@click.pass_obj
def deploy_logs(obj: Any, deployment_id: str, follow: bool, tail: int | None, service: str | None) -> None:
    """The services' output (stdout, stderr) and what the node did (placed, restarted, moved)."""
    client = obj.client()
    after = 0
    params: dict[str, Any] = {"after": 0, "tail": tail} if tail is not None else {"after": 0}
    try:
        while True:
            page = client.call("GET", f"/deployments/{deployment_id}/logs", params=params,
                               timeout=40 if follow else None)
            for line in page["lines"]:
                source = str(line["source"])
                if service and not (source == "deployment" or source.rsplit("-", 1)[0] == service):
                    continue
                mark = {"stderr": "!", "yagna": "*"}.get(str(line["stream"]), " ")
                click.echo(f"[{source}]{mark} {line['text']}")
            after = max(after, int(page["last_seq"]))
            if not follow or page.get("closed"):
                return
            params = {"after": after, "timeout": 30}
    except KeyboardInterrupt:
        return


@deploy.command("close")
@click.argument("deployment_id", required=False)
@click.option("--all", "close_all", is_flag=True, help="Close every active deployment.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deploy_close(obj: Any, deployment_id: str | None, close_all: bool, as_json: bool) -> None:
    """End a deployment: its containers stop, its agreements end, its channels settle."""
    if bool(deployment_id) == close_all:
        raise click.UsageError("give a DEPLOYMENT_ID or --all")
    client = obj.client()
    ids = [deployment_id] if deployment_id else [d["deployment_id"] for d in client.call("GET", "/deployments")
                                                  if d["state"] == "active"]
    closed = [client.call("DELETE", f"/deployments/{i}", timeout=60) for i in ids]
    emit(closed if close_all else closed[0], as_json,
         "\n".join(line for d in closed for line in _replica_lines(d)) or "no active deployments")


@deploy.command("fund")
@click.argument("deployment_id")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Hours of each replica's worst-case price to add to its lease's deposit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deploy_fund(obj: Any, deployment_id: str, hours: float, as_json: bool) -> None:
    """Top up the deposits of a deployment's leases (the node also does it by itself as they run low)."""
    done = obj.client().call("POST", f"/deployments/{deployment_id}/fund", json={"hours": hours}, timeout=60)
    emit(done, as_json, "\n".join(f"{f['replica']}: deposit now {f['deposit']}" for f in done["funded"])
         or "no running replica to fund")
