"""In-memory twin of the network's request/response and broadcast interfaces.

For unit tests of the sans-io cores (market, payments, exe-unit) without
sockets: one :class:`MemoryHub` per test, one :class:`MemoryNode` per
simulated daemon::

    hub = MemoryHub()
    provider, requestor = hub.node(), hub.node()
    provider.rr.register(SPEC, handler)
    reply = await requestor.rr.request(provider.node_id, SPEC, {"hello": 1})

``node.rr`` and ``node.gossip`` have the methods and the semantics of
:class:`~yagna.net.reqresp.RequestResponse` and :class:`~yagna.net.gossip.Gossip`
(``tests/net/test_conformance.py`` runs the same tests against both):

* payloads go through canonical CBOR (:mod:`yagna.core.wire`) with the spec's
  size limits, so a value that cannot be encoded raises ``EncodeError`` and a
  tuple arrives as a list;
* a handler's :class:`RequestRejected` reaches the caller as
  :class:`RemoteError` with its code and message, any other exception as
  ``RemoteError("internal", ...)``; an unknown or disconnected peer is
  :class:`PeerUnreachable`, an unregistered protocol
  :class:`ProtocolNotSupported`, a late answer :class:`RequestTimeout`;
* gossip is never delivered back to its publisher, validators (the
  publisher's own included) run before delivery, oversized or non-bytes
  publishes are refused.

Deliberate differences, all in the direction of determinism: there is no
transport, so nothing is lost; a handler runs in the caller's task
(cancelling the request cancels the handler, where the real server lets it
run until its own deadline); gossip is delivered before ``publish`` returns,
to every connected subscriber (one full mesh), in publish order. The real
network promises no gossip order (py-libp2p handles each incoming message in
its own task, and relayed copies race the original): code under test must
not rely on it. Time is trio's clock, so tests may use ``autojump_clock``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from yagna.core.errors import WireError
from yagna.core.identity import NodeKey
from yagna.net.errors import (
    BadResponse,
    GossipError,
    GossipInvalid,
    PeerUnreachable,
    ProtocolNotSupported,
    RequestRejected,
    RequestTimeout,
)
from yagna.net.gossip import MAX_GOSSIP_SIZE, SUBSCRIBER_QUEUE, GossipMessage, Inbound, InvalidHook, Validator
from yagna.net.limits import Admission, RefusalCounter, TopicLimits
from yagna.net.reqresp import Handler, ProtocolSpec, _parse_reply, encode_request, handle_frame

__all__ = ["MemoryGossip", "MemoryHub", "MemoryNode", "MemoryPeers", "MemoryRequestResponse"]

log = logging.getLogger("yagna.net.memory")


class MemoryHub:
    """A simulated network: every connected node reaches every other one."""

    def __init__(self) -> None:
        self._nodes: dict[str, MemoryNode] = {}
        self._down: set[str] = set()

    def node(self, node_id: str | None = None) -> MemoryNode:
        """A new endpoint; ``node_id`` defaults to the id of a fresh ed25519 key."""
        if node_id is None:
            node_id = NodeKey.generate().node_id
        if node_id in self._nodes:
            raise ValueError(f"node {node_id} already exists in this hub")
        node = MemoryNode(self, node_id)
        self._nodes[node_id] = node
        self._announce(node_id)
        return node

    def disconnect(self, node_id: str) -> None:
        """The node vanishes: nobody reaches it, it reaches nobody, gossip skips it."""
        self._require(node_id)
        self._down.add(node_id)

    def reconnect(self, node_id: str) -> None:
        """Undo :meth:`disconnect` (messages published meanwhile are not replayed)."""
        self._require(node_id)
        if node_id in self._down:
            self._down.discard(node_id)
            self._announce(node_id)

    def _announce(self, node_id: str) -> None:
        """Tell both ends of every link ``node_id`` now has that they are connected."""
        for peer in self.peers_of(node_id):
            self._nodes[peer].peers._connected(node_id)
            self._nodes[node_id].peers._connected(peer)

    def connected(self, node_id: str) -> bool:
        return node_id in self._nodes and node_id not in self._down

    def peers_of(self, node_id: str) -> list[str]:
        """Connected nodes other than ``node_id`` (none if it is disconnected)."""
        if not self.connected(node_id):
            return []
        return sorted(n for n in self._nodes if n != node_id and self.connected(n))

    def _require(self, node_id: str) -> None:
        if node_id not in self._nodes:
            raise KeyError(f"no node {node_id} in this hub")

    def _get(self, node_id: str) -> MemoryNode:
        return self._nodes[node_id]


class MemoryNode:
    """One simulated daemon: ``node_id``, ``rr``, ``gossip`` and ``peers``."""

    def __init__(self, hub: MemoryHub, node_id: str) -> None:
        self.hub = hub
        self.node_id = node_id
        self.rr = MemoryRequestResponse(hub, node_id)
        self.gossip = MemoryGossip(hub, node_id)
        self.peers = MemoryPeers(hub, node_id)

    def __repr__(self) -> str:
        return f"MemoryNode({self.node_id!r})"


@dataclass(frozen=True)
class _Registration:
    spec: ProtocolSpec
    handler: Handler
    limiter: trio.CapacityLimiter


class MemoryRequestResponse:
    """Twin of :class:`yagna.net.reqresp.RequestResponse`."""

    def __init__(self, hub: MemoryHub, node_id: str) -> None:
        self._hub = hub
        self._me = node_id
        self._handlers: dict[str, _Registration] = {}

    def register(self, spec: ProtocolSpec, handler: Handler) -> None:
        self._handlers[spec.name] = _Registration(spec, handler, trio.CapacityLimiter(spec.concurrency))

    async def request(
        self,
        peer: str,
        spec: ProtocolSpec,
        payload: object,
        *,
        timeout: float | None = None,
    ) -> object:
        data = encode_request(spec, payload)
        deadline = spec.timeout if timeout is None else timeout
        try:
            with trio.fail_after(deadline):
                frame = await self._exchange(peer, spec, data)
        except trio.TooSlowError:
            raise RequestTimeout(f"{spec.name}: no answer from {peer} within {deadline}s") from None
        if len(frame) > spec.max_response_size:
            raise BadResponse(
                f"{spec.name}: bad response frame from {peer}: frame of {len(frame)} bytes "
                f"is over the limit of {spec.max_response_size}"
            )
        return _parse_reply(spec, peer, frame)

    async def _exchange(self, peer: str, spec: ProtocolSpec, data: bytes) -> bytes:
        await trio.lowlevel.checkpoint()
        self._check_link(peer)
        registration = self._hub._get(peer).rr._handlers.get(spec.name)
        if registration is None:
            raise ProtocolNotSupported(f"{peer} does not support {spec.name}")
        server_spec = registration.spec
        closed = BadResponse(f"{spec.name}: {peer} closed the stream without answering")
        if len(data) > server_spec.max_request_size:
            raise closed  # the server resets a stream whose frame is over its limit
        with trio.move_on_after(server_spec.timeout) as server_deadline:
            async with registration.limiter:
                reply = await handle_frame(server_spec, registration.handler, self._me, data)
        if server_deadline.cancelled_caught:
            raise closed  # the server gave up at its own deadline and reset the stream
        self._check_link(peer)  # a peer that vanished meanwhile never answers
        return reply

    def _check_link(self, peer: str) -> None:
        if peer == self._me or not self._hub.connected(peer) or not self._hub.connected(self._me):
            raise PeerUnreachable(f"cannot reach {peer}")




class MemoryGossip:
    """Twin of :class:`yagna.net.gossip.Gossip`."""

    def __init__(self, hub: MemoryHub, node_id: str) -> None:
        self._hub = hub
        self._me = node_id
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._validators: dict[str, Validator] = {}
        self._invalid_hooks: dict[str, InvalidHook] = {}
        self.admission = Admission()
        self.refusals = RefusalCounter()
        self.dropped = 0
        self.delivered = 0
        self.published = 0

    @property
    def rejected(self) -> int:
        return self.refusals.total

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
            raise GossipError(
                f"gossip message of {len(data)} bytes is over {limit} on {topic}; send bulk data over a stream"
            )
        await trio.lowlevel.checkpoint()
        self.published += 1
        if not self._accepts(topic, self._me, data, self._me):
            return  # like pubsub: one's own validator also gates one's own publish
        item = GossipMessage(topic=topic, data=data, origin=self._me)
        for peer in self._hub.peers_of(self._me):
            self._hub._get(peer).gossip._receive(item)

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        await trio.lowlevel.checkpoint()
        send, recv = trio.open_memory_channel[GossipMessage](SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(topic, []).append(send)
        return recv

    def topic_peers(self, topic: str) -> list[str]:
        return [p for p in self._hub.peers_of(self._me) if topic in self._hub._get(p).gossip._subscribers]

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

    def _receive(self, item: GossipMessage) -> None:
        # one full mesh: the forwarder is always the origin
        if item.topic not in self._subscribers or not self._accepts(item.topic, item.origin, item.data, item.origin):
            return
        alive = []
        for send in self._subscribers[item.topic]:
            try:
                send.send_nowait(item)
                self.delivered += 1
            except trio.WouldBlock:
                self.dropped += 1
                log.warning("gossip reader on %s is too slow; message dropped", item.topic)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue
            alive.append(send)
        self._subscribers[item.topic] = alive


class MemoryPeers:
    """Twin of the part of :class:`~yagna.net.peers.PeerManager` services use.

    ``connected_peers``, ``on_connect`` (listeners run in :meth:`run`'s nursery,
    once per new link, including links that existed before ``run``) and
    ``ban`` (recorded in :attr:`bans`; the hub has no per-link state, so a
    banned peer stays reachable: tests assert on the record).
    """

    def __init__(self, hub: MemoryHub, node_id: str) -> None:
        self._hub = hub
        self._me = node_id
        self._listeners: list[Callable[[str], Awaitable[None]]] = []
        self.bans: dict[str, float] = {}
        self._send, self._recv = trio.open_memory_channel[str](math.inf)

    def connected_peers(self) -> list[str]:
        return self._hub.peers_of(self._me)

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
