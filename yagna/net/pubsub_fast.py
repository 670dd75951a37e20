"""Cheaper per-message work in py-libp2p 0.8.1's pubsub, same semantics (issue 12).

Profiled on a requestor daemon ingesting offers from many providers
(``bench/market_burst.py``, docs/decisions.md "Offer ingest from many
providers"), py-libp2p's pubsub path cost ~2 ms of CPU per message, most of it
per-message Python around the real work. What this module changes, each piece
separable (written to be proposed upstream one by one):

* **inbound reads** (:meth:`FastPubsub.continuously_read_stream`): RPCs are
  cut out of a local buffer filled by reads of up to :data:`READ_SIZE` bytes;
  the stock loop reads the varint length prefix one byte per ``stream.read``
  (each a trip through NetStream and Yamux locks). The prefix is checked
  against ``max_inbound_rpc_size`` before the body is read, as before
  (``MessageTooLarge`` resets the stream); a varint over 10 bytes is the same
  ``ParseError``. The buffer holds at most one read plus one partial RPC.
* **one task per read, not per message**: the publish messages of every RPC
  already in the buffer go to one task that runs ``push_msg`` on each in turn
  (the stock loop spawns a task per message); at most :data:`BATCH_MAX`
  messages per task, with a checkpoint between two messages, and a short wait
  while the topic's 32-message subscription channel is half full, so its
  reader keeps up as it did with the slower stock loop (it drops when full). Subscriptions and control are handled in the loop, in
  order, as before.
* **outbound writes** (:meth:`FastPubsub.handle_sending_messages`): the RPCs
  queued for a peer are written with one ``stream.write`` (one Yamux frame,
  one Noise message, one ``send``) of up to :data:`WRITE_BATCH` bytes instead
  of one each; the bytes on the wire are the same length-prefixed RPCs in the
  same order.
* **validation cache** (:class:`FastValidationCache`): the library's LRU keeps
  its order in a list (``list.remove`` per put: O(n) at 1,000 entries); an
  ``OrderedDict`` does it in O(1) with the same capacity, TTL and eviction order.
* **signed peer record** (:func:`sender_record`): relaying a message attaches
  our signed peer record, and the library recomputes ``host.get_addrs()``
  (multiaddr parsing, ~0.6 ms profiled) per message to see whether it is still
  current. It is now re-checked at most every :data:`SPR_RECHECK_S` seconds,
  and whenever the peerstore's local record object changes.
* **signature check** (:func:`signature_validator`): for an ed25519
  identity peer id (the only kind our network admits, ``pubsub_guard``) the
  key is the id's last 32 bytes; the library parses it from protobuf, rebuilds
  the id to compare, and makes a key object per message. Same payload
  (``libp2p-pubsub:`` + the message without key and signature), same
  libsodium verify, key objects cached. Every message is still verified.
* **pending queues** (:class:`FastGossipSub`): a message relayed on a topic is
  queued for each connected peer not (yet) on it, at most 100 for 30 s, as
  before; pruning no longer rebuilds the queue per message, and the
  "exceeded limit" line (logged per message once a peer's queue is full, i.e.
  for every connected peer that never joins the topic) is logged at debug.

:func:`apply` patches the two module-level names (``env_to_send_in_RPC``,
``signature_validator``) the library looks up at call time; the rest is in
the subclasses, used by :mod:`yagna.net.gossip`. It composes with
:mod:`yagna.net.fast_io` (Noise and Yamux underneath, untouched here).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, IOException, MessageTooLarge
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamError, StreamReset
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import GossipsubEvent, Pubsub, ValidationCache, ValidationResult
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.utils.varint import encode_uvarint

log = logging.getLogger("yagna.net.pubsub_fast")
lib_log = logging.getLogger("libp2p.pubsub.pubsub")

READ_SIZE = 64 * 1024
"""Bytes asked of the stream per read when the buffer holds no whole RPC."""
BATCH_MAX = 128
"""Publish messages handed to one ``push_msg`` task at most."""
WRITE_BATCH = 256 * 1024
"""Bytes of queued RPCs written to a peer in one ``stream.write`` at most (more if one RPC is larger)."""
READER_WAIT_ROUNDS = 64
"""Scheduler rounds a batch waits at most for a topic's subscription reader to drain half its channel."""
SPR_RECHECK_S = 1.0
"""How long a signed peer record is reused before the host's addresses are compared again."""
KEY_CACHE = 4096
"""Public key objects kept for signature checks (ed25519, 32 bytes each plus the object)."""
MAX_VARINT = 10

