"""What a testbed looks like: sites, their NAT kind and link impairments; names and addresses.

Pure data and pure functions (no I/O): ``plan.py`` turns a :class:`Topology` into commands.

Layout::

    public site:  node namespace <prefix><site>      wan0 198.18.0.<i>/24 ── inet0 bridge
    NAT site:     router <prefix><site>-nat          wan0 198.18.0.<i>/24 ── inet0 bridge
                                                     lan0 10.<i>.0.1/24
                  node   <prefix><site>              eth0 10.<i>.0.2/24, default via 10.<i>.0.1
    internet:     <prefix>inet                       bridge inet0 with one port site<i> per site

Public addresses come from 198.18.0.0/15 (RFC 2544 benchmarking, routed nowhere); every
interface lives in a namespace the testbed creates, so nothing reaches the host's network.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

from yagna.netlab.errors import TopologyError

NatKind = Literal["easy", "hard"]
NAT_KINDS: tuple[NatKind, ...] = ("easy", "hard")
"""``easy``: MASQUERADE, which keeps the source port when it is free (hole punching can
traverse it). ``hard``: MASQUERADE ``--random-fully``, a random port per connection
(the mapping a peer observed is useless to anyone else: hole punching cannot traverse it)."""

PUBLIC_NET = "198.18.0"
"""First three octets of the internet segment (a /24 inside 198.18.0.0/15)."""
MAX_SITES = 200
TAG_RE = re.compile(r"^[0-9a-f]{4,8}$")
SITE_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
PREFIX_BASE = "yn-"

# Interface names: they exist only inside the testbed's namespaces (never in the host's).
BRIDGE = "inet0"
WAN = "wan0"
LAN = "lan0"
NODE_IF = "eth0"
LINK_CHAIN = "yn-link"
"""iptables chain (filter table) of a site's edge that holds its WAN link's loss or cut."""
DELAY_CHAIN = "yn-delay"
"""iptables chain (mangle table, POSTROUTING out of the WAN) that sends packets to the user-space delay."""
DELAY_QUEUE = 0
"""The NFQUEUE number of the user-space delay (queues are per namespace)."""


def new_tag() -> str:
    """A random tag that makes this testbed's names unique on the machine."""
    return secrets.token_hex(3)


def prefix_of(tag: str) -> str:
    return f"{PREFIX_BASE}{tag}-"


@dataclass(frozen=True)
class Impairment:
    """What happens to packets on a site's WAN link, in each direction."""

    loss: float = 0.0
    """Probability that a packet is dropped (iptables ``statistic --mode random``)."""
    delay_ms: float = 0.0
    """One-way delay added on egress (``tc netem``, else in user space through NFQUEUE)."""
    cut: bool = False
    """Every packet is dropped (a partition), until healed."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise TopologyError(f"loss must be in [0, 1), not {self.loss}")
        if not 0.0 <= self.delay_ms <= 10_000:
            raise TopologyError(f"delay must be in [0, 10000] ms, not {self.delay_ms}")


@dataclass(frozen=True)
class Site:
    name: str
    nat: NatKind | None
    """``None``: a public node on the internet segment; else the kind of its NAT router."""
    link: Impairment = field(default_factory=Impairment)

    @property
    def public(self) -> bool:
        return self.nat is None


@dataclass(frozen=True)
class SiteAddrs:
    """Names and addresses of one site."""

    site: Site
    index: int
    node_ns: str
    router_ns: str | None
    wan_ip: str
    """The site's address on the internet: the node's own when public, else its router's."""
    node_ip: str
    """The node's own address (equal to ``wan_ip`` when public)."""
    lan_gw: str | None
    bridge_port: str

    @property
    def edge_ns(self) -> str:
        """The namespace holding the site's WAN interface (its router, or the public node itself)."""
        return self.router_ns or self.node_ns


