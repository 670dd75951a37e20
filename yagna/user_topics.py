"""Gossip topics open to users and scripts (``user/<name>``) through the REST API.

Protocol topics (market offers, ...) carry signed, validated objects and are
not writable from the API; ``user/*`` topics are a diagnostic and scripting
channel: publish a message, read what others published. Each subscribed topic
keeps the last ``keep`` messages (and at most ``keep_bytes`` of data) in memory
with increasing sequence numbers so pollers can ask for "messages after N".

Bounds (issue 11, row 6: 300 x 900 KB messages grew a node by 180 MB): a
user message is at most :data:`MAX_USER_MESSAGE` bytes, one forwarding peer
may hand us :data:`USER_TOPIC_LIMITS` worth per topic, a node follows at most
:data:`MAX_USER_TOPICS` user topics, and what it keeps is bounded by count and
bytes per topic.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import trio

from yagna.config import ConfigError
from yagna.net.gossip import Gossip
from yagna.net.limits import TopicLimits

TOPIC_RE = re.compile(r"^user/[A-Za-z0-9._-]{1,64}$")
MAX_USER_MESSAGE = 64 * 1024
USER_TOPIC_LIMITS = TopicLimits(max_size=MAX_USER_MESSAGE, messages_per_s=20, bytes_per_s=256 * 1024)
"""Per forwarding peer and topic: a chat or scripting channel, not a bulk transport."""
MAX_USER_TOPICS = 64
KEEP_MESSAGES = 1000
KEEP_BYTES = 4 * 1024 * 1024


class TopicNameError(ConfigError):
    """A user topic name is not of the form user/<name>."""


def check_topic(topic: str) -> str:
    if not TOPIC_RE.match(topic):
        raise TopicNameError(
            f"topic {topic!r} is not allowed: use user/<name> with letters, digits, '.', '_' or '-'"
        )
    return topic


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    origin: str
    data: bytes
    received_at: float


class TooManyTopics(TopicNameError):
    """This node already follows :data:`MAX_USER_TOPICS` user topics."""


class UserTopics:
    def __init__(self, gossip: Gossip, nursery: trio.Nursery, *, keep: int = KEEP_MESSAGES,
                 keep_bytes: int = KEEP_BYTES) -> None:
        self._gossip = gossip
        self._nursery = nursery
        self._keep = keep
        self._keep_bytes = keep_bytes
        self._messages: dict[str, deque[StoredMessage]] = {}
        self._bytes: dict[str, int] = {}
        self._seq = 0
        self._lock = trio.Lock()

    def subscribed(self) -> list[str]:
        return sorted(self._messages)

    async def subscribe(self, topic: str) -> None:
        check_topic(topic)
        async with self._lock:
            if topic in self._messages:
                return
            if len(self._messages) >= MAX_USER_TOPICS:
                raise TooManyTopics(f"this node already follows {MAX_USER_TOPICS} user topics; unsubscribe one first")
            self._gossip.set_limits(topic, USER_TOPIC_LIMITS)
            self._messages[topic] = deque()
            self._bytes[topic] = 0
            channel = await self._gossip.subscribe(topic)
            self._nursery.start_soon(self._collect, topic, channel)

    async def publish(self, topic: str, data: bytes) -> None:
        check_topic(topic)
        self._gossip.set_limits(topic, USER_TOPIC_LIMITS)  # refuses oversized data before sending
        await self._gossip.publish(topic, data)

    def peers(self, topic: str) -> list[str]:
        """Peers known to be subscribed to ``topic`` (a publish reaches them)."""
        check_topic(topic)
        return self._gossip.topic_peers(topic)

    def messages(self, topic: str, after: int = 0) -> list[StoredMessage]:
        check_topic(topic)
        return [m for m in self._messages.get(topic, ()) if m.seq > after]

    async def _collect(self, topic: str, channel: trio.MemoryReceiveChannel) -> None:  # type: ignore[type-arg]
        async with channel:
            async for msg in channel:
                self._seq += 1
                kept = self._messages[topic]
                kept.append(StoredMessage(self._seq, msg.origin, msg.data, msg.received_at))
                self._bytes[topic] += len(msg.data)
                while len(kept) > self._keep or self._bytes[topic] > self._keep_bytes:
                    self._bytes[topic] -= len(kept.popleft().data)

