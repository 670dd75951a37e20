"""Which of our addresses a remote peer can dial, and what peers tell us they see.

The sans-io part of issue 13's "Addresses" (docs/decisions.md, "Addresses and
reachability"):

* :func:`scope` sorts an IP into loopback, link-local, private (RFC 1918,
  CGNAT 100.64/10, IPv6 ULA), unspecified or public;
* :func:`expand_listen` turns a wildcard listen address (``0.0.0.0``) into one
  address per interface;
* :func:`advertise` decides which of our addresses go to one remote peer:
  loopback only to a peer on this host, a private address only to a peer on
  the same subnet, public listen addresses and confirmed observed addresses
  to everybody, relay addresses while we are not publicly reachable;
* :func:`teachable` is the same rule for a third party's addresses that peer
  exchange passes on;
* :class:`ObservedAddrs` keeps what peers report seeing of us (identify's
  ``observed_addr``), bounded, and confirms an address only when peers on two
  distinct IPs reported it: one peer cannot make us advertise an address.

Addresses are multiaddr strings of the form ``/ip4/<ip>/tcp/<port>`` (or
``/ip6/...``); relay addresses end in ``/p2p-circuit`` or
``/p2p-circuit/p2p/<id>``. Parsing here is by string, on purpose: it is the
hot path of every peer exchange and must not raise on a hostile string.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class Scope(enum.Enum):
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    UNSPECIFIED = "unspecified"
    PUBLIC = "public"


_PRIVATE_NETS: tuple[Net, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
"""RFC 1918, the carrier-grade NAT range (RFC 6598) and IPv6 unique-local addresses.

