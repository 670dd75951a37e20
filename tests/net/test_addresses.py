"""Which addresses go to whom, wildcard expansion, observed-address confirmation (sans-io)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from yagna.net.addresses import (
    Interface,
    RelayAddr,
    LocalAddrs,
    ObservedAddrs,
    Scope,
    advertise,
    expand_listen,
    parse_relay,
    parse_tcp,
    scope,
    teachable,
)
from yagna.net.interfaces import local_interfaces, parse_addr_dump

ip = ipaddress.ip_address
RELAY_ID = "12D3KooWFy8BjPcNCDW5uEPyzrqWqjycHgv1FWC7Kx8jQ1Jbunp5"
RELAY = f"/ip4/198.51.100.7/tcp/4001/p2p/{RELAY_ID}/p2p-circuit"
LAN = (
    Interface(ip("127.0.0.1"), 8),
    Interface(ip("192.168.1.20"), 24),
    Interface(ip("100.64.3.4"), 10),
)


@pytest.mark.parametrize(
    ("addr", "kind"),
    [
        ("127.0.0.1", Scope.LOOPBACK),
        ("127.9.9.9", Scope.LOOPBACK),
        ("::1", Scope.LOOPBACK),
        ("10.1.2.3", Scope.PRIVATE),
        ("172.16.0.1", Scope.PRIVATE),
        ("172.31.255.255", Scope.PRIVATE),
        ("192.168.0.1", Scope.PRIVATE),
        ("100.64.0.1", Scope.PRIVATE),
        ("100.127.255.254", Scope.PRIVATE),
        ("fd00::2", Scope.PRIVATE),
        ("169.254.1.1", Scope.LINK_LOCAL),
        ("fe80::1", Scope.LINK_LOCAL),
        ("0.0.0.0", Scope.UNSPECIFIED),
        ("::", Scope.UNSPECIFIED),
        ("8.8.8.8", Scope.PUBLIC),
        ("172.32.0.1", Scope.PUBLIC),
        ("100.128.0.1", Scope.PUBLIC),
        ("198.18.0.1", Scope.PUBLIC),  # benchmark range: a namespace testbed's "internet"
        ("2001:db8::1", Scope.PUBLIC),
        ("::ffff:10.0.0.1", Scope.PRIVATE),
    ],
)
def test_scope(addr: str, kind: Scope) -> None:
    assert scope(ip(addr)) is kind


@pytest.mark.parametrize(
    "bad",
    ["", "/", "/ip4", "/ip4/1.2.3.4", "/ip4/1.2.3.4/udp/5", "/ip4/999.1.1.1/tcp/5", "/ip4/::1/tcp/5",
     "/ip6/1.2.3.4/tcp/5", "/ip4/1.2.3.4/tcp/99999", "/ip4/1.2.3.4/tcp/-1", "ip4/1.2.3.4/tcp/5",
     "/dns4/example.com/tcp/5", "/ip6/fe80::1%eth0/tcp/5", "/ip4/1.2.3.4/tcp/" + "9" * 1000],
)
def test_parse_tcp_rejects_without_raising(bad: str) -> None:
    assert parse_tcp(bad) is None


def test_parse_tcp_keeps_the_rest() -> None:
    tcp = parse_tcp("/ip4/1.2.3.4/tcp/5/p2p/12D3KooWx")
    assert tcp is not None and tcp.thin_waist == "/ip4/1.2.3.4/tcp/5" and str(tcp) == "/ip4/1.2.3.4/tcp/5/p2p/12D3KooWx"


def test_relay_addresses() -> None:
    relay = parse_relay(RELAY)
    assert relay == RelayAddr(parse_tcp("/ip4/198.51.100.7/tcp/4001"), RELAY_ID)  # type: ignore[arg-type]
    assert str(relay) == RELAY
    me = "12D3KooWNwEAzvzRvimyxRH7kM1LjW2hTUKWmQ6236dtFajXgLGj"
    assert parse_relay(f"{RELAY}/p2p/{me}", owner=me) == relay  # our own id at the end: accepted, dropped
    for bad in [f"{RELAY}/p2p/{me}", f"{RELAY}/x", "/p2p-circuit", f"/p2p/{RELAY_ID}/p2p-circuit",
                "/ip4/1.2.3.4/tcp/1/p2p/short/p2p-circuit", f"/ip4/1.2.3.4/tcp/1/ws/p2p/{RELAY_ID}/p2p-circuit",
                f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY_ID[:-1]}0/p2p-circuit", "/ip4/1.2.3.4/tcp/1"]:
        assert parse_relay(bad, owner="someone-else") is None, bad


def test_wildcard_expands_to_every_interface_of_its_family() -> None:
    interfaces = [*LAN, Interface(ip("169.254.9.9"), 16), Interface(ip("fd00::2"), 64)]
    out = expand_listen(["/ip4/0.0.0.0/tcp/4000", "/ip4/127.0.0.1/tcp/5000"], interfaces)
    assert out == [
        "/ip4/127.0.0.1/tcp/4000", "/ip4/192.168.1.20/tcp/4000", "/ip4/100.64.3.4/tcp/4000", "/ip4/127.0.0.1/tcp/5000",
    ]
    assert expand_listen(["/ip6/::/tcp/7"], interfaces) == ["/ip6/fd00::2/tcp/7"]


def test_this_machines_interfaces_include_loopback() -> None:
    found = local_interfaces()
    assert Interface(ip("127.0.0.1"), 8) in found
    assert all(0 <= i.prefix <= (32 if i.ip.version == 4 else 128) for i in found)


def _nlmsg(kind: int, body: bytes) -> bytes:
    msg = struct.pack("=IHHII", 16 + len(body), kind, 0, 1, 0) + body
    return msg + b"\0" * (-len(msg) % 4)


def _rtattr(kind: int, value: bytes) -> bytes:
    attr = struct.pack("=HH", 4 + len(value), kind) + value
    return attr + b"\0" * (-len(attr) % 4)


def test_netlink_dump_parser_reads_addresses_and_stops_at_done() -> None:
    v4 = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2) + _rtattr(1, bytes([10, 0, 0, 9])) + _rtattr(2, bytes([10, 0, 0, 1]))
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 2) + _rtattr(1, ipaddress.IPv6Address("fd00::5").packed)
    bad = struct.pack("=BBBBI", socket.AF_INET, 99, 0, 0, 2) + _rtattr(2, b"\1\2\3")  # short address
    done, found = parse_addr_dump(_nlmsg(20, v4) + _nlmsg(20, v6) + _nlmsg(20, bad) + _nlmsg(3, b"\0" * 4))
    assert done
    assert found == [Interface(ip("10.0.0.1"), 24), Interface(ip("fd00::5"), 64)]  # IFA_LOCAL wins over IFA_ADDRESS
    assert parse_addr_dump(b"\xff" * 7) == (False, [])  # truncated: nothing, no exception
    with pytest.raises(OSError):
        parse_addr_dump(_nlmsg(2, struct.pack("=i", -1) + b"\0" * 16))


# -- advertise ---------------------------------------------------------------------------
LISTEN = ("/ip4/127.0.0.1/tcp/4000", "/ip4/192.168.1.20/tcp/4000", "/ip4/203.0.113.5/tcp/4000")


def test_a_remote_public_peer_gets_no_loopback_and_no_private_address() -> None:
    local = LocalAddrs(listen=LISTEN, interfaces=LAN, observed=("/ip4/198.51.100.9/tcp/4000",))
    assert advertise(local, ip("8.8.8.8")) == ["/ip4/203.0.113.5/tcp/4000", "/ip4/198.51.100.9/tcp/4000"]
    assert advertise(local, None) == advertise(local, ip("8.8.8.8"))


def test_a_peer_on_our_subnet_gets_our_private_address_first() -> None:
    local = LocalAddrs(listen=LISTEN, interfaces=LAN)
    assert advertise(local, ip("192.168.1.77")) == ["/ip4/192.168.1.20/tcp/4000", "/ip4/203.0.113.5/tcp/4000"]


def test_a_private_peer_on_another_subnet_gets_no_private_address() -> None:
    local = LocalAddrs(listen=LISTEN, interfaces=LAN)
    assert advertise(local, ip("192.168.2.77")) == ["/ip4/203.0.113.5/tcp/4000"]
    assert advertise(local, ip("10.0.0.1")) == ["/ip4/203.0.113.5/tcp/4000"]


def test_a_peer_on_this_host_gets_loopback_first_and_our_own_private_addresses() -> None:
    local = LocalAddrs(listen=LISTEN, interfaces=LAN)
    assert advertise(local, ip("127.0.0.1")) == list(LISTEN)


def test_relay_addresses_only_while_not_public() -> None:
    private = LocalAddrs(listen=("/ip4/10.0.0.2/tcp/4000",), interfaces=(Interface(ip("10.0.0.2"), 24),), relay=(RELAY,))
    assert advertise(private, None) == [RELAY]
    assert advertise(private, ip("10.0.0.3")) == ["/ip4/10.0.0.2/tcp/4000", RELAY]
    public = LocalAddrs(listen=("/ip4/203.0.113.5/tcp/4000",), relay=(RELAY,), public=True)
    assert advertise(public, None) == ["/ip4/203.0.113.5/tcp/4000"]


def test_a_private_or_loopback_observed_address_is_never_advertised() -> None:
    local = LocalAddrs(listen=(), observed=("/ip4/10.9.9.9/tcp/1", "/ip4/127.0.0.1/tcp/2", "/ip4/198.51.100.9/tcp/3"))
    assert advertise(local, None) == ["/ip4/198.51.100.9/tcp/3"]


def test_advertise_is_bounded() -> None:
    local = LocalAddrs(listen=tuple(f"/ip4/203.0.113.{i}/tcp/1" for i in range(20)))
    assert len(advertise(local, None)) == 8


@pytest.mark.parametrize(
    ("addr", "remote", "ok"),
    [
        ("/ip4/127.0.0.1/tcp/1", "8.8.8.8", False),  # a third party's loopback to a remote peer
        ("/ip4/127.0.0.1/tcp/1", "192.168.1.7", False),
        ("/ip4/127.0.0.1/tcp/1", "127.0.0.1", True),  # all on this host
        ("/ip4/127.0.0.1/tcp/1", None, False),
        ("/ip4/192.168.1.9/tcp/1", "192.168.1.7", True),  # same subnet as one of our interfaces
        ("/ip4/192.168.1.9/tcp/1", "192.168.2.7", False),
        ("/ip4/192.168.7.9/tcp/1", "192.168.7.7", False),  # a subnet we are not on: unknown, not passed on
        ("/ip4/192.168.1.9/tcp/1", "8.8.8.8", False),
        ("/ip4/192.168.1.9/tcp/1", "127.0.0.1", False),  # a third party's private address is not ours
        ("/ip4/192.168.1.20/tcp/1", "127.0.0.1", True),  # ours: this host can dial it
        ("/ip4/169.254.1.1/tcp/1", "169.254.1.2", False),
        ("/ip4/0.0.0.0/tcp/1", "127.0.0.1", False),
        ("/ip4/8.8.4.4/tcp/1", "8.8.8.8", True),
        ("/ip4/8.8.4.4/tcp/1", "127.0.0.1", True),
        (RELAY, "8.8.8.8", True),
        (f"/ip4/127.0.0.1/tcp/4001/p2p/{RELAY_ID}/p2p-circuit", "8.8.8.8", False),  # a relay on loopback
        (f"/ip4/127.0.0.1/tcp/4001/p2p/{RELAY_ID}/p2p-circuit", "127.0.0.1", True),
        ("/p2p-circuit", "8.8.8.8", False),
        (f"/p2p/{RELAY_ID}/p2p-circuit", "8.8.8.8", False),
        ("/dns4/example.com/tcp/1", "8.8.8.8", False),
        ("garbage", "8.8.8.8", False),
    ],
)
def test_teachable(addr: str, remote: str | None, ok: bool) -> None:
    assert teachable(addr, ip(remote) if remote else None, LAN) is ok


# -- observed addresses -------------------------------------------------------------------
A = "/ip4/198.51.100.9/tcp/4000"


def test_one_peer_cannot_confirm_an_address_however_often_it_says_so() -> None:
    seen = ObservedAddrs()
    for t in range(100):
        assert not seen.observe(A, ip("8.8.8.8"), float(t))
    assert seen.confirmed(100.0) == []


def test_two_peers_on_one_ip_count_once_two_ips_confirm() -> None:
    seen = ObservedAddrs()
    seen.observe(A, ip("8.8.8.8"), 0.0)
    assert not seen.observe(A + "/p2p/12D3KooWx", ip("8.8.8.8"), 1.0)  # same thin waist, same observer
    assert seen.observe(A, ip("9.9.9.9"), 2.0)
    assert seen.confirmed(3.0) == [A]


def test_ipv6_observers_in_one_56_count_once() -> None:
    seen = ObservedAddrs()
    seen.observe(A, ip("2001:db8:0:1::1"), 0.0)
    seen.observe(A, ip("2001:db8:0:2::1"), 0.0)
    assert seen.confirmed(0.0) == []
    seen.observe(A, ip("2001:db8:1::1"), 0.0)
    assert seen.confirmed(0.0) == [A]


def test_loopback_relay_unspecified_and_junk_observations_are_ignored() -> None:
    seen = ObservedAddrs()
    for addr in ["/ip4/127.0.0.1/tcp/1", "/ip4/0.0.0.0/tcp/1", RELAY, "junk", "/ip4/1.2.3.4/udp/1"]:
        seen.observe(addr, ip("8.8.8.8"), 0.0)
        seen.observe(addr, ip("9.9.9.9"), 0.0)
    assert seen.confirmed(0.0) == [] and len(seen) == 0


def test_observations_expire() -> None:
    seen = ObservedAddrs(ttl=100.0)
    seen.observe(A, ip("8.8.8.8"), 0.0)
    seen.observe(A, ip("9.9.9.9"), 50.0)
    assert seen.confirmed(100.0) == [A]
    assert seen.confirmed(101.0) == []  # the first report is too old
    seen.observe(A, ip("8.8.8.8"), 120.0)
    assert seen.confirmed(120.0) == [A]


def test_a_flood_of_addresses_stays_bounded_and_keeps_the_confirmed_one() -> None:
    seen = ObservedAddrs(max_addrs=16, max_observers=8)
    seen.observe(A, ip("8.8.8.8"), 0.0)
    seen.observe(A, ip("9.9.9.9"), 0.0)
    for i in range(1000):
        seen.observe(f"/ip4/203.0.113.{i % 250}/tcp/{i}", ip(f"11.0.{i // 250}.{i % 250}"), 1.0)
    assert len(seen) <= 16
    assert seen.confirmed(2.0) == [A]
    for i in range(100):
        seen.observe(A, ip(f"12.0.0.{i}"), 3.0)
    assert len(seen._seen[A].observers) <= 8  # noqa: SLF001 - the bound itself


def test_observed_ips_ignore_ports() -> None:
    seen = ObservedAddrs()
    seen.observe("/ip4/198.51.100.9/tcp/50001", ip("8.8.8.8"), 0.0)  # a NAT maps each connection anew
    seen.observe("/ip4/198.51.100.9/tcp/50002", ip("9.9.9.9"), 0.0)
    assert seen.confirmed(0.0) == []
    assert seen.ips(0.0, min_observers=2) == [ip("198.51.100.9")]


def test_peer_exchange_carries_relay_addresses_and_refuses_other_peer_ids() -> None:
    from yagna.core.errors import WireError
    from yagna.net import px

    assert px.parse_request({"addrs": [RELAY, "/ip4/1.2.3.4/tcp/1"]}) == (RELAY, "/ip4/1.2.3.4/tcp/1")
    hints = px.parse_response({"peers": [{"id": RELAY_ID, "addrs": [RELAY]}]})
    assert hints == [px.PeerHint(RELAY_ID, (RELAY,))]
    for bad in [f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY_ID}", f"{RELAY}/p2p/{RELAY_ID}",
                "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWRu9s9YHJhBcqJ7NX5bBNmqQ6Hx8tEGRqh1ajDHKm8HMv/p2p-circuit",
                "/ip4/1.2.3.4/tcp/1/p2p-circuit"]:
        with pytest.raises(WireError):
            px.parse_request({"addrs": [bad]})
