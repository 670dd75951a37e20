"""``yagna deploy``: long-running services from an Akash-style manifest (docs/services.md).

``check`` reads a manifest and prints what it asks for (services, ports, replicas, price caps), or
the first key it cannot honour with its line. Deploying it is the next step of the services issue.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import click


@click.group()
def deploy() -> None:
    """Services from an Akash-style manifest (SDL v2.0): check it."""


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
