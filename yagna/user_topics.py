"""Gossip topics open to users and scripts (``user/<name>``) through the REST API.

Protocol topics (market offers, ...) carry signed, validated objects and are
not writable from the API; ``user/*`` topics are a diagnostic and scripting
channel: publish a message, read what others published. Each subscribed topic
keeps the last ``keep`` messages in memory with increasing sequence numbers so
pollers can ask for "messages after N".
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import trio

from yagna.config import ConfigError
from yagna.net.gossip import Gossip

TOPIC_RE = re.compile(r"^user/[A-Za-z0-9._-]{1,64}$")


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


class UserTopics:
    def __init__(self, gossip: Gossip, nursery: trio.Nursery, *, keep: int = 1000) -> None:
        self._gossip = gossip
        self._nursery = nursery
        self._keep = keep
        self._messages: dict[str, deque[StoredMessage]] = {}
        self._seq = 0
        self._lock = trio.Lock()

    def subscribed(self) -> list[str]:
        return sorted(self._messages)

    async def subscribe(self, topic: str) -> None:
        check_topic(topic)
        async with self._lock:
            if topic in self._messages:
                return
            self._messages[topic] = deque(maxlen=self._keep)
            channel = await self._gossip.subscribe(topic)
            self._nursery.start_soon(self._collect, topic, channel)

    async def publish(self, topic: str, data: bytes) -> None:
        check_topic(topic)
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
                self._messages[topic].append(
                    StoredMessage(self._seq, msg.origin, msg.data, msg.received_at)
                )
