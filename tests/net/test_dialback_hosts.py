"""Dial-back, identify's observed address and wildcard listening with real py-libp2p hosts on loopback."""

from __future__ import annotations

import os

import trio

from yagna.net import dialback, px
from yagna.net.errors import RemoteError
from yagna.net.interfaces import local_interfaces
from yagna.net.network import Network

from .conformance import fast_config, free_port, libp2p_nets, start_stoppable, wait_connected


def _conns(net: Network, other: Network) -> int:
    from libp2p.peer.id import ID

    return len(net.host.get_network().connections.get(ID.from_base58(other.node_id), []))


async def test_dial_back_opens_a_new_connection_and_checks_the_peer_id() -> None:
    async with libp2p_nets(2) as (a, b):
        b_addr = b.listen_addrs()[0]
        assert await a.addresses._dial_back(b.node_id, b_addr)  # noqa: SLF001 - the dialer itself
        assert not await a.addresses._dial_back(a.node_id, b_addr)  # noqa: SLF001 - someone else listens there
        assert not await a.addresses._dial_back(b.node_id, f"/ip4/127.0.0.1/tcp/{free_port()}")  # noqa: SLF001
        # the existing connection is untouched and still carries requests, on both sides
        await trio.sleep(0.2)
        assert _conns(a, b) == 1 and _conns(b, a) == 1
        assert b.node_id in a.peers.connected_peers() and a.node_id in b.peers.connected_peers()
        await a.rr.request(b.node_id, px.PX, px.make_request([]))
        await b.rr.request(a.node_id, px.PX, px.make_request([]))


async def test_the_dialback_protocol_end_to_end_reaches_only_the_requester() -> None:
    async with libp2p_nets(3) as (a, b, c):
        mine = a.listen_addrs()[0]
        reply = await a.rr.request(b.node_id, dialback.DIALBACK, dialback.make_request([mine]))
        assert dialback.parse_response(reply, [mine]) == ([mine], [])
        # c's address is on the same IP as a here (one host), but the dial expects a's id: not reached
        theirs = c.listen_addrs()[0]
        reply = await a.rr.request(b.node_id, dialback.DIALBACK, dialback.make_request([theirs]))
        assert dialback.parse_response(reply, [theirs]) == ([], [theirs])
        try:
            await a.rr.request(b.node_id, dialback.DIALBACK, dialback.make_request(["/ip4/203.0.113.1/tcp/1"]))
        except RemoteError as exc:
            assert exc.code == "refused"
        else:
            raise AssertionError("a dial-back to a third party's IP was accepted")
        assert _conns(a, b) == 1 and _conns(b, a) == 1


async def test_identify_tells_how_the_peer_sees_us() -> None:
    async with libp2p_nets(2) as (a, b):
        seen = await a.addresses._identify_observed(b.node_id)  # noqa: SLF001 - the exchange itself
        assert seen is not None and seen.startswith("/ip4/127.0.0.1/tcp/")
        # loopback observations never count: a loopback devnet has nothing to confirm or ask about
        await trio.sleep(0.5)
        assert a.addresses.observed.confirmed(trio.current_time()) == []
        assert a.reachability.status == "unknown" and a.addresses.reachability.state.candidates == ()


async def test_listening_on_every_interface() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery:
        wide = Network(os.urandom(32), fast_config(listen=[f"/ip4/0.0.0.0/tcp/{port}"]))
        await start_stoppable(nursery, wide)
        listen = wide.listen_addrs()
        assert f"/ip4/127.0.0.1/tcp/{port}" in listen
        assert not any("/0.0.0.0/" in a for a in listen + wide.full_addrs() + wide.advertised_addrs())
        assert not any("/127." in a for a in wide.advertised_addrs())
        loopback = f"/ip4/127.0.0.1/tcp/{port}/p2p/{wide.node_id}"
        peer = Network(os.urandom(32), fast_config(bootstrap=[loopback]))
        await start_stoppable(nursery, peer)
        await wait_connected([wide, peer], 1)
        # a peer on this host is told our loopback address (first) in peer exchange
        assert wide.addresses.for_peer(peer.node_id)[0] == f"/ip4/127.0.0.1/tcp/{port}"
        # identify (one message for every peer) carries no wildcard, and loopback only on a loopback-only host
        announced = [str(a) for a in wide.host.get_addrs()]
        assert announced and not any("/0.0.0.0/" in a for a in announced)
        others = [i for i in local_interfaces() if i.ip.version == 4 and not i.ip.is_loopback and not i.ip.is_link_local]
        assert any("/ip4/127.0.0.1/" in a for a in announced) == (not others)
        assert all(a.endswith(f"/p2p/{wide.node_id}") for a in announced)
        # the loopback-only peer announces its loopback address: a loopback devnet keeps working
        assert [str(a) for a in peer.host.get_addrs()] == [f"{peer.listen_addrs()[0]}/p2p/{peer.node_id}"]
        nursery.cancel_scope.cancel()
