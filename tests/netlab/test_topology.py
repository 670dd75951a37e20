"""Topology descriptions: names, NAT kinds, addresses, validation, the record's round trip."""

from __future__ import annotations

import ipaddress

import pytest

from yagna.netlab.errors import TopologyError
from yagna.netlab.topology import Impairment, Site, Topology, devnet_topology


def test_devnet_topology_sites_and_nat_kinds() -> None:
    topo = devnet_topology("abcd01", 3)
    assert [(s.name, s.nat) for s in topo.sites] == [
        ("public-1", None), ("public-2", None), ("requestor", "easy"),
        ("provider-1", "easy"), ("provider-2", "hard"), ("provider-3", "easy"),
    ]
    one = devnet_topology("abcd01", 1, public_nodes=1, nat={"requestor": "hard", "provider-1": "hard"})
    assert [(s.name, s.nat) for s in one.sites] == [("public-1", None), ("requestor", "hard"), ("provider-1", "hard")]


def test_loss_for_every_site_and_per_site() -> None:
    topo = devnet_topology("abcd01", 2, loss={"*": 0.05, "provider-2": 0.2}, delay_ms=20)
    assert {s.name: s.link.loss for s in topo.sites} == {
        "public-1": 0.05, "public-2": 0.05, "requestor": 0.05, "provider-1": 0.05, "provider-2": 0.2}
    assert {s.link.delay_ms for s in topo.sites} == {20}


@pytest.mark.parametrize("kwargs", [
    {"providers": 0},
    {"providers": 1, "public_nodes": 3},
    {"providers": 1, "nat": {"provider-9": "easy"}},
    {"providers": 1, "nat": {"public-1": "easy"}},
    {"providers": 1, "nat": {"requestor": "full-cone"}},
    {"providers": 1, "loss": {"nobody": 0.1}},
    {"providers": 1, "loss": {"*": 1.0}},
    {"providers": 1, "loss": {"*": -0.1}},
])
def test_invalid_devnet_topologies(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(TopologyError):
        devnet_topology("abcd01", **kwargs)


@pytest.mark.parametrize("tag", ["", "ABCD", "abc", "abcdef012", "ab-cd", "../x"])
def test_tag_is_short_hex(tag: str) -> None:
    with pytest.raises(TopologyError):
        Topology(tag, (Site("a", None),))


@pytest.mark.parametrize("name", ["inet", "x-nat", "1abc", "Abc", "a" * 21, "a b", "a/b", ""])
def test_site_names_that_would_clash_or_escape(name: str) -> None:
    with pytest.raises(TopologyError):
        Topology("abcd", (Site(name, None),))


def test_duplicate_site_names() -> None:
    with pytest.raises(TopologyError):
        Topology("abcd", (Site("a", None), Site("a", "easy")))


def test_addresses_are_unique_and_in_the_right_ranges() -> None:
    topo = devnet_topology("abcd01", 32)
    addrs = topo.addresses()
    bench = ipaddress.ip_network("198.18.0.0/15")
    assert len({a.wan_ip for a in addrs}) == len(addrs)
    assert all(ipaddress.ip_address(a.wan_ip) in bench for a in addrs)
    for a in addrs:
        if a.site.public:
            assert a.node_ip == a.wan_ip and a.router_ns is None and a.lan_gw is None
        else:
            assert a.lan_gw is not None
            lan = ipaddress.ip_network(f"{a.lan_gw}/24", strict=False)
            assert ipaddress.ip_address(a.node_ip) in lan and lan.is_private
    lans = [ipaddress.ip_network(f"{a.node_ip}/24", strict=False) for a in addrs if not a.site.public]
    assert len(set(lans)) == len(lans)


def test_namespaces_all_carry_the_prefix_and_are_unique() -> None:
    topo = devnet_topology("abcd01", 2)
    names = topo.namespaces()
    assert names[0] == "yn-abcd01-inet"
    assert all(n.startswith("yn-abcd01-") for n in names)
    assert len(set(names)) == len(names) == 1 + 2 + 2 * 3
    assert topo.site("provider-2").router_ns == "yn-abcd01-provider-2-nat"
    with pytest.raises(TopologyError):
        topo.site("provider-3")


def test_record_round_trip_and_link_change() -> None:
    topo = devnet_topology("abcd01", 2, loss={"requestor": 0.1})
    assert Topology.from_json(topo.to_json()) == topo
    cut = topo.with_link("provider-1", Impairment(cut=True))
    assert cut.site("provider-1").site.link.cut and not topo.site("provider-1").site.link.cut
    assert Topology.from_json(cut.to_json()) == cut
    with pytest.raises(TopologyError):
        Topology.from_json({"tag": "abcd01", "sites": [{"name": "a", "nat": "weird"}]})
    with pytest.raises(TopologyError):
        Topology.from_json({"sites": []})


def test_a_site_can_be_public() -> None:
    topo = devnet_topology("abcd01", 2, nat={"provider-1": "public", "requestor": "hard"})
    assert [(s.name, s.nat) for s in topo.sites] == [
        ("public-1", None), ("public-2", None), ("requestor", "hard"), ("provider-1", None), ("provider-2", "hard")]
    p1 = topo.site("provider-1")
    assert p1.router_ns is None and p1.node_ip == p1.wan_ip and p1.edge_ns == p1.node_ns
