"""The composition root: one node = identity + store + network + API.

``Node.run`` owns the root nursery. The store is opened before and closed
after every service, so no service ever writes to a closed database; the
network service shuts its host down gracefully even when cancelled (see
:mod:`yagna.net.network`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Any, cast
from dataclasses import dataclass

import trio

from exeunit.runtime import Runtime
from market.capacity import Capacity, default_limits, machine_capacity
from market.presets import Preset
from market.properties import RUNTIME_GOLEM_VM
from yagna import __version__
from yagna.activity_service import ActivityConfig, ActivityService
from yagna.api.app import create_app
from yagna.api.dashboard.log_ring import RecentLogs
from yagna.api.server import ApiServer, bind_api_socket
from yagna.config import DataDir, NodeConfig
from yagna.core.identity import NodeKey
from yagna.market_service import MarketConfig, MarketService
from yagna.metrics.registry import NodeMetrics
from yagna.net.errors import ListenError
from yagna.net.host import check_tcp_listen_addr, parse_multiaddr
from yagna.net.network import NetConfig, Network
from yagna.payment_service import PaymentConfig, PaymentService
from yagna.store import Store
from yagna.store.errors import StoreError
from yagna.store.payment_repos import SqliteLedger
from yagna.store.repos import AppKeys, Peers, PeerSource, Settings
from yagna.user_topics import UserTopics

log = logging.getLogger("yagna.node")

LOCAL_KEY_NAME = "local"


@dataclass(frozen=True)
class NodeInfo:
    """What a started node reports (and writes to ``node.json``)."""

    node_id: str
    role: str
    pid: int
    api_url: str
    p2p_addrs: list[str]
    data_dir: str
    version: str = __version__

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


PEER_STALE_S = 30 * 86400
MAX_REMEMBERED_PEERS = 4096


class StorePeerBook:
    """Adapter: the network's PeerBook over the store's Peers repository.

    Soft state: a failing write is logged and forgotten, never fatal.
    """

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def upsert(self, node_id: str, addrs: list[str], source: str) -> None:
        try:
            await self._peers.upsert(node_id, addrs, cast(PeerSource, source))  # checked by upsert
        except StoreError as exc:
            log.warning("cannot remember peer %s: %s", node_id, exc)

    async def mark_connected(self, node_id: str) -> None:
        try:
            await self._peers.mark_connected(node_id)
        except StoreError as exc:
            log.warning("cannot record connection to %s: %s", node_id, exc)

    async def load(self) -> list[tuple[str, list[str]]]:
        """The best 256 known peers; the book is pruned first (unseen for 30 days, beyond 4,096 rows)."""
        try:
            await self._peers.forget_stale(PEER_STALE_S)
            await self._peers.keep_best(MAX_REMEMBERED_PEERS)
        except StoreError as exc:
            log.warning("cannot prune the peer book: %s", exc)
        return [(p.node_id, list(p.addrs)) for p in await self._peers.list(limit=256)]


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.data = DataDir(config.data_dir)
        self.role = config.role
        self.node_id = ""
        self.info: NodeInfo | None = None
        self.recent_logs = RecentLogs()  # the last warnings and errors, for the dashboard (attached in run)
        self.metrics = NodeMetrics()  # /metrics (docs/metrics.md); its log counter is attached in run

    # -- facade for the API ----------------------------------------------------
    def net_status(self) -> dict[str, object]:
        peers = self.network.peers.view()
        return {
            "node_id": self.node_id,
            "listen_addrs": self.network.full_addrs(),
            "reachability": str(self.network.reachability.status),
            "advertised_addrs": self.network.advertised_addrs(),
            "connected": sum(p.connected for p in peers),
            "known": len(peers),
            "gossip_topics": self.network.gossip.topics(),
            "relay": self.network.relay.status(),
            "hole_punching": self.network.holepunch.status(),
        }

    def net_peers(self) -> list[dict[str, object]]:
        return [dict(p.__dict__) for p in self.network.peers.view()]

    def _capacity(self) -> Capacity:
        """The machine's real capacity, capped by the configured limits (Golem's defaults if none)."""
        machine = machine_capacity(self.data.path)
        c = self.config
        if c.max_threads is None and c.max_mem_gib is None and c.max_storage_gib is None:
            return default_limits(machine)
        limits = Capacity(
            c.max_threads if c.max_threads is not None else machine.threads,
            c.max_mem_gib if c.max_mem_gib is not None else machine.mem_gib,
            c.max_storage_gib if c.max_storage_gib is not None else machine.storage_gib,
        )
        capped = machine.min(limits)
        if capped != limits:
            log.warning("selling at most what this machine has: %s (asked for %s)", capped, limits)
        return capped

    # -- service -----------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED) -> None:
        self.data.prepare()
        key, created = NodeKey.load_or_create(self.data.key_file)
        self.node_id = key.node_id
        log.info("%s node identity %s", "created" if created else "loaded", key.node_id)
        store = await Store.open(self.data.db_file)
        logging.getLogger().addHandler(self.recent_logs)
        logging.getLogger().addHandler(self.metrics.log_counter)
        try:
            await self._run_with_store(key, store, task_status)
        finally:
            logging.getLogger().removeHandler(self.recent_logs)
            logging.getLogger().removeHandler(self.metrics.log_counter)
            with trio.CancelScope(shield=True):
                await store.close()
                _remove_quietly(self.data.node_file)

    async def _settlement(self, key: NodeKey, store: Store) -> tuple[Any, Any]:
        return await _settlement_driver(self.config, self.data, key, store)

    async def _run_with_store(self, key: NodeKey, store: Store, task_status: trio.TaskStatus[NodeInfo]) -> None:
        settings = Settings(store)
        self.app_keys = AppKeys(store)
        await self.app_keys.ensure_local_key(LOCAL_KEY_NAME, self.data.app_key_file)
        listen = self.config.listen or [await _default_listen(settings)]
        api_sock = bind_api_socket(self.config.api_host, self.config.api_port)
        try:
            self.network = Network(
                key.seed,
                NetConfig(listen=listen, bootstrap=self.config.bootstrap, px_interval=self.config.px_interval,
                          target_peers=self.config.target_peers, max_peers=self.config.max_peers,
                          relay_service=self.config.relay_service, relay_limits=self.config.relay_limits,
                          hole_punching=self.config.hole_punching),
                book=StorePeerBook(Peers(store)),
            )
        except BaseException:
            api_sock.close()
            raise
        api = ApiServer(create_app(self), api_sock)  # type: ignore[arg-type]
        sells = self.role in ("provider", "both")
        driver, settlement = await self._settlement(key, store)
        self.market = MarketService(
            key=key,
            config=MarketConfig(
                network_id=self.config.network_id,
                subnets=list(self.config.subnets),
                provider=sells,
                requestor=self.role in ("requestor", "both"),
                capacity=self._capacity() if sells else None,
                offer_ttl_s=self.config.offer_ttl_s,
                anti_entropy_s=self.config.anti_entropy_s,
                drop_gossip=1.0 if "drop-offer-gossip" in self.config.test_faults else 0.0,
                payment_platforms=payment_platforms(driver, key.node_id),
                capabilities={RUNTIME_GOLEM_VM: True} if sells and shutil.which("unsquashfs") else {},
                # a dedicated provider sells something out of the box; edit it with `yagna provider preset`
                default_preset=Preset(name="default", subnet=self.config.subnets[0]) if self.role == "provider" else None,
                managed_preset=self.config.provider_preset,  # [provider.preset] of the config file
            ),
            rr=self.network.rr,
            gossip=self.network.gossip,
            peers=self.network.peers,
            store=store,
        )
        self.activity = ActivityService(
            node_id=key.node_id,
            config=ActivityConfig(
                network_id=self.config.network_id,
                provider=sells,
                requestor=self.role in ("requestor", "both"),
                work_dir=self.data.path / "exeunit",
                keepalive_s=self.config.activity_keepalive_s,
                job_cache_bytes=int(self.config.job_cache_gib * 2**30),
                job_cache_per_requestor_bytes=int(self.config.job_cache_per_requestor_gib * 2**30),
                faults=self.config.test_faults,
            ),
            rr=self.network.rr,
            store=store,
            runtime=_container_runtime(),
            key=key,
        )
        self.payments = PaymentService(
            key=key,
            config=PaymentConfig(
                network_id=self.config.network_id,
                provider=sells,
                requestor=self.role in ("requestor", "both"),
                withhold_payments="withhold-payments" in self.config.test_faults,
            ),
            rr=self.network.rr,
            store=store,
            driver=driver,
            settlement=settlement,
        )
        _connect_payments(self.market, self.activity, self.payments)
        self.deployments = None
        if self.market.requestor is not None and self.activity.requestor is not None and self.payments.requestor is not None:
            from yagna.deploy_service.manager import DeployConfig, DeploymentManager

            self.deployments = DeploymentManager(market=self.market, activity=self.activity.requestor,
                                                 payments=self.payments.requestor, rr=self.network.rr,
                                                 config=DeployConfig(subnet=self.config.subnets[0]))
        async with trio.open_nursery() as nursery:
            self.user_topics = UserTopics(self.network.gossip, nursery)
            if self.config.metrics_listen:  # first: a bad or busy address stops the node before it joins the network
                from yagna.metrics.listener import serve_metrics

                await nursery.start(serve_metrics, self, self.config.metrics_listen)
            await nursery.start(self.network.run)
            await nursery.start(self.market.run)
            await nursery.start(self.activity.run)
            await nursery.start(self.payments.run)
            if self.deployments is not None:
                await nursery.start(self.deployments.run)
            await nursery.start(api.run)
            addrs = self.network.full_addrs()
            await _remember_port(settings, self.network.listen_addrs())
            self.info = NodeInfo(
                node_id=self.node_id,
                role=self.role,
                pid=os.getpid(),
                api_url=api.url,
                p2p_addrs=addrs,
                data_dir=str(self.data.path),
            )
            _write_json_atomic(self.data.node_file, {**self.info.to_json(), "started_at": time.time()})
            log.info("node %s ready: api %s, p2p %s", self.node_id, api.url, " ".join(addrs))
            task_status.started(self.info)
            try:
                await trio.sleep_forever()
            finally:
                api.stop()


async def _settlement_driver(config: NodeConfig, data: Any, key: NodeKey, store: Store) -> tuple[Any, Any]:
    """The payment driver the config names; the chain's modules load only for ``erc20``."""
    if config.payment_driver != "erc20":
        return SqliteLedger(store), None
    from payments.evm import binding
    from yagna.chain.account import SettlementAccount
    from yagna.chain.driver import EvmDriver
    from yagna.payment_service.protocol import SettlementInfo

    account, created = SettlementAccount.load_or_create(data.settlement_key_file)
    driver = await EvmDriver.connect(rpc_url=str(config.rpc_url), account=account, token=str(config.token),
                                     contract=str(config.contract), store=store)
    if "kill-after-redeem-sent" in config.test_faults:
        driver.after_sent = _kill_self
    recovered = await driver.start()  # what a crash left half-done (redeems) is finished first
    log.info("settling on chain %d (%s): account %s%s, contract %s, token %s%s", driver.chain_id,
             "local test chain" if driver.test_network else "real tokens", account.address,
             " (new)" if created else "", driver.contract, driver.token,
             f"; finished {recovered} redeem(s) a crash had cut" if recovered else "")
    return driver, SettlementInfo(binding.make(key, account.private_key), driver.chain_id, driver.contract)


