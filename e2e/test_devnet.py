"""`yagna devnet up/status/down`: a local network of background daemons."""

from __future__ import annotations

import json
import os
from pathlib import Path

from e2e.daemons import run_cli


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_devnet_up_status_down(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    nodes: list[dict] = []  # type: ignore[type-arg]
    try:
        nodes = json.loads(run_cli("devnet", "up", "--providers", "3", "--root", str(root), "--json", timeout=90).stdout)
        assert [n["role"] for n in nodes] == ["requestor", "provider", "provider", "provider"]
        for n in nodes:
            assert {"role", "node_id", "data_dir", "api_url", "pid"} <= set(n)
            assert _alive(n["pid"])
            assert Path(n["data_dir"]).parent == root
        # returned only when ready: every node already knows all others and every offer
        ids = {n["node_id"] for n in nodes}
        providers = {n["node_id"] for n in nodes if n["role"] == "provider"}
        for n in nodes:
            peers = json.loads(run_cli("net", "peers", "--json", "--all", data_dir=Path(n["data_dir"])).stdout)
            assert {p["node_id"] for p in peers} == ids - {n["node_id"]}
            offers = json.loads(run_cli("market", "offers", "--json", data_dir=Path(n["data_dir"])).stdout)
            assert {o["provider_id"] for o in offers} >= providers - {n["node_id"]}

        again = run_cli("devnet", "up", "--providers", "1", "--root", str(root), check=False)
        assert again.returncode != 0 and "already running" in again.stderr

        status = json.loads(run_cli("devnet", "status", "--root", str(root), "--json").stdout)
        assert [s["running"] for s in status] == [True] * 4
        assert [s["connected_peers"] for s in status] == [3] * 4

        run_cli("devnet", "down", "--root", str(root), timeout=30)
        assert not any(_alive(n["pid"]) for n in nodes)
        status = json.loads(run_cli("devnet", "status", "--root", str(root), "--json").stdout)
        assert status == []
    finally:
        for n in nodes:
            if _alive(n["pid"]):
                os.kill(n["pid"], 9)


def test_devnet_default_root_is_under_user_data_dir(tmp_path: Path) -> None:
    assert "no devnet" in run_cli("devnet", "status").stdout
    nodes: list[dict] = []  # type: ignore[type-arg]
    try:
        nodes = json.loads(run_cli("devnet", "up", "--providers", "1", "--json", timeout=90).stdout)
        root = tmp_path / "xdg" / "yagna" / "devnet"  # XDG_DATA_HOME is set by conftest
        assert [Path(n["data_dir"]).parent for n in nodes] == [root, root]
        assert (root / "devnet.json").exists()
    finally:
        run_cli("devnet", "down", timeout=30)
    assert not any(_alive(n["pid"]) for n in nodes)
