"""A local network on this machine: one requestor and N providers, each a
separate background daemon with its own data dir under one root.

``root/devnet.json`` records what was started (role, data dir, pid), so
``status`` and ``down`` work from any later shell. ``down`` only signals
processes whose command line still names their data dir (a recycled pid is
never killed).

Two layouts: all nodes on 127.0.0.1 (``up``), or the NAT testbed (``up_nat``,
Linux and root): every node in its own network namespace, public nodes on an
"internet" segment and the requestor and each provider behind its own NAT router
(``yagna.netlab``, recorded in ``root/netlab.json``; docs/testbed.md). A node in a
namespace serves its API on that namespace's 127.0.0.1; this module reaches it
from a thread that entered the namespace (``yagna.netlab.netns``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from requestor_sdk.errors import DaemonNotFound
from requestor_sdk.locate import locate_in
from yagna import devchain
from yagna.core.errors import YagnaError
from yagna.core.paths import DataDir, process_alive, user_data_root
from yagna.netlab import testbed
from yagna.netlab.errors import NetlabError
from yagna.netlab.netns import run_in_netns
from yagna.netlab.testbed import Built
from yagna.netlab.topology import Impairment, SiteAddrs, Topology, devnet_topology, new_tag

NAT_PORT = 4001
"""The libp2p port of every node on the NAT testbed (each has its own namespace, so all can use it)."""
DEFAULT_DELAY_MS = 20.0
"""One way, per WAN link: 40 ms RTT between two sites (netem, else the user-space delay)."""


REQUESTOR_FUNDS = "1000"
PROVIDER_FUNDS = "10"
"""Test tokens each node's settlement account gets on the devnet's chain (plus gas)."""


class DevnetError(YagnaError):
    """The devnet cannot be started, inspected or stopped (the message says why)."""


def default_root() -> Path:
    return user_data_root() / "devnet"


@dataclass
class DevnetNode:
    name: str
    role: str
    data_dir: str
    pid: int
    node_id: str | None = None
    api_url: str | None = None
    p2p_addrs: list[str] | None = None
    netns: str | None = None
    """NAT testbed: the node's network namespace (its API is on that namespace's 127.0.0.1)."""
    ip: str | None = None
    """NAT testbed: the node's own address (private behind a NAT, public on the internet segment)."""
    nat: str | None = None
    """NAT testbed: ``easy`` or ``hard`` (the kind of its NAT router), ``None`` when public."""


