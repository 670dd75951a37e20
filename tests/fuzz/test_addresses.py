"""Fuzz what a peer's address strings and dial-back messages reach: parsers, filters, the observed set."""

from __future__ import annotations

import ipaddress

from hypothesis import example, given
from hypothesis import strategies as st

from yagna.core.errors import WireError
from yagna.core.identity import NodeKey
from yagna.net import dialback, px
from yagna.net.addresses import (
    Interface,
    LocalAddrs,
    ObservedAddrs,
    addr_scope,
    advertise,
    parse_relay,
    parse_tcp,
    teachable,
)
from yagna.net.interfaces import parse_addr_dump

from .strategies import FUZZ, cbor_values, garbage, mutated, only, texts

NODE = NodeKey.from_seed(bytes(32)).node_id
PARTS = ["ip4", "ip6", "tcp", "udp", "p2p", "p2p-circuit", "dns4", "1.2.3.4", "10.0.0.1", "127.0.0.1", "::1",
         "::ffff:1.2.3.4", "fe80::1%eth0", "0.0.0.0", "65535", "99999", "-1", "01", NODE, "", "x"]
addr_texts = st.one_of(texts, st.lists(st.sampled_from(PARTS), max_size=8).map(lambda p: "/" + "/".join(p)))
ips = st.one_of(st.ip_addresses(), st.none())
INTERFACES = (Interface(ipaddress.ip_address("192.168.1.2"), 24), Interface(ipaddress.ip_address("::1"), 128))
RELAY = f"/ip4/198.51.100.7/tcp/4001/p2p/{NODE}/p2p-circuit"


@FUZZ
@given(addr_texts, ips)
@example(RELAY, None)
@example(f"{RELAY}/p2p/{NODE}", ipaddress.ip_address("127.0.0.1"))
def test_address_filters_never_raise(addr: str, remote: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> None:
    tcp = parse_tcp(addr)
    if tcp is not None:
        assert parse_tcp(str(tcp)) == tcp
    relay = parse_relay(addr, owner=NODE)
    if relay is not None:
        assert parse_relay(str(relay)) == relay
    addr_scope(addr)
    teachable(addr, remote, INTERFACES)
    out = advertise(LocalAddrs(listen=(addr,), interfaces=INTERFACES, observed=(addr,), relay=(addr,)), remote)
    assert len(out) <= 8


@FUZZ
@given(st.lists(st.tuples(addr_texts, st.ip_addresses(), st.floats(0, 1e6)), max_size=40))
def test_observed_set_never_raises_and_stays_bounded(reports: list[tuple[str, object, float]]) -> None:
    seen = ObservedAddrs(max_addrs=4, max_observers=3)
    for addr, observer, now in reports:
        seen.observe(addr, observer, now)  # type: ignore[arg-type]
        assert len(seen) <= 4
    seen.confirmed(1e6)
    seen.ips(1e6)


@FUZZ
@given(st.one_of(cbor_values, mutated({"addrs": ["/ip4/1.2.3.4/tcp/1", "/ip4/1.2.3.4/tcp/2"]})))
def test_dialback_request_parser_raises_only_wire_error(payload: object) -> None:
    addrs = only(WireError, dialback.parse_request, payload)
    if addrs is not None:
        assert 1 <= len(addrs) <= dialback.MAX_ADDRS
        for addr in dialback.dialable_for(addrs, ipaddress.ip_address("1.2.3.4")):
            tcp = parse_tcp(addr)
            assert addr in addrs and tcp is not None and str(tcp.ip) == "1.2.3.4" and tcp.port > 0 and not tcp.rest


@FUZZ
@given(st.one_of(cbor_values, mutated({"reached": ["/ip4/1.2.3.4/tcp/1"], "failed": []})))
def test_dialback_response_parser_raises_only_wire_error(payload: object) -> None:
    only(WireError, dialback.parse_response, payload, ["/ip4/1.2.3.4/tcp/1"])


@FUZZ
@given(st.one_of(cbor_values, mutated({"addrs": [RELAY, "/ip4/1.2.3.4/tcp/1"]})))
def test_px_with_relay_addresses_raises_only_wire_error(payload: object) -> None:
    only(WireError, px.parse_request, payload)


@FUZZ
@given(garbage(bytes.fromhex("2c000000140000000100000000000000021800020000000008000200c0a80102080001000a000001"
                             "1400000003000000010000000000000000000000")))
def test_netlink_parser_raises_only_os_error(data: bytes) -> None:
    try:
        parse_addr_dump(data)
    except OSError:
        pass