@dataclass(frozen=True)
class Topology:
    tag: str
    sites: tuple[Site, ...]

    def __post_init__(self) -> None:
        if not TAG_RE.match(self.tag):
            raise TopologyError(f"tag must be 4-8 lowercase hex digits, not {self.tag!r}")
        if not self.sites:
            raise TopologyError("a topology needs at least one site")
        if len(self.sites) > MAX_SITES:
            raise TopologyError(f"at most {MAX_SITES} sites, not {len(self.sites)}")
        names = [s.name for s in self.sites]
        for name in names:
            if not SITE_RE.match(name) or name == "inet" or name.endswith("-nat"):
                raise TopologyError(
                    f"site name {name!r}: 1-20 of a-z, 0-9, '-', starting with a letter; "
                    "not 'inet' and not ending in '-nat'"
                )
        if len(set(names)) != len(names):
            raise TopologyError(f"site names must be unique: {names}")

    @property
    def prefix(self) -> str:
        return prefix_of(self.tag)

    @property
    def inet_ns(self) -> str:
        return f"{self.prefix}inet"

    def site(self, name: str) -> SiteAddrs:
        for addrs in self.addresses():
            if addrs.site.name == name:
                return addrs
        raise TopologyError(f"no site {name!r} in this testbed (sites: {', '.join(s.name for s in self.sites)})")

    def addresses(self) -> list[SiteAddrs]:
        out = []
        for i, site in enumerate(self.sites, start=1):
            wan_ip = f"{PUBLIC_NET}.{i}"
            node_ns = f"{self.prefix}{site.name}"
            if site.public:
                out.append(SiteAddrs(site, i, node_ns, None, wan_ip, wan_ip, None, f"site{i}"))
            else:
                out.append(SiteAddrs(site, i, node_ns, f"{node_ns}-nat", wan_ip, f"10.{i}.0.2",
                                     f"10.{i}.0.1", f"site{i}"))
        return out

    def namespaces(self) -> list[str]:
        """Every namespace of the testbed, the internet first."""
        out = [self.inet_ns]
        for a in self.addresses():
            if a.router_ns:
                out.append(a.router_ns)
            out.append(a.node_ns)
        return out

    def with_link(self, name: str, link: Impairment) -> Topology:
        self.site(name)
        return Topology(self.tag, tuple(Site(s.name, s.nat, link) if s.name == name else s for s in self.sites))

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "sites": [
                {"name": s.name, "nat": s.nat, "loss": s.link.loss, "delay_ms": s.link.delay_ms, "cut": s.link.cut}
                for s in self.sites
            ],
        }

    @staticmethod
    def from_json(raw: dict[str, object]) -> Topology:
        try:
            sites = tuple(
                Site(str(s["name"]), _nat(s["nat"]),
                     Impairment(float(s.get("loss", 0.0)), float(s.get("delay_ms", 0.0)), bool(s.get("cut", False))))
                for s in raw["sites"]  # type: ignore[attr-defined]
            )
            return Topology(str(raw["tag"]), sites)
        except (KeyError, TypeError, ValueError) as exc:
            raise TopologyError(f"bad topology record: {exc!r}") from None


PUBLIC = "public"
"""``devnet_topology``'s word for a site without NAT (on the internet segment)."""


def _nat(value: object) -> NatKind | None:
    if value is None:
        return None
    if value in NAT_KINDS:
        return value  # type: ignore[return-value]
    raise TopologyError(f"NAT kind must be one of {', '.join(NAT_KINDS)}, not {value!r}")


def devnet_topology(tag: str, providers: int, *, public_nodes: int = 2,
                    nat: dict[str, str] | None = None, loss: dict[str, float] | None = None,
                    delay_ms: float = 0.0) -> Topology:
    """The devnet's layout: ``public-1`` (the bootstrap) and ``public-2`` (a second public node)
    on the internet; ``requestor`` and ``provider-<i>`` each behind its own NAT.

    NAT kinds default to ``easy`` for the requestor and alternate ``easy``/``hard`` for the
    providers (provider-1 easy, provider-2 hard, ...), so a testbed with two providers has one NAT
    hole punching can traverse and one it cannot. ``nat`` chooses per site: ``easy``, ``hard``, or
    ``public`` (no NAT: the site is on the internet segment). ``loss`` maps a site name (or ``*``
    for every site) to a drop probability per direction on its WAN link; ``delay_ms`` is one way,
    per link.
    """
    if providers < 1:
        raise TopologyError("a NAT testbed needs at least one provider")
    if public_nodes not in (1, 2):
        raise TopologyError(f"public nodes: 1 or 2, not {public_nodes}")
    nat = dict(nat or {})
    loss = dict(loss or {})
    names = [f"public-{i}" for i in range(1, public_nodes + 1)] + ["requestor"] + [
        f"provider-{i}" for i in range(1, providers + 1)]
    unknown = (set(nat) | set(loss)) - set(names) - {"*"}
    if unknown:
        raise TopologyError(f"no site named {', '.join(sorted(unknown))} (sites: {', '.join(names)})")
    for name, given in nat.items():
        if name.startswith("public-"):
            raise TopologyError(f"{name} is public: it has no NAT")
        if given != PUBLIC:
            _nat(given)
    sites = []
    for name in names:
        if name.startswith("public-"):
            kind: NatKind | None = None
        else:
            i = int(name.rsplit("-", 1)[1]) if name != "requestor" else 1
            given = nat.get(name, "easy" if i % 2 else "hard")
            kind = None if given == PUBLIC else _nat(given)
        link = Impairment(loss=loss.get(name, loss.get("*", 0.0)), delay_ms=delay_ms)
        sites.append(Site(name, kind, link))
    return Topology(tag, tuple(sites))
