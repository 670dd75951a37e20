"""Our own checks in front of py-libp2p's pubsub, and a boundary around its tasks.

py-libp2p 0.8.1 runs each received pubsub message in a task of the pubsub
service (``manager.run_task(self.push_msg, ...)``); an exception there ends the
service, and with it the gossip service, the network and the node. Its own
signature validator raises (a protobuf ``DecodeError``) instead of returning
False for a message whose ``from_id`` is not a key-type peer id and whose
``key`` is garbage: one 162-byte message took every receiving node down
(issue 11, row 1).

So every message from a peer passes :func:`check_message` (pure, fuzzed)
before the library sees it: our network is ed25519-only, so ``from_id`` must
be an identity-multihash ed25519 peer id, ``key`` empty or that same key,
``signature`` 64 bytes, one topic, a short ``seqno``, ``data`` within the gossip
limit. Then the per-forwarder admission (rate and bytes per topic) runs, and
only then the library's ``push_msg``, inside a boundary that turns anything
it raises into a counted, logged drop. Every other task the pubsub services
spawn later goes through the same boundary (:func:`guard_task_spawns`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from yagna.net.pubsub_fast import FastPubsub

log = logging.getLogger("yagna.net.gossip")

ED25519_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
"""identity multihash (0x00, length 36) of a protobuf PublicKey {Type: Ed25519, Data: 32 bytes}."""
ED25519_KEY_PREFIX = b"\x08\x01\x12\x20"
MAX_SEQNO = 32
MAX_TOPIC_LEN = 256
SIGNATURE_LEN = 64

Admit = Callable[[str, str, int], "str | None"]
"""(forwarder node id, topic, data size) -> None to admit, or the reason to drop."""
Refused = Callable[[str, str, str], None]
"""(forwarder node id, topic or "", reason) -> None; told of every message we drop."""


def check_message(msg: rpc_pb2.Message, *, max_data: int) -> str | None:
    """None if ``msg`` is well-formed for our network, else why not (never raises)."""
    from_id = msg.from_id
    if len(from_id) != len(ED25519_ID_PREFIX) + 32 or not from_id.startswith(ED25519_ID_PREFIX):
        return "from_id is not an ed25519 peer id"
    if msg.key and msg.key != ED25519_KEY_PREFIX + from_id[len(ED25519_ID_PREFIX):]:
        return "key does not match from_id"
    if len(msg.signature) != SIGNATURE_LEN:
        return "signature is not 64 bytes"
    if not 1 <= len(msg.seqno) <= MAX_SEQNO:
        return "bad seqno"
    if len(msg.topicIDs) != 1 or not 0 < len(msg.topicIDs[0]) <= MAX_TOPIC_LEN:
        return "a message must name exactly one topic"
    if len(msg.data) > max_data:
        return "data over the gossip size limit"
    return None


@functools.lru_cache(maxsize=4096)
def node_id(raw: bytes) -> str:
    """Base58 node id of a raw peer id (``ID.to_base58`` re-encodes, in pure Python, on every call)."""
    return ID(raw).to_base58()


def origin_of(msg: rpc_pb2.Message) -> str:
    """Node id of a message that passed :func:`check_message`."""
    return node_id(msg.from_id)


class GuardedPubsub(FastPubsub):
    """py-libp2p's Pubsub (with :mod:`yagna.net.pubsub_fast`'s cheaper per-message path) with our checks before ``push_msg`` and a boundary around it."""

    def __init__(self, *args: Any, max_data: int, admit: Admit, refused: Refused, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_data = max_data
        self._admit = admit
        self._refused = refused

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        mine = msg_forwarder == self.my_id
        try:
            if not mine:
                forwarder = node_id(msg_forwarder.to_bytes())
                reason = check_message(msg, max_data=self._max_data)
                topic = msg.topicIDs[0] if reason is None else ""
                if reason is None:
                    reason = self._admit(forwarder, topic, len(msg.data))
                if reason is not None:
                    self._refused(forwarder, topic, reason)
                    return
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:  # noqa: BLE001 - library boundary, see the module docstring
            if mine:
                raise
            log.warning("pubsub message from %s dropped: the library raised %r", msg_forwarder, exc)
            self._refused(msg_forwarder.to_base58(), "", f"library error: {type(exc).__name__}")

    async def _handle_new_peer(self, peer_id: ID) -> None:
        """The library's, then the subscriptions it missed (a race in py-libp2p 0.8.1).

        It builds the hello packet (our subscriptions) before it awaits the write
        and only then adds the peer to ``peers``; a subscribe in between is
        announced to ``peers`` without it, and the peer never learns of that
        subscription: gossip on the topic skips it for good. (Flaked about 1 in
        4 runs of the gossip conformance tests, and in CI.)
        """
        before = set(self.topic_ids)
        await super()._handle_new_peer(peer_id)
        queue = self.peer_queues.get(peer_id)
        if queue is None:
            return
        for topic in set(self.topic_ids) - before:
            packet, subopt = self._build_announce_rpc(topic, subscribe=True)
            self._enqueue_or_retry_announce(peer_id, queue, packet, subopt)

    def handle_subscription(self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts) -> None:
        try:
            if len(sub_message.topicid) > MAX_TOPIC_LEN:
                self._refused(origin_id.to_base58(), "", "topic name too long")
                return
            super().handle_subscription(origin_id, sub_message)
        except Exception as exc:  # noqa: BLE001 - library boundary
            log.warning("subscription from %s dropped: the library raised %r", origin_id, exc)
            self._refused(origin_id.to_base58(), "", f"library error: {type(exc).__name__}")


def guard_task_spawns(service: Any, name: str) -> None:
    """Make every task the running ``service`` spawns from now on end in a log line, not a crash.

    The library's task manager cancels the whole service when one task raises;
    a task serving one peer must not end the service of all peers.
    """
    manager = service.manager
    original = manager.run_task

    @functools.wraps(original)
    def run_task(async_fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        @functools.wraps(async_fn)
        async def guarded(*a: Any) -> None:
            try:
                await async_fn(*a)
            except Exception as exc:  # noqa: BLE001 - library boundary
                log.warning("%s task %s failed: %r", name, getattr(async_fn, "__name__", async_fn), exc)

        original(guarded, *args, **kwargs)

    manager.run_task = run_task

