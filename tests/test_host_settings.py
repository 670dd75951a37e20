"""The py-libp2p 0.8.1 defaults we override, each checked against a real host."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex

from yagna.net.host import build_host, close_host
from yagna.net.network import NetConfig, Network

LISTEN = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


@asynccontextmanager
async def running(nets: list[Network]) -> AsyncIterator[list[Network]]:
    async with trio.open_nursery() as nursery:
        for net in nets:
            await nursery.start(net.run)
        yield nets
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def foreign_host(**kwargs: object) -> AsyncIterator[object]:
    kp = create_new_key_pair()
    host = new_host(key_pair=kp, **kwargs)  # type: ignore[arg-type]
    async with host.run([LISTEN]):
        try:
            await host.get_network().auto_connector.stop()
            yield host
        finally:
            await close_host(host)


async def test_plaintext_dialer_is_refused() -> None:
    async with running([Network(os.urandom(32), NetConfig())]) as (net,):
        kp = create_new_key_pair()
        async with foreign_host(sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)}) as dialer:
            with pytest.raises(Exception), trio.fail_after(15):
                await dialer.connect(info_from_p2p_addr(multiaddr.Multiaddr(net.full_addrs()[0])))  # type: ignore[attr-defined]
            assert ID.from_base58(net.node_id) not in dialer.get_connected_peers()  # type: ignore[attr-defined]


async def test_mplex_only_dialer_is_refused() -> None:
    async with running([Network(os.urandom(32), NetConfig())]) as (net,):
        async with foreign_host(muxer_opt={MPLEX_PROTOCOL_ID: Mplex}) as dialer:
            with pytest.raises(Exception), trio.fail_after(15):
                await dialer.connect(info_from_p2p_addr(multiaddr.Multiaddr(net.full_addrs()[0])))  # type: ignore[attr-defined]


async def test_connection_is_noise_and_yamux_and_fast_to_dial() -> None:
    a, b = Network(os.urandom(32), NetConfig()), Network(os.urandom(32), NetConfig())
    async with running([a, b]):
        start = trio.current_time()
        with trio.fail_after(10):
            await a.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(b.full_addrs()[0])))
        elapsed = trio.current_time() - start
        conn = a.host.get_network().connections[ID.from_base58(b.node_id)][0]
        assert conn.get_negotiated_security_protocol() == "/noise"
        assert conn.get_negotiated_muxer_protocol() == "/yamux/1.0.0"
        # the 250 ms "happy eyeballs" wait is gone (max_connections_per_peer=1);
        # a generous bound, not a benchmark: 2 cores shared with other tests
        assert elapsed < 0.25 * 4


async def test_known_peer_addresses_do_not_expire() -> None:
    a = Network(os.urandom(32), NetConfig())
    async with running([a]):
        b = Network(os.urandom(32), NetConfig(bootstrap=[a.full_addrs()[0]]))
        async with running([b]):
            with trio.fail_after(10):
                while a.node_id not in b.peers.connected_peers():
                    await trio.sleep(0.05)
            b.peers.pin_addrs()
            data = b.host.get_peerstore().peer_data_map[ID.from_base58(a.node_id)]
            assert data.get_ttl() == 0  # 0 = permanent in py-libp2p


def test_host_uses_our_key() -> None:
    from yagna.core.identity import NodeKey

    key = NodeKey.generate()
    assert build_host(key.seed).get_id().to_base58() == key.node_id
