"""A discrete-event network on trio's clock: a sparse mesh with latency, loss and churn.

:class:`SimNetwork` holds every node's links (:mod:`.overlay`), which nodes are
up, and the events in flight. One dispatcher task (:meth:`SimNetwork.run`)
sleeps on trio's clock until the next event's tick and then runs every event
of that tick in the order they were scheduled; under
``trio.testing.MockClock(autojump_threshold=0)`` the clock jumps straight to
it, so a simulated minute takes only the CPU its events need. Event times are
rounded up to ``tick`` (default 1 ms): events in one tick are handled in one
wake-up.

Gossip is modelled on GossipSub's eager push: a message is marked in the
receiver's *seen cache* (by message id, before validation, as py-libp2p does),
validated, delivered and forwarded to every mesh neighbour except the one it
came from and its origin. Each copy sent is lost with probability ``loss``,
decided by a hash of (seed, sender, receiver, message), so the outcome does
not depend on task scheduling order. A node that is down neither receives nor
forwards. Not modelled: IHAVE/IWANT lazy gossip (the mesh here is every link a
node has, so there is no non-mesh peer to gossip to), mesh grafting/pruning,
the seen cache's expiry, and bandwidth/queueing (a copy takes its link's
latency whatever else is in flight).

A node is either *real*, with :class:`SimGossip`, :class:`SimRequestResponse`
and :class:`SimPeers` ports (the same Protocols, :mod:`yagna.net.ports`, the
daemon's services take, so the real :class:`~yagna.market_service.offers.OfferDirectory`
runs on it), or *light*: the network calls ``light_accept(node, msg)`` instead
of a validator and keeps no per-node objects (see :mod:`.offers_model`).
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from yagna.net.errors import (
    BadResponse,
    GossipError,
    GossipInvalid,
    PeerUnreachable,
    ProtocolNotSupported,
    RequestTimeout,
)
from yagna.net.gossip import MAX_GOSSIP_SIZE, SUBSCRIBER_QUEUE, GossipMessage, Inbound, InvalidHook, Validator
from yagna.net.limits import Admission, RefusalCounter, TopicLimits
from yagna.net.reqresp import Handler, ProtocolSpec, _parse_reply, encode_request, handle_frame

from . import overlay

log = logging.getLogger("netsim")

RPC_OVERHEAD = 120
"""Bytes a gossip copy costs on the wire beyond its data: pubsub framing, topic, from, seqno, signature."""
RR_OVERHEAD = 60
"""Bytes per request/response frame beyond the payload: stream multiplexing and framing."""


def chance(seed: int, a: int, b: int, c: int) -> float:
    """A reproducible number in [0, 1) for the event (a, b, c) (hash of ints: no PYTHONHASHSEED)."""
    return (hash((seed, a, b, c)) & 0xFFFFFFFF) / 4294967296.0


@dataclass
class Message:
    topic: str
    data: bytes
    origin: int
    published_at: float


class SimNetwork:
    """The overlay, the up/down state of each node and the events in flight."""

    def __init__(self, n: int, *, degree: int, seed: int, loss: float = 0.0,
                 latency_s: tuple[float, float] = (0.005, 0.080), tick: float = 0.001) -> None:
        self.n = n
        self.seed = seed
        self.loss = loss
        self.tick = tick
        rng = random.Random(seed)
        self.adj = overlay.random_mesh(n, degree, rng)
        self.lats = overlay.link_latencies(self.adj, rng, *latency_s)
        self.up = bytearray(b"\x01") * n
        self.names = [f"n{i}" for i in range(n)]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.messages: list[Message] = []
        self.seen: list[bytearray] = [bytearray() for _ in range(n)]
        # per-node counters (what the node sent)
        self.gossip_sent = array("I", bytes(4 * n))
        self.gossip_bytes = array("Q", bytes(8 * n))
        self.rr_sent = array("I", bytes(4 * n))
        self.rr_bytes = array("Q", bytes(8 * n))
        self.duplicates = 0
        self.lost = 0
        self.delivered = 0
        self.real: dict[int, SimNode] = {}
        self.light_accept: Callable[[int, int, int], bool] = lambda node, msg, sender: True
        self.light_rr: dict[str, Callable[[int, str, object], Awaitable[object]]] = {}
        self.on_rejoin: list[Callable[[int], None]] = []
        self._ticks: list[int] = []
        self._buckets: dict[int, list[tuple[Callable[..., None], tuple[object, ...]]]] = {}
        self._wake = trio.Event()
        self.events = 0
        self.in_flight = 0

    # -- nodes -------------------------------------------------------------------------
    def make_real(self, i: int) -> SimNode:
        node = self.real.get(i)
        if node is None:
            node = self.real[i] = SimNode(self, i)
        return node

    def latency(self, a: int, b: int) -> float:
        nbrs = self.adj[a]
        for k, x in enumerate(nbrs):
            if x == b:
                return float(self.lats[a][k])
        raise KeyError(f"no link {a}-{b}")

    def live_neighbours(self, i: int) -> list[int]:
        if not self.up[i]:
            return []
        up = self.up
        return [b for b in self.adj[i] if up[b]]

    def go_down(self, i: int) -> None:
        self.up[i] = 0

    def come_up(self, i: int) -> None:
        """The node reconnects to its live neighbours; both ends learn of each new link."""
        if self.up[i]:
            return
        self.up[i] = 1
        for b in self.live_neighbours(i):
            for a, peer in ((i, b), (b, i)):
                node = self.real.get(a)
                if node is not None:
                    node.peers._connected(self.names[peer])
        for hook in self.on_rejoin:
            hook(i)

    # -- events ------------------------------------------------------------------------
    def now(self) -> float:
        return trio.current_time()

    def schedule(self, delay: float, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)`` from the dispatcher ``delay`` seconds from now (rounded up to a tick)."""
        k = math.ceil((trio.current_time() + delay) / self.tick - 1e-9)
        bucket = self._buckets.get(k)
        if bucket is None:
            bucket = self._buckets[k] = []
            first = not self._ticks or k < self._ticks[0]
            heapq.heappush(self._ticks, k)
            if first:
                self._wake.set()
        bucket.append((fn, args))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            while self._ticks and self._ticks[0] * self.tick <= trio.current_time() + 1e-9:
                k = heapq.heappop(self._ticks)
                bucket = self._buckets.pop(k)
                # events scheduled while handling this tick for this same tick go into a new bucket
                for fn, args in bucket:
                    fn(*args)
                self.events += len(bucket)
            self._wake = trio.Event()
            deadline = self._ticks[0] * self.tick if self._ticks else math.inf
            with trio.move_on_at(deadline):
                await self._wake.wait()

    def idle(self) -> bool:
        """No gossip copy in flight (timers such as periodic repair may still be scheduled)."""
        return self.in_flight == 0

    # -- gossip ------------------------------------------------------------------------
    def new_message(self, topic: str, data: bytes, origin: int) -> int:
        self.messages.append(Message(topic, data, origin, trio.current_time()))
        return len(self.messages) - 1

    def mark_seen(self, node: int, msg: int) -> bool:
        """Mark ``msg`` seen at ``node``; False if it was already."""
        seen = self.seen[node]
        byte, bit = msg >> 3, 1 << (msg & 7)
        if byte >= len(seen):
            seen.extend(bytes(byte + 1 - len(seen)))
        if seen[byte] & bit:
            return False
        seen[byte] |= bit
        return True

    def has_seen(self, node: int, msg: int) -> bool:
        seen = self.seen[node]
        byte = msg >> 3
        return byte < len(seen) and bool(seen[byte] & (1 << (msg & 7)))

    def forward(self, node: int, msg: int, came_from: int) -> None:
        """Send a copy of ``msg`` to every mesh neighbour of ``node`` but ``came_from`` and the origin."""
        m = self.messages[msg]
        size = len(m.data) + RPC_OVERHEAD
        loss, seed = self.loss, self.seed
        sent = 0
        for b, lat in zip(self.adj[node], self.lats[node]):
            if b == came_from or b == m.origin:
                continue
            sent += 1
            if loss and chance(seed, node, b, msg) < loss:
                self.lost += 1
                continue
            self.in_flight += 1
            self.schedule(lat, self._arrive, b, msg, node)
        self.gossip_sent[node] += sent
        self.gossip_bytes[node] += sent * size

    def _arrive(self, node: int, msg: int, sender: int) -> None:
        self.in_flight -= 1
        if not self.up[node]:
            return
        if not self.mark_seen(node, msg):
            self.duplicates += 1
            return
        real = self.real.get(node)
        if real is not None:
            ok = real.gossip._receive(self.messages[msg], self.names[sender])
        else:
            ok = self.light_accept(node, msg, sender)
        if ok:
            self.delivered += 1
            self.forward(node, msg, sender)

    def publish(self, node: int, topic: str, data: bytes) -> int:
        """A light node's publish: seen at the origin and pushed to its mesh."""
        msg = self.new_message(topic, data, node)
        self.mark_seen(node, msg)
        if self.up[node]:
            self.forward(node, msg, -1)
        return msg

    # -- request/response ----------------------------------------------------------------
    async def request(self, src: int, peer: str, spec: ProtocolSpec, payload: object, *,
                      timeout: float | None = None, attempt: int = 0) -> object:
        """One request from ``src`` over the link to ``peer``: latency each way, each way lost with ``loss``."""
        data = encode_request(spec, payload)
        deadline = spec.timeout if timeout is None else timeout
        dst = self.index.get(peer)
        if dst is None or dst == src or dst not in set(self.adj[src]):
            raise PeerUnreachable(f"no link to {peer}")
        self.rr_sent[src] += 1
        self.rr_bytes[src] += len(data) + RR_OVERHEAD
        lat = self.latency(src, dst)
        try:
            with trio.fail_after(deadline):
                if not self.up[src] or not self.up[dst]:
                    raise PeerUnreachable(f"cannot reach {peer}")
                if self.loss and chance(self.seed, src, dst, -1 - 2 * attempt) < self.loss:
                    await trio.sleep_forever()  # the request is lost: the caller times out
                await trio.sleep(lat)
                if not self.up[dst]:
                    raise PeerUnreachable(f"{peer} went away")
                frame = await self._serve(src, dst, spec, data)
                self.rr_bytes[dst] += len(frame) + RR_OVERHEAD
                self.rr_sent[dst] += 1
                if self.loss and chance(self.seed, dst, src, -2 - 2 * attempt) < self.loss:
                    await trio.sleep_forever()  # the reply is lost
                await trio.sleep(lat)
                if not self.up[src] or not self.up[dst]:
                    raise PeerUnreachable(f"{peer} went away")
        except trio.TooSlowError:
            raise RequestTimeout(f"{spec.name}: no answer from {peer} within {deadline}s") from None
        if len(frame) > spec.max_response_size:
            raise BadResponse(f"{spec.name}: response of {len(frame)} bytes from {peer} is over the limit")
        return _parse_reply(spec, peer, frame)

    async def _serve(self, src: int, dst: int, spec: ProtocolSpec, data: bytes) -> bytes:
        node = self.real.get(dst)
        if node is not None:
            reg = node.rr._handlers.get(spec.name)
            if reg is None:
                raise ProtocolNotSupported(f"{self.names[dst]} does not support {spec.name}")
            handler = reg[1]
            server_spec = reg[0]
        else:
            light = self.light_rr.get(spec.name)
            if light is None:
                raise ProtocolNotSupported(f"{self.names[dst]} does not support {spec.name}")
            server_spec = spec

            async def handler(request):  # type: ignore[no-untyped-def]
                return await light(dst, request.peer, request.payload)
        if len(data) > server_spec.max_request_size:
            raise BadResponse(f"{spec.name}: {self.names[dst]} closed the stream")
        return await handle_frame(server_spec, handler, self.names[src], data)

    # -- figures -----------------------------------------------------------------------
    def ideal_times(self, src: int) -> list[float]:
        return overlay.shortest_times(self.adj, self.lats, src, self.up)


