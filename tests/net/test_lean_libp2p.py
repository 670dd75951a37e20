"""The lean libp2p import (yagna.net.lean_libp2p): nothing heavy at start-up, same host as new_host."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> dict:  # type: ignore[type-arg]
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_daemon_imports_nothing_heavy() -> None:
    got = _run(
        """
        import json, sys
        import yagna.node
        from yagna.core.identity import NodeKey
        from yagna.net.host import build_host
        from yagna.net.lean_libp2p import heavy_modules_loaded
        build_host(NodeKey.generate().seed)  # imports the host's modules
        print(json.dumps({"heavy": heavy_modules_loaded(),
                          "init_ran": "new_host" in vars(sys.modules["libp2p"])}))
        """
    )
    assert got == {"heavy": [], "init_ran": False}


def test_cli_read_path_imports_no_libp2p_nor_server() -> None:
    got = _run(
        """
        import json, sys
        import yagna.cli.main, yagna.cli.market_cmd, yagna.cli.client
        mods = [m for m in sys.modules if m.split(".")[0] in
                ("libp2p", "multiaddr", "fastapi", "starlette", "pydantic", "hypercorn", "trio", "docker",
                 "cryptography", "yagna.node")]
        print(json.dumps(mods))
        """
    )
    assert got == []


def test_new_tcp_host_builds_what_new_host_builds() -> None:
    """Same classes and settings as ``libp2p.new_host`` with the daemon's arguments (full library loaded)."""
    got = _run(
        """
        import json
        import libp2p  # the real package first: install() is then a no-op
        from libp2p import new_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.crypto.x25519 import create_new_key_pair as x25519
        from libp2p.network.config import ConnectionConfig
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE, Transport as Noise
        from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX, Yamux
        from yagna.net.lean_libp2p import new_tcp_host

        def describe(host):
            sw = host.get_network()
            up = sw.upgrader
            return {
                "host": type(host).__name__,
                "swarm": type(sw).__name__,
                "id": host.get_id().to_base58(),
                "transports": [type(t).__name__ for t in sw.transport_manager.get_transports()]
                if hasattr(sw, "transport_manager") else None,
                "security": sorted(str(p) for p in up.security_multistream.transports),
                "muxers": sorted(str(p) for p in up.muxer_multistream.transports),
                "conn_config": repr(sw.connection_config),
                "rcmgr": type(sw._resource_manager).__name__ if hasattr(sw, "_resource_manager") else None,
                "host_rcmgr_is_swarm_rcmgr": getattr(host, "_resource_manager", None) is getattr(sw, "_resource_manager", 0),
                "negotiate_timeout": host.negotiate_timeout,
                "mdns": host.mDNS, "upnp": host.upnp, "bootstrap": host.bootstrap,
                "handlers": sorted(str(p) for p in host.get_mux().handlers),
                "peerstore_has_key": host.get_peerstore().pubkey(host.get_id()) is not None,
            }

        kp = create_new_key_pair(b"\\x01" * 32)
        args = dict(
            key_pair=kp,
            sec_opt={NOISE: Noise(kp, noise_privkey=x25519().private_key)},
            muxer_opt={YAMUX: Yamux},
            connection_config=ConnectionConfig(max_connections_per_peer=1, dial_timeout=5.0),
        )
        print(json.dumps({"ours": describe(new_tcp_host(**args)), "theirs": describe(new_host(**args))}))
        """
    )
    assert got["ours"]["transports"] == ["TCP"]
    assert got["ours"]["security"] == ["/noise"]
    assert got["ours"] == got["theirs"]


def test_stand_ins_forward_to_the_real_modules() -> None:
    got = _run(
        """
        import json, sys
        import yagna.net  # installs the stand-ins
        import libp2p.host.basic_host as bh
        from libp2p.crypto.serialization import deserialize_public_key
        from yagna.net.lean_libp2p import heavy_modules_loaded
        before = heavy_modules_loaded()
        from libp2p.crypto.rsa import create_new_key_pair as rsa_pair
        private = bh.is_private_ip("10.1.2.3"), bh.is_private_ip("8.8.8.8")
        pub = rsa_pair(1024).public_key
        rsa_ok = deserialize_public_key(pub.serialize()).to_bytes() == pub.to_bytes()
        from libp2p.transport.quic.config import QUICTransportConfig
        import libp2p.network.swarm as swarm
        quic_isinstance = isinstance(QUICTransportConfig(), swarm.QUICTransportConfig)
        from libp2p import new_host  # the whole package, on demand
        print(json.dumps({"before": before, "private": private, "rsa_ok": rsa_ok,
                          "quic_isinstance": quic_isinstance, "new_host": callable(new_host),
                          "quic_loaded": "aioquic" in sys.modules}))
        """
    )
    assert got == {"before": [], "private": [True, False], "rsa_ok": True, "quic_isinstance": True,
                   "new_host": True, "quic_loaded": True}


@pytest.mark.trio
async def test_two_lean_hosts_talk_over_noise_and_yamux() -> None:
    """The host the daemon builds connects and streams (Noise + Yamux for real)."""
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol

    from yagna.core.identity import NodeKey
    from yagna.net.host import build_host, close_host, peer_info

    a, b = build_host(NodeKey.generate().seed), build_host(NodeKey.generate().seed)
    got: list[bytes] = []

    async def echo(stream) -> None:  # type: ignore[no-untyped-def]
        got.append(await stream.read(5))
        await stream.write(b"world")
        await stream.close()

    a.set_stream_handler(TProtocol("/test/echo/1"), echo)
    async with a.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]), b.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await b.connect(peer_info(a.get_id().to_base58(), [str(x) for x in a.get_addrs()]))
        with trio.fail_after(10):
            s = await b.new_stream(a.get_id(), [TProtocol("/test/echo/1")])
            await s.write(b"hello")
            assert await s.read(5) == b"world"
        assert got == [b"hello"]
        await close_host(b)
        await close_host(a)
