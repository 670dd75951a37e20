"""Import py-libp2p 0.8.1 without the transports and features the daemon never uses.

py-libp2p's package ``__init__`` imports every transport and feature eagerly
(QUIC with aioquic, TLS with AutoTLS/ACME and ``cryptography.x509``, WebSocket,
relay, Kademlia, mDNS, a DNS resolver, RSA keys through pycryptodome, ...):
``import libp2p.abc`` alone cost ~560 ms and ~75 MiB of the daemon's start-up
(docs/decisions.md, "Start-up: a lean libp2p import"). The daemon uses TCP,
Noise, Yamux, identify/ping and GossipSub only.

:func:`install` (called by :mod:`yagna.net` before its first libp2p import)
registers stand-ins in ``sys.modules`` so that importing the modules we use
does not pull in the rest:

(the mechanism, :mod:`yagna.stand_ins`): the packages ``libp2p``,
``libp2p.transport`` and ``libp2p.security`` are deferred (their ``__init__``
runs only when a name of it is asked for: ``libp2p.new_host`` still works, it
just costs the full import then), and the modules of :data:`DEFERRED_MODULES`
are stand-ins whose listed names load the real module on first use
(``import libp2p.host.basic_host`` imports the AutoTLS ACME client, mDNS,
relay NAT helpers and bootstrap discovery; ``Swarm.__init__`` builds a
``DNSResolver`` it only uses for ``/dns`` addresses).

Nothing here changes what goes on the wire: the host is built with the same
classes and arguments as ``libp2p.new_host`` (:func:`new_tcp_host`, checked
against it by ``tests/net/test_lean_libp2p.py``), and Noise and Yamux are the
real ones. If libp2p was already imported when :func:`install` runs, it does
nothing. ``tests/net/test_lean_libp2p.py`` fails if ``import yagna.node`` or
the CLI's read path imports any module of :data:`HEAVY`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yagna import stand_ins

if TYPE_CHECKING:
    from libp2p.abc import IHost, ISecureTransport
    from libp2p.crypto.keys import KeyPair
    from libp2p.network.config import ConnectionConfig

# Top-level modules (and prefixes) the daemon must not import at start-up.
HEAVY = (
    "aioquic",
    "libp2p.transport.quic",
    "libp2p.transport.websocket",
    "libp2p.transport.webrtc",
    "libp2p.security.tls",
    "libp2p.relay",
    "libp2p.kad_dht",
    "libp2p.discovery.mdns",
    "libp2p.discovery.bootstrap",
    "libp2p.crypto.rsa",
    "multiaddr.resolvers.dns",
    "dns",
    "zeroconf",
    "Crypto.PublicKey",
    "Crypto.Cipher",
    "service_identity",
    "cryptography.x509.base",
    "prometheus_client",
    "requests",
)

DEFERRED_PACKAGES = ("libp2p", "libp2p.transport", "libp2p.security")

DEFERRED_MODULES: dict[str, dict[str, str]] = {
    # custom_types: a type alias for QUIC stream handlers.
    "libp2p.transport.quic.stream": {"QUICStream": "type"},
    # network.swarm: an annotation ``ConnectionConfig | QUICTransportConfig``.
    "libp2p.transport.quic.config": {"QUICTransportConfig": "type"},
    # crypto.serialization: the RSA entries of its key-type tables.
    "libp2p.crypto.rsa": {"RSAPrivateKey": "call", "RSAPublicKey": "call"},
    # host.basic_host: used only with bootstrap=, enable_mDNS=, AutoTLS, UPnP.
    "libp2p.discovery.bootstrap.bootstrap": {"BootstrapDiscovery": "call"},
    "libp2p.discovery.mdns.mdns": {"MDNSDiscovery": "call", "create_mdns_discovery": "call"},
    "libp2p.relay.circuit_v2.nat": {"is_private_ip": "call"},
    "libp2p.security.tls.autotls.acme": {"ACMEClient": "call", "compute_b36_peer_id": "call"},
    "libp2p.security.tls.autotls.broker": {"BrokerClient": "call"},
    # host.basic_host: ``from cryptography import x509`` for AutoTLS certificates (~15 ms); its
    # ``from cryptography.x509.oid import ExtensionOID`` imports the submodule only.
    "cryptography.x509": {},
    # rcmgr.manager: only with enable_prometheus=True.
    "libp2p.rcmgr.prometheus_exporter": {"PrometheusExporter": "call", "create_prometheus_exporter": "call"},
    # network.swarm: a metrics event built per dial and inbound connection (prometheus_client).
    "libp2p.metrics.swarm": {"SwarmEvent": "type"},
    # network.swarm: private networks (a pre-shared key; Salsa20 from pycryptodome, ~20 ms), never used.
    "libp2p.security.pnet.protector": {"new_protected_conn": "call"},
    # network.swarm, transport.tcp, utils.dns_utils: resolving /dns addresses.
    "multiaddr.resolvers": {"DNSResolver": "new"},
}

def install() -> None:
    """Register the stand-ins; a no-op once done or if libp2p is already imported."""
    stand_ins.install_once("libp2p", DEFERRED_PACKAGES, DEFERRED_MODULES)


def heavy_modules_loaded() -> list[str]:
    """The real (not stand-in) modules of :data:`HEAVY` in ``sys.modules``."""
    return stand_ins.loaded(HEAVY)


def new_tcp_host(
    key_pair: KeyPair,
    sec_opt: dict[Any, ISecureTransport],
    muxer_opt: dict[Any, Any],
    connection_config: ConnectionConfig,
) -> IHost:
    """``libp2p.new_host(key_pair=, sec_opt=, muxer_opt=, connection_config=)``, without
    importing ``libp2p/__init__``.

    The same steps as py-libp2p 0.8.1's ``new_host`` and ``new_swarm`` take for
    these arguments (no listen addresses given: TCP only; a default resource
    manager shared by swarm and host; an in-memory peer store holding our key
    pair; no routing, mDNS, UPnP, bootstrap, metrics or PSK).
    """
    from libp2p.host.basic_host import BasicHost
    from libp2p.network.swarm import Swarm
    from libp2p.peer.id import ID
    from libp2p.peer.peerstore import PeerStore
    from libp2p.rcmgr import new_resource_manager
    from libp2p.transport.manager import TransportManager
    from libp2p.transport.tcp.tcp import TCP
    from libp2p.transport.upgrader import TransportUpgrader

    resource_manager = new_resource_manager()
    peer_id = ID.from_pubkey(key_pair.public_key)
    upgrader = TransportUpgrader(
        secure_transports_by_protocol=sec_opt,
        muxer_transports_by_protocol=muxer_opt,
    )
    peerstore = PeerStore()
    peerstore.add_key_pair(peer_id, key_pair)
    swarm = Swarm(
        peer_id,
        peerstore,
        upgrader,
        transports=[TCP()],
        retry_config=None,
        connection_config=connection_config,
        psk=None,
        metric_send_channel=None,
        transport_manager=TransportManager(port_demuxers={}),
    )
    swarm.set_resource_manager(resource_manager)
    return BasicHost(
        network=swarm,
        enable_mDNS=False,
        bootstrap=None,
        enable_upnp=False,
        negotiate_timeout=30,  # libp2p.DEFAULT_NEGOTIATE_TIMEOUT
        resource_manager=resource_manager,
        metric_recv_channel=None,
    )
