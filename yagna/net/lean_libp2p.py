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

* **deferred packages** (``libp2p``, ``libp2p.transport``): the package object
  exists with its ``__path__`` so submodules import normally, but its
  ``__init__`` is only executed, in place, on the first access to a name it
  would define (``libp2p.new_host`` still works, it just costs the full import
  then, and every stand-in below is replaced by its real module first);
* **deferred modules**: a module some light module imports a few names from at
  import time, only to use them on a feature path we never take (``import
  libp2p.host.basic_host`` imports the AutoTLS ACME client, mDNS, relay NAT
  helpers and bootstrap discovery). Each listed name is a stand-in:

  - ``"call"``: a proxy that imports the real module on first call or
    attribute access and forwards to the real object;
  - ``"new"``: calling it returns an object that is created for real (with the
    same arguments) on its first attribute access (``Swarm.__init__`` builds a
    ``DNSResolver`` it only uses for ``/dns`` addresses);
  - ``"type"``: an empty class, for names used in annotations and type aliases
    (``custom_types``' ``QUICStream``); ``isinstance``, ``issubclass`` and
    calls on it import the real module and answer with the real class.

  Any other attribute of a deferred module imports the real module and is
  answered by it, and the real module replaces the stand-in in ``sys.modules``.

Nothing here changes what goes on the wire: the host is built with the same
classes and arguments as ``libp2p.new_host`` (:func:`new_tcp_host`, checked
against it by ``tests/net/test_lean_libp2p.py``), and Noise and Yamux are the
real ones. If libp2p was already imported when :func:`install` runs, it does
nothing. ``tests/net/test_lean_libp2p.py`` fails if ``import yagna.node`` or
the CLI's read path imports any module of :data:`HEAVY`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

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
    "service_identity",
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
    # rcmgr.manager: only with enable_prometheus=True.
    "libp2p.rcmgr.prometheus_exporter": {"PrometheusExporter": "call", "create_prometheus_exporter": "call"},
    # network.swarm: a metrics event built per dial and inbound connection (prometheus_client).
    "libp2p.metrics.swarm": {"SwarmEvent": "type"},
    # network.swarm, transport.tcp, utils.dns_utils: resolving /dns addresses.
    "multiaddr.resolvers": {"DNSResolver": "new"},
}

_lock = threading.RLock()
_installed = False


def _real_module(name: str) -> types.ModuleType:
    """Import the real module ``name``, replacing its stand-in in ``sys.modules``."""
    with _lock:
        mod = sys.modules.get(name)
        if mod is not None and not getattr(mod, "__yagna_stand_in__", False):
            return mod
        sys.modules.pop(name, None)
        try:
            return importlib.import_module(name)
        except BaseException:
            if mod is not None and name not in sys.modules:
                sys.modules[name] = mod
            raise


class _Proxy:
    """A name of a deferred module: the real object is looked up on first use."""

    __slots__ = ("_module", "_path", "_target")

    def __init__(self, module: str, path: tuple[str, ...]) -> None:
        self._module = module
        self._path = path
        self._target: Any = None

    def _resolve(self) -> Any:
        if self._target is None:
            obj: Any = _real_module(self._module)
            for part in self._path:
                obj = getattr(obj, part)
            self._target = obj
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            return getattr(self._resolve(), name)
        # ``RSAPublicKey.from_bytes`` in a table built at import time: stays lazy.
        return _Proxy(self._module, (*self._path, name))

    def __repr__(self) -> str:
        return f"<deferred {self._module}:{'.'.join(self._path)}>"


class _New:
    """Calling it returns a :class:`_LazyObject`; the real class is imported on first use."""

    __slots__ = ("_proxy",)

    def __init__(self, proxy: _Proxy) -> None:
        self._proxy = proxy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _LazyObject(lambda: self._proxy(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proxy, name)


class _LazyObject:
    __slots__ = ("_factory", "_obj")

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._obj: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._obj is None:
            self._obj = self._factory()
        return getattr(self._obj, name)


class _TypeStandIn(type):
    """An empty class for annotations; ``isinstance``, ``issubclass`` and calls go to the real one."""

    _proxy: _Proxy

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._proxy._resolve())

    def __subclasscheck__(cls, sub: Any) -> bool:
        return issubclass(sub, cls._proxy._resolve())

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._proxy(*args, **kwargs)


def _load_all_real() -> None:
    """Replace every stand-in module by the real one (the whole library was asked for)."""
    for name in DEFERRED_MODULES:
        if getattr(sys.modules.get(name), "__yagna_stand_in__", False):
            _real_module(name)


def _stand_in_module(name: str, names: dict[str, str]) -> types.ModuleType:
    mod = types.ModuleType(name, f"Stand-in for {name} (see yagna.net.lean_libp2p).")
    mod.__yagna_stand_in__ = True  # type: ignore[attr-defined]
    for attr, kind in names.items():
        proxy = _Proxy(name, (attr,))
        if kind == "call":
            setattr(mod, attr, proxy)
        elif kind == "new":
            setattr(mod, attr, _New(proxy))
        elif kind == "type":
            setattr(mod, attr, _TypeStandIn(attr, (), {"__module__": name, "_proxy": proxy}))
        else:  # pragma: no cover - a typo in the table
            raise ValueError(f"unknown stand-in kind {kind!r} for {name}.{attr}")

    package_dir = _package_dir(name)
    if package_dir is not None:  # its submodules import normally, from the real files
        mod.__path__ = [package_dir]

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(_real_module(name), attr)

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    return mod


def _package_dir(name: str) -> str | None:
    """The directory of package ``name``, found without importing it or its parents; None for a module."""
    top, _, rest = name.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, *rest.split(".")) if rest else base
        if os.path.isfile(os.path.join(path, "__init__.py")):
            return path
    return None


def _is_submodule(package: types.ModuleType, attr: str) -> bool:
    return any(
        os.path.isfile(os.path.join(d, attr + ".py")) or os.path.isdir(os.path.join(d, attr))
        for d in package.__path__
    )


def _deferred_package(name: str) -> types.ModuleType | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    loaded = False

    def __getattr__(attr: str) -> Any:
        nonlocal loaded
        if not attr.startswith("__") and _is_submodule(mod, attr):  # ``from libp2p import abc``
            return importlib.import_module(f"{name}.{attr}")
        with _lock:
            if not loaded and not attr.startswith("__"):
                loaded = True
                del mod.__getattr__
                _load_all_real()
                assert spec is not None and spec.loader is not None
                spec.loader.exec_module(mod)  # the real __init__, in place
                return getattr(mod, attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    return mod


def install() -> None:
    """Register the stand-ins; a no-op once done or if libp2p is already imported."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        if "libp2p" in sys.modules:
            return
        for name in DEFERRED_PACKAGES:
            mod = _deferred_package(name)
            if mod is None:
                continue
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, mod)
        for name, names in DEFERRED_MODULES.items():
            if name not in sys.modules:
                sys.modules[name] = _stand_in_module(name, names)


def heavy_modules_loaded() -> list[str]:
    """The real (not stand-in) modules of :data:`HEAVY` in ``sys.modules``."""
    return sorted(
        name
        for name, mod in list(sys.modules.items())
        if any(name == h or name.startswith(h + ".") for h in HEAVY)
        and not getattr(mod, "__yagna_stand_in__", False)
    )


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
