"""Broadcast topics over GossipSub, with the library's silent-drop traps handled.

py-libp2p 0.8.1 gossip defaults and what we do about them (lab report §4):

* heartbeat every 120 s -> 1 s, so mesh repair and IHAVE/IWANT gossip run often;
* spam protection drops over 10 msg/s per topic per *forwarder* (a relay that
  forwards many publishers' offers is throttled too) -> off; per-sender rate and
  size caps belong to the topic's validator (the market enforces them);
* a 32-RPC outbound queue per peer rejects bursts -> publishes go through one
  sender task that yields between messages;
* a 32-message subscription channel drops for a slow reader -> one drain task
  per topic moves messages into bounded per-subscriber channels, counting drops;
* own messages come back on our subscription -> filtered out;
* a ~1 MiB message is dropped silently by the sender -> refused with
  :class:`GossipError` before publishing;
* its signature validator *raises* on some garbage, inside a task whose
  exception ends the pubsub service and the node -> every message from a peer
  passes our own checks first, then per-forwarder admission (size, messages
  and bytes per second per topic, :mod:`yagna.net.limits`), and the library
  runs inside a boundary (:mod:`yagna.net.pubsub_guard`).

A peer that keeps sending malformed messages is banned (``ban`` hook, set by
the network to the peer manager's).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11
from libp2p.tools.anyio_service import background_trio_service

from yagna.net.errors import GossipError, GossipInvalid
from yagna.net.limits import Admission, RefusalCounter, TopicLimits
from yagna.net import pubsub_fast
from yagna.net.pubsub_fast import FastGossipSub
from yagna.net.pubsub_guard import GuardedPubsub, guard_task_spawns, node_id

log = logging.getLogger("yagna.net.gossip")

MAX_GOSSIP_SIZE = 1000 * 1024
PUBLISH_QUEUE = 256
SUBSCRIBER_QUEUE = 1024
MALFORMED_BAN_AFTER = 20
"""Malformed pubsub messages (failing our own checks) a peer may send before it is banned."""
MALFORMED_BAN_S = 600.0


@dataclass(frozen=True)
class Inbound:
    """A message from the network before validation."""

    topic: str
    origin: str
    """Node id of the publisher (its signature was checked)."""
    forwarder: str
    """Node id of the peer that handed it to us (the origin itself or a relay)."""
    data: bytes


Validator = Callable[[Inbound], bool]
"""Accept the message? Runs before delivery and before relaying.

