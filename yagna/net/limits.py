"""Per-peer bounds of the network layer: what one peer can make this node hold or do.

The figures and their reasons are listed in docs/bounds.md; this module holds
the mechanisms (a token bucket, per-forwarder topic admission) and the
network layer's defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED_PEERS = 4096
"""Per-peer counters kept at most (rate buckets, refusal counts); idle ones are evicted first."""


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; :meth:`take` is all-or-nothing."""

    __slots__ = ("burst", "rate", "_tokens", "_at")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self, now: float, n: float = 1.0) -> bool:
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.burst


@dataclass(frozen=True)
class TopicLimits:
    """What one forwarding peer may hand us on one topic."""

    max_size: int
    """Largest message accepted (bytes of data)."""
    messages_per_s: float
    bytes_per_s: float
    burst_s: float = 2.0
    """Bursts of up to this many seconds' worth are allowed."""


DEFAULT_TOPIC_LIMITS = TopicLimits(max_size=1000 * 1024, messages_per_s=1000, bytes_per_s=8 * 1024 * 1024)
"""Any topic without limits of its own (protocol topics set theirs)."""


class Admission:
    """Per (forwarder, topic) token buckets for messages and bytes, bounded in memory."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED_PEERS) -> None:
        self._clock = clock
        self._max_tracked = max_tracked
        self._limits: dict[str, TopicLimits] = {}
        self._buckets: dict[tuple[str, str], tuple[TokenBucket, TokenBucket]] = {}

    def set_limits(self, topic: str, limits: TopicLimits) -> None:
        self._limits[topic] = limits

    def limits(self, topic: str) -> TopicLimits:
        return self._limits.get(topic, DEFAULT_TOPIC_LIMITS)

    def admit(self, forwarder: str, topic: str, size: int) -> str | None:
        """None if the message may go on to validation, else the reason it is dropped."""
        limits = self.limits(topic)
        if size > limits.max_size:
            return "oversized"
        now = self._clock()
        key = (forwarder, topic)
        pair = self._buckets.get(key)
        if pair is None:
            if len(self._buckets) >= self._max_tracked:
                self._evict(now)
            pair = self._buckets[key] = (
                TokenBucket(limits.messages_per_s * limits.burst_s, limits.messages_per_s, now),
                TokenBucket(limits.bytes_per_s * limits.burst_s, limits.bytes_per_s, now),
            )
        messages, volume = pair
        if not messages.take(now) or not volume.take(now, size):
            return "rate_limited"
        return None

    def _evict(self, now: float) -> None:
        idle = [k for k, (m, v) in self._buckets.items() if m.full(now) and v.full(now)]
        for k in idle or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]


class RefusalCounter:
    """Messages refused per peer, bounded: the busiest offenders are kept."""

    def __init__(self, *, max_tracked: int = MAX_TRACKED_PEERS) -> None:
        self._max_tracked = max_tracked
        self.total = 0
        self.by_peer: dict[str, int] = {}

    def add(self, peer: str) -> int:
        self.total += 1
        if peer not in self.by_peer and len(self.by_peer) >= self._max_tracked:
            smallest = min(self.by_peer, key=self.by_peer.__getitem__)
            del self.by_peer[smallest]
        count = self.by_peer[peer] = self.by_peer.get(peer, 0) + 1
        return count
