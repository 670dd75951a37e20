"""``yagna``: run a node and talk to it.

Every client command finds its node through ``--data-dir`` (or
``YAGNA_DATA_DIR``, or ``YAGNA_API_URL`` + ``YAGNA_APPKEY``); every read
command takes ``--json``. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from yagna import __version__
from yagna.cli.output import emit
from yagna.cli.settings_cli import SettingsCommand, YagnaGroup, given_flags
from yagna.core.errors import YagnaError

# Heavy modules (libp2p, FastAPI) are imported inside the commands that need
# them: `yagna net peers` should not pay half a second of libp2p import.


class Ctx:
    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir

    def client(self):  # type: ignore[no-untyped-def]
        from yagna.cli.client import NodeClient

        return NodeClient.for_data_dir(self.data_dir)


@click.group(cls=YagnaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="YAGNA_DATA_DIR",
    help="The node's data directory, before or after the command [env YAGNA_DATA_DIR; default "
         "~/.local/share/yagna/node; clients also find a node installed as a service in /var/lib/yagna].",
)
@click.version_option(__version__, prog_name="yagna")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """A peer-to-peer compute network node."""
    ctx.obj = Ctx(data_dir)


# -- service ----------------------------------------------------------------------
@cli.group()
def service() -> None:
    """Run the node daemon."""


@service.command("run", cls=SettingsCommand)
@click.option("--role", type=click.Choice(["requestor", "provider", "both"]))
@click.option("--api-port", type=int, help="REST API port on 127.0.0.1 (0 = any free port).")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Also serve Prometheus metrics at http://HOST:PORT/metrics, bound to exactly that IP address "
                   "(e.g. 0.0.0.0:9464, [::1]:9464), WITHOUT an app key: it is for a Prometheus on another machine, "
                   "so let only that machine reach it. Off by default; /metrics on the API port needs the app key "
                   "(docs/metrics.md).")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR", help="libp2p listen address (repeatable).")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              help="Peer to join through, /ip4/.../tcp/.../p2p/<node id> (repeatable; adds to the config file's).")
@click.option("--px-interval", type=float, help="Seconds between peer exchanges.")
@click.option("--target-peers", type=click.IntRange(1, 10_000),
              help="Connections to keep up by own dials; bootstrap peers are always dialed.")
@click.option("--max-peers", type=click.IntRange(1, 10_000), help="Connections at most, inbound included.")
@click.option("--relay-service", type=click.Choice(["auto", "on", "off"]),
              help="Serve circuit relay v2 to private nodes: auto = while publicly reachable, on = always, "
                   "off = never; limits in the config file (docs/behind-nat.md).")
@click.option("--hole-punching/--no-hole-punching", "hole_punching", default=None,
              help="Upgrade relayed connections to direct ones by hole punching (DCUtR) where the NATs allow it.")
@click.option("--payment-driver", type=click.Choice(["testnet-ledger", "erc20"]),
              help="testnet-ledger: test tokens of no value, in the node's own file; erc20: payment channels in a "
                   "contract on an EVM chain (needs --rpc-url, --token, --contract).")
@click.option("--rpc-url", metavar="URL", help="erc20: the chain's JSON-RPC endpoint, e.g. http://127.0.0.1:8545.")
@click.option("--token", metavar="ADDRESS", help="erc20: the ERC-20 token's 0x address.")
@click.option("--contract", metavar="ADDRESS", help="erc20: the PaymentChannels contract's 0x address (docs/payments.md).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="YAGNA_CONFIG",
              help="Config file [env YAGNA_CONFIG; default <data dir>/config.toml, or <data dir>/yagna.toml, its "
                   "older name]. Precedence: flags, then YAGNA_* variables, then the file (docs/configuration.md).")
@click.option("--network-id", help="Market network; offers, demands and agreements of other networks are refused.")
@click.option("--subnet", "subnets", multiple=True,
              help="Subnet whose offers to follow (repeatable); presets choose where they offer.")
@click.option("--offer-ttl", type=int, help="Seconds an offer lives; it is re-announced halfway.")
@click.option("--anti-entropy-interval", type=click.FloatRange(min=0, max=3600),
              help="Mean seconds between offer anti-entropy rounds with one random neighbour per subnet "
                   "(jittered +-50%; 0: only with each new peer).")
@click.option("--max-threads", type=click.IntRange(min=0), help="Provider: most CPU threads to sell.")
@click.option("--max-mem-gib", type=click.FloatRange(min=0), help="Provider: most memory to sell, GiB.")
@click.option("--max-storage-gib", type=click.FloatRange(min=0), help="Provider: most disk to sell, GiB.")
@click.option("--test-fault", "test_faults", multiple=True, hidden=True,
              type=click.Choice(["withhold-payments", "wrong-results", "drop-offer-gossip", "kill-after-redeem-sent"]),
              help="Test only: inject a fault.")
@click.option("--activity-keepalive", type=click.FloatRange(min=1),
              help="Provider: seconds of requestor silence after which its activity is stopped and its container removed.")
@click.option("--job-cache-gib", type=click.FloatRange(min=0),
              help="Provider: disk for pipelines' caches, all requestors together, GiB (least recently used go first).")
@click.option("--job-cache-per-requestor-gib", type=click.FloatRange(min=0),
              help="Provider: disk for pipelines' caches of one requestor, GiB.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["text", "json"]))
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Log to this file, rotated at 10 MiB with 4 old files kept.")
@click.pass_obj
def service_run(obj: Ctx, config_path: Path | None, test_faults: tuple[str, ...], **flags: Any) -> None:
    """Start a node in the foreground; Ctrl-C or SIGTERM stops it.

    Every option is also a key of the config file and a YAGNA_* environment variable
    (`yagna config show --origin` says which one each value came from)."""
    import gc
    import os

    from yagna import settings
    from yagna.cli import dataclass_cache
    from yagna.core.paths import default_data_dir

    # The settings first: a bad config file stops the daemon before it imports anything heavy.
    data_dir = obj.data_dir or default_data_dir()
    resolved = settings.load(data_dir, explicit=config_path, env=os.environ,
                             flags=given_flags(click.get_current_context(), flags))
    config = settings.node_config(resolved, data_dir, test_faults=test_faults)

    # ~1,200 methods of dataclasses are generated and compiled while importing: their code comes
    # from a cache after the first start (yagna/cli/dataclass_cache.py).
    dataclass_cache.install()
    # The daemon imports ~100 MB of modules (libp2p alone is 83 MiB) that live
    # until exit: no cyclic GC passes while importing them (-7 % start time),
    # and frozen so interpreter teardown skips them (exit 375 -> 41 ms).
    gc.disable()
    import trio

    import yagna.node  # noqa: F401

    gc.freeze()
    gc.enable()

    from yagna.logs import setup_logging
    from yagna.net.host import parse_multiaddr, parse_peer_addr

    log_file = resolved["log.file"]
    setup_logging(resolved["log.level"], resolved["log.format"], Path(log_file) if log_file else None)
    for addr in config.listen:
        parse_multiaddr(addr)
    for addr in config.bootstrap:
        parse_peer_addr(addr)
    trio.run(_serve, config)
    gc.freeze()


async def _serve(config: Any) -> None:
    import logging

    import trio

    from yagna.cli import dataclass_cache
    from yagna.node import Node

    log = logging.getLogger("yagna")
    node = Node(config)

    async def run_node(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await node.run(task_status=task_status)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(run_node)
            nursery.start_soon(trio.to_thread.run_sync, dataclass_cache.finish)  # for the next start
            click.echo(f"yagna node {info.node_id} (role {info.role})")
            for addr in info.p2p_addrs:
                click.echo(f"  p2p:      {addr}")
            click.echo(f"  api:      {info.api_url}")
            click.echo(f"  data dir: {info.data_dir}")
            click.echo("Press Ctrl-C to stop.")
            sys.stdout.flush()
            async for signum in signals:
                log.info("%s received; shutting down", signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
    log.info("stopped")


# -- id -------------------------------------------------------------------------------
@cli.group("id")
def id_group() -> None:
    """The node's identity."""


