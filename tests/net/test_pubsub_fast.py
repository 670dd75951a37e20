"""yagna.net.pubsub_fast: each cheaper piece answers exactly what py-libp2p's own does."""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp_pair
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import ValidationCache, ValidationResult
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.validators import signature_validator as stock_signature_validator
from libp2p.utils.varint import encode_uvarint, read_varint_prefixed_bytes_limited

from yagna.net import pubsub_fast
from yagna.net.pubsub_fast import FastGossipSub, FastPubsub, FastValidationCache, RpcReader


# -- buffered reader --------------------------------------------------------------------
class _ChunkStream:
    """A stream handing out ``data`` in random-sized pieces, then b"" (or raising, like a NetStream at EOF)."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self.data = data
        self.rng = rng
        self.reads = 0

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        k = min(n or len(self.data), self.rng.randint(1, 3000))
        out, self.data = self.data[:k], self.data[k:]
        return out


def _framed(bodies: list[bytes]) -> bytes:
    return b"".join(encode_uvarint(len(b)) + b for b in bodies)


def test_reader_cuts_the_same_rpcs_as_the_library_from_any_chunking() -> None:
    rng = random.Random(7)
    bodies = [rng.randbytes(rng.choice([0, 1, 127, 128, 700, 5000, 70000])) for _ in range(200)]
    wire = _framed(bodies)

    async def main() -> None:
        ours = RpcReader(_ChunkStream(wire, random.Random(1)), 1 << 20)  # type: ignore[arg-type]
        stock_stream = _ChunkStream(wire, random.Random(1))
        for body in bodies:
            assert await ours.next() == body
            assert await read_varint_prefixed_bytes_limited(stock_stream, 1 << 20) == body
        with pytest.raises(IncompleteReadError):
            await ours.next()

    trio.run(main)


def test_reader_reads_in_chunks_not_bytes() -> None:
    bodies = [b"x" * 700] * 100
    stream = _ChunkStream(_framed(bodies), random.Random(2))

    async def main() -> None:
        reader = RpcReader(stream, 1 << 20)  # type: ignore[arg-type]
        for _ in bodies:
            await reader.next()

    trio.run(main)
    assert stream.reads < 60  # the stock reader: 2 reads per RPC at least (1 per prefix byte, then the body)


def test_reader_refuses_an_oversized_length_before_reading_the_body() -> None:
    stream = _ChunkStream(encode_uvarint(5000) + b"y" * 10, random.Random(3))

    async def main() -> None:
        with pytest.raises(MessageTooLarge):
            await RpcReader(stream, 4096).next()  # type: ignore[arg-type]

    trio.run(main)


def test_reader_refuses_an_overlong_varint_and_a_truncated_rpc() -> None:
    async def main() -> None:
        with pytest.raises(ParseError):
            await RpcReader(_ChunkStream(b"\xff" * 11, random.Random(4)), 1 << 20).next()  # type: ignore[arg-type]
        with pytest.raises(IncompleteReadError):
            await RpcReader(_ChunkStream(encode_uvarint(100) + b"z" * 50, random.Random(5)), 1 << 20).next()  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            RpcReader(_ChunkStream(b"", random.Random(6)), 0)  # type: ignore[arg-type]

    trio.run(main)


# -- batched writes ---------------------------------------------------------------------
class _RecordingStream:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


def test_sender_writes_every_queued_rpc_in_one_write_with_the_same_bytes() -> None:
    rpcs = [rpc_pb2.RPC(publish=[rpc_pb2.Message(data=bytes([i]) * (i * 10), topicIDs=["t"])]) for i in range(20)]
    queue = RpcQueue(64)
    for rpc in rpcs:
        assert queue.push(rpc)
    queue.close()  # the sender ends once the queue is drained
    stream = _RecordingStream()
    pubsub = object.__new__(FastPubsub)  # only the sending loop is exercised

    trio.run(pubsub.handle_sending_messages, None, stream, queue)  # type: ignore[arg-type]
    assert stream.writes == [_framed([r.SerializeToString() for r in rpcs])]


def test_sender_caps_a_write_at_write_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pubsub_fast, "WRITE_BATCH", 1000)
    rpcs = [rpc_pb2.RPC(publish=[rpc_pb2.Message(data=b"d" * 400, topicIDs=["t"])]) for _ in range(10)]
    queue = RpcQueue(64)
    for rpc in rpcs:
        queue.push(rpc)
    queue.close()
    stream = _RecordingStream()
    trio.run(object.__new__(FastPubsub).handle_sending_messages, None, stream, queue)  # type: ignore[arg-type]
    assert b"".join(stream.writes) == _framed([r.SerializeToString() for r in rpcs])
    assert len(stream.writes) == 4  # 3 RPCs (>1000 bytes) per write


# -- validation cache -------------------------------------------------------------------
def test_validation_cache_matches_the_library_op_for_op(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    rng = random.Random(11)
    stock, fast = ValidationCache(ttl=5, max_size=20), FastValidationCache(ttl=5, max_size=20)
    keys = [bytes([i]) for i in range(40)]
    for _ in range(5000):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.45:
            result = ValidationResult(is_valid=rng.random() < 0.8, timestamp=now[0])
            stock.put(key, result)
            fast.put(key, result)
        elif op < 0.9:
            assert fast.get(key) == stock.get(key)
        elif op < 0.95:
            stock.clear_expired()
            fast.clear_expired()
        else:
            now[0] += rng.random() * 3
        assert list(fast.cache) == stock.access_order
        assert dict(fast.cache) == stock.cache


# -- signature check --------------------------------------------------------------------
def _signed(key_pair: Any, data: bytes = b"offer", seqno: bytes = b"\x00" * 8) -> rpc_pb2.Message:
    from_id = ID.from_pubkey(key_pair.public_key).to_bytes()
    msg = rpc_pb2.Message(data=data, topicIDs=["t"], from_id=from_id, seqno=seqno)
    msg.signature = key_pair.private_key.sign(b"libp2p-pubsub:" + msg.SerializeToString())
    return msg


def test_signature_check_answers_as_the_library() -> None:
    pubsub_fast.apply()
    good = _signed(create_new_key_pair())
    other = create_new_key_pair()
    cases = {"good": good}
    tampered = rpc_pb2.Message()
    tampered.CopyFrom(good)
    tampered.data = b"offer!"
    cases["tampered"] = tampered
    bad_sig = rpc_pb2.Message()
    bad_sig.CopyFrom(good)
    bad_sig.signature = bytes(64)
    cases["bad signature"] = bad_sig
    no_sig = rpc_pb2.Message()
    no_sig.CopyFrom(good)
    no_sig.ClearField("signature")
    cases["no signature"] = no_sig
    foreign_key = rpc_pb2.Message()
    foreign_key.CopyFrom(good)
    foreign_key.key = other.public_key.serialize()  # the library ignores msg.key for an ed25519 id
    cases["foreign key field"] = foreign_key
    wrong_signer = rpc_pb2.Message()
    wrong_signer.CopyFrom(_signed(other))
    wrong_signer.from_id = good.from_id
    cases["another key's signature"] = wrong_signer
    cases["secp256k1 (library path)"] = _signed(create_secp_pair())
    for name, msg in cases.items():
        for _ in range(2):  # second time from the key cache
            assert pubsub_fast.signature_validator(msg) == stock_signature_validator(msg), name
    assert pubsub_fast.signature_validator(good)
    assert pubsub_fast.signature_validator(cases["secp256k1 (library path)"])
    assert not pubsub_fast.signature_validator(tampered)


def test_the_pubsub_module_uses_the_patched_functions() -> None:
    from libp2p.pubsub import gossipsub, pubsub

    pubsub_fast.apply()
    pubsub_fast.apply()  # idempotent
    assert pubsub.signature_validator is pubsub_fast.signature_validator
    assert pubsub.env_to_send_in_RPC is pubsub_fast.sender_record
    assert gossipsub.env_to_send_in_RPC is pubsub_fast.sender_record


# -- signed peer record -----------------------------------------------------------------
class _Peerstore:
    def __init__(self) -> None:
        self.record: object = object()

    def get_local_record(self) -> object:
        return self.record


class _Host:
    def __init__(self) -> None:
        self.peerstore = _Peerstore()

    def get_peerstore(self) -> _Peerstore:
        return self.peerstore


def test_sender_record_is_reused_until_it_changes_or_a_second_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    pubsub_fast.apply()
    calls: list[object] = []

    def stock(host: Any) -> tuple[bytes, bool]:
        calls.append(host)
        return f"env{len(calls)}".encode(), False

    now = [50.0]
    monkeypatch.setattr(pubsub_fast, "_stock_env_to_send", stock)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    host = _Host()
    assert pubsub_fast.sender_record(host) == (b"env1", False)
    assert pubsub_fast.sender_record(host) == (b"env1", False)
    assert len(calls) == 1
    host.peerstore.record = object()  # re-issued (addresses changed)
    assert pubsub_fast.sender_record(host)[0] == b"env2"
    now[0] += pubsub_fast.SPR_RECHECK_S + 0.01
    assert pubsub_fast.sender_record(host)[0] == b"env3"
    other = _Host()
    assert pubsub_fast.sender_record(other)[0] == b"env4"  # per host
    assert len(calls) == 4


# -- pending queues ---------------------------------------------------------------------
def _router() -> FastGossipSub:
    return FastGossipSub(protocols=[], degree=6, degree_low=4, degree_high=12)


def test_pending_queue_pruning_keeps_what_the_library_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.pubsub.gossipsub import GossipSub

    now = [10_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    rng = random.Random(5)
    ours, stock = _router(), _router()
    peer = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))
    for _ in range(3000):
        if rng.random() < 0.9:
            rpc = rpc_pb2.RPC()
            for r, prune in ((ours, FastGossipSub._prune_pending_messages),
                             (stock, GossipSub._prune_pending_messages)):
                prune(r, peer)
                r._pending_messages[peer].append((now[0], rpc))
        else:
            now[0] += rng.random() * 12
            FastGossipSub._prune_pending_messages(ours, peer)
            GossipSub._prune_pending_messages(stock, peer)
        assert [t for t, _ in ours._pending_messages.get(peer, [])] == [t for t, _ in stock._pending_messages.get(peer, [])]
        assert (peer in ours._pending_messages) == (peer in stock._pending_messages)


def test_a_full_pending_queue_is_not_a_warning_per_message(caplog: pytest.LogCaptureFixture) -> None:
    router = _router()
    peer = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))
    router._pending_messages[peer] = [(time.time(), rpc_pb2.RPC()) for _ in range(101)]
    with caplog.at_level("INFO"):
        router._prune_pending_messages(peer)
    assert len(router._pending_messages[peer]) == router._max_pending_messages_per_peer
    assert not caplog.records


# -- one task per batch -----------------------------------------------------------------
def test_messages_of_one_read_are_pushed_in_order_by_one_task() -> None:
    msgs = [rpc_pb2.Message(data=bytes([i]), topicIDs=["t"]) for i in range(5)]
    pushed: list[tuple[Any, bytes]] = []
    spawned: deque[tuple[Any, ...]] = deque()

    class _Manager:
        is_running = True

        def run_task(self, fn: Any, *args: Any) -> None:
            spawned.append((fn, args))

    pubsub = object.__new__(FastPubsub)

    async def push_msg(peer: Any, msg: rpc_pb2.Message) -> None:
        pushed.append((peer, msg.data))

    pubsub.__dict__["push_msg"] = push_msg
    pubsub.__dict__["_manager"] = _Manager()
    pubsub.__dict__["subscribed_topics_send"] = {}
    monkey = type("P", (FastPubsub,), {"manager": property(lambda self: self.__dict__["_manager"])})
    pubsub.__class__ = monkey
    pubsub._spawn_batch("peer", msgs)  # type: ignore[arg-type]
    pubsub._spawn_batch("peer", [])  # type: ignore[arg-type]  # nothing spawned for nothing
    assert len(spawned) == 1
    fn, args = spawned.popleft()
    trio.run(fn, *args)
    assert pushed == [("peer", bytes([i])) for i in range(5)]


def test_node_id_is_the_base58_of_the_peer_id() -> None:
    from yagna.net.pubsub_guard import node_id, origin_of

    key_pair = create_new_key_pair()
    peer = ID.from_pubkey(key_pair.public_key)
    assert node_id(peer.to_bytes()) == peer.to_base58() == node_id(peer.to_bytes())
    assert origin_of(_signed(key_pair)) == peer.to_base58()


def test_a_batch_waits_a_little_for_a_half_full_subscription_channel() -> None:
    pubsub = object.__new__(FastPubsub)
    msg = rpc_pb2.Message(data=b"m", topicIDs=["t"])

    async def main() -> None:
        send, recv = trio.open_memory_channel[rpc_pb2.Message](32)
        pubsub.__dict__["subscribed_topics_send"] = {"t": send}
        for _ in range(20):
            send.send_nowait(msg)
        # nobody reads: gives up after READER_WAIT_ROUNDS (the stock drop rule then applies)
        await pubsub._let_readers_catch_up(msg)
        assert send.statistics().current_buffer_used == 20

        async def reader() -> None:
            async for _ in recv:
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await pubsub._let_readers_catch_up(msg)
            assert send.statistics().current_buffer_used < 16
            nursery.cancel_scope.cancel()

    trio.run(main)
