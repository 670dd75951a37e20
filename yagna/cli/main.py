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
from yagna.core.errors import YagnaError

# Heavy modules (libp2p, FastAPI) are imported inside the commands that need
# them: `yagna net peers` should not pay half a second of libp2p import.


class Ctx:
    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir

    def client(self):  # type: ignore[no-untyped-def]
        from yagna.cli.client import NodeClient

        return NodeClient.for_data_dir(self.data_dir)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="YAGNA_DATA_DIR",
    help="The node's data directory [env YAGNA_DATA_DIR; default ~/.local/share/yagna/node].",
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


@service.command("run")
@click.option("--role", type=click.Choice(["requestor", "provider", "both"]), default="both", show_default=True)
@click.option("--api-port", type=int, default=7465, show_default=True, envvar="YAGNA_API_PORT",
              help="REST API port on 127.0.0.1 (0 = any free port).")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR",
              help="libp2p listen address (repeatable) [default /ip4/127.0.0.1/tcp/<last port or any>].")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              help="Peer to join through, /ip4/.../tcp/.../p2p/<node id> (repeatable).")
@click.option("--px-interval", type=float, default=5.0, show_default=True, help="Seconds between peer exchanges.")
@click.option("--target-peers", type=click.IntRange(1, 10_000), default=None,
              help="Connections to keep up by own dials; bootstrap peers are always dialed [default 8, or net.target_peers].")
@click.option("--max-peers", type=click.IntRange(1, 10_000), default=None,
              help="Connections at most, inbound included [default 64, or net.max_peers].")
@click.option("--relay-service", type=click.Choice(["auto", "on", "off"]), default=None,
              help="Serve circuit relay v2 to private nodes: auto = while publicly reachable, on = always, "
                   "off = never [default auto, or net.relay_service]; limits in the config file (docs/behind-nat.md).")
@click.option("--hole-punching/--no-hole-punching", "hole_punching", default=None,
              help="Upgrade relayed connections to direct ones by hole punching (DCUtR) where the NATs allow it "
                   "[default on, or net.hole_punching].")
@click.option("--payment-driver", type=click.Choice(["testnet-ledger", "erc20"]), default=None,
              envvar="YAGNA_PAYMENT_DRIVER",
              help="testnet-ledger: test tokens of no value, in the node's own file; erc20: payment channels in a "
                   "contract on an EVM chain (needs --rpc-url, --token, --contract) [default testnet-ledger, or "
                   "payment.driver].")
@click.option("--rpc-url", default=None, envvar="YAGNA_RPC_URL", metavar="URL",
              help="erc20: the chain's JSON-RPC endpoint, e.g. http://127.0.0.1:8545 [or payment.rpc_url].")
@click.option("--token", default=None, envvar="YAGNA_TOKEN", metavar="ADDRESS",
              help="erc20: the ERC-20 token's 0x address [or payment.token].")
@click.option("--contract", default=None, envvar="YAGNA_CONTRACT", metavar="ADDRESS",
              help="erc20: the PaymentChannels contract's 0x address (docs/payments.md) [or payment.contract].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file [default <data dir>/yagna.toml if it exists]; flags win, --bootstrap adds to it.")
@click.option("--network-id", default="testnet", show_default=True, envvar="YAGNA_NETWORK_ID",
              help="Market network; offers, demands and agreements of other networks are refused.")
@click.option("--subnet", "subnets", multiple=True, default=["public"], show_default=True,
              help="Subnet whose offers to follow (repeatable); presets choose where they offer.")
@click.option("--offer-ttl", type=int, default=1800, show_default=True,
              help="Seconds an offer lives; it is re-announced halfway.")
@click.option("--anti-entropy-interval", type=click.FloatRange(min=0, max=3600), default=None,
              help="Mean seconds between offer anti-entropy rounds with one random neighbour per subnet "
                   "(jittered +-50%; 0: only with each new peer) [default 3, or market.anti_entropy_interval].")
