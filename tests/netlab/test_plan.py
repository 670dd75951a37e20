"""Plans: the commands act only inside the testbed's namespaces, and say what the docs say."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yagna.netlab import plan
from yagna.netlab.topology import Impairment, devnet_topology

TOPO = devnet_topology("abcd01", 2, loss={"provider-1": 0.1}, delay_ms=20)


def _namespace_of(op: plan.Op) -> str:
    argv = op.argv
    assert argv[0] == "ip", op
    if argv[1] == "-n":
        return argv[2]
    assert argv[1] == "netns", op
    if argv[2] in ("add", "del"):
        return argv[3]
    assert argv[2] == "exec", op
    return argv[3]


def test_every_command_acts_in_a_namespace_of_the_testbed() -> None:
    ours = set(TOPO.namespaces())
    ops = plan.build_plan(TOPO) + plan.delay_plan(TOPO, "netem") + plan.delay_plan(TOPO, "nfqueue")
    ops += plan.link_plan(TOPO, "requestor", delay="netem")
    ops += plan.teardown_plan(TOPO.namespaces())
    for op in ops:
        assert _namespace_of(op) in ours, op
        # a veth peer goes straight into another namespace of ours, never into the host's
        if "veth" in op.argv:
            assert op.argv[-2] == "netns" and op.argv[-1] in ours, op


def test_namespaces_are_created_first_with_loopback_up() -> None:
    ops = plan.build_plan(TOPO)
    names = TOPO.namespaces()
    adds = [op.argv[3] for op in ops if op.argv[:3] == ("ip", "netns", "add")]
    assert adds == names
    for ns in names:
        assert plan.Op(("ip", "-n", ns, "link", "set", "lo", "up")) in ops
    first_other = next(i for i, op in enumerate(ops) if op.argv[:3] != ("ip", "netns", "add") and "lo" not in op.argv)
    assert all(op.argv[:3] != ("ip", "netns", "add") for op in ops[first_other:])


def test_interface_names_fit_the_kernel_limit() -> None:
    big = devnet_topology("abcd01", 32)
    for op in plan.build_plan(big):
        if op.argv[3:5] == ("link", "add"):
            assert len(op.argv[5]) <= 15
            if "peer" in op.argv:
                assert len(op.argv[op.argv.index("peer") + 2]) <= 15


def test_nat_rules_per_kind() -> None:
    easy = plan.edge_rules(TOPO.site("provider-1"))
    hard = plan.edge_rules(TOPO.site("provider-2"))
    public = plan.edge_rules(TOPO.site("public-1"))
    assert "-A POSTROUTING -o wan0 -j MASQUERADE\n" in easy
    assert "-A POSTROUTING -o wan0 -j MASQUERADE --random-fully\n" in hard
    assert "*nat" not in public and "MASQUERADE" not in public
    for rules in (easy, hard):
        # inbound only for connections the LAN started; nothing answered on the WAN side
        assert "-A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT" in rules
        assert rules.index("--ctstate ESTABLISHED,RELATED -j ACCEPT\n-A FORWARD -i wan0 -j DROP") > 0
        assert "-A INPUT -i wan0 -j DROP" in rules
        assert rules.count("COMMIT") == 3
    assert "-A INPUT -i wan0 -j yn-link\n-A OUTPUT -o wan0 -j yn-link" in public
    for rules in (easy, hard, public):
        # the user-space delay's hook, empty until a link has a delay there
        assert ":yn-delay - [0:0]\n-A POSTROUTING -o wan0 -j yn-delay\nCOMMIT" in rules
        assert "NFQUEUE" not in rules


def test_loss_and_cut_rules() -> None:
    assert "-A yn-link -m statistic --mode random --probability 0.100000 -j DROP" in plan.edge_rules(
        TOPO.site("provider-1"))
    assert "statistic" not in plan.edge_rules(TOPO.site("provider-2"))
    assert plan.link_rules(Impairment()) == []
    assert plan.link_rules(Impairment(loss=0.3, cut=True)) == ["-A yn-link -j DROP"]


def test_link_plan_replaces_the_chains_atomically() -> None:
    topo = TOPO.with_link("provider-2", Impairment(cut=True))
    ops = plan.link_plan(topo, "provider-2", delay=None)
    assert len(ops) == 1
    (op,) = ops
    assert op.argv == ("ip", "netns", "exec", "yn-abcd01-provider-2-nat", "iptables-restore", "-w", "10", "--noflush")
    assert op.stdin == ("*filter\n:yn-link - [0:0]\n-A yn-link -j DROP\nCOMMIT\n"
                        "*mangle\n:yn-delay - [0:0]\nCOMMIT\n")
    healed = plan.link_plan(topo.with_link("provider-2", Impairment()), "provider-2", delay="netem")
    assert healed[0].stdin == "*filter\n:yn-link - [0:0]\nCOMMIT\n*mangle\n:yn-delay - [0:0]\nCOMMIT\n"
    assert healed[1].argv[-4:] == ("del", "dev", "wan0", "root") and not healed[1].check
    public = plan.link_plan(topo, "public-1", delay="netem")
    assert public[0].argv[3] == "yn-abcd01-public-1"
    assert public[1].argv[-6:] == ("dev", "wan0", "root", "netem", "delay", "20ms")


def test_user_space_delay_sends_the_wan_egress_to_the_queue() -> None:
    (op,) = plan.link_plan(TOPO, "requestor", delay="nfqueue")
    assert op.stdin is not None and op.stdin.endswith(
        "*mangle\n:yn-delay - [0:0]\n-A yn-delay -j NFQUEUE --queue-num 0 --queue-bypass\nCOMMIT\n")
    assert not any("tc" in o.argv for o in plan.delay_plan(TOPO, "nfqueue"))
    (none,) = plan.link_plan(TOPO.with_link("requestor", Impairment()), "requestor", delay="nfqueue")
    assert "NFQUEUE" not in (none.stdin or "")


def test_delay_plan_only_for_links_with_delay() -> None:
    assert sum("netem" in op.argv for op in plan.delay_plan(TOPO, "netem")) == len(TOPO.sites)
    assert len(plan.delay_plan(TOPO, "nfqueue")) == len(TOPO.sites)
    assert plan.delay_plan(devnet_topology("abcd01", 2), "netem") == []


def test_teardown_deletes_every_namespace_and_tolerates_missing_ones() -> None:
    ops = plan.teardown_plan(TOPO.namespaces())
    assert sorted(op.argv[3] for op in ops) == sorted(TOPO.namespaces())
    assert all(op.argv[:3] == ("ip", "netns", "del") and not op.check for op in ops)
    assert ops[-1].argv[3] == TOPO.inet_ns


@pytest.mark.parametrize("site", ["public-1", "requestor", "provider-2"])
def test_each_site_is_wired_to_the_bridge_with_its_address(site: str) -> None:
    a = TOPO.site(site)
    edge = a.router_ns or a.node_ns
    ops = plan.build_plan(TOPO)
    assert plan.Op(("ip", "-n", TOPO.inet_ns, "link", "set", a.bridge_port, "master", "inet0")) in ops
    assert plan.Op(("ip", "-n", edge, "addr", "add", f"{a.wan_ip}/24", "dev", "wan0")) in ops
    if a.router_ns:
        assert plan.Op(("ip", "-n", a.node_ns, "route", "add", "default", "via", a.lan_gw or "")) in ops
        assert plan.Op(("ip", "netns", "exec", a.router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")) in ops


@given(providers=st.integers(1, 32), public=st.integers(1, 2), data=st.data())
def test_any_devnet_topology_stays_inside_its_namespaces(providers: int, public: int, data: st.DataObject) -> None:
    names = ["requestor"] + [f"provider-{i}" for i in range(1, providers + 1)]
    nat = data.draw(st.dictionaries(st.sampled_from(names), st.sampled_from(["easy", "hard"])))
    loss = data.draw(st.dictionaries(st.sampled_from(names + ["*"]), st.floats(0, 0.99)))
    topo = devnet_topology("abcd01", providers, public_nodes=public, nat=nat, loss=loss,  # type: ignore[arg-type]
                           delay_ms=data.draw(st.floats(0, 100)))
    ours = set(topo.namespaces())
    assert len(ours) == 1 + public + 2 * (providers + 1)
    backend = data.draw(st.sampled_from(["netem", "nfqueue"]))
    ops = plan.build_plan(topo) + plan.delay_plan(topo, backend) + plan.teardown_plan(topo.namespaces())
    for op in ops:
        assert _namespace_of(op) in ours, op
        if op.argv[3:5] == ("link", "add"):
            assert len(op.argv[5]) <= 15
    addrs = topo.addresses()
    assert len({a.wan_ip for a in addrs}) == len({a.node_ip for a in addrs}) == len(addrs)
    for a in addrs:
        kind = a.site.nat
        rules = plan.edge_rules(a)
        assert ("--random-fully" in rules) == (kind == "hard") and ("MASQUERADE" in rules) == (kind is not None)
        assert ("statistic" in rules) == (a.site.link.loss > 0)
