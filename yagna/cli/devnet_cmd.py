"""``yagna devnet``: a local network of background daemons on this machine."""

from __future__ import annotations

from pathlib import Path

import click


def _emit_nodes(nodes: list[dict], as_json: bool) -> None:  # type: ignore[type-arg]
    import json

    if as_json:
        click.echo(json.dumps(nodes, indent=2))
        return
    if any(n.get("netns") for n in nodes):
        click.echo(f"{'ROLE':10} {'NAME':12} {'PID':>7} {'ADDRESS':12} {'NAT':5} {'NAMESPACE':28} NODE ID")
        for n in nodes:
            click.echo(f"{n['role']:10} {n['name']:12} {n['pid']:>7} {n.get('ip') or '-':12} "
                       f"{n.get('nat') or '-':5} {n.get('netns') or '-':28} {n.get('node_id') or '-'}")
        return
    click.echo(f"{'ROLE':10} {'NAME':12} {'PID':>7} {'NODE ID':54} API")
    for n in nodes:
        click.echo(f"{n['role']:10} {n['name']:12} {n['pid']:>7} {n.get('node_id') or '-':54} {n.get('api_url') or '-'}")


root_option = click.option(
    "--root", type=click.Path(path_type=Path), default=None,
    help="Directory holding the nodes' data dirs [default ~/.local/share/yagna/devnet].",
)


def _site_values(values: tuple[str, ...], option: str, parse: type) -> dict:  # type: ignore[type-arg]
    """``SITE=VALUE`` pairs (``VALUE`` alone means every site, ``*``)."""
    out = {}
    for item in values:
        site, sep, value = item.rpartition("=")
        try:
            out[site if sep else "*"] = parse(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected [SITE=]VALUE", param_hint=option) from None
    return out


@click.group()
def devnet() -> None:
    """A local network: one requestor and N providers, each its own daemon."""


@devnet.command("up")
@click.option("--providers", type=click.IntRange(1, 32), default=3, show_default=True)
@root_option
@click.option("--topology", type=click.Choice(["loopback", "nat"]), default="loopback", show_default=True,
              help="loopback: every node on 127.0.0.1. nat (Linux, root): network namespaces, public nodes "
                   "on an internet segment, the requestor and each provider behind its own NAT (docs/testbed.md).")
@click.option("--public-nodes", type=click.IntRange(1, 2), default=2, show_default=True,
              help="nat: public nodes on the internet segment (public-1 is everyone's bootstrap).")
@click.option("--nat", "nat_kinds", multiple=True, metavar="SITE=easy|hard|public",
              help="nat: a site's NAT kind, e.g. provider-1=hard (repeatable) [default: requestor easy, "
                   "providers alternate easy, hard, ...]. easy: port-preserving MASQUERADE (hole punching "
                   "traverses it); hard: MASQUERADE --random-fully (it cannot); public: no NAT, the node "
                   "is on the internet segment.")
@click.option("--loss", "losses", multiple=True, metavar="[SITE=]P",
              help="nat: drop probability per direction on a site's WAN link, e.g. 0.05 (every site) or "
                   "provider-2=0.1 (repeatable) [default 0].")
@click.option("--delay-ms", type=click.FloatRange(0, 10_000), default=None,
              help="nat: one-way delay per WAN link (tc netem, else in user space via NFQUEUE) [default 20; none where "
                   "the kernel has neither].")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait until ready [default 60; nat: 90]. Loopback: every node knows every other "
                   "node and every offer; nat: every node is connected to public-1, knows its reachability "
                   "(with 2 public nodes), an address of every node that advertises one, and every offer.")
@click.option("--chain", type=click.Choice(["anvil", "none"]), default=None,
              help="anvil: a local EVM chain on 127.0.0.1 with the test token and the payment-channel contract "
                   "(2 % protocol fee); every node settles on it (--payment-driver erc20) with test tokens and gas. "
                   "none: the test-network ledger in each node's file [default anvil; nat: none].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devnet_up(providers: int, root: Path | None, topology: str, public_nodes: int, nat_kinds: tuple[str, ...],
              losses: tuple[str, ...], delay_ms: float | None, timeout: float | None, chain: str | None,
              as_json: bool) -> None:
    """Start the nodes; returns once they are ready (see --timeout)."""
    from yagna.devnet import Devnet

    net = Devnet(root)
    if topology == "loopback":
        if nat_kinds or losses or delay_ms is not None or public_nodes != 2:
            raise click.UsageError("--nat, --loss, --delay-ms and --public-nodes need --topology nat")
        nodes = net.up(providers, timeout=60.0 if timeout is None else timeout, chain=chain or "anvil")
        out = [
            {"role": n.role, "name": n.name, "node_id": n.node_id, "data_dir": n.data_dir,
             "api_url": n.api_url, "pid": n.pid, "p2p_addrs": n.p2p_addrs}
            for n in nodes
        ]
        dev = net.chain()
        _emit_nodes(out, as_json)
        if not as_json:
            click.echo(f"\n{len(nodes)} nodes up (each knows every node and every offer) under {net.root}.")
            if dev is not None:
                click.echo(f"chain {dev.chain_id} at {dev.rpc_url}: token {dev.token}, contract {dev.contract} "
                           f"(fee {dev.fee_bps / 100:g} % to {dev.fee_recipient}); nodes funded with test tokens")
            click.echo(f"Try: yagna --data-dir {nodes[0].data_dir} net peers   |   stop: yagna devnet down")
        return
    if chain == "anvil":
        raise click.UsageError("--chain anvil needs --topology loopback (the NAT testbed's nodes cannot reach "
                               "127.0.0.1 of this host yet); use --chain none")
    nat = _site_values(nat_kinds, "--nat", str)
    if "*" in nat:
        raise click.BadParameter("give the site: SITE=easy|hard|public", param_hint="--nat")
    loss = _site_values(losses, "--loss", float)
    nodes, built = net.up_nat(providers, public_nodes=public_nodes, nat=nat, loss=loss,
                              delay_ms=delay_ms, timeout=90.0 if timeout is None else timeout)
    out = [
        {"role": n.role, "name": n.name, "node_id": n.node_id, "data_dir": n.data_dir, "api_url": n.api_url,
         "pid": n.pid, "p2p_addrs": n.p2p_addrs, "netns": n.netns, "ip": n.ip, "nat": n.nat}
        for n in nodes
    ]
    _emit_nodes(out, as_json)
    if not as_json:
        click.echo(f"\n{len(nodes)} nodes up in network namespaces {built.topology.prefix}* under {net.root} "
                   f"(testbed built in {built.seconds:.2f} s); {_delay_note(built.delay, built.topology)}.")
        click.echo(f"Try: ip netns exec {nodes[0].netns} yagna --data-dir {nodes[0].data_dir} net status"
                   "   |   stop: yagna devnet down")


