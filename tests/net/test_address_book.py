"""The address book's reachability rounds, on virtual time with a scripted host and dial-back peers."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from yagna.net import dialback
from yagna.net.address_book import AddressBook
from yagna.net.addresses import Interface
from yagna.net.errors import RemoteError
from yagna.net.reachability import Status

LISTEN = "/ip4/203.0.113.5/tcp/4000"


def node_id(n: int) -> str:
    return ID.from_pubkey(create_new_key_pair(bytes([n]) * 32).public_key).to_base58()


class Conn:
    def __init__(self, ip: str, kind: str = "direct") -> None:
        self.muxed_conn = SimpleNamespace(get_remote_address=lambda: (ip, 50000))
        self._kind = kind

    def get_connection_type(self) -> Any:
        return SimpleNamespace(value=self._kind)

    def get_transport_addresses(self) -> list[Multiaddr]:
        return []


class Host:
    def __init__(self, listen: list[str]) -> None:
        self.listen = listen
        self.connections: dict[ID, list[Conn]] = {}

    def get_id(self) -> ID:
        return ID.from_base58(node_id(99))

    def get_transport_addrs(self) -> list[Multiaddr]:
        return [Multiaddr(a) for a in self.listen]

    def get_network(self) -> Any:
        return SimpleNamespace(connections=self.connections)

    def connect(self, peer: str, ip: str, kind: str = "direct") -> None:
        self.connections[ID.from_base58(peer)] = [Conn(ip, kind)]


class Peers:
    """Dial-back servers: each answers by its script (reached, failed, refused)."""

    def __init__(self) -> None:
        self.script: dict[str, Callable[[list[str]], object]] = {}
        self.asked: list[tuple[str, list[str]]] = []
        self.delay = 0.1

    def register(self, spec: object, handler: object) -> None:
        pass

    async def request(self, peer: str, spec: object, payload: Any) -> object:
        assert spec is dialback.DIALBACK
        addrs = dialback.parse_request(payload)
        self.asked.append((peer, addrs))
        await trio.sleep(self.delay)
        return self.script[peer](addrs)


def reach(addrs: list[str]) -> object:
    return dialback.make_response(addrs, [])


def fail(addrs: list[str]) -> object:
    return dialback.make_response([], addrs)


def refuse(addrs: list[str]) -> object:
    raise RemoteError("rate_limited", "slow down")


def book_for(listen: list[str]) -> tuple[AddressBook, Host, Peers]:
    host, peers = Host(listen), Peers()
    itf = [Interface(ipaddress.ip_address("203.0.113.5"), 24), Interface(ipaddress.ip_address("10.0.0.2"), 24)]
    book = AddressBook(host, peers, interfaces=lambda: itf)  # type: ignore[arg-type]
    return book, host, peers


async def test_public_after_two_peers_on_distinct_public_ips_reach_us(autojump_clock: trio.testing.MockClock) -> None:
    book, host, peers = book_for([LISTEN])
    a, a2, b, lo, lan, relayed = (node_id(i) for i in range(1, 7))
    host.connect(lo, "127.0.0.1")
    host.connect(lan, "10.0.0.9")
    host.connect(relayed, "198.51.100.200", kind="relayed")
    host.connect(a, "198.51.100.1")
    host.connect(a2, "198.51.100.1")  # another id on the same IP: one witness
    for p in (a, a2, b, lo, lan, relayed):
        peers.script[p] = reach
    async with trio.open_nursery() as nursery:
        await nursery.start(book.run, lambda: sorted(n.to_base58() for n in host.connections))
        await trio.sleep(1)
        assert book.reachability.status is Status.UNKNOWN
        assert {p for p, _ in peers.asked} in ({a}, {a2})  # never the loopback, LAN or relayed peer
        assert all(addrs == [LISTEN] for _, addrs in peers.asked)
        host.connect(b, "198.51.100.2")
        await book.on_connect(b)  # a new possible server: asked at once while undecided
        got = await book.reachability.wait_change(Status.UNKNOWN)
        assert got is Status.PUBLIC
        assert trio.current_time() < 5
        nursery.cancel_scope.cancel()
    assert book.advertised() == [LISTEN]


async def test_private_after_two_failures_then_sticky_and_rechecked(autojump_clock: trio.testing.MockClock) -> None:
    book, host, peers = book_for([LISTEN])
    a, b, c = node_id(1), node_id(2), node_id(3)
    host.connect(a, "198.51.100.1")
    host.connect(b, "198.51.100.2")
    peers.script = {a: fail, b: fail, c: refuse}
    book.set_relay_addrs([
        "/ip4/198.51.100.1/tcp/1/p2p/" + a + "/p2p-circuit/p2p/" + node_id(99),  # with our id: kept without it
        "/ip4/1.2.3.4/tcp/1",  # not a relay address: dropped
        "/ip4/198.51.100.1/tcp/1/p2p/" + a + "/p2p-circuit",  # the same again
    ])
    async with trio.open_nursery() as nursery:
        await nursery.start(book.run, lambda: sorted(n.to_base58() for n in host.connections))
        assert await book.reachability.wait_change(Status.UNKNOWN) is Status.PRIVATE
        # while private, the relay address (only that: the other is not one) is advertised
        assert book.advertised() == [LISTEN, "/ip4/198.51.100.1/tcp/1/p2p/" + a + "/p2p-circuit"]
        # a refusal is no evidence; after the re-check interval both reach us: public
        host.connect(c, "198.51.100.3")
        peers.script = {a: reach, b: reach, c: refuse}
        start = trio.current_time()
        assert await book.reachability.wait_change(Status.PRIVATE) is Status.PUBLIC
        assert trio.current_time() - start >= book.reachability.state.recheck_interval - 1
        assert book.relay_addrs() and book.advertised() == [LISTEN]  # relay addresses no longer given
        nursery.cancel_scope.cancel()


async def test_an_answer_about_old_addresses_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    book, host, peers = book_for([LISTEN])
    a, b = node_id(1), node_id(2)
    host.connect(a, "198.51.100.1")
    host.connect(b, "198.51.100.2")

    def slow_then_change(addrs: list[str]) -> object:
        host.listen = ["/ip4/203.0.113.5/tcp/4001"]  # our address changes while the answer is on its way
        book.update_candidates()
        return reach(addrs)

    peers.script = {a: slow_then_change, b: reach}
    book.refresh_interfaces()
    book.update_candidates()
    await book.check_round([a])
    assert book.reachability.state.results == {}
    assert book.reachability.state.candidates == ("/ip4/203.0.113.5/tcp/4001",)


async def test_a_loopback_only_node_asks_nobody_and_stays_unknown(autojump_clock: trio.testing.MockClock) -> None:
    book, host, peers = book_for(["/ip4/127.0.0.1/tcp/4000"])
    a = node_id(1)
    host.connect(a, "127.0.0.1")
    peers.script[a] = reach
    async with trio.open_nursery() as nursery:
        await nursery.start(book.run, lambda: [a])
        await book.on_connect(a)
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()
    assert peers.asked == [] and book.reachability.status is Status.UNKNOWN
    assert book.advertised() == []
    assert book.for_peer(a) == ["/ip4/127.0.0.1/tcp/4000"]


async def test_a_peer_that_connects_while_an_answer_is_awaited_is_asked_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A NAT that drops the dial-back's SYN makes every answer take the 5 s dial timeout; the second
    server must not wait for the first answer (nor for the 30 s retry): found in the NAT testbed,
    where the verdict took 40 s."""
    book, host, peers = book_for([LISTEN])
    a, b = node_id(1), node_id(2)
    peers.script = {a: fail, b: fail}
    peers.delay = dialback.DIAL_TIMEOUT
    host.connect(a, "198.51.100.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(book.run, lambda: sorted(n.to_base58() for n in host.connections))
        await trio.sleep(1)
        host.connect(b, "198.51.100.2")
        await book.on_connect(b)
        assert await book.reachability.wait_change(Status.UNKNOWN) is Status.PRIVATE
        assert trio.current_time() <= 1 + dialback.DIAL_TIMEOUT + 0.5
        nursery.cancel_scope.cancel()
    assert sorted(p for p, _ in peers.asked) == sorted([a, b])


def test_what_the_library_announces_to_every_peer() -> None:
    book, host, _ = book_for(["/ip4/0.0.0.0/tcp/4000"])
    book._read_interfaces = lambda: [  # noqa: SLF001 - a machine with every kind of interface
        Interface(ipaddress.ip_address("127.0.0.1"), 8), Interface(ipaddress.ip_address("203.0.113.5"), 24),
        Interface(ipaddress.ip_address("10.0.0.2"), 24), Interface(ipaddress.ip_address("169.254.1.1"), 16),
    ]
    candidates = [Multiaddr(a) for a in (
        "/ip4/0.0.0.0/tcp/4000",  # the listener
        "/ip4/10.9.9.9/tcp/5",  # the library's own observation of a private address
        "/ip4/198.51.100.9/tcp/4000",  # and of a public one
        f"/ip4/198.51.100.1/tcp/1/p2p/{node_id(1)}/p2p-circuit",
    )]
    announced = [str(a) for a in book.host_addrs(candidates)]
    assert announced == ["/ip4/203.0.113.5/tcp/4000", "/ip4/10.0.0.2/tcp/4000", "/ip4/198.51.100.9/tcp/4000"]

    lo, _, _ = book_for(["/ip4/127.0.0.1/tcp/4000"])
    assert [str(a) for a in lo.host_addrs([Multiaddr("/ip4/127.0.0.1/tcp/4000")])] == ["/ip4/127.0.0.1/tcp/4000"]


async def test_nat_detected_when_a_peer_sees_us_at_a_public_ip_we_do_not_have() -> None:
    book, _, _ = book_for(["/ip4/10.0.0.2/tcp/4000"])
    book.refresh_interfaces()
    assert not book.nat_detected()
    book.observed.observe("/ip4/10.0.0.2/tcp/4000", ipaddress.ip_address("10.0.0.9"), trio.current_time())  # a LAN peer
    book.observed.observe("/ip4/203.0.113.5/tcp/4000", ipaddress.ip_address("8.8.8.8"), trio.current_time())  # our own public IP
    assert not book.nat_detected()
    book.observed.observe("/ip4/198.51.100.9/tcp/50123", ipaddress.ip_address("8.8.8.8"), trio.current_time())
    assert book.nat_detected()