A validator may raise :class:`~yagna.net.errors.GossipInvalid` instead of
returning False to say why; the topic's ``on_invalid`` hook then learns the
*forwarder* (the peer that handed us the message) so it can be charged.
"""

InvalidHook = Callable[[str, GossipInvalid], None]
"""(forwarder node id, error) -> None; called for each message a validator refused."""


@dataclass(frozen=True)
class GossipMessage:
    topic: str
    data: bytes
    origin: str
    """Node id of the publisher (pubsub signatures are checked by the library)."""
    received_at: float = field(default_factory=time.time)


class Gossip:
    """Publish/subscribe on named topics. Create it before the host dials anyone."""

    def __init__(self, host: IHost, *, heartbeat_interval: float = 1.0) -> None:
        self._host = host
        self._me = host.get_id().to_bytes()
        pubsub_fast.apply()
        self.router = FastGossipSub(
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=heartbeat_interval,  # type: ignore[arg-type]
            spam_protection_enabled=False,
        )
        self.admission = Admission()
        self.refusals = RefusalCounter()
        self.ban: Callable[[str, float], None] | None = None
        # Must exist before any connection: Pubsub registers its notifee here and
        # never announces subscriptions to peers connected before it existed.
        self.pubsub = GuardedPubsub(
            host, self.router, max_data=MAX_GOSSIP_SIZE, admit=self.admission.admit, refused=self._refused
        )
        # Pubsub's own stream handler raises RuntimeError("Nursery is closed to
        # new arrivals") for a message arriving after the pubsub service stopped
        # but before the host closed; anything escaping a stream handler kills
        # host.run(), so it is wrapped.
        for protocol in self.router.get_protocols():
            host.set_stream_handler(protocol, self._pubsub_stream)
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._publish_send, self._publish_recv = trio.open_memory_channel[tuple[str, bytes]](
            PUBLISH_QUEUE
        )
        self._nursery: trio.Nursery | None = None
        self.dropped = 0
        self.delivered = 0
        self.published = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.pubsub), background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            guard_task_spawns(self.pubsub, "pubsub")
            guard_task_spawns(self.router, "gossipsub")
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sender)
                task_status.started()
                await trio.sleep_forever()

    async def _pubsub_stream(self, stream: INetStream) -> None:
        try:
            await self.pubsub.stream_handler(stream)
        except Exception as exc:  # noqa: BLE001 - stream-handler boundary, see __init__
            log.debug("pubsub stream from %s ended: %r", stream.muxed_conn.peer_id, exc)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.reset()
                except BaseLibp2pError:
                    pass

    @property
    def rejected(self) -> int:
        """Messages from peers dropped before delivery (malformed, over limits, refused by a validator)."""
        return self.refusals.total

    @property
    def rejected_by_peer(self) -> dict[str, int]:
        return self.refusals.by_peer

    def _refused(self, forwarder: str, topic: str, reason: str) -> None:
        count = self.refusals.add(forwarder)
        if count == 1 or count % 100 == 0:
            log.info("gossip from %s refused (%s%s): %s", forwarder, topic or "-", f", {count} so far", reason)
        malformed = reason not in ("rate_limited", "oversized", "validator")
        if malformed and count >= MALFORMED_BAN_AFTER and self.ban is not None:
            self.ban(forwarder, MALFORMED_BAN_S)

    def set_limits(self, topic: str, limits: TopicLimits) -> None:
        """Per-forwarder bounds on ``topic`` (size, messages and bytes per second)."""
        self.admission.set_limits(topic, limits)

    def set_validator(self, topic: str, validator: Validator, *, on_invalid: InvalidHook | None = None) -> None:
        def check(forwarder_id: ID, msg: object) -> bool:
            forwarder = node_id(forwarder_id.to_bytes())
            try:
                ok = bool(validator(Inbound(topic, node_id(msg.from_id), forwarder, msg.data)))  # type: ignore[attr-defined]
                if not ok:
                    self._refused(forwarder, topic, "validator")
                return ok
            except GossipInvalid as exc:
                self._refused(forwarder, topic, "validator")
                if on_invalid is not None:
                    on_invalid(forwarder, exc)
                return False
            except Exception:
                log.exception("gossip validator for %s failed; message dropped", topic)
                return False

        self.pubsub.set_topic_validator(topic, check, False)

    async def publish(self, topic: str, data: bytes) -> None:
        """Queue ``data`` for broadcast; waits while the queue is full (back-pressure)."""
        if not isinstance(data, bytes):
            # checked here: a TypeError in the sender task would end the network service
            raise TypeError(f"gossip data must be bytes, not {type(data).__name__}")
        limit = min(MAX_GOSSIP_SIZE, self.admission.limits(topic).max_size)
        if len(data) > limit:
            raise GossipError(
                f"gossip message of {len(data)} bytes is over {limit} on {topic}; send bulk data over a stream"
            )
        await self._publish_send.send((topic, data))

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """A bounded channel of messages from *other* nodes on ``topic``.

        Close the returned channel to unsubscribe this reader.
        """
        if self._nursery is None:
            raise GossipError("gossip is not running yet")
        send, recv = trio.open_memory_channel[GossipMessage](SUBSCRIBER_QUEUE)
        first = topic not in self._subscribers
        self._subscribers.setdefault(topic, []).append(send)
        if first:
            subscription = await self.pubsub.subscribe(topic)
            self._nursery.start_soon(self._drain, topic, subscription)
        return recv

    def topic_peers(self, topic: str) -> list[str]:
        """Peers known to be subscribed to ``topic``."""
        return sorted(p.to_base58() for p in self.pubsub.peer_topics.get(topic, ()))

    def topics(self) -> list[str]:
        return sorted(self._subscribers)

    async def _sender(self) -> None:
        async for topic, data in self._publish_recv:
            try:
                await self.pubsub.publish(topic, data)
            except BaseLibp2pError as exc:
                log.warning("publish on %s failed: %r", topic, exc)
                continue
            self.published += 1
            await trio.sleep(0.001)  # lets the per-peer RPC queues drain (pitfall 15)

    async def _drain(self, topic: str, subscription: object) -> None:
        while True:
            msg = await subscription.get()  # type: ignore[attr-defined]
            if msg.from_id == self._me:
                continue
            item = GossipMessage(topic=topic, data=msg.data, origin=node_id(msg.from_id))
            alive = []
            for send in self._subscribers.get(topic, []):
                try:
                    send.send_nowait(item)
                    self.delivered += 1
                except trio.WouldBlock:
                    self.dropped += 1
                    log.warning("gossip reader on %s is too slow; message dropped", topic)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    continue
                alive.append(send)
            self._subscribers[topic] = alive