@id_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def id_show(obj: Ctx, as_json: bool) -> None:
    """Show the node id (works whether or not the node is running)."""
    from requestor_sdk.errors import DaemonNotFound
    from yagna.core.identity import NodeKey
    from yagna.core.paths import DataDir, client_data_dir

    try:
        data = obj.client().call("GET", "/id")
        data["running"] = True
    except DaemonNotFound:
        path = DataDir(obj.data_dir or client_data_dir())
        if not path.key_file.exists():
            raise YagnaError(
                f"no node identity in {path.path}; start a node once with: yagna service run --data-dir {path.path}"
            ) from None
        key, _ = NodeKey.load_or_create(path.key_file)  # exists: only read
        data = {"node_id": key.node_id, "running": False}
    emit(data, as_json, data["node_id"])


# -- net --------------------------------------------------------------------------------
@cli.group()
def net() -> None:
    """Peers, addresses and gossip topics."""


@net.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def net_status(obj: Ctx, as_json: bool) -> None:
    """Listen and advertised addresses, reachability and peer counts."""
    data = obj.client().call("GET", "/net/status")
    text = "\n".join(
        [f"node id:      {data['node_id']}"]
        + [f"listening:    {a}" for a in data["listen_addrs"]]
        + [f"reachability: {data['reachability']}"]
        + [f"advertised:   {a}" for a in data["advertised_addrs"]]
        + ([] if data["advertised_addrs"] else ["advertised:   none (no address a peer on another network can dial)"])
        + [f"peers:        {data['connected']} connected, {data['known']} known"]
        + _relay_lines(data)
    )
    emit(data, as_json, text)


