"""Whole nodes (store + network + API) in one trio process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio

from yagna.config import ConfigError, NodeConfig
from yagna.core.errors import DataDirError
from yagna.node import Node, NodeInfo
from yagna.store import Store
from yagna.store.repos import Peers


async def _get(info: NodeInfo, data_dir: Path, path: str) -> object:
    key = (data_dir / "app-key").read_text().strip()
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{info.api_url}/api/v1{path}", headers={"Authorization": f"Bearer {key}"})
    resp.raise_for_status()
    return resp.json()


async def test_several_nodes_in_one_process_connect_and_stop_cleanly(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        first = Node(NodeConfig(tmp_path / "a", api_port=0))
        a: NodeInfo = await nursery.start(first.run)
        second = Node(NodeConfig(tmp_path / "b", api_port=0, bootstrap=[a.p2p_addrs[0]]))
        b: NodeInfo = await nursery.start(second.run)
        assert json.loads((tmp_path / "a" / "node.json").read_text())["node_id"] == a.node_id
        with trio.fail_after(10):
            while b.node_id not in first.network.peers.connected_peers():
                await trio.sleep(0.05)
        peers = await _get(b, tmp_path / "b", "/net/peers")
        assert [p["node_id"] for p in peers] == [a.node_id]  # type: ignore[index, union-attr]
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "a" / "node.json").exists()
    assert not (tmp_path / "b" / "node.json").exists()


async def test_restart_keeps_identity_and_remembers_peers(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        hub = Node(NodeConfig(tmp_path / "hub", api_port=0))
        h: NodeInfo = await nursery.start(hub.run)
        async with trio.open_nursery() as inner:
            leaf = Node(NodeConfig(tmp_path / "leaf", api_port=0, bootstrap=[h.p2p_addrs[0]]))
            first: NodeInfo = await inner.start(leaf.run)
            with trio.fail_after(10):
                # the connection is recorded just after it is reported: wait for the record
                while not await _connected_on_record(tmp_path / "leaf" / "yagna.db", h.node_id):
                    await trio.sleep(0.05)
            inner.cancel_scope.cancel()
        async with Store.open_ctx(tmp_path / "leaf" / "yagna.db") as store:
            remembered = await Peers(store).get(h.node_id)
        assert remembered is not None and remembered.source == "bootstrap"
        assert remembered.last_connected is not None
        async with trio.open_nursery() as inner:
            # no --bootstrap this time: the store remembers the hub
            again = Node(NodeConfig(tmp_path / "leaf", api_port=0))
            second: NodeInfo = await inner.start(again.run)
            assert second.node_id == first.node_id
            assert second.p2p_addrs == first.p2p_addrs  # last port reused
            with trio.fail_after(10):
                while h.node_id not in again.network.peers.connected_peers():
                    await trio.sleep(0.05)
            inner.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


async def _connected_on_record(db: Path, node_id: str) -> bool:
    async with Store.open_ctx(db) as store:
        record = await Peers(store).get(node_id)
    return record is not None and record.last_connected is not None


async def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        await Node(NodeConfig(tmp_path / "f", api_port=0)).run()


def test_api_must_stay_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        NodeConfig(tmp_path, api_host="0.0.0.0")


def test_golem_payment_platform_names() -> None:
    """What a node's offers name, as Golem's SDK spells platforms: its default test platform on any test
    network; a real chain by Golem's name for it (erc20-polygon-glm), else by its chain id."""
    from types import SimpleNamespace

    from yagna.node import payment_platforms

    def driver(test: bool, chain_id: int = 0) -> SimpleNamespace:
        return SimpleNamespace(test_network=test, chain_id=chain_id, account_of=lambda node: f"acct-of-{node}")

    assert payment_platforms(driver(True), "n") == {"erc20-holesky-tglm": "acct-of-n"}
    assert payment_platforms(driver(False, 137), "n") == {"erc20-polygon-glm": "acct-of-n"}
    assert payment_platforms(driver(False, 1), "n") == {"erc20-mainnet-glm": "acct-of-n"}
    assert payment_platforms(driver(False, 11155111), "n") == {"erc20-sepolia-tglm": "acct-of-n"}
    assert payment_platforms(driver(False, 8453), "n") == {"erc20-8453-tglm": "acct-of-n"}
