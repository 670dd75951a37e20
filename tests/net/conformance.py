"""Worlds of three endpoints for the conformance tests: real libp2p or the memory twin.

A :class:`World` hides how its endpoints are made; the tests in
``test_conformance.py`` only use ``node_id``, ``rr`` and ``gossip`` (the
interfaces the domain packages see) plus two helpers that absorb the real
network's asynchrony: :meth:`World.gossip_ready` and :attr:`World.settle`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from yagna.core.identity import NodeKey
from yagna.net import NetConfig, Network
from yagna.net.memory import MemoryHub

CONNECT_BOUND = 15.0
"""Generous bound (s) for nodes on 127.0.0.1 to connect / for subscriptions to spread."""


@dataclass
class Endpoint:
    node_id: str
    rr: Any
    gossip: Any
    net: Network | None = None


@dataclass
class World:
    kind: str
    a: Endpoint
    b: Endpoint
    c: Endpoint
    settle: float
    """Seconds to wait before asserting that something did *not* arrive."""
    _drop: Callable[[Endpoint], Awaitable[None]] = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def endpoints(self) -> list[Endpoint]:
        return [self.a, self.b, self.c]

    def unknown_node_id(self) -> str:
        return NodeKey.generate().node_id

    async def drop(self, endpoint: Endpoint) -> None:
        """The endpoint vanishes (its daemon stops); returns once the others noticed."""
        await self._drop(endpoint)

    async def eventually(self, predicate: Callable[[], bool]) -> None:
        """Wait (bounded) until ``predicate()``; immediate on the memory twin."""
        with trio.fail_after(CONNECT_BOUND):
            while not predicate():
                await trio.sleep(0.02)

    async def gossip_ready(self, topic: str) -> None:
        """Wait until every endpoint knows the two others are subscribed to ``topic``.

        Call it after all three subscribed. On libp2p this is also when the
        GossipSub mesh of the topic holds the peers (a publish before that may
        go nowhere).
        """
        with trio.fail_after(CONNECT_BOUND):
            while not all(self._gossip_ready(e, topic) for e in self.endpoints):
                await trio.sleep(0.02)

    def _gossip_ready(self, endpoint: Endpoint, topic: str) -> bool:
        others = {e.node_id for e in self.endpoints if e is not endpoint}
        if not others <= set(endpoint.gossip.topic_peers(topic)):
            return False
        if endpoint.net is None:
            return True
        mesh = endpoint.net.gossip.router.mesh.get(topic, set())
        return others <= {p.to_base58() for p in mesh}


async def wait_connected(nets: Sequence[Network], count: int, bound: float = CONNECT_BOUND) -> None:
    """Wait until each of ``nets`` has at least ``count`` connected peers."""
    with trio.fail_after(bound):
        while not all(len(n.peers.connected_peers()) >= count for n in nets):
            await trio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_config(**kwargs: Any) -> NetConfig:
    """A NetConfig for tests: loopback, quick redials and peer exchange."""
    kwargs.setdefault("redial_base", 0.1)
    kwargs.setdefault("redial_cap", 0.5)
    kwargs.setdefault("px_interval", 1.0)
    return NetConfig(**kwargs)


async def start_stoppable(nursery: trio.Nursery, net: Network) -> trio.CancelScope:
    """Start ``net`` in ``nursery``; cancelling the returned scope stops just this node."""
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await net.run(task_status=task_status)

    await nursery.start(run)
    return scope


@asynccontextmanager
async def _libp2p_nets(count: int) -> AsyncIterator[list[tuple[Network, trio.CancelScope]]]:
    async with trio.open_nursery() as nursery:
        first = Network(os.urandom(32), fast_config())
        running = [(first, await start_stoppable(nursery, first))]
        for _ in range(count - 1):
            net = Network(os.urandom(32), fast_config(bootstrap=[first.full_addrs()[0]]))
            running.append((net, await start_stoppable(nursery, net)))
        await wait_connected([n for n, _ in running], count - 1)
        yield running
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def libp2p_nets(count: int) -> AsyncIterator[list[Network]]:
    """``count`` running Networks in one process, all connected to each other.

    The first is the bootstrap node of the others; peer exchange connects the
    rest. Everything is cancelled and closed on exit.
    """
    async with _libp2p_nets(count) as running:
        yield [net for net, _ in running]


@asynccontextmanager
async def libp2p_world() -> AsyncIterator[World]:
    async with _libp2p_nets(3) as running:
        scopes = {net.node_id: scope for net, scope in running}
        a, b, c = (Endpoint(n.node_id, n.rr, n.gossip, n) for n, _ in running)
        world = World("libp2p", a, b, c, settle=0.5)

        async def drop(endpoint: Endpoint) -> None:
            port = int(endpoint.net.listen_addrs()[0].split("/tcp/")[1].split("/")[0])  # type: ignore[union-attr]
            scopes[endpoint.node_id].cancel()
            others = [e.net for e in world.endpoints if e is not endpoint]
            await world.eventually(
                lambda: all(endpoint.node_id not in n.peers.connected_peers() for n in others)  # type: ignore[union-attr]
            )
            # Vanished means gone, not shutting down: under load its listener could still take a
            # dial for a moment and answer "protocol not supported" (flaked in CI once).
            await world.eventually(lambda: not _accepts(port))

        world._drop = drop
        yield world


@asynccontextmanager
async def memory_world() -> AsyncIterator[World]:
    hub = MemoryHub()
    a, b, c = (hub.node() for _ in range(3))

    async def drop(endpoint: Endpoint) -> None:
        hub.disconnect(endpoint.node_id)

    yield World(
        "memory",
        Endpoint(a.node_id, a.rr, a.gossip),
        Endpoint(b.node_id, b.rr, b.gossip),
        Endpoint(c.node_id, c.rr, c.gossip),
        settle=0.0,
        _drop=drop,
    )


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
