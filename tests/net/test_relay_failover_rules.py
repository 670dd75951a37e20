"""The peer manager's relay-failover rules on a fake host and trio's virtual clock: a relayed
connection that drops is redialed at once, through the other relay first; the on-demand connect
(``PeerManager.ensure_connected``, RequestResponse's ``connect`` seam) shares one dial per peer
and is bounded by the dial timeout."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from yagna.net.errors import PeerUnreachable
from yagna.net.host import DIAL_TIMEOUT_S
from yagna.net.peers import PeerManager


def _id() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


class _Conn:
    def __init__(self, addrs: list[str]) -> None:
        self._addrs = [Multiaddr(a) for a in addrs]

    def get_transport_addresses(self) -> list[Multiaddr]:
        return self._addrs


class _Network:
    def __init__(self) -> None:
        self.connections: dict[ID, list[_Conn]] = {}

    def register_notifee(self, _notifee: object) -> None:
        pass


class _Host:
    def __init__(self) -> None:
        self._id = _id()
        self.net = _Network()
        self.live: set[ID] = set()  # peers (relays) we are connected to

    def get_id(self) -> ID:
        return self._id

    def get_network(self) -> _Network:
        return self.net

    def get_connected_peers(self) -> list[ID]:
        return list(self.live | set(self.net.connections))

    async def connect(self, _info: object) -> None:
        raise OSError("no direct route")


class _RR:
    def register(self, *_a: object) -> None:
        pass


def _circuit(relay: ID, peer: ID) -> str:
    return f"/ip4/10.0.0.1/tcp/4001/p2p/{relay.to_base58()}/p2p-circuit/p2p/{peer.to_base58()}"


def _setup() -> tuple[_Host, PeerManager, ID, ID, ID]:
    host = _Host()
    pm = PeerManager(host, _RR(), my_addrs=lambda _p: [], bootstrap=[])  # type: ignore[arg-type]
    peer, relay_a, relay_b = _id(), _id(), _id()
    pm._learn(peer.to_base58(), [_circuit(relay_a, peer), _circuit(relay_b, peer)], "px")
    return host, pm, peer, relay_a, relay_b


async def test_relayed_drop_redials_at_once_through_the_other_relay(autojump_clock: Any) -> None:
    host, pm, peer, relay_a, relay_b = _setup()
    host.live = {relay_a, relay_b}
    host.net.connections[peer] = [_Conn([_circuit(relay_a, peer)])]
    async with trio.open_nursery() as nursery:
        pm._nursery = nursery
        pm._after_connect = _noop  # type: ignore[method-assign,assignment]
        pm._apply("up", peer.to_base58())
        state = pm._peers[peer.to_base58()]
        assert state.connected and state.relay == relay_a.to_base58()

        await trio.sleep(100)  # the redial backoff would have grown by now if anything failed
        # relay A dies (SIGKILL): its circuit closes; we may not yet have noticed A is gone
        del host.net.connections[peer]
        pm._apply("down", peer.to_base58())
        assert not state.connected
        assert state.next_attempt <= trio.current_time()  # no backoff for the first redial

        dialed: list[list[str]] = []

        async def dial_relayed(node_id: str, circuits: list[str]) -> None:
            dialed.append(circuits)
            host.net.connections[peer] = [_Conn([circuits[0]])]

        pm.dial_relayed = dial_relayed
        state.dialing = True
        await pm._dial(state, trio.CapacityLimiter(1))
        assert dialed and dialed[0][0] == _circuit(relay_b, peer)  # the dead relay is tried last
        assert state.connected and state.relay == relay_b.to_base58()
        nursery.cancel_scope.cancel()


async def test_direct_drop_keeps_the_backoff(autojump_clock: Any) -> None:
    host = _Host()
    pm = PeerManager(host, _RR(), my_addrs=lambda _p: [], bootstrap=[])  # type: ignore[arg-type]
    peer = _id()
    pm._learn(peer.to_base58(), [f"/ip4/10.0.0.2/tcp/4001/p2p/{peer.to_base58()}"], "px")
    host.net.connections[peer] = [_Conn(["/ip4/10.0.0.2/tcp/4001"])]
    async with trio.open_nursery() as nursery:
        pm._nursery = nursery
        pm._after_connect = _noop  # type: ignore[method-assign,assignment]
        pm._apply("up", peer.to_base58())
        del host.net.connections[peer]
        pm._apply("down", peer.to_base58())
        assert pm._peers[peer.to_base58()].next_attempt > trio.current_time()
        nursery.cancel_scope.cancel()


async def _noop(_node_id: str) -> None:
    pass


async def test_concurrent_connects_share_one_dial(autojump_clock: Any) -> None:
    host, pm, peer, relay_a, relay_b = _setup()
    host.live = {relay_b}
    calls: list[list[str]] = []

    async def dial_relayed(node_id: str, circuits: list[str]) -> None:
        calls.append(circuits)
        await trio.sleep(1.0)
        host.net.connections[peer] = [_Conn([circuits[0]])]

    pm.dial_relayed = dial_relayed
    done: list[float] = []

    async def waiter() -> None:
        await pm.ensure_connected(peer.to_base58())
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        pm._nursery = nursery
        pm._after_connect = _noop  # type: ignore[method-assign,assignment]
        start = trio.current_time()
        for _ in range(5):
            nursery.start_soon(waiter)
    assert len(calls) == 1 and calls[0][0] == _circuit(relay_b, peer)  # a live relay first
    assert len(done) == 5 and all(t - start < 2 for t in done)
    # connected now: no dial at all
    await pm.ensure_connected(peer.to_base58())
    assert len(calls) == 1


async def test_connect_is_bounded_and_every_waiter_is_told(autojump_clock: Any) -> None:
    host, pm, peer, _a, _b = _setup()
    calls = 0

    async def dial_relayed(node_id: str, circuits: list[str]) -> None:
        nonlocal calls
        calls += 1
        await trio.sleep_forever()  # a relay that accepts and never answers

    pm.dial_relayed = dial_relayed
    failed: list[float] = []

    async def waiter() -> None:
        with pytest.raises(PeerUnreachable):
            await pm.ensure_connected(peer.to_base58())
        failed.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        for _ in range(3):
            nursery.start_soon(waiter)
    assert calls == 1 and len(failed) == 3
    assert all(t - start <= DIAL_TIMEOUT_S + 1.5 for t in failed)
