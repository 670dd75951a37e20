"""A small rogue node: speaks our protocols and py-libp2p's wrongly, on purpose.

Used by the hardening tests, in-process (``async with rogue_host() as host``
then the attack coroutines) and as a separate process
(``python -m e2e.rogue ATTACK TARGET_P2P_ADDR [options]``), which prints one JSON
line with what it sent when it is done.

The attacks are raw: a rogue opens streams itself and writes bytes, so nothing
of the library's own checks (pubsub signing, framing) stands between it and
the target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from yagna.net.framing import encode_varint


@asynccontextmanager
async def rogue_host(target: str | None = None) -> AsyncIterator[IHost]:
    """A running libp2p host (Noise + Yamux, like ours), connected to ``target`` if given."""
    key_pair = create_new_key_pair(os.urandom(32))
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1, dial_timeout=5.0),
    )
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await host.get_network().auto_connector.stop()
        if target is not None:
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                await host.close()


def peer_of(target: str) -> ID:
    return info_from_p2p_addr(multiaddr.Multiaddr(target)).peer_id


# -- pubsub --------------------------------------------------------------------------

def pubsub_rpc(*, subscribe: list[str] = (), publish: list[rpc_pb2.Message] = ()) -> bytes:  # type: ignore[assignment]
    rpc = rpc_pb2.RPC()
    for topic in subscribe:
        rpc.subscriptions.append(rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic))
    for msg in publish:
        rpc.publish.append(msg)
    data = rpc.SerializeToString()
    return encode_varint(len(data)) + data


def poison_message(topic: str, n: int = 0) -> rpc_pb2.Message:
    """Row 1 of issue 11: a ``from_id`` that is no key-type peer id and a garbage ``key``.

    py-libp2p's signature validator cannot take the key out of the id, so it
    deserializes ``key``, which raises (it does not return False).
    """
    from_id = b"\x12\x20" + hashlib.sha256(b"rogue%d" % n).digest()  # a sha256 multihash id
    return rpc_pb2.Message(
        from_id=from_id, data=b"poison", seqno=n.to_bytes(8, "big"), topicIDs=[topic],
        signature=b"\x01" * 64, key=b"\xff\xfe garbage key",
    )


def garbage_messages(topic: str) -> list[rpc_pb2.Message]:
    """Other malformed pubsub messages: empty or huge ids, wrong key types, bad seqnos."""
    out = [poison_message(topic, i) for i in range(3)]
    out += [
        rpc_pb2.Message(from_id=b"", data=b"x", seqno=b"", topicIDs=[topic]),
        rpc_pb2.Message(from_id=b"\x00\x24" + b"\x08\x01\x12\x20" + b"\x00" * 32, data=b"x", seqno=b"1",
                        topicIDs=[topic], signature=b"s"),
        rpc_pb2.Message(from_id=os.urandom(300), data=b"x", seqno=os.urandom(100), topicIDs=[topic],
                        signature=os.urandom(64), key=os.urandom(40)),
        rpc_pb2.Message(from_id=b"\x00", data=b"x", seqno=b"\x00" * 8, topicIDs=[topic, topic, "other"],
                        signature=os.urandom(64), key=b"\x08\x02\x12\x01\x00"),
        rpc_pb2.Message(from_id=b"\x12\x20" + b"\x00" * 32, data=b"x", seqno=b"\x00" * 8, topicIDs=[topic],
                        signature=os.urandom(64), key=b"\x08\x00\x12\x04abcd"),
    ]
    return out


async def send_pubsub(host: IHost, target: ID, frames: list[bytes], *, linger: float = 0.5) -> None:
    """Open a gossipsub stream to ``target``, write raw frames, keep it open a moment."""
    stream = await host.new_stream(target, [TProtocol(PROTOCOL_ID_V11)])
    try:
        for frame in frames:
            await stream.write(frame)
        await trio.sleep(linger)
    except Exception:  # noqa: BLE001 - the target reset the stream: its right answer to garbage
        pass
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await stream.reset()
            except Exception:  # noqa: BLE001 - the target may have reset it first
                pass


async def poison_gossip(host: IHost, target: ID, topics: list[str]) -> int:
    """Subscribe to ``topics``, then publish the poison and other garbage on each."""
    msgs = [m for t in topics for m in garbage_messages(t)]
    frames = [pubsub_rpc(subscribe=topics)] + [pubsub_rpc(publish=[m]) for m in msgs]
    frames.append(b"\xff\xff\xff\xff\x0f")  # a varint frame length of 4 GiB
    await send_pubsub(host, target, frames)
    return len(msgs)


# -- our request/response protocols ---------------------------------------------------

async def stall_streams(host: IHost, target: ID, protocol: str, count: int) -> list[INetStream]:
    """Open ``count`` streams on ``protocol`` and send nothing: the caller holds them."""
    streams = []
    for _ in range(count):
        try:
            streams.append(await host.new_stream(target, [TProtocol(protocol)]))
        except Exception:  # noqa: BLE001 - the target may refuse past its per-peer bound
            break
    return streams


async def write_raw(host: IHost, target: ID, protocol: str, chunks: list[bytes], *, timeout: float = 2.0) -> None:
    """Open ``protocol``, write ``chunks`` as they are, read a little, reset. Refusals are fine."""
    with trio.move_on_after(timeout):
        try:
            stream = await host.new_stream(target, [TProtocol(protocol)])
        except Exception:  # noqa: BLE001 - the target may refuse: that is an answer
            return
        try:
            for chunk in chunks:
                await stream.write(chunk)
            with trio.move_on_after(0.2):
                await stream.read(4096)
        except Exception:  # noqa: BLE001 - a reset is the target's right answer
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:  # noqa: BLE001
                    pass


# -- command line (a rogue in its own process) ------------------------------------------

async def _main(args: argparse.Namespace) -> dict[str, object]:
    async with rogue_host(args.target) as host:
        target = peer_of(args.target)
        if args.attack == "poison-gossip":
            sent = await poison_gossip(host, target, args.topic)
            return {"attack": args.attack, "messages": sent}
        if args.attack == "stall":
            streams = await stall_streams(host, target, args.protocol, args.count)
            print(json.dumps({"attack": args.attack, "open": len(streams)}), flush=True)
            await trio.sleep(args.hold)
            return {"attack": args.attack, "open": len(streams), "done": True}
        if args.attack == "user-flood":
            frames = [pubsub_rpc(subscribe=args.topic)]
            data = b"x" * args.size
            signer = _Signer(host)
            for i in range(args.count):
                frames.append(pubsub_rpc(publish=[signer.message(args.topic[0], data, i)]))
            await send_pubsub(host, target, frames, linger=1.0)
            return {"attack": args.attack, "messages": args.count}
    raise SystemExit(f"unknown attack {args.attack}")


class _Signer:
    """Properly signed pubsub messages from the rogue's own identity (a flood that passes signing)."""

    def __init__(self, host: IHost) -> None:
        self._key = host.get_private_key()
        self._id = host.get_id().to_bytes()

    def message(self, topic: str, data: bytes, n: int) -> rpc_pb2.Message:
        from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX

        msg = rpc_pb2.Message(from_id=self._id, data=data, seqno=(n + 1).to_bytes(8, "big"), topicIDs=[topic])
        msg.signature = self._key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        return msg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.rogue")
    parser.add_argument("attack", choices=["poison-gossip", "stall", "user-flood"])
    parser.add_argument("target", help="the target's /ip4/.../tcp/.../p2p/<id> address")
    parser.add_argument("--topic", action="append", default=[])
    parser.add_argument("--protocol", default="/yagna/blob/2.0.0")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--hold", type=float, default=30.0)
    args = parser.parse_args(argv)
    result = trio.run(_main, args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
