"""The node's libp2p network service: host + request/response + gossip + peers.

Shutdown follows the only leak-free shape py-libp2p 0.8.1 allows (lab report
§6): cancel the *application* tasks, close every connection concurrently and
close the host while ``host.run()`` is still alive. A cancellation from the
caller is therefore not let through to the host: it sets a stop event, the
host part shuts down in a shielded scope bounded by ``shutdown_timeout``, and
then the cancellation continues.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost

from yagna.net.address_book import AddressBook
from yagna.net.errors import ListenError
from yagna.net.gossip import Gossip
from yagna.net.bulk import Libp2pBulk, bulk_for
from yagna.net.holepunch import HolePunchService
from yagna.net.host import build_host, check_tcp_listen_addr, close_host, parse_multiaddr, parse_peer_addr
from yagna.net.mesh import MeshLimits
from yagna.net.peers import PeerBook, PeerManager
from yagna.net.relay import RelayLimits, RelayService
from yagna.net.reqresp import RequestResponse

log = logging.getLogger("yagna.net")


@dataclass
class NetConfig:
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    px_interval: float = 5.0
    redial_base: float = 0.5
    redial_cap: float = 30.0
    target_peers: int = 8
    """Connections kept up by our own dials (a partial mesh, yagna/net/mesh.py)."""
    max_peers: int = 64
    gossip_heartbeat: float = 1.0
    shutdown_timeout: float = 4.0
    relay_service: str = "auto"
    """Serve circuit relay v2: ``auto`` while public, ``on`` always, ``off`` never (yagna/net/relay.py)."""
    relay_limits: RelayLimits | None = None
    hole_punching: bool = True
    """Upgrade relayed connections to direct ones by DCUtR (yagna/net/holepunch.py)."""


class Network:
    """One libp2p host and the services on it. ``run()`` is a trio service."""

    def __init__(self, seed: bytes, config: NetConfig, *, book: PeerBook | None = None) -> None:
        self.config = config
        self._listen = [parse_multiaddr(a) for a in config.listen]
        bootstrap = [parse_peer_addr(a) for a in config.bootstrap]
        self.host: IHost = build_host(seed)
        self.node_id = self.host.get_id().to_base58()
        bootstrap = [(peer, addr) for peer, addr in bootstrap if peer != self.node_id]
        self.rr = RequestResponse(self.host)
        self.addresses = AddressBook(self.host, self.rr)
        """Our listen, observed, relay and advertised addresses (yagna/net/address_book.py)."""
        self.reachability = self.addresses.reachability
        """``.status`` public/private/unknown and ``await .wait_change()`` (yagna/net/reachability.py)."""
        self.gossip = Gossip(self.host, heartbeat_interval=config.gossip_heartbeat)
        self.peers = PeerManager(
            self.host,
            self.rr,
            my_addrs=self.addresses.for_peer,
            teachable=self.addresses.teachable_to,
            bootstrap=bootstrap,
            book=book,
            px_interval=config.px_interval,
            redial_base=config.redial_base,
            redial_cap=config.redial_cap,
            limits=MeshLimits(target=config.target_peers, max_peers=config.max_peers),
        )
        self.gossip.ban = self.peers.ban
        self.peers.on_connect(self.addresses.on_connect)
        self.relay = RelayService(self.host, self.addresses, config.relay_service, config.relay_limits)
        """Circuit relay v2: hop service while public, reservations while private."""
        self.peers.dial_relayed = self.relay.dial
        self.holepunch = HolePunchService(self.host, enabled=config.hole_punching)
        """DCUtR: a relayed connection upgraded to a direct one where the NATs allow it."""
        self.peers.on_connect(self.holepunch.on_connect)
        self.holepunch.on_direct = self.rr.retire_streams
        bulk = bulk_for(self.rr)
        self.rr.connect = self.peers.ensure_connected
        if isinstance(bulk, Libp2pBulk):
            bulk.prefer_direct = self.holepunch.prefer_direct
            bulk.connect = self.peers.ensure_connected

    def listen_addrs(self) -> list[str]:
        """Transport addresses we listen on, e.g. ``/ip4/127.0.0.1/tcp/40123``; a wildcard
        (``/ip4/0.0.0.0/...``) expanded to each interface's address."""
        return self.addresses.listen_addrs()

    def advertised_addrs(self) -> list[str]:
        """What a peer on the internet is told of us (loopback and private addresses never;
        relay addresses while we are not public), with ``/p2p/<node id>``."""
        return [f"{a}/p2p/{self.node_id}" for a in self.addresses.advertised()]

    def full_addrs(self) -> list[str]:
        """Listen addresses with ``/p2p/<node id>``: what others pass to --bootstrap."""
        return [f"{a}/p2p/{self.node_id}" for a in self.listen_addrs()]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for maddr in self._listen:
            check_tcp_listen_addr(maddr)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(self._run_host, stop)
                task_status.started()
                await trio.sleep_forever()
            finally:
                stop.set()

    async def _run_host(self, stop: trio.Event, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope(shield=True) as guard:
            async with self.host.run(self._listen):
                try:
                    if not self.host.get_transport_addrs():
                        raise ListenError(
                            f"cannot listen on {', '.join(map(str, self._listen))}; "
                            "check the address and that the port is free"
                        )
                    await self.host.get_network().auto_connector.stop()  # type: ignore[attr-defined]  # the Swarm has it
                    async with trio.open_nursery() as app:
                        await app.start(self.gossip.run)
                        await app.start(self.peers.run)
                        await app.start(self.addresses.run, self.peers.connected_peers)
                        await app.start(self.relay.run)
                        await app.start(self.holepunch.run)
                        task_status.started()
                        await stop.wait()
                        guard.deadline = trio.current_time() + self.config.shutdown_timeout
                        app.cancel_scope.cancel()
                finally:
                    await close_host(self.host)