@click.option("--max-threads", type=click.IntRange(min=0), help="Provider: most CPU threads to sell [default: all but one].")
@click.option("--max-mem-gib", type=click.FloatRange(min=0), help="Provider: most memory to sell, GiB [default: 70%].")
@click.option("--max-storage-gib", type=click.FloatRange(min=0), help="Provider: most disk to sell, GiB [default: 80% of free].")
@click.option("--test-fault", "test_faults", multiple=True, hidden=True,
              type=click.Choice(["withhold-payments", "wrong-results", "drop-offer-gossip", "kill-after-redeem-sent"]),
              help="Test only: inject a fault.")
@click.option("--activity-keepalive", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Provider: seconds of requestor silence after which its activity is stopped and its container removed.")
@click.option("--job-cache-gib", type=click.FloatRange(min=0), default=4.0, show_default=True,
              help="Provider: disk for pipelines' caches, all requestors together, GiB (least recently used go first).")
@click.option("--job-cache-per-requestor-gib", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Provider: disk for pipelines' caches of one requestor, GiB.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Log to this file, rotated at 10 MiB with 4 old files kept [default: stderr].")
@click.pass_obj
def service_run(obj: Ctx, role: str, api_port: int, listen: tuple[str, ...], bootstrap: tuple[str, ...],
                px_interval: float, target_peers: int | None, max_peers: int | None, relay_service: str | None,
                hole_punching: bool | None, payment_driver: str | None, rpc_url: str | None, token: str | None,
                contract: str | None, config_path: Path | None,
                network_id: str, subnets: tuple[str, ...], offer_ttl: int, anti_entropy_interval: float | None,
                max_threads: int | None, max_mem_gib: float | None, max_storage_gib: float | None,
                test_faults: tuple[str, ...], activity_keepalive: float, job_cache_gib: float,
                job_cache_per_requestor_gib: float, log_level: str, log_format: str, log_file: Path | None) -> None:
    """Start a node in the foreground; Ctrl-C or SIGTERM stops it."""
    import gc

    from yagna.cli import dataclass_cache

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

    from yagna.config import NodeConfig
    from yagna.core.paths import default_data_dir
    from yagna.logs import setup_logging
    from yagna.net.host import parse_multiaddr, parse_peer_addr

    from yagna import config_file

    setup_logging(log_level, log_format, log_file)
    data_dir = obj.data_dir or default_data_dir()
    from_file = config_file.load(config_path or config_file.default_path(data_dir), required=config_path is not None)
    listen = listen or tuple(from_file.net.listen)
    bootstrap = tuple(dict.fromkeys([*from_file.net.bootstrap, *bootstrap]))
    for addr in listen:
        parse_multiaddr(addr)
    for addr in bootstrap:
        parse_peer_addr(addr)
    config = NodeConfig(
        data_dir=data_dir,
        role=role,
        api_port=api_port,
        listen=list(listen),
        bootstrap=list(bootstrap),
        px_interval=px_interval,
        target_peers=target_peers or from_file.net.target_peers or 8,
        max_peers=max_peers or from_file.net.max_peers or 64,
        network_id=network_id,
        subnets=list(subnets),
        offer_ttl_s=offer_ttl,
        anti_entropy_s=(anti_entropy_interval if anti_entropy_interval is not None
                        else from_file.market.anti_entropy_interval if from_file.market.anti_entropy_interval is not None
                        else 3.0),
        max_threads=max_threads,
        max_mem_gib=max_mem_gib,
        max_storage_gib=max_storage_gib,
        activity_keepalive_s=activity_keepalive,
        job_cache_gib=job_cache_gib,
        job_cache_per_requestor_gib=job_cache_per_requestor_gib,
        test_faults=frozenset(test_faults),
        relay_service=relay_service or from_file.net.relay_service or "auto",
        relay_limits=config_file.relay_limits(from_file.net),
        hole_punching=hole_punching if hole_punching is not None else from_file.net.hole_punching is not False,
        payment_driver=payment_driver or from_file.payment.driver or "testnet-ledger",
        rpc_url=rpc_url or from_file.payment.rpc_url,
        token=token or from_file.payment.token,
        contract=contract or from_file.payment.contract,
    )
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
    from yagna.core.paths import DataDir, default_data_dir

    try:
        data = obj.client().call("GET", "/id")
        data["running"] = True
    except DaemonNotFound:
        path = DataDir(obj.data_dir or default_data_dir())
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
