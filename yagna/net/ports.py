"""The network ports the services use, as typed Protocols.

The market, activity and payment shells take these, never the libp2p classes:
:class:`~yagna.net.reqresp.RequestResponse`, :class:`~yagna.net.gossip.Gossip`
and :class:`~yagna.net.peers.PeerManager` implement them over libp2p, and
:mod:`yagna.net.memory` implements them in memory; both pass the conformance
suite (``tests/net/test_conformance.py``) and mypy checks both against these
(``tests/net/test_ports.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from yagna.net.gossip import GossipMessage, InvalidHook, Validator
from yagna.net.limits import TopicLimits
from yagna.net.reqresp import Handler, ProtocolSpec


class RequestResponsePort(Protocol):
    """Framed CBOR request/response: one request, one reply, typed errors."""

    def register(self, spec: ProtocolSpec, handler: Handler) -> None: ...

    async def request(
        self, peer: str, spec: ProtocolSpec, payload: object, *, timeout: float | None = None
    ) -> object:
        """The peer's ``ok`` payload; raises a :class:`~yagna.net.errors.RequestError` subclass otherwise."""
        ...


class GossipPort(Protocol):
    """Broadcast topics with validation and per-forwarder limits before delivery and relaying."""

    def set_validator(self, topic: str, validator: Validator, *, on_invalid: InvalidHook | None = None) -> None: ...

    def set_limits(self, topic: str, limits: TopicLimits) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None: ...

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]: ...

    def topic_peers(self, topic: str) -> list[str]: ...

    def topics(self) -> list[str]: ...


class PeersPort(Protocol):
    """What services need of the peer manager."""

    def connected_peers(self) -> list[str]: ...

    def on_connect(self, listener: Callable[[str], Awaitable[None]]) -> None: ...

    def ban(self, node_id: str, seconds: float) -> None: ...

    def is_banned(self, node_id: str) -> bool: ...
