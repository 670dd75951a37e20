"""The config file's ``[provider.preset]``: the provider's market creates or updates it at start."""

from __future__ import annotations

from pathlib import Path

import trio

from market.capacity import Capacity
from market.presets import Preset
from market.pricing import LinearPricing
from yagna.core.identity import NodeKey
from yagna.market_service import MarketConfig, MarketService
from yagna.net.memory import MemoryHub
from yagna.store import Store
from yagna.store.market_repos import Presets


async def _start(tmp_path: Path, key: NodeKey, managed: Preset | None) -> dict[str, object]:
    """Run a provider's market once on the same database; the presets it then holds (as stored)."""
    net = MemoryHub().node(key.node_id)
    config = MarketConfig(network_id="n", requestor=False, capacity=Capacity(4, 8.0, 20.0),
                          default_preset=Preset(name="default"), managed_preset=managed)
    async with Store.open_ctx(tmp_path / "p.db") as store, trio.open_nursery() as nursery:
        await nursery.start(net.peers.run)
        svc = MarketService(key=key, config=config, rr=net.rr, gossip=net.gossip, peers=net.peers, store=store)
        await nursery.start(svc.run)
        assert svc.provider is not None
        held = {name: p.to_json() for name, p in svc.provider.presets.items()}
        assert set(svc.provider.current) == set(held)  # each offered
        stored = {row.name: row.body for row in await Presets(store).list()}
        nursery.cancel_scope.cancel()
    assert stored == held
    return held


async def test_the_managed_preset_is_created_then_updated_and_replaces_the_default(tmp_path: Path) -> None:
    key = NodeKey.generate()
    first = Preset(name="default", threads=2, pricing=LinearPricing(0, 10**13, 0), subnet="public")
    held = await _start(tmp_path, key, first)
    assert held == {"default": first.to_json()}  # not the built-in default preset
    second = Preset(name="default", threads=3, pricing=LinearPricing(0, 2 * 10**13, 0), subnet="public")
    assert await _start(tmp_path, key, second) == {"default": second.to_json()}
    # without a managed preset the stored one stays as it is
    assert await _start(tmp_path, key, None) == {"default": second.to_json()}
    other = Preset(name="gpu-less", threads=1)
    assert await _start(tmp_path, key, other) == {"default": second.to_json(), "gpu-less": other.to_json()}
