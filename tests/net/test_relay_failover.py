"""A peer reached only through relays (real py-libp2p hosts on loopback): a request to it dials
through a relay on demand, and when that relay dies the next request goes through the other one."""

from __future__ import annotations

import os

import trio

from yagna.net.addresses import relay_id_of
from yagna.net.network import Network
from yagna.net.reqresp import ProtocolSpec, Request

from .conformance import fast_config, start_stoppable

ECHO = ProtocolSpec("/yagna-test/echo/1.0.0")


async def _until(pred: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not pred():  # type: ignore[operator]
            await trio.sleep(0.05)


def _relay_of_connection(net: Network, peer: Network) -> str | None:
    for conn in net.host.get_network().connections.get(peer.host.get_id(), []):
        for addr in map(str, conn.get_transport_addresses()):
            if relay_id_of(addr) is not None:
                return relay_id_of(addr)
    return None


async def test_requests_follow_a_relay_only_peer_to_its_other_relay() -> None:
    async with trio.open_nursery() as nursery:
        relays, scopes = [], []
        for _ in range(2):
            r = Network(os.urandom(32), fast_config(relay_service="on", hole_punching=False))
            scopes.append(await start_stoppable(nursery, r))
            relays.append(r)
        behind = Network(os.urandom(32), fast_config(bootstrap=[r.full_addrs()[0] for r in relays],
                                                     hole_punching=False))
        behind.addresses.nat_detected = lambda: True  # type: ignore[method-assign]
        behind.relay.poll = 0.2

        async def echo(req: Request) -> object:
            return req.payload

        behind.rr.register(ECHO, echo)
        await start_stoppable(nursery, behind)
        await _until(lambda: all(r.relay.serving for r in relays))
        await _until(lambda: len(behind.relay.keeper.relays()) == 2)
        circuits = behind.relay.keeper.relay_addrs()

        asker = Network(os.urandom(32), fast_config(hole_punching=False))
        # Only circuit addresses, as a peer on another network is told of a private node (on
        # loopback peer exchange would teach its direct address too).
        asker.peers._teachable = lambda _peer, addrs: [a for a in addrs if "/p2p-circuit" in a]  # type: ignore[method-assign]
        await start_stoppable(nursery, asker)
        asker.peers._learn(behind.node_id, circuits, "px")

        # not connected: the request dials through a relay on demand
        assert await asker.rr.request(behind.node_id, ECHO, b"one") == b"one"
        first = _relay_of_connection(asker, behind)
        assert first in {r.node_id for r in relays}

        # that relay dies: the connection drops, the next request goes through the other relay
        dead = next(i for i, r in enumerate(relays) if r.node_id == first)
        scopes[dead].cancel()
        await _until(lambda: _relay_of_connection(asker, behind) != first)
        assert await asker.rr.request(behind.node_id, ECHO, b"two") == b"two"
        assert _relay_of_connection(asker, behind) == relays[1 - dead].node_id
        nursery.cancel_scope.cancel()
