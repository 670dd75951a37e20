"""The requestor's provider records under concurrent outcome reports (issue 11 row 13).

A batch has one worker per provider, and any of them may report a verdict on
any provider (the worker that completes a vote reports the losers), while a
negotiation records its own outcomes: reports for one provider arrive at
once. Each must count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from market.capacity import Capacity
from market.strategy import StrategyError
from market.policy import PolicyConfig
from yagna.core.identity import NodeKey
from yagna.market_service import MarketConfig, MarketService
from yagna.net.memory import MemoryHub
from yagna.store import Store
from yagna.store.market_repos import ProviderRecords

PROVIDER = NodeKey.generate().node_id


async def test_concurrent_outcomes_for_one_provider_all_count(tmp_path: Path) -> None:
    key = NodeKey.generate()
    net = MemoryHub().node(key.node_id)
    async with Store.open_ctx(tmp_path / "req.db") as store, trio.open_nursery() as nursery:
        svc = MarketService(
            key=key,
            config=MarketConfig(network_id="test-net", requestor=True, capacity=Capacity(8, 16.0, 100.0),
                                policy=PolicyConfig()),
            rr=net.rr, gossip=net.gossip, peers=net.peers, store=store,
        )
        await nursery.start(net.peers.run)
        await nursery.start(svc.run)
        requestor = svc.requestor
        assert requestor is not None
        async with trio.open_nursery() as reports:
            for i in range(20):
                reports.start_soon(requestor.record, PROVIDER, "disagreement" if i % 2 else "success", 100.0)
        [row] = await requestor.reputation(PROVIDER)
        assert (row["disagreements"], row["successes"]) == (10, 10)
        nursery.cancel_scope.cancel()


async def test_update_that_raises_changes_nothing(tmp_path: Path) -> None:
    async with Store.open_ctx(tmp_path / "req.db") as store:
        records = ProviderRecords(store)

        def first(current: dict[str, object] | None) -> dict[str, object]:
            assert current is None
            return {"successes": 1, "failures": 0, "rejections": 0, "timeouts": 0, "disagreements": 0,
                    "latency_ms": None, "consecutive_failures": 0, "last_failure_ms": None}

        await records.update(PROVIDER, first)

        def broken(current: dict[str, object] | None) -> dict[str, object]:
            raise StrategyError("outcome must be one of ...")

        with pytest.raises(StrategyError):
            await records.update(PROVIDER, broken)
        assert (await records.get(PROVIDER) or {})["successes"] == 1
