"""A daemon listening on every interface (--listen /ip4/0.0.0.0/tcp/PORT): what it lists, advertises and teaches."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from e2e.daemons import Daemon, run_cli, wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def test_listen_on_every_interface_and_net_status(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = _free_port()
    wide = Daemon(tmp_path / "wide", ["--listen", f"/ip4/0.0.0.0/tcp/{port}"]).start()
    daemons.append(wide)
    status = json.loads(run_cli("net", "status", "--json", data_dir=wide.data_dir).stdout)
    assert {"listen_addrs", "reachability", "advertised_addrs"} <= set(status)
    mine = f"/ip4/127.0.0.1/tcp/{port}/p2p/{wide.node_id}"
    assert mine in status["listen_addrs"]
    assert all(a.endswith(f"/tcp/{port}/p2p/{wide.node_id}") for a in status["listen_addrs"])
    assert not any("/0.0.0.0/" in a for a in status["listen_addrs"] + status["advertised_addrs"] + wide.info["p2p_addrs"])
    assert not any(a.startswith(("/ip4/127.", "/ip4/10.", "/ip4/192.168.")) for a in status["advertised_addrs"])
    assert status["reachability"] in ("public", "private", "unknown")

    # every interface accepts: a second node bootstraps through the loopback address
    peer = Daemon(tmp_path / "peer", ["--bootstrap", mine]).start()
    daemons.append(peer)
    wait_until(lambda: wide.node_id in peer.connected_peers(), timeout=15, what="peer connected through 127.0.0.1")
    # a peer on this host is taught our loopback address by peer exchange (and learns it first)
    wait_until(lambda: _addrs_of(peer, wide.node_id)[:1] == [f"/ip4/127.0.0.1/tcp/{port}"], timeout=15,
               what="the loopback address taught to a peer on this host")
    # on one host nobody can judge public reachability: it stays unknown, with nothing asked
    assert wide.api("GET", "/net/status")["reachability"] == "unknown"

    text = run_cli("net", "status", data_dir=wide.data_dir).stdout
    assert "reachability: unknown" in text and f"listening:    {mine}" in text and "advertised:" in text


def _addrs_of(daemon: Daemon, node_id: str) -> list[str]:
    peers = daemon.api("GET", "/net/peers")
    return next((p["addrs"] for p in peers if p["node_id"] == node_id), [])