Nothing else counts as private: documentation and benchmark ranges (192.0.2/24,
198.18/15, 203.0.113/24) are "public" here, which lets a test network of
namespaces play the internet with them (Python's ``is_private`` would not)."""


@functools.lru_cache(maxsize=4096)
def scope(ip: IP) -> Scope:
    """Cached: peer exchange asks it for every address it passes on (~10 us uncached)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return Scope.UNSPECIFIED
    if ip.is_loopback:
        return Scope.LOOPBACK
    if ip.is_link_local:
        return Scope.LINK_LOCAL
    if any(ip in n for n in _PRIVATE_NETS if n.version == ip.version):
        return Scope.PRIVATE
    return Scope.PUBLIC


def parse_ip(text: str | None) -> IP | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class TcpAddr:
    """``/ip4|ip6/<ip>/tcp/<port>`` and whatever follows (kept verbatim)."""

    ip: IP
    port: int
    rest: str = ""

    @property
    def thin_waist(self) -> str:
        return f"/ip{self.ip.version}/{self.ip}/tcp/{self.port}"

    def __str__(self) -> str:
        return self.thin_waist + self.rest


def parse_tcp(addr: str) -> TcpAddr | None:
    """``/ip4/1.2.3.4/tcp/5[/...]`` -> TcpAddr; None for anything else (never raises)."""
    parts = addr.split("/")
    if len(parts) < 5 or parts[0] != "" or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    ip = parse_ip(parts[2])
    if ip is None or ip.version != int(parts[1][-1]) or "%" in parts[2]:
        return None
    if not parts[4].isdigit() or len(parts[4]) > 5 or not 0 <= int(parts[4]) <= 65535:
        return None
    rest = "/".join(parts[5:])
    return TcpAddr(ip, int(parts[4]), f"/{rest}" if rest else "")


def is_relay_addr(addr: str) -> bool:
    return "/p2p-circuit" in addr


def relay_id_of(addr: str) -> str | None:
    """The relay's node id in a circuit address ``.../p2p/<relay>/p2p-circuit/...`` (also a live
    connection's tag ``/p2p/<relay>/p2p-circuit/p2p/<peer>``), ``""`` when it names none, None for
    a direct address. Lenient, unlike :func:`parse_relay`: it reads what we hold, never a peer's word."""
    head, sep, _ = addr.partition("/p2p-circuit")
    if not sep:
        return None
    _, p2p, relay = head.rpartition("/p2p/")
    return relay if p2p and relay else ""


_B58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


@dataclass(frozen=True)
class RelayAddr:
    """``<relay's TCP address>/p2p/<relay id>/p2p-circuit``: reach a node through that relay."""

    relay: TcpAddr
    relay_id: str

    def __str__(self) -> str:
        return f"{self.relay.thin_waist}/p2p/{self.relay_id}/p2p-circuit"


def parse_relay(addr: str, *, owner: str | None = None) -> RelayAddr | None:
    """A relay address, optionally ending in ``/p2p/<owner>`` (the node reached through it);
    None for anything else (never raises). The relay id is checked for shape only."""
    head, sep, tail = addr.partition("/p2p-circuit")
    if not sep or (tail and (owner is None or tail != f"/p2p/{owner}")):
        return None
    transport, sep, relay_id = head.rpartition("/p2p/")
    tcp = parse_tcp(transport) if sep else None
    if tcp is None or tcp.rest or not 40 <= len(relay_id) <= 60 or not set(relay_id) <= _B58:
        return None
    return RelayAddr(tcp, relay_id)


def addr_scope(addr: str) -> Scope | None:
    """The scope of a direct TCP address; None for a relay or unparsable address."""
    if is_relay_addr(addr):
        return None
    tcp = parse_tcp(addr)
    return scope(tcp.ip) if tcp is not None else None


@dataclass(frozen=True)
class Interface:
    """One address of a local network interface and its subnet."""

    ip: IP
    prefix: int

    @property
    def network(self) -> Net:
        return ipaddress.ip_network(f"{self.ip}/{self.prefix}", strict=False)


def expand_listen(listen: Iterable[str], interfaces: Sequence[Interface]) -> list[str]:
    """Listen addresses with each wildcard (0.0.0.0, ::) replaced by the matching interfaces'.

    The port is the bound one (the caller passes the host's transport addresses,
    where port 0 has become a real port). Order: as given, interfaces in their order.
    """
    out: list[str] = []
    for addr in listen:
        tcp = parse_tcp(addr)
        if tcp is None or not tcp.ip.is_unspecified:
            out.append(addr)
            continue
        for itf in interfaces:
            if itf.ip.version == tcp.ip.version and scope(itf.ip) is not Scope.LINK_LOCAL:
                out.append(str(TcpAddr(itf.ip, tcp.port, tcp.rest)))
    return list(dict.fromkeys(out))


def same_subnet(a: IP, b: IP, interfaces: Sequence[Interface]) -> bool:
    """Both on the subnet of one of our interfaces (we are on that network too, so we know it)."""
    return any(a in itf.network and b in itf.network for itf in interfaces if itf.ip.version == a.version == b.version)


@dataclass(frozen=True)
class LocalAddrs:
    """What we know of our own addresses at one moment (input of :func:`advertise`)."""

    listen: tuple[str, ...]
    """Expanded listen addresses (no wildcard)."""
    interfaces: tuple[Interface, ...] = ()
    observed: tuple[str, ...] = ()
    """Observed addresses confirmed by peers on distinct IPs, or verified by a dial-back."""
    relay: tuple[str, ...] = ()
    """Our addresses through relays (``.../p2p-circuit``), from the relay client."""
    public: bool = False
    """True when dial-backs showed we are publicly reachable: relay addresses are then not given."""


def teachable(addr: str, remote: IP | None, interfaces: Sequence[Interface] = ()) -> bool:
    """May ``addr`` (ours or a third party's) be given to a peer that reached us from ``remote``?

    ``remote`` None stands for "a peer somewhere on the internet" (what ``net status``
    shows). Relay addresses: yes. Loopback: only to a peer on this host. Private:
    only to a peer on the same subnet as the address (one of our interfaces' subnets)
    or, for our own private listen addresses, a peer on this host. Link-local and
    unspecified: never. Public: yes.
    """
    if is_relay_addr(addr):
        relay = parse_relay(addr)
        return relay is not None and teachable(relay.relay.thin_waist, remote, interfaces)
    tcp = parse_tcp(addr)
    if tcp is None:
        return False
    kind = scope(tcp.ip)
    remote_kind = scope(remote) if remote is not None else Scope.PUBLIC
    if kind is Scope.PUBLIC:
        return True
    if kind is Scope.LOOPBACK:
        return remote_kind is Scope.LOOPBACK
    if kind is Scope.PRIVATE:
        if remote_kind is Scope.LOOPBACK:
            return any(tcp.ip == itf.ip for itf in interfaces)  # ours: this host can dial it
        return remote is not None and remote_kind is Scope.PRIVATE and same_subnet(tcp.ip, remote, interfaces)
    return False


def advertise(local: LocalAddrs, remote: IP | None, limit: int = 8) -> list[str]:
    """Our addresses for a peer that reached us from ``remote`` (None: a public peer), best first.

    Direct addresses a peer on this host or our subnet can use come first, then
    public listen addresses, then confirmed observed ones, then relay addresses
    (only while we are not known to be public). At most ``limit``.
    """
    remote_kind = scope(remote) if remote is not None else Scope.PUBLIC
    near: list[str] = []
    far: list[str] = []
    for addr in local.listen:
        if not teachable(addr, remote, local.interfaces):
            continue
        kind = addr_scope(addr)
        (far if kind is Scope.PUBLIC and remote_kind is Scope.PUBLIC else near).append(addr)
    near.sort(key=lambda a: 0 if addr_scope(a) is remote_kind else 1)
    observed = [a for a in local.observed if addr_scope(a) is Scope.PUBLIC]
    relay = [] if local.public else [a for a in local.relay if teachable(a, remote, local.interfaces)]
    return list(dict.fromkeys(near + far + observed + relay))[:limit]


# -- observed addresses -----------------------------------------------------------

MAX_OBSERVED = 16
"""Distinct observed addresses tracked; beyond, the least observed (then oldest) goes."""
MAX_OBSERVERS = 8
"""Observers remembered per address (2 confirm it; more only keep it alive)."""
OBSERVATION_TTL = 30 * 60.0
"""An observation counts this long (s); identify repeats it on every new connection."""
CONFIRMATIONS = 2


def observer_group(ip: IP) -> str:
    """Observers on one IPv4 address (or one IPv6 /56) count once: a host with many ids is one witness."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/56", strict=False).network_address)
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


@dataclass
class _Observation:
    observers: dict[str, float] = field(default_factory=dict)
    """observer group -> time of its last report."""
    first_seen: float = 0.0


class ObservedAddrs:
    """What peers report seeing of us, bounded; confirmed by :data:`CONFIRMATIONS` distinct observers.

    An observation is kept only if it is a direct TCP address that is not loopback
    or unspecified, reported by a peer whose own address (the connection's remote
    IP) is known. Times are the caller's clock (trio time in the node).
    """

    def __init__(
        self,
        *,
        confirmations: int = CONFIRMATIONS,
        ttl: float = OBSERVATION_TTL,
        max_addrs: int = MAX_OBSERVED,
        max_observers: int = MAX_OBSERVERS,
    ) -> None:
        self.confirmations = confirmations
        self.ttl = ttl
        self.max_addrs = max_addrs
        self.max_observers = max_observers
        self._seen: dict[str, _Observation] = {}

    def observe(self, addr: str, observer: IP, now: float) -> bool:
        """Record that a peer at ``observer`` sees us as ``addr``; True if the confirmed set changed."""
        tcp = parse_tcp(addr)
        if tcp is None or is_relay_addr(addr) or scope(tcp.ip) in (Scope.LOOPBACK, Scope.UNSPECIFIED):
            return False
        before = self.confirmed(now)
        key = tcp.thin_waist
        entry = self._seen.get(key)
        if entry is None:
            self._expire(now)
            if len(self._seen) >= self.max_addrs:
                self._evict()
            entry = self._seen[key] = _Observation(first_seen=now)
        group = observer_group(observer)
        if group not in entry.observers and len(entry.observers) >= self.max_observers:
            del entry.observers[min(entry.observers, key=entry.observers.__getitem__)]
        entry.observers[group] = now
        return self.confirmed(now) != before

    def _expire(self, now: float) -> None:
        for key, entry in list(self._seen.items()):
            for group, seen in list(entry.observers.items()):
                if now - seen > self.ttl:
                    del entry.observers[group]
            if not entry.observers:
                del self._seen[key]

    def _evict(self) -> None:
        victim = min(self._seen, key=lambda k: (len(self._seen[k].observers), self._seen[k].first_seen))
        del self._seen[victim]

    def _live(self, entry: _Observation, now: float) -> int:
        return sum(1 for seen in entry.observers.values() if now - seen <= self.ttl)

    def confirmed(self, now: float) -> list[str]:
        """Addresses reported by at least ``confirmations`` distinct observers, most reported first."""
        ranked = [(self._live(e, now), k) for k, e in self._seen.items()]
        return [k for n, k in sorted(ranked, key=lambda x: (-x[0], x[1])) if n >= self.confirmations]

    def ips(self, now: float, *, min_observers: int = 1) -> list[IP]:
        """Our IPs as peers see them (ports dropped: a NAT gives each outbound connection its own)."""
        count: dict[IP, set[str]] = {}
        for key, entry in self._seen.items():
            tcp = parse_tcp(key)
            if tcp is None:
                continue
            live = {g for g, seen in entry.observers.items() if now - seen <= self.ttl}
            count.setdefault(tcp.ip, set()).update(live)
        return [ip for ip, groups in sorted(count.items(), key=lambda x: -len(x[1])) if len(groups) >= min_observers]

    def __len__(self) -> int:
        return len(self._seen)