def _delay_note(backend: str | None, topology: object) -> str:
    from yagna.netlab.topology import Topology

    assert isinstance(topology, Topology)
    delays = sorted({s.link.delay_ms for s in topology.sites})
    if backend is None:
        return "no delay (this kernel has neither netem nor NFQUEUE)"
    if delays == [0.0]:
        return "no delay"
    how = "netem" if backend == "netem" else "user space, NFQUEUE"
    return "delay " + "/".join(f"{d:g}" for d in delays) + f" ms one way per WAN link ({how})"


@devnet.command("status")
@root_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devnet_status(root: Path | None, as_json: bool) -> None:
    """The devnet's nodes, whether they run, their peer counts and reachability (and, on the NAT
    testbed, namespaces and links)."""
    from yagna.devnet import Devnet

    net = Devnet(root)
    nodes = net.status()
    if as_json:
        _emit_nodes(nodes, True)
        return
    if not nodes:
        click.echo("no devnet here; start one with: yagna devnet up --providers 3")
        return
    _emit_nodes(nodes, False)
    for n in nodes:
        state = f"running, {n['connected_peers']} peers" if n["running"] else "stopped"
        if n.get("netns"):
            state += f", reachability {n.get('reachability') or 'unknown'}"
            link = n.get("link")
            if isinstance(link, dict):
                state += ", link " + ("cut" if link["cut"] else f"loss {link['loss']:g}, delay {link['delay_ms']:g} ms")
        click.echo(f"  {n['name']}: {state}")
    bed = net.nat_testbed()
    if bed is not None:
        click.echo(f"testbed {bed.topology.prefix}*: {_delay_note(bed.delay, bed.topology)}")
    dev = net.chain()
    if dev is not None:
        from yagna import devchain

        click.echo(f"chain {dev.chain_id} at {dev.rpc_url} ({'running' if devchain.running(dev) else 'STOPPED'}): "
                   f"token {dev.token}, contract {dev.contract}")


@devnet.command("link")
@click.argument("site")
@root_option
@click.option("--loss", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Drop probability per direction [default: unchanged].")
@click.option("--delay-ms", type=click.FloatRange(0, 10_000), default=None,
              help="One-way delay [default: unchanged].")
@click.option("--cut", "state", flag_value="cut", help="Drop every packet (a partition) until --heal.")
@click.option("--heal", "state", flag_value="heal", help="Undo --cut.")
def devnet_link(site: str, root: Path | None, loss: float | None, delay_ms: float | None, state: str | None) -> None:
    """NAT testbed: change SITE's WAN link now (e.g. provider-1 --cut, then --heal)."""
    from dataclasses import replace

    from yagna.devnet import Devnet

    net = Devnet(root)
    bed = net.nat_testbed()
    if bed is None:
        raise click.UsageError(f"no NAT testbed under {net.root}; start one with: yagna devnet up --topology nat")
    link = bed.topology.site(site).site.link
    link = replace(link, loss=link.loss if loss is None else loss,
                   delay_ms=link.delay_ms if delay_ms is None else delay_ms,
                   cut=link.cut if state is None else state == "cut")
    net.set_link(site, link)
    click.echo(f"{site}: " + ("cut" if link.cut else f"loss {link.loss:g}, delay {link.delay_ms:g} ms"))


@devnet.command("chain")
@root_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devnet_chain(root: Path | None, as_json: bool) -> None:
    """The devnet's local chain: RPC URL, token and contract addresses, fee (what --payment-driver erc20 needs)."""
    import json
    from dataclasses import asdict

    from yagna import devchain
    from yagna.devnet import Devnet

    dev = Devnet(root).chain()
    if dev is None:
        raise click.ClickException("this devnet has no chain (started with --chain none, or not started)")
    if as_json:
        click.echo(json.dumps({**asdict(dev), "running": devchain.running(dev)}, indent=2))
        return
    click.echo(f"chain {dev.chain_id} at {dev.rpc_url} ({'running' if devchain.running(dev) else 'STOPPED'})\n"
               f"token:    {dev.token}\ncontract: {dev.contract}\nfee:      {dev.fee_bps / 100:g} % to {dev.fee_recipient}\n"
               f"node flags: {' '.join(dev.node_args())}")


@devnet.command("down")
@root_option
def devnet_down(root: Path | None) -> None:
    """Stop every daemon the devnet started (and remove the NAT testbed's namespaces)."""
    from yagna.devnet import Devnet

    stopped = Devnet(root).down()
    click.echo(f"stopped {len(stopped)} node(s)")
