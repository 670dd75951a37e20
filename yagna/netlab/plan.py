"""Topology -> the exact ``ip``/``iptables``/``tc`` commands that build, change or remove it.

Pure: nothing here runs a command, so a plan can be read, printed and unit-tested. Every
command names the namespace it acts in (``ip -n NS ...`` or ``ip netns exec NS ...``); none
acts in the host's namespace except ``ip netns add/del`` of the testbed's own names. Each veth
is created inside a testbed namespace with its peer placed straight into another one, so no
interface ever appears in the host's namespace, and deleting the namespaces deletes every
interface, route and rule the plan made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from yagna.netlab.topology import (BRIDGE, DELAY_CHAIN, DELAY_QUEUE, LAN, LINK_CHAIN, NODE_IF, WAN, Impairment,
                                   SiteAddrs, Topology)

DelayBackend = Literal["netem", "nfqueue"]
"""How delay is added: the kernel's netem qdisc, or NFQUEUE and a process holding each packet
(:mod:`yagna.netlab.delay`)."""


@dataclass(frozen=True)
class Op:
    """One command: its argv, what to feed its stdin, and whether a failure is fatal."""

    argv: tuple[str, ...]
    stdin: str | None = None
    check: bool = True

    def __str__(self) -> str:
        return " ".join(self.argv) + (" <<EOF\n" + self.stdin + "EOF" if self.stdin else "")


def _ip(ns: str, *args: str) -> Op:
    return Op(("ip", "-n", ns, *args))


def _exec(ns: str, *args: str, stdin: str | None = None, check: bool = True) -> Op:
    return Op(("ip", "netns", "exec", ns, *args), stdin, check)


def build_plan(topo: Topology) -> list[Op]:
    """Namespaces, loopbacks, the internet bridge, every site's links, routes, NAT and firewall.

    Delay is not part of it (:func:`delay_plan`): how it is added depends on what the kernel
    has, which is probed in the built namespaces.
    """
    ops: list[Op] = []
    for ns in topo.namespaces():
        ops += [Op(("ip", "netns", "add", ns)), _ip(ns, "link", "set", "lo", "up")]
    inet = topo.inet_ns
    ops += [_ip(inet, "link", "add", BRIDGE, "type", "bridge"), _ip(inet, "link", "set", BRIDGE, "up")]
    for a in topo.addresses():
        ops += _site_ops(inet, a)
    return ops


def _site_ops(inet: str, a: SiteAddrs) -> list[Op]:
    edge = a.edge_ns
    ops = [
        _ip(inet, "link", "add", a.bridge_port, "type", "veth", "peer", "name", WAN, "netns", edge),
        _ip(inet, "link", "set", a.bridge_port, "master", BRIDGE),
        _ip(inet, "link", "set", a.bridge_port, "up"),
        _ip(edge, "addr", "add", f"{a.wan_ip}/24", "dev", WAN),
        _ip(edge, "link", "set", WAN, "up"),
    ]
    if a.router_ns is not None:
        assert a.lan_gw is not None
        ops += [
            _ip(a.router_ns, "link", "add", LAN, "type", "veth", "peer", "name", NODE_IF, "netns", a.node_ns),
            _ip(a.router_ns, "addr", "add", f"{a.lan_gw}/24", "dev", LAN),
            _ip(a.router_ns, "link", "set", LAN, "up"),
            _ip(a.node_ns, "addr", "add", f"{a.node_ip}/24", "dev", NODE_IF),
            _ip(a.node_ns, "link", "set", NODE_IF, "up"),
            _ip(a.node_ns, "route", "add", "default", "via", a.lan_gw),
            _exec(a.router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"),
        ]
    ops.append(_exec(edge, "iptables-restore", "-w", "10", stdin=edge_rules(a)))
    return ops


def edge_rules(a: SiteAddrs) -> str:
    """``iptables-restore`` input of a site's edge: its NAT (routers), its link's loss or cut,
    and the (empty) hook of the user-space delay.

    A router forwards from outside only packets of connections its LAN started (what a home
    router does), and answers nothing on its WAN side itself: an unsolicited SYN is dropped,
    not refused, so that a hole-punching SYN arriving before the local one leaves no RST behind.
    """
    lines = []
    if a.router_ns is not None:
        masq = "-A POSTROUTING -o wan0 -j MASQUERADE" + (" --random-fully" if a.site.nat == "hard" else "")
        lines += ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                  ":POSTROUTING ACCEPT [0:0]", masq, "COMMIT"]
    lines += ["*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
              ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]", f":{DELAY_CHAIN} - [0:0]",
              f"-A POSTROUTING -o {WAN} -j {DELAY_CHAIN}", "COMMIT"]
    lines += ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
              f":{LINK_CHAIN} - [0:0]"]
    if a.router_ns is not None:
        lines += [
            f"-A FORWARD -i {WAN} -j {LINK_CHAIN}",
            f"-A FORWARD -o {WAN} -j {LINK_CHAIN}",
            f"-A FORWARD -i {WAN} -o {LAN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"-A FORWARD -i {WAN} -j DROP",
            f"-A INPUT -i {WAN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"-A INPUT -i {WAN} -j DROP",
        ]
    else:
        lines += [f"-A INPUT -i {WAN} -j {LINK_CHAIN}", f"-A OUTPUT -o {WAN} -j {LINK_CHAIN}"]
    lines += link_rules(a.site.link)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def link_rules(link: Impairment) -> list[str]:
    """Rules of the ``yn-link`` chain: a cut drops everything, loss drops at random."""
    if link.cut:
        return [f"-A {LINK_CHAIN} -j DROP"]
    if link.loss > 0:
        return [f"-A {LINK_CHAIN} -m statistic --mode random --probability {link.loss:.6f} -j DROP"]
    return []


def delay_rules(link: Impairment, backend: DelayBackend | None) -> list[str]:
    """Rules of the ``yn-delay`` chain: to the user-space delay's queue when it adds the delay.
    ``--queue-bypass``: with no process bound to the queue, packets pass (undelayed), never drop."""
    if backend == "nfqueue" and link.delay_ms > 0:
        return [f"-A {DELAY_CHAIN} -j NFQUEUE --queue-num {DELAY_QUEUE} --queue-bypass"]
    return []


def link_plan(topo: Topology, site: str, *, delay: DelayBackend | None) -> list[Op]:
    """Replace a site's impairments (loss, cut, delay) at once, connections kept."""
    a = topo.site(site)
    link = a.site.link
    # Declaring a chain in a --noflush restore empties it; the new rules replace the old atomically.
    text = "\n".join(["*filter", f":{LINK_CHAIN} - [0:0]", *link_rules(link), "COMMIT",
                      "*mangle", f":{DELAY_CHAIN} - [0:0]", *delay_rules(link, delay), "COMMIT"]) + "\n"
    ops = [_exec(a.edge_ns, "iptables-restore", "-w", "10", "--noflush", stdin=text)]
    if delay == "netem":
        ops.append(_netem_op(a.edge_ns, link.delay_ms))
    return ops


def delay_plan(topo: Topology, delay: DelayBackend) -> list[Op]:
    """The delay of every WAN link that has one: a netem qdisc on its egress, or its packets sent
    to the user-space delay (whose processes the shell starts)."""
    ops = []
    for a in topo.addresses():
        if a.site.link.delay_ms > 0:
            ops += link_plan(topo, a.site.name, delay=delay)
    return ops


def _netem_op(edge: str, delay_ms: float) -> Op:
    if delay_ms > 0:
        return _exec(edge, "tc", "qdisc", "replace", "dev", WAN, "root", "netem", "delay", f"{delay_ms:g}ms")
    return _exec(edge, "tc", "qdisc", "del", "dev", WAN, "root", check=False)


def netem_probe(ns: str) -> tuple[Op, Op]:
    """Add netem to a namespace's loopback (does the kernel have it?) and take it away again."""
    return (_exec(ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", check=False),
            _exec(ns, "tc", "qdisc", "del", "dev", "lo", "root", check=False))


def teardown_plan(namespaces: list[str]) -> list[Op]:
    """Delete the namespaces (their interfaces, routes and rules go with them), nodes' first."""
    return [Op(("ip", "netns", "del", ns), check=False) for ns in reversed(namespaces)]
