"""What the SDK does by default: find the node (the devnet's requestor too), fund a test network, a work dir."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from requestor_sdk import DaemonLocation, MarketNote, Requestor
from requestor_sdk import requestor as requestor_module
from requestor_sdk.errors import DaemonNotFound
from requestor_sdk.funding import ensure_funds, shortfall
from requestor_sdk.local_node import devnet_requestor_dir, find_node

UNIT = 10**18


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for var in ("YAGNA_DATA_DIR", "YAGNA_API_URL", "YAGNA_APPKEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("yagna.core.paths.SYSTEM_DATA_DIR", tmp_path / "no-system-node", raising=False)
    return tmp_path / "xdg" / "yagna"


def _node(data_dir: Path, url: str) -> Path:
    """A data dir whose node "runs" (this test's own pid)."""
    data_dir.mkdir(parents=True)
    (data_dir / "node.json").write_text(json.dumps({"api_url": url, "pid": os.getpid(), "node_id": "n"}))
    (data_dir / "app-key").write_text("key\n")
    return data_dir


def _devnet(root: Path, requestor: Path, **extra: Any) -> None:
    root.mkdir(parents=True, exist_ok=True)
    nodes = [{"name": "provider-1", "role": "provider", "data_dir": str(root / "provider-1"), "pid": 1},
             {"name": "requestor", "role": "requestor", "data_dir": str(requestor), "pid": 1, **extra}]
    (root / "devnet.json").write_text(json.dumps({"root": str(root), "nodes": nodes}))


def test_find_node_prefers_the_default_data_dir_then_the_devnet(home: Path) -> None:
    with pytest.raises(DaemonNotFound, match="yagna devnet up"):
        find_node()
    requestor = _node(home / "devnet" / "requestor", "http://127.0.0.1:1111")
    _devnet(home / "devnet", requestor)
    assert devnet_requestor_dir() == requestor
    assert find_node().api_url == "http://127.0.0.1:1111"
    _node(home / "node", "http://127.0.0.1:2222")  # a node of the default data dir wins
    assert find_node().api_url == "http://127.0.0.1:2222"


def test_find_node_never_guesses_past_a_named_node(home: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _devnet(home / "devnet", _node(home / "devnet" / "requestor", "http://127.0.0.1:1111"))
    with pytest.raises(DaemonNotFound, match="no node is running with data dir"):
        find_node(tmp_path / "elsewhere")
    monkeypatch.setenv("YAGNA_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DaemonNotFound, match="elsewhere"):
        find_node()


def test_a_nat_testbeds_requestor_is_not_ours(home: Path) -> None:
    _devnet(home / "devnet", home / "devnet" / "requestor", netns="ynet-requestor")
    assert devnet_requestor_dir() is None


def test_shortfall_is_whole_tokens() -> None:
    assert shortfall(UNIT, UNIT) == 0
    assert shortfall(0, UNIT) == UNIT
    assert shortfall(UNIT - 1, UNIT) == UNIT
    assert shortfall(0, UNIT // 10) == UNIT
    assert shortfall(UNIT // 2, 3 * UNIT) == 3 * UNIT


class FakeApi:
    """The routes the Requestor's entry and exit use."""

    def __init__(self, free: str = "0", test_network: bool = True) -> None:
        self.free, self.test_network = free, test_network
        self.funded: list[str] = []
        self.closed = False

    async def payment_status(self) -> dict[str, Any]:
        return {"test_network": self.test_network, "balance": {"free": self.free}, "agreements": []}

    async def fund(self, amount: str) -> dict[str, Any]:
        self.funded.append(amount)
        return {}

    async def create_demand(self, **_: Any) -> dict[str, Any]:
        return {"demand_id": "d1"}

    async def delete_demand(self, demand_id: str) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True


async def test_ensure_funds_only_on_a_test_network_and_only_when_short() -> None:
    api: Any = FakeApi(free="0.25")
    assert await ensure_funds(api, 2 * UNIT) == (2 * UNIT, UNIT // 4) and api.funded == ["2"]
    assert await ensure_funds(FakeApi(free="3"), 2 * UNIT) == (0, 3 * UNIT)  # type: ignore[arg-type]
    real: Any = FakeApi(free="0", test_network=False)
    assert await ensure_funds(real, UNIT) == (0, 0) and real.funded == []


async def test_requestor_funds_says_so_and_cleans_its_work_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi(free="0.5")
    monkeypatch.setattr(requestor_module, "Api", lambda location: api)
    events: list[Any] = []
    r = Requestor(image="local/busybox:1", budget="1", location=DaemonLocation("http://x", "k"),
                  on_event=events.append)
    async with r:
        work = r.work_dir
        assert work.is_dir() and r.funded == UNIT and api.funded == ["1"]
        assert await r.run([]) == []
    assert not work.exists() and api.closed
    notes = [e.message for e in events if isinstance(e, MarketNote)]
    assert notes == ["funded 1 test tokens (no value): the free balance (0.5) was below the budget (1)"]


async def test_requestor_opt_outs_keep_the_old_behaviour(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    api = FakeApi(free="0")
    monkeypatch.setattr(requestor_module, "Api", lambda location: api)
    async with Requestor(image="i", budget="1", location=DaemonLocation("http://x", "k"), fund=False,
                         work_dir=tmp_path / "results") as r:
        assert r.work_dir == tmp_path / "results"
    assert api.funded == [] and r.funded == 0
    assert r.work_dir == tmp_path / "results"  # a given work dir is the caller's: kept
