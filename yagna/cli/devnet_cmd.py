"""``yagna devnet``: a local network of background daemons on this machine."""

from __future__ import annotations

from pathlib import Path

import click



def _emit_nodes(nodes: list[dict], as_json: bool) -> None:  # type: ignore[type-arg]
    import json

    if as_json:
        click.echo(json.dumps(nodes, indent=2))
        return
    click.echo(f"{'ROLE':10} {'NAME':12} {'PID':>7} {'NODE ID':54} API")
    for n in nodes:
        click.echo(f"{n['role']:10} {n['name']:12} {n['pid']:>7} {n.get('node_id') or '-':54} {n.get('api_url') or '-'}")


root_option = click.option(
    "--root", type=click.Path(path_type=Path), default=None,
    help="Directory holding the nodes' data dirs [default ~/.local/share/yagna/devnet].",
)


@click.group()
def devnet() -> None:
    """A local network: one requestor and N providers, each its own daemon."""


@devnet.command("up")
@click.option("--providers", type=click.IntRange(1, 32), default=3, show_default=True)
@root_option
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait until every node knows every other node and every offer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devnet_up(providers: int, root: Path | None, timeout: float, as_json: bool) -> None:
    """Start the nodes; returns once every node is connected to every other."""
    from yagna.devnet import Devnet

    net = Devnet(root)
    nodes = net.up(providers, timeout=timeout)
    out = [
        {"role": n.role, "name": n.name, "node_id": n.node_id, "data_dir": n.data_dir,
         "api_url": n.api_url, "pid": n.pid, "p2p_addrs": n.p2p_addrs}
        for n in nodes
    ]
    _emit_nodes(out, as_json)
    if not as_json:
        click.echo(f"\n{len(nodes)} nodes up (each knows every node and every offer) under {net.root}.")
        click.echo(f"Try: yagna --data-dir {nodes[0].data_dir} net peers   |   stop: yagna devnet down")


@devnet.command("status")
@root_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devnet_status(root: Path | None, as_json: bool) -> None:
    """The devnet's nodes, whether they run, and their peer counts."""
    from yagna.devnet import Devnet

    nodes = Devnet(root).status()
    if as_json:
        _emit_nodes(nodes, True)
        return
    if not nodes:
        click.echo("no devnet here; start one with: yagna devnet up --providers 3")
        return
    _emit_nodes(nodes, False)
    for n in nodes:
        state = f"running, {n['connected_peers']} peers" if n["running"] else "stopped"
        click.echo(f"  {n['name']}: {state}")


@devnet.command("down")
@root_option
def devnet_down(root: Path | None) -> None:
    """Stop every daemon the devnet started."""
    from yagna.devnet import Devnet

    stopped = Devnet(root).down()
    click.echo(f"stopped {len(stopped)} node(s)")