async def _kill_self(tx_hash: str) -> None:
    """Test fault: die like ``kill -9`` with a redeem in flight (its hash is journaled already)."""
    import signal

    log.warning("test fault kill-after-redeem-sent: SIGKILL after sending %s", tx_hash)
    os.kill(os.getpid(), signal.SIGKILL)


GOLEM_TEST_PLATFORM = "erc20-holesky-tglm"
"""The platform Golem's SDK asks for by default (its test network): served by test networks here."""
GOLEM_NETWORKS = {1: "mainnet", 137: "polygon", 17000: "holesky", 11155111: "sepolia", 80002: "amoy"}
"""Golem's names of EVM chains (platform ``erc20-<network>-<token>``; ``glm`` on mainnet and Polygon,
``tglm`` on test chains)."""


def payment_platforms(driver: Any, node_id: str) -> dict[str, str]:
    """Golem platform names a node settles on -> its account there (what its offers say).

    A test network (the ledger, a local chain) serves Golem's default test platform, so unmodified
    Golem scripts find our providers; a node on a real chain names its chain and token."""
    account = driver.account_of(node_id)
    if driver.test_network:
        return {GOLEM_TEST_PLATFORM: account}
    network = GOLEM_NETWORKS.get(driver.chain_id, str(driver.chain_id))
    return {f"erc20-{network}-{'glm' if network in ('mainnet', 'polygon') else 'tglm'}": account}


