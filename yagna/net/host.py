"""Building and closing a py-libp2p 0.8.1 host with daemon-safe settings.

The library's defaults are hostile to a daemon (see docs/decisions.md,
"libp2p settings", and the lab report): we accept Noise only (the default also
accepts plaintext), Yamux only (Mplex loses data silently), one connection per
peer (otherwise every ``connect()`` waits 250 ms for "happy eyeballs"), and we
stop the swarm's AutoConnector because :mod:`yagna.net.peers` manages dialing.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from yagna.net import fast_io
from yagna.net.errors import BadAddressError, ListenError
from yagna.net.lean_libp2p import new_tcp_host

log = logging.getLogger("yagna.net")

DIAL_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 4.0


def build_host(seed: bytes) -> IHost:
    """A host whose peer id is the node id of the ed25519 key with this seed."""
    fast_io.apply()  # Noise/Yamux bulk I/O without the per-message overhead (same wire format)
    key_pair = create_new_key_pair(seed)
    host = new_tcp_host(  # = libp2p.new_host(...) without importing every transport
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=create_x25519_key_pair().private_key
            )
        },
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},  # type: ignore[dict-item]  # libp2p types the key as TProtocol
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            dial_timeout=DIAL_TIMEOUT_S,
        ),
    )
    guard_stream_handlers(host)
    return host


def guard_stream_handlers(host: IHost) -> None:
    """Every stream handler of ``host``, the library's (identify, ping) and ours, now and later,
    ends in a log line and a reset stream instead of raising: in py-libp2p 0.8.1 an exception
    escaping a stream handler ends ``host.run()`` and with it the node."""
    mux = host.get_mux()
    add = mux.add_handler

    def guarded(protocol: object, handler: Callable[[INetStream], Awaitable[None]]) -> Callable[[INetStream], Awaitable[None]]:
        async def run(stream: INetStream) -> None:
            try:
                await handler(stream)
            except Exception as exc:  # noqa: BLE001 - the host's boundary, see the docstring
                log.warning("%s handler failed on a stream from %s: %r", protocol, _peer_of(stream), exc)
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    try:
                        await stream.reset()
                    except Exception:  # noqa: BLE001 - already gone
                        pass

        run.__wrapped__ = handler  # type: ignore[attr-defined]
        return run

    def add_handler(protocol: TProtocol, handler: Callable[[INetStream], Awaitable[None]]) -> None:
        add(protocol, guarded(protocol, handler))

    for protocol, handler in list(mux.handlers.items()):
        if protocol is not None and handler is not None:
            add(protocol, guarded(protocol, handler))
    mux.add_handler = add_handler  # type: ignore[method-assign,assignment]  # the instance's, on purpose


def _peer_of(stream: INetStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id)
    except Exception:  # noqa: BLE001
        return "?"


async def close_host(host: IHost) -> None:
    """Leak-free, bounded shutdown of a host whose ``run()`` is still alive.

    Each connection's close sleeps ~200 ms inside the library, one after the
    other; closing them concurrently makes shutdown flat (~210 ms) whatever
    the number of peers. Shielded so it also completes during cancellation.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for conns in list(host.get_network().connections.values()):
                for conn in list(conns):
                    nursery.start_soon(conn.close)
        await host.close()


def parse_multiaddr(text: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:  # multiaddr raises a zoo of ValueError/KeyError/...
        raise BadAddressError(f"bad multiaddr {text!r}: {exc}") from None


def parse_peer_addr(text: str) -> tuple[str, multiaddr.Multiaddr]:
    """Split ``/ip4/1.2.3.4/tcp/5/p2p/12D3KooW...`` into (node id, transport addr)."""
    maddr = parse_multiaddr(text)
    try:
        peer = maddr.value_for_protocol("p2p")
    except Exception:
        peer = None
    if not peer:
        raise BadAddressError(
            f"multiaddr {text!r} lacks the peer id: add /p2p/<node id> "
            "(the node prints its full address at start)"
        )
    try:
        ID.from_base58(peer)
        transport = maddr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer}"))
    except Exception as exc:
        raise BadAddressError(f"bad peer id in multiaddr {text!r}: {exc}") from None
    if not str(transport):
        raise BadAddressError(f"multiaddr {text!r} has no transport part (/ip4/.../tcp/...)")
    return peer, transport


def peer_info(node_id: str, addrs: list[str]) -> PeerInfo:
    return PeerInfo(ID.from_base58(node_id), [parse_multiaddr(a) for a in addrs])


def check_tcp_listen_addr(maddr: multiaddr.Multiaddr) -> None:
    """Bind-test a TCP listen address so a busy port gets a clear, early error.

    py-libp2p logs a failed listen and carries on with no listener at all.
    """
    try:
        host = maddr.value_for_protocol("ip4")
        port = int(maddr.value_for_protocol("tcp"))
    except Exception:
        raise BadAddressError(
            f"listen address {maddr} is not of the form /ip4/<address>/tcp/<port>"
        ) from None
    if port == 0:
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"cannot listen on {maddr}: port {port} is already in use; "
                "stop the other program or pick another port with --listen"
            ) from None
        raise ListenError(f"cannot listen on {maddr}: {exc.strerror}") from None
    finally:
        sock.close()