def _relay_lines(data: dict[str, Any]) -> list[str]:
    """``net status`` lines for the relay service and hole punching (absent from older daemons)."""
    lines = []
    relay = data.get("relay")
    if isinstance(relay, dict):
        via = ", ".join(relay.get("reservations") or []) or "none"
        lines.append(f"relay:        {'serving' if relay.get('serving') else 'not serving'}; reservations: {via}")
    punch = data.get("hole_punching")
    if isinstance(punch, dict):
        if not punch.get("enabled"):
            lines.append("hole punch:   off")
        else:
            lines.append(f"hole punch:   {punch.get('succeeded', 0)} succeeded, {punch.get('failed', 0)} failed, "
                         f"{punch.get('refused', 0)} refused, {punch.get('active', 0)} in progress")
    return lines


@net.command("peers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also list known peers that are not connected.")
@click.pass_obj
def net_peers(obj: Ctx, as_json: bool, show_all: bool) -> None:
    """Connected peers with the addresses in use."""
    peers = obj.client().call("GET", "/net/peers", params={"all": show_all})
    lines = [f"{'NODE ID':54} {'STATE':14} ADDRESS"]
    for p in peers:
        state = ("connected" + (f"/{p['direction'][:3]}" if p["direction"] else "")) if p["connected"] else f"down({p['failures']})"
        addr = (p["remote_addrs"] or p["addrs"] or ["-"])[0]
        lines.append(f"{p['node_id']:54} {state:14} {addr}")
    emit(peers, as_json, "\n".join(lines) if peers else "no peers")


@net.command("subscribe")
@click.argument("topic")
@click.pass_obj
def net_subscribe(obj: Ctx, topic: str) -> None:
    """Start collecting messages of a user/<name> topic."""
    obj.client().call("PUT", f"/net/gossip/{topic}/subscription")
    click.echo(f"subscribed to {topic}")


@net.command("publish")
@click.argument("topic")
@click.argument("message")
@click.pass_obj
def net_publish(obj: Ctx, topic: str, message: str) -> None:
    """Broadcast a text message on a user/<name> topic."""
    obj.client().call("POST", f"/net/gossip/{topic}/messages", json={"data": message})
    click.echo(f"published to {topic}")


@net.command("messages")
@click.argument("topic")
@click.option("--after", type=int, default=0, help="Only messages with a sequence number above this.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def net_messages(obj: Ctx, topic: str, after: int, as_json: bool) -> None:
    """Messages received on a subscribed user/<name> topic."""
    msgs = obj.client().call("GET", f"/net/gossip/{topic}/messages", params={"after": after})
    emit(msgs, as_json, "\n".join(f"{m['seq']:>5} {m['origin']} {m['data']}" for m in msgs) or "no messages")


# -- app keys ------------------------------------------------------------------------------
@cli.group("app-key")
def app_key() -> None:
    """Bearer keys for the REST API."""


@app_key.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def app_key_create(obj: Ctx, name: str, as_json: bool) -> None:
    """Create a key; it is printed once and never stored in clear."""
    data = obj.client().call("POST", "/app-keys", json={"name": name})
    emit(data, as_json, data["key"])


@app_key.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def app_key_list(obj: Ctx, as_json: bool) -> None:
    """List keys (names and ids, never the tokens)."""
    keys = obj.client().call("GET", "/app-keys")
    lines = [f"{'NAME':24} {'ID':34} CREATED"] + [
        f"{k['name']:24} {k['id']:34} {k['created_at']}" for k in keys
    ]
    emit(keys, as_json, "\n".join(lines))


@app_key.command("drop")
@click.argument("name")
@click.pass_obj
def app_key_drop(obj: Ctx, name: str) -> None:
    """Revoke a key."""
    obj.client().call("DELETE", f"/app-keys/{name}")
    click.echo(f"dropped {name}")


def _register_devnet() -> None:
    from yagna.cli.devnet_cmd import devnet

    cli.add_command(devnet)
    from yagna.cli.market_cmd import market, provider, reputation

    cli.add_command(reputation)
    cli.add_command(market)
    cli.add_command(provider)
    from yagna.cli.activity_cmd import activity, provider_activities

    cli.add_command(activity)
    provider.add_command(provider_activities)
    from yagna.cli.provider_init import provider_doctor, provider_init

    provider.add_command(provider_init)
    provider.add_command(provider_doctor)
    from yagna.cli.config_cmd import config
    from yagna.cli.service_install import service_install

    cli.add_command(config)
    service.add_command(service_install)
    from yagna.cli.payment_cmd import payment

    cli.add_command(payment)
    from yagna.cli.batch_cmd import batch

    cli.add_command(batch)
    from yagna.cli.image_cmd import image

    cli.add_command(image)
    from yagna.cli.deploy_cmd import deploy

    cli.add_command(deploy)
    from yagna.cli.pipeline_cmd import pipeline

    cli.add_command(pipeline)
    from yagna.cli.dashboard_cmd import dashboard

    cli.add_command(dashboard)
    from yagna.cli.run_cmd import run

    cli.add_command(run)


_register_devnet()


def _first_yagna_error(exc: BaseException) -> YagnaError | None:
    if isinstance(exc, YagnaError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_yagna_error(inner)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="yagna", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        err = _first_yagna_error(exc)
        if err is None:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