class SimNode:
    """A real node's ports: what :class:`~yagna.market_service.offers.OfferDirectory` takes."""

    def __init__(self, net: SimNetwork, i: int) -> None:
        self.index = i
        self.node_id = net.names[i]
        self.gossip = SimGossip(net, i)
        self.rr = SimRequestResponse(net, i)
        self.peers = SimPeers(net, i)


class SimGossip:
    """GossipPort over the simulated mesh (validators, admission and subscribers as in :mod:`yagna.net.gossip`)."""

    def __init__(self, net: SimNetwork, i: int) -> None:
        self._net = net
        self._i = i
        self._me = net.names[i]
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._validators: dict[str, Validator] = {}
        self._invalid_hooks: dict[str, InvalidHook] = {}
        self.admission = Admission(clock=trio.current_time)
        self.refusals = RefusalCounter()
        self.dropped = 0
        self.delivered = 0
        self.published = 0

    def set_limits(self, topic: str, limits: TopicLimits) -> None:
        self.admission.set_limits(topic, limits)

    def set_validator(self, topic: str, validator: Validator, *, on_invalid: InvalidHook | None = None) -> None:
        self._validators[topic] = validator
        if on_invalid is not None:
            self._invalid_hooks[topic] = on_invalid

    async def publish(self, topic: str, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"gossip data must be bytes, not {type(data).__name__}")
        limit = min(MAX_GOSSIP_SIZE, self.admission.limits(topic).max_size)
        if len(data) > limit:
            raise GossipError(f"gossip message of {len(data)} bytes is over {limit} on {topic}")
        await trio.lowlevel.checkpoint()
        self.published += 1
        if not self._accepts(topic, self._me, data, self._me):
            return
        msg = self._net.new_message(topic, data, self._i)
        self._net.mark_seen(self._i, msg)
        if self._net.up[self._i]:
            self._net.forward(self._i, msg, -1)

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        await trio.lowlevel.checkpoint()
        send, recv = trio.open_memory_channel[GossipMessage](SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(topic, []).append(send)
        return recv

    def topic_peers(self, topic: str) -> list[str]:
        return [self._net.names[b] for b in self._net.live_neighbours(self._i)]

    def topics(self) -> list[str]:
        return sorted(self._subscribers)

    def _accepts(self, topic: str, origin: str, data: bytes, forwarder: str) -> bool:
        if forwarder != self._me and self.admission.admit(forwarder, topic, len(data)) is not None:
            self.refusals.add(forwarder)
            return False
        validator = self._validators.get(topic)
        if validator is None:
            return True
        try:
            ok = bool(validator(Inbound(topic, origin, forwarder, data)))
            if not ok:
                self.refusals.add(forwarder)
            return ok
        except GossipInvalid as exc:
            self.refusals.add(forwarder)
            hook = self._invalid_hooks.get(topic)
            if hook is not None:
                hook(forwarder, exc)
            return False
        except Exception:
            log.exception("gossip validator for %s failed; message dropped", topic)
            return False

    def _receive(self, m: Message, forwarder: str) -> bool:
        """Validate and deliver; True if the message is to be forwarded."""
        if m.topic not in self._subscribers:
            return False
        if not self._accepts(m.topic, self._net.names[m.origin], m.data, forwarder):
            return False
        item = GossipMessage(topic=m.topic, data=m.data, origin=self._net.names[m.origin])
        alive = []
        for send in self._subscribers[m.topic]:
            try:
                send.send_nowait(item)
                self.delivered += 1
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue
            alive.append(send)
        self._subscribers[m.topic] = alive
        return True


class SimRequestResponse:
    """RequestResponsePort over the simulated links."""

    def __init__(self, net: SimNetwork, i: int) -> None:
        self._net = net
        self._i = i
        self._handlers: dict[str, tuple[ProtocolSpec, Handler]] = {}
        self._attempts: dict[str, int] = {}

    def register(self, spec: ProtocolSpec, handler: Handler) -> None:
        self._handlers[spec.name] = (spec, handler)

    async def request(self, peer: str, spec: ProtocolSpec, payload: object, *, timeout: float | None = None) -> object:
        attempt = self._attempts.get(peer, 0)
        self._attempts[peer] = attempt + 1
        await trio.lowlevel.checkpoint()
        return await self._net.request(self._i, peer, spec, payload, timeout=timeout, attempt=attempt)


class SimPeers:
    """PeersPort: connected peers are the live mesh neighbours; ``on_connect`` fires when one (re)joins."""

    def __init__(self, net: SimNetwork, i: int) -> None:
        self._net = net
        self._i = i
        self._listeners: list[Callable[[str], Awaitable[None]]] = []
        self.bans: dict[str, float] = {}
        self._send, self._recv = trio.open_memory_channel[str](math.inf)

    def connected_peers(self) -> list[str]:
        return [self._net.names[b] for b in self._net.live_neighbours(self._i)]

    def on_connect(self, listener: Callable[[str], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    def ban(self, node_id: str, seconds: float) -> None:
        self.bans[node_id] = seconds

    def is_banned(self, node_id: str) -> bool:
        return node_id in self.bans

    def _connected(self, peer: str) -> None:
        self._send.send_nowait(peer)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for peer in self._recv:
                for listener in self._listeners:
                    nursery.start_soon(listener, peer)


__all__ = ["Message", "SimGossip", "SimNetwork", "SimNode", "SimPeers", "SimRequestResponse", "chance"]
