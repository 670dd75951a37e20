"""The daemon's lifecycle, identity persistence, API auth and app keys."""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

from e2e.daemons import Daemon, run_cli


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_node_cleanly_within_5s(tmp_path: Path, daemons: list[Daemon], sig: int) -> None:
    peer = Daemon(tmp_path / "peer").start()
    node = Daemon(tmp_path / "node", ["--bootstrap", peer.p2p_addr]).start()
    daemons += [peer, node]
    deadline = time.monotonic() + 10
    while peer.node_id not in node.connected_peers() and time.monotonic() < deadline:
        time.sleep(0.1)
    api_port = int(node.info["api_url"].rsplit(":", 1)[1])
    assert node.proc is not None
    t0 = time.monotonic()
    node.proc.send_signal(sig)
    code = node.proc.wait(timeout=5)
    assert time.monotonic() - t0 < 5
    assert code == 0
    assert not (node.data_dir / "node.json").exists()
    assert "Traceback" not in node.log.read_text()
    with socket.socket() as s:  # the API port was released
        s.bind(("127.0.0.1", api_port))


def test_identity_persists_and_key_file_is_private(tmp_path: Path, daemons: list[Daemon]) -> None:
    node = Daemon(tmp_path / "node").start()
    daemons.append(node)
    first = node.node_id
    assert stat.S_IMODE((node.data_dir / "node.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((node.data_dir / "app-key").stat().st_mode) == 0o600
    shown = json.loads(run_cli("id", "show", "--json", data_dir=node.data_dir).stdout)
    assert shown["node_id"] == first and shown["running"] is True
    node.stop()
    offline = json.loads(run_cli("id", "show", "--json", data_dir=node.data_dir).stdout)
    assert offline == {"node_id": first, "running": False}
    node.start()
    assert node.node_id == first
    assert node.node_id.startswith("12D3KooW")


def test_api_requires_a_valid_app_key(tmp_path: Path, daemons: list[Daemon]) -> None:
    node = Daemon(tmp_path / "node").start()
    daemons.append(node)
    url = node.info["api_url"] + "/api/v1"
    assert httpx.get(f"{url}/id").status_code == 401
    assert httpx.get(f"{url}/id", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(f"{url}/net/peers", headers={"Authorization": "Basic abc"}).status_code == 401
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "/api/v1/net/peers" in spec["paths"] and "/api/v1/id" in spec["paths"]
    # Golem's requestor API is served beside ours (docs/golem.md), behind the same app keys
    assert {"/me", "/market-api/v1/demands", "/activity-api/v1/activity", "/payment-api/v1/allocations"} <= set(spec["paths"])
    assert httpx.get(f"{url.removesuffix('/api/v1')}/me").status_code == 401

    created = json.loads(run_cli("app-key", "create", "script", "--json", data_dir=node.data_dir).stdout)
    token = created["key"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{url}/id", headers=headers).json()["node_id"] == node.node_id
    names = [k["name"] for k in json.loads(run_cli("app-key", "list", "--json", data_dir=node.data_dir).stdout)]
    assert sorted(names) == ["local", "script"]
    dup = run_cli("app-key", "create", "script", data_dir=node.data_dir, check=False)
    assert dup.returncode != 0 and "exists" in dup.stderr
    run_cli("app-key", "drop", "script", data_dir=node.data_dir)
    assert httpx.get(f"{url}/id", headers=headers).status_code == 401


def test_env_api_url_and_appkey_are_honoured(tmp_path: Path, daemons: list[Daemon],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    node = Daemon(tmp_path / "node").start()
    daemons.append(node)
    monkeypatch.setenv("YAGNA_API_URL", node.info["api_url"])
    monkeypatch.setenv("YAGNA_APPKEY", (node.data_dir / "app-key").read_text().strip())
    out = json.loads(run_cli("net", "status", "--json").stdout)
    assert out["node_id"] == node.node_id
