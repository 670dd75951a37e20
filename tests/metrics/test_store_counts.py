"""The store's counts behind the metrics: exact sums of amounts past 64 bits, counts by role and state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from yagna.core.money import UNIT
from yagna.store import Store
from yagna.store.activity_repos import Activities
from yagna.store.payment_repos import PayChannels

BIG = 2**64 + 12345  # over SQLite's INTEGER range: a SUM in SQL would go through a float


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open_ctx(tmp_path / "node.db") as s:
        yield s


async def test_channel_totals_are_exact_per_role_and_state(store: Store) -> None:
    channels = PayChannels(store)
    assert await channels.totals() == {}
    await channels.insert("c1", "a1", "payee", "req", b"t", BIG)
    await channels.insert("c2", "a2", "payee", "req", b"t", 5 * UNIT)
    await channels.insert("c3", "a3", "payer", "prov", b"t", 3 * UNIT)
    await channels.save_best("c1", 1, BIG - 1, b"v", BIG - 1)
    await channels.save_best("c2", 1, 2 * UNIT, b"v", 2 * UNIT)
    await channels.set_due("c1", BIG)
    await channels.save_signed("c3", 1, UNIT + 1, b"v")
    await channels.set_state("c2", "closed")
    totals = await channels.totals()
    assert totals[("payee", "open")] == {"channels": 1, "deposit": BIG, "due": BIG, "paid": BIG - 1, "best_amount": BIG - 1}
    assert totals[("payee", "closed")] == {"channels": 1, "deposit": 5 * UNIT, "due": 0, "paid": 2 * UNIT,
                                           "best_amount": 2 * UNIT}
    assert totals[("payer", "open")]["best_amount"] == UNIT + 1
    assert set(totals) == {("payee", "open"), ("payee", "closed"), ("payer", "open")}


async def test_activity_counts_by_role_and_state(store: Store) -> None:
    rows = Activities(store)
    assert await rows.count_by_state() == {}
    for i, (role, state) in enumerate([("provider", "ready"), ("provider", "ready"), ("provider", "terminated"),
                                       ("requestor", "ready")]):
        await rows.insert(activity_id=f"act{i}", agreement_id=f"a{i}", role=role, peer_id="p", state=state)
    assert await rows.count_by_state() == {("provider", "ready"): 2, ("provider", "terminated"): 1,
                                           ("requestor", "ready"): 1}