def _connect_payments(market: MarketService, activity: ActivityService, payments: PaymentService) -> None:
    """Payments meter the exe-unit and act on it; the exe-unit asks payments before work starts."""
    if payments.provider is not None and activity.provider is not None:
        activity.provider.work_guard = payments.provider.work_allowed
        payments.provider.usage = activity.provider.usage_for_agreement
        payments.provider.pause = activity.provider.pause_agreement
        payments.provider.resume = activity.provider.resume_agreement
        payments.provider.terminate = market.terminate
    if payments.requestor is not None and activity.requestor is not None:
        activity.requestor.before_create = payments.requestor.ensure_channel
        payments.requestor.elapsed = activity.requestor.elapsed_for_agreement


def _container_runtime() -> Runtime:
    """The Docker runtime; docker-py is imported on its first container operation (a requestor never
    pays for it), and it connects lazily, so a node without an engine starts and says so on first use."""
    from exeunit.docker.lazy import LazyDockerRuntime

    # The test suite tags what its daemons create, to check that nothing is left behind (see conftest.py).
    session = os.environ.get("YAGNA_TEST_SESSION")
    runtime = LazyDockerRuntime(extra_labels={"network.yagna.test-session": session} if session else None)
    return cast(Runtime, runtime)  # every Runtime method, forwarded (exeunit/docker/lazy.py)


async def _default_listen(settings: Settings) -> str:
    """127.0.0.1 on last run's port if it is free (peers remember it), else any port."""
    last = await settings.get("p2p.last_port")
    if last:
        addr = f"/ip4/127.0.0.1/tcp/{int(last)}"
        try:
            check_tcp_listen_addr(parse_multiaddr(addr))
            return addr
        except ListenError:
            log.info("last p2p port %s is taken; using a new one", last)
    return "/ip4/127.0.0.1/tcp/0"


async def _remember_port(settings: Settings, addrs: list[str]) -> None:
    for addr in addrs:
        if "/tcp/" in addr:
            await settings.set("p2p.last_port", addr.rsplit("/tcp/", 1)[1].split("/")[0])
            return


def _write_json_atomic(path: os.PathLike[str] | str, data: object) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_quietly(path: os.PathLike[str] | str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