class Devnet:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_root()).absolute()
        self.state_file = self.root / "devnet.json"

    # -- state file ---------------------------------------------------------------
    def load(self) -> list[DevnetNode]:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise DevnetError(f"cannot read {self.state_file}: {exc}") from None
        return [DevnetNode(**n) for n in raw.get("nodes", [])]

    def _save(self, nodes: list[DevnetNode]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"root": str(self.root), "nodes": [asdict(n) for n in nodes]}, indent=2))
        os.replace(tmp, self.state_file)

    # -- up -----------------------------------------------------------------------
    def up(self, providers: int, *, timeout: float = 60.0, px_interval: float = 2.0,
           chain: str = "anvil") -> list[DevnetNode]:
        """``chain``: ``anvil`` (a local EVM chain with the token and the channel contract; every
        node settles on it with funded accounts) or ``none`` (the test-network ledger)."""
        if providers < 1:
            raise DevnetError("a devnet needs at least one provider (--providers N, N >= 1)")
        if chain not in ("anvil", "none"):
            raise DevnetError(f"--chain must be anvil or none, not {chain!r}")
        self._refuse_if_running()
        if (self.root / "netlab.json").exists():
            raise DevnetError(f"a NAT testbed is recorded under {self.root}; remove it first: yagna devnet down")
        devchain.stop(self.root)  # one a crash left behind (only if it still is that anvil)
        nodes: list[DevnetNode] = []
        deadline = time.monotonic() + timeout
        try:
            extra: list[str] = []
            if chain == "anvil":
                try:
                    extra = devchain.start(self.root).node_args()
                except devchain.ChainStartError as exc:
                    raise DevnetError(f"cannot start the local chain: {exc}") from None
            requestor = self._spawn(nodes, "requestor", "requestor", [], px_interval, extra=extra)
            self._wait_started(requestor, deadline)
            boot = requestor.p2p_addrs or []
            for i in range(1, providers + 1):
                self._spawn(nodes, f"provider-{i}", "provider", boot[:1], px_interval, extra=extra)
            for node in nodes[1:]:
                self._wait_started(node, deadline)
            self._save(nodes)
            if chain == "anvil":
                for node in nodes:  # test tokens and gas for every node's settlement account
                    self._fund(node, REQUESTOR_FUNDS if node.role == "requestor" else PROVIDER_FUNDS)
            self._wait_ready(nodes, deadline)
        except BaseException:
            self._stop(nodes, grace=5.0)
            self._save([])
            devchain.stop(self.root)
            raise
        return nodes

    def _fund(self, node: DevnetNode, amount: str) -> None:
        try:
            loc = locate_in(DataDir(node.data_dir))
            resp = httpx.post(f"{loc.api_url}/api/v1/payment/fund", json={"amount": amount},
                              headers={"Authorization": f"Bearer {loc.app_key}"}, timeout=30.0)
        except (DaemonNotFound, httpx.HTTPError) as exc:
            raise DevnetError(f"cannot fund {node.name}: {exc}") from None
        if resp.status_code != 200:
            raise DevnetError(f"cannot fund {node.name}: HTTP {resp.status_code} {resp.text[:300]}")

    def chain(self) -> devchain.DevChain | None:
        """The devnet's local chain, if it has one."""
        return devchain.load(self.root)

    def up_nat(self, providers: int, *, public_nodes: int = 2, nat: dict[str, str] | None = None,
               loss: dict[str, float] | None = None, delay_ms: float | None = None,
               timeout: float = 90.0, px_interval: float = 2.0) -> tuple[list[DevnetNode], Built]:
        """The NAT testbed (Linux, root): namespaces first, then the public nodes, then the rest.

        Ready when every node is connected to the bootstrap (``public-1``), knows whether it is
        publicly reachable (with two public nodes), knows an address of every node that
        advertises one, and knows every provider's offer. ``delay_ms`` ``None``: 20 ms one way per WAN link (40 ms RTT between
        sites) where the kernel has netem or NFQUEUE, none where it has neither; a number: exactly
        that, or an error without either.
        """
        testbed.preflight()
        if providers < 1:
            raise DevnetError("a devnet needs at least one provider (--providers N, N >= 1)")
        self._refuse_if_running()
        bed = testbed.Testbed(self.root)
        if bed.load() is not None:  # left by a crash: nothing of ours runs (checked above)
            self._stop_strays(bed)
            bed.down()
        topo = devnet_topology(new_tag(), providers, public_nodes=public_nodes, nat=nat, loss=loss,
                               delay_ms=DEFAULT_DELAY_MS if delay_ms is None else delay_ms)
        built = bed.up(topo, require_delay=delay_ms is not None and delay_ms > 0)
        nodes: list[DevnetNode] = []
        deadline = time.monotonic() + timeout
        try:
            sites = built.topology.addresses()
            boot_site = sites[0]
            boot = self._spawn(nodes, boot_site.site.name, "public", [], px_interval, site=boot_site)
            self._wait_started(boot, deadline)
            boot_addr = [f"/ip4/{boot_site.node_ip}/tcp/{NAT_PORT}/p2p/{boot.node_id}"]
            for a in sites[1:]:
                name = a.site.name
                role = "public" if name.startswith("public-") else ("requestor" if name == "requestor" else "provider")
                self._spawn(nodes, a.site.name, role, boot_addr, px_interval, site=a)
            for node in nodes[1:]:
                self._wait_started(node, deadline)
            self._save(nodes)
            self._wait_ready(nodes, deadline, bootstrap=boot, reachability=public_nodes >= 2)
        except BaseException:
            self._stop(nodes, grace=5.0)
            self._save([])
            self._stop_strays(bed)
            bed.down()
            raise
        return nodes, built

    def _refuse_if_running(self) -> None:
        running = [n for n in self.load() if _is_our_process(n)]
        if running:
            raise DevnetError(
                f"a devnet is already running under {self.root} ({len(running)} nodes); "
                "see `yagna devnet status` or stop it with `yagna devnet down`"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DevnetError(f"cannot create devnet root {self.root}: {exc.strerror}") from None

    def _stop_strays(self, bed: testbed.Testbed, grace: float = 5.0) -> None:
        """Stop daemons of this devnet still running in its namespaces but missing from the record
        (a crash between starting one and recording it): by command line, never anyone else's."""
        rec = bed.load()
        if rec is None:
            return
        strays = []
        for ns in rec.topology.namespaces():
            for pid in testbed.namespace_pids(ns):
                argv = _cmdline(pid)
                data_dir = next((a for a in argv if a.startswith(str(self.root) + os.sep)), None)
                if data_dir and "service" in argv:
                    strays.append(DevnetNode(name="stray", role="?", data_dir=data_dir, pid=pid))
        self._stop(strays, grace)

    def _spawn(self, nodes: list[DevnetNode], name: str, role: str, bootstrap: list[str],
               px_interval: float, *, site: SiteAddrs | None = None, extra: list[str] | None = None) -> DevnetNode:
        data = DataDir(self.root / name)
        data.prepare()
        cmd = [sys.executable, "-m", "yagna", "--data-dir", str(data.path), "service", "run",
               "--role", "requestor" if role == "public" else role, "--api-port", "0",
               "--px-interval", str(px_interval), "--log-file", str(data.log_file)]
        if site is not None:
            # `ip netns exec` enters the namespace and execs the daemon: the pid stays the daemon's.
            cmd = ["ip", "netns", "exec", site.node_ns, *cmd, "--listen", f"/ip4/0.0.0.0/tcp/{NAT_PORT}"]
        for addr in bootstrap:
            cmd += ["--bootstrap", addr]
        cmd += extra or []
        # The daemon rotates its log file; what it prints before logging is set up
        # (or a crash of the interpreter) goes to stderr.log beside it.
        with open(data.path / "stderr.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True)
        node = DevnetNode(name=name, role=role, data_dir=str(data.path), pid=proc.pid)
        if site is not None:
            node.netns, node.ip, node.nat = site.node_ns, site.node_ip, site.site.nat
        nodes.append(node)
        self._save(nodes)
        return node

    def _wait_started(self, node: DevnetNode, deadline: float) -> None:
        data = DataDir(node.data_dir)
        while True:
            try:
                loc = locate_in(data)
                if loc.pid == node.pid:
                    info = json.loads(data.node_file.read_text())
                    node.node_id, node.api_url, node.p2p_addrs = info["node_id"], info["api_url"], info["p2p_addrs"]
                    return
            except (DaemonNotFound, ValueError, KeyError, OSError):
                pass
            if not _pid_alive(node.pid):
                raise DevnetError(f"{node.name} exited during start-up:\n{_tail(data.log_file)}"
                                  f"\n{_tail(data.path / 'stderr.log')}")
            if time.monotonic() > deadline:
                raise DevnetError(f"{node.name} did not start in time:\n{_tail(data.log_file)}")
            time.sleep(0.05)

    def _wait_ready(self, nodes: list[DevnetNode], deadline: float,
                    bootstrap: DevnetNode | None = None, reachability: bool = False) -> None:
        """Ready: every node is connected to some node, knows every other one (an address to
        dial, directly or through a relay) and knows every provider's live offer. Not a full
        mesh: each node keeps only its target number of connections (yagna/net/mesh.py)."""
        ids = {n.node_id for n in nodes}
        providers = {n.node_id for n in nodes if n.role == "provider"}
        pending = list(nodes)
        why: dict[str, str] = {}
        while pending:
            still = []
            advertising = set() if bootstrap is None else _advertising(nodes)
            for node in pending:
                problem = (_not_ready(node, ids, providers) if bootstrap is None
                           else _not_ready_nat(node, bootstrap, providers, advertising, reachability))
                if problem:
                    why[node.name] = problem
                    still.append(node)
            pending = still
            if pending and time.monotonic() > deadline:
                names = "; ".join(f"{n.name}: {why[n.name]}" for n in pending)
                raise DevnetError(f"nodes not ready in time: {names}")
            if pending:
                time.sleep(0.1)

    # -- status / down ---------------------------------------------------------------
    def status(self) -> list[dict[str, object]]:
        """Each node: its record, whether it runs, its peer count and reachability (``net
        status``'s, ``None`` when not running or not reported); on the NAT testbed also its
        link (loss, delay, cut)."""
        links = {}
        bed = self.nat_testbed()
        if bed is not None:
            links = {s.name: s.link for s in bed.topology.sites}
        out = []
        for node in self.load():
            alive = _is_our_process(node)
            peers = _api_get(node, "/net/peers") if alive else None
            net = _api_get(node, "/net/status") if alive else None
            row: dict[str, object] = {
                **asdict(node),
                "running": alive,
                "connected_peers": len(peers) if peers is not None else None,
                "reachability": net.get("reachability") if isinstance(net, dict) else None,
            }
            link = links.get(node.name)
            if link is not None:
                row["link"] = {"loss": link.loss, "delay_ms": link.delay_ms, "cut": link.cut}
            out.append(row)
        return out

    def nat_testbed(self) -> testbed.Record | None:
        """The NAT testbed's record (topology, how delay is added); ``None`` on loopback."""
        return testbed.Testbed(self.root).load()

    def set_link(self, site: str, link: Impairment) -> Topology:
        """Change a site's WAN link of the running NAT testbed (loss, cut/heal, delay)."""
        if self.nat_testbed() is None:
            raise DevnetError(f"no NAT testbed under {self.root}; start one with: yagna devnet up --topology nat")
        return testbed.Testbed(self.root).set_link(site, link)

    def down(self, grace: float = 10.0) -> list[DevnetNode]:
        """Stop the daemons; on the NAT testbed then delete its namespaces (and all in them)."""
        nodes = self.load()
        stopped = self._stop(nodes, grace)
        if self.state_file.exists():
            self._save([])
        devchain.stop(self.root)
        if (self.root / "netlab.json").exists():
            testbed.preflight()
            bed = testbed.Testbed(self.root)
            self._stop_strays(bed, grace)
            bed.down()
        return stopped

    def _stop(self, nodes: list[DevnetNode], grace: float) -> list[DevnetNode]:
        ours = [n for n in nodes if _is_our_process(n)]
        for node in ours:
            _signal(node.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(_pid_alive(n.pid) for n in ours):
            time.sleep(0.05)
        for node in ours:
            if _pid_alive(node.pid) and _is_our_process(node):
                _signal(node.pid, signal.SIGKILL)
        return ours


def _not_ready(node: DevnetNode, ids: set[str | None], providers: set[str | None]) -> str | None:
    """Why ``node`` is not ready yet, or None."""
    peers = _api_get(node, "/net/peers?all=true")
    if not isinstance(peers, list):
        return "its API does not answer"
    if not any(p.get("connected") for p in peers):
        return "not connected to any node"
    missing = ids - {node.node_id} - {p["node_id"] for p in peers if p.get("addrs")}
    if missing:
        return f"does not know {len(missing)} node(s)"
    return _lacks_offers(node, providers)


def _lacks_offers(node: DevnetNode, providers: set[str | None]) -> str | None:
    offers = _api_get(node, "/market/offers")
    if not isinstance(offers, list):
        return "its market does not answer"
    lacking = providers - {node.node_id} - {o.get("provider_id") for o in offers}
    if lacking:
        return f"lacks the offers of {len(lacking)} provider(s)"
    return None


def _not_ready_nat(node: DevnetNode, bootstrap: DevnetNode, providers: set[str | None],
                   advertising: set[str | None], reachability: bool) -> str | None:
    """NAT testbed: why ``node`` is not ready yet, or None. Ready: connected to the bootstrap,
    its reachability decided (with two public nodes; one cannot decide it), an address known of
    every node that advertises one (public nodes; nodes behind NAT once they have relay
    addresses), and every provider's offer known."""
    if node is not bootstrap:
        peers = _api_get(node, "/net/peers")
        if not isinstance(peers, list):
            return "its API does not answer"
        if not any(p.get("node_id") == bootstrap.node_id and p.get("connected") for p in peers):
            return f"not connected to the bootstrap {bootstrap.name}"
    if reachability:
        status = _api_get(node, "/net/status")
        if not isinstance(status, dict) or status.get("reachability", "unknown") == "unknown":
            return "does not know yet whether it is publicly reachable"
    known = _api_get(node, "/net/peers?all=true")
    if not isinstance(known, list):
        return "its API does not answer"
    missing = advertising - {node.node_id} - {p["node_id"] for p in known if p.get("addrs")}
    if missing:
        return f"knows no address of {len(missing)} node(s) that advertise one"
    return _lacks_offers(node, providers)


def _advertising(nodes: list[DevnetNode]) -> set[str | None]:
    """Nodes that tell peers on the internet an address (``net status``'s ``advertised_addrs``)."""
    out = set()
    for node in nodes:
        status = _api_get(node, "/net/status")
        if isinstance(status, dict) and status.get("advertised_addrs"):
            out.add(node.node_id)
    return out


def _api_get(node: DevnetNode, path: str) -> list | dict | None:  # type: ignore[type-arg]
    """GET from the node's API; ``None`` if it does not answer. In the node's namespace if it has one."""
    def get() -> list | dict | None:  # type: ignore[type-arg]
        try:
            loc = locate_in(DataDir(node.data_dir))
            resp = httpx.get(f"{loc.api_url}/api/v1{path}", headers={"Authorization": f"Bearer {loc.app_key}"},
                             timeout=2.0)
            resp.raise_for_status()
            return resp.json()  # type: ignore[no-any-return]
        except (DaemonNotFound, httpx.HTTPError, ValueError):
            return None

    if node.netns is None:
        return get()
    try:
        return run_in_netns(node.netns, get, timeout=10.0)
    except NetlabError:  # the namespace is gone
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    if process_alive(pid):
        return True
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    return False


def _is_our_process(node: DevnetNode) -> bool:
    """The pid is alive and still runs the daemon of this data dir."""
    if not _pid_alive(node.pid):
        return False
    try:
        with open(f"/proc/{node.pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return node.data_dir.encode() in argv and b"service" in argv


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("  " + line for line in text[-lines:])