ED25519_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
PUBSUB_SIGNING_PREFIX = b"libp2p-pubsub:"

_applied = False
_stock_env_to_send: Callable[[Any], tuple[bytes, bool]] | None = None
_stock_signature_validator: Callable[[rpc_pb2.Message], bool] | None = None


def apply() -> None:
    """Install the module-level replacements in py-libp2p's pubsub (process-wide; idempotent)."""
    global _applied, _stock_env_to_send, _stock_signature_validator
    if _applied:
        return
    from libp2p.pubsub import gossipsub as gossipsub_mod
    from libp2p.pubsub import pubsub as pubsub_mod

    _stock_env_to_send = pubsub_mod.env_to_send_in_RPC
    _stock_signature_validator = pubsub_mod.signature_validator
    pubsub_mod.env_to_send_in_RPC = sender_record  # type: ignore[assignment]
    gossipsub_mod.env_to_send_in_RPC = sender_record  # type: ignore[assignment]
    pubsub_mod.signature_validator = signature_validator  # type: ignore[assignment]
    _applied = True


def applied() -> bool:
    return _applied


# -- signed peer record -----------------------------------------------------------------
def sender_record(host: Any) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC``, its answer reused for :data:`SPR_RECHECK_S` while the local record is the same."""
    assert _stock_env_to_send is not None, "pubsub_fast.apply() first"
    state = getattr(host, "__dict__", None)
    now = time.monotonic()
    local = host.get_peerstore().get_local_record()
    if state is not None:
        cached = state.get("_yagna_spr")
        if cached is not None and cached[0] is local and now - cached[1] < SPR_RECHECK_S:
            return cached[2], False
    envelope, new = _stock_env_to_send(host)
    if state is not None:
        state["_yagna_spr"] = (host.get_peerstore().get_local_record(), now, envelope)
    return envelope, new


# -- signature check --------------------------------------------------------------------
_keys: OrderedDict[bytes, Any] = OrderedDict()


def _verify_key(raw: bytes) -> Any:
    key = _keys.get(raw)
    if key is None:
        from nacl.signing import VerifyKey

        key = _keys[raw] = VerifyKey(raw)
        if len(_keys) > KEY_CACHE:
            _keys.popitem(last=False)
    return key


def signature_validator(msg: rpc_pb2.Message) -> bool:
    """The library's ``signature_validator``, without its per-message key parsing for ed25519 ids.

    For a ``from_id`` that is the identity multihash of an ed25519 key the
    library takes the key from the id (ignoring ``msg.key``) and the id it
    rebuilds from it always matches; anything else goes to the library's own.
    """
    from_id = msg.from_id
    if len(from_id) != len(ED25519_ID_PREFIX) + 32 or not from_id.startswith(ED25519_ID_PREFIX):
        assert _stock_signature_validator is not None, "pubsub_fast.apply() first"
        return _stock_signature_validator(msg)
    signature = msg.signature
    if not signature:
        return False
    payload = PUBSUB_SIGNING_PREFIX + rpc_pb2.Message(
        data=msg.data, topicIDs=msg.topicIDs, from_id=from_id, seqno=msg.seqno
    ).SerializeToString()
    try:
        _verify_key(from_id[len(ED25519_ID_PREFIX):]).verify(payload, signature)
    except Exception:  # noqa: BLE001 - the library's verify answers False for any failure too
        return False
    return True


# -- validation cache -------------------------------------------------------------------
class FastValidationCache(ValidationCache):
    """The library's ValidationCache (same TTL, capacity, LRU eviction) with O(1) operations."""

    def __init__(self, ttl: int = 300, max_size: int = 1000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.cache: OrderedDict[bytes, ValidationResult] = OrderedDict()  # type: ignore[assignment]

    def get(self, msg_id: bytes) -> ValidationResult | None:
        result = self.cache.get(msg_id)
        if result is None:
            return None
        if time.time() - result.timestamp > self.ttl:
            del self.cache[msg_id]
            return None
        self.cache.move_to_end(msg_id)
        return result

    def put(self, msg_id: bytes, result: ValidationResult) -> None:
        cache = self.cache
        while len(cache) >= self.max_size and cache:
            cache.popitem(last=False)
        cache[msg_id] = result
        cache.move_to_end(msg_id)

    def _remove(self, msg_id: bytes) -> None:
        self.cache.pop(msg_id, None)


# -- buffered inbound RPCs --------------------------------------------------------------
class RpcReader:
    """Varint-length-prefixed RPCs from a stream, read in chunks of up to :data:`READ_SIZE`."""

    __slots__ = ("_stream", "_max", "_buf")

    def __init__(self, stream: INetStream, max_size: int) -> None:
        if max_size <= 0:
            raise ValueError("max_length must be greater than 0")
        self._stream = stream
        self._max = max_size
        self._buf = bytearray()

    def ready(self) -> bytes | None:
        """The next whole RPC if the buffer holds one (no I/O), else None.

        Raises ``ParseError`` for a length over 10 varint bytes and
        ``MessageTooLarge`` for a length over the limit, as soon as the prefix is in.
        """
        buf = self._buf
        length = 0
        shift = 0
        end = min(len(buf), MAX_VARINT)
        i = 0
        while True:
            if i == end:
                if end == MAX_VARINT:
                    raise ParseError("Varint decoding error: integer exceeds maximum size of 64 bits")
                return None
            b = buf[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
        if length > self._max:
            raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {self._max}")
        stop = i + length
        if len(buf) < stop:
            return None
        data = bytes(buf[i:stop])
        del buf[:stop]
        return data

    async def fill(self) -> None:
        """Read what the stream has (up to :data:`READ_SIZE`); ``IncompleteReadError`` at a clean end."""
        data = await self._stream.read(READ_SIZE)
        if not data:
            raise IncompleteReadError(
                "Stream ended while reading a pubsub RPC",
                expected_bytes=1,
                received_bytes=len(self._buf),
            )
        self._buf += data

    async def next(self) -> bytes:
        while True:
            data = self.ready()
            if data is not None:
                return data
            await self.fill()


class FastPubsub(Pubsub):
    """Pubsub with buffered reads, one push task per batch, batched writes and an O(1) validation cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stock = self.validation_cache
        self.validation_cache = FastValidationCache(stock.ttl, stock.max_size)

    async def _push_batch(self, peer_id: ID, msgs: list[rpc_pb2.Message]) -> None:
        for i, msg in enumerate(msgs):
            if i:
                await trio.lowlevel.checkpoint()
                await self._let_readers_catch_up(msg)
            await self.push_msg(peer_id, msg)

    async def _let_readers_catch_up(self, msg: rpc_pb2.Message) -> None:
        """Wait (a few scheduler rounds at most) while the subscription channel of ``msg``'s topic is half full.

        ``notify_subscriptions`` drops a message when the topic's 32-message
        channel is full. The stock loop, reading byte by byte with a checkpoint
        each, handed over a message every ~10 scheduler rounds; a batch hands one
        over per round, as fast as the reader takes one: without this pause a
        receiver of a relayed burst dropped 5-10% of it (bench/market_burst.py).
        A reader that does not read at all still gets the stock drops.
        """
        for topic in msg.topicIDs:
            send = self.subscribed_topics_send.get(topic)
            if send is None:
                continue
            for _ in range(READER_WAIT_ROUNDS):
                stats = send.statistics()
                if stats.current_buffer_used * 2 < stats.max_buffer_size:
                    break
                await trio.lowlevel.checkpoint()

    def _spawn_batch(self, peer_id: ID, msgs: list[rpc_pb2.Message]) -> None:
        if msgs and self.manager.is_running:
            self.manager.run_task(self._push_batch, peer_id, msgs)

    async def continuously_read_stream(self, stream: INetStream) -> None:
        """The library's read loop over :class:`RpcReader`, publish messages pushed per batch."""
        peer_id = stream.muxed_conn.peer_id
        reader = RpcReader(stream, self.max_inbound_rpc_size)
        pending: list[rpc_pb2.Message] = []
        try:
            while self.manager.is_running:
                incoming = reader.ready()
                if incoming is None:
                    # nothing whole left in the buffer: hand over what was read before waiting
                    self._spawn_batch(peer_id, pending)
                    pending = []
                    incoming = await reader.next()
                rpc_incoming = rpc_pb2.RPC()
                rpc_incoming.ParseFromString(incoming)

                if not maybe_consume_signed_record(rpc_incoming, self.host, peer_id):
                    lib_log.error("Received an invalid-signed-record, ignoring the incoming msg")
                    continue

                event = GossipsubEvent()
                event.peer_id = peer_id.pretty()
                event.message_size = len(incoming)

                if rpc_incoming.publish:
                    event.publish = True
                    for msg in rpc_incoming.publish:
                        if not self._is_subscribed_to_msg(msg):
                            continue
                        pending.append(msg)
                        if len(pending) >= BATCH_MAX:
                            self._spawn_batch(peer_id, pending)
                            pending = []

                if rpc_incoming.subscriptions:
                    event.subopts = True
                    if len(rpc_incoming.subscriptions) > self.max_subscriptions_per_rpc:
                        lib_log.warning(
                            "Peer %s sent %d subscriptions exceeding limit %d, rejecting subscriptions",
                            peer_id,
                            len(rpc_incoming.subscriptions),
                            self.max_subscriptions_per_rpc,
                        )
                    else:
                        for message in rpc_incoming.subscriptions:
                            self.handle_subscription(peer_id, message)

                if rpc_incoming.HasField("control"):
                    event.control = True
                    await self.router.handle_rpc(rpc_incoming, peer_id)

                if stream.metric_send_channel is not None:
                    await stream.metric_send_channel.send(event)
        except MessageTooLarge as error:
            lib_log.warning("Inbound pubsub RPC from peer %s exceeded size limit: %s", peer_id, error)
            try:
                await stream.reset()
            except Exception:  # noqa: BLE001 - the library's own handling
                pass
            self._handle_dead_peer(peer_id)
        except StreamEOF:
            lib_log.debug("Stream closed for peer %s, exiting read loop cleanly.", peer_id)
        except StreamError as e:
            lib_log.debug("Stream error for peer %s (normal during shutdown): %s", peer_id, e)
        except (IOException, RawConnError) as e:
            lib_log.debug("Connection closed for peer %s during read: %s", peer_id, e)
        finally:
            # messages read before the stream ended are still handled, as the stock loop's tasks were
            if pending:
                try:
                    self._spawn_batch(peer_id, pending)
                except RuntimeError:  # the service is stopping ("Nursery is closed to new arrivals")
                    pass

    async def handle_sending_messages(self, peer_id: ID, stream: INetStream, queue: RpcQueue) -> None:
        """The library's per-peer sender, writing every RPC already queued in one ``stream.write``."""
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:
                    return
                parts: list[bytes] = []
                size = 0
                closed = False
                while True:
                    data = rpc.SerializeToString()
                    prefix = encode_uvarint(len(data))
                    parts.append(prefix)
                    parts.append(data)
                    size += len(prefix) + len(data)
                    if size >= WRITE_BATCH or not len(queue):
                        break
                    nxt = await queue.pop()  # returns at once: the queue is not empty
                    if nxt is None:
                        closed = True
                        break
                    rpc = nxt
                if not await self._write_batch(stream, b"".join(parts)) or closed:
                    return
        except Exception:  # noqa: BLE001 - the library's own handling
            lib_log.debug("sending loop for %s terminated with error", peer_id)
            self._handle_dead_peer(peer_id)

    async def _write_batch(self, stream: INetStream, data: bytes) -> bool:
        """``write_msg`` for bytes already framed: False (peer dropped) if the stream is closed or reset."""
        try:
            await stream.write(data)
            return True
        except (StreamClosed, StreamReset):
            peer_id = stream.muxed_conn.peer_id
            lib_log.debug("Fail to write message to %s: stream closed or reset", peer_id)
            self._handle_dead_peer(peer_id)
            return False


# -- gossipsub --------------------------------------------------------------------------
class FastGossipSub(GossipSub):
    """GossipSub whose pending-queue pruning is O(expired + overflow) and quiet."""

    def _prune_pending_messages(self, peer_id: ID) -> None:
        queue = self._pending_messages.get(peer_id)
        if queue is None:
            return
        # entries are appended with time.time() as they come, so the expired ones are at the front
        oldest = time.time() - self._pending_messages_ttl
        drop = 0
        for ts, _ in queue:
            if ts >= oldest:
                break
            drop += 1
        over = len(queue) - drop - self._max_pending_messages_per_peer
        if over > 0:
            log.debug(
                "pending message queue for peer %s exceeded limit %d; oldest %d dropped",
                peer_id, self._max_pending_messages_per_peer, over,
            )
            drop += over
        if drop:
            del queue[:drop]
        if not queue:
            self._pending_messages.pop(peer_id, None)
