"""Both payment sides on the in-memory network, real SQLite stores, fake meters, virtual time.

One delivery path for vouchers (stored, sent until the reply acknowledges it,
acknowledged only after the provider's commit), and channels that fail alone:
an error in one channel's work never reaches the service's nursery.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from market import properties as P
from market.agreement import build_agreement, cosign, sign_agreement, verify_agreement
from market.matching import Demand, Offer
from market.pricing import LinearPricing
from yagna.core.identity import NodeKey
from yagna.net.memory import MemoryHub
from yagna.payment_service import PaymentConfig, PaymentService
from yagna.store import Store
from yagna.store.errors import StoreError
from yagna.store.market_repos import Agreements
from yagna.store.payment_repos import SqliteLedger

NET = "channels-net"
REQ = NodeKey.from_seed(b"q" * 32)
PROV = NodeKey.from_seed(b"v" * 32)
PRICING = LinearPricing(start_fee=10**13, per_cpu_sec=10**14, per_duration_sec=10**13)
TERMS = {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 1, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 5}


@pytest.fixture
def clock() -> MockClock:
    """Virtual time that jumps only after 20 ms of real idleness: the stores' worker threads finish first
    (with autojump_clock a wait on a thread counts as idle, and time ran away during every SQLite write)."""
    return MockClock(autojump_threshold=0.02)


def _agreement(n: int) -> tuple[str, bytes]:
    demand = Demand(REQ.node_id, {P.NODE_DEBUG_SUBNET: "public", **TERMS}, "()")
    offer = Offer(PROV.node_id, {**PRICING.to_properties(), P.INF_CPU_THREADS: 1, **TERMS}, "()")
    body = build_agreement(network_id=NET, offer_id=hashlib.sha256(b"o%d" % n).hexdigest(), demand=demand,
                           offer=offer, valid_until_ms=4_000_000_000_000)
    raw = cosign(body, sign_agreement(REQ, body), sign_agreement(PROV, body))
    return verify_agreement(raw, network_id=NET).agreement_id, raw


class Parties:
    def __init__(self, req: PaymentService, prov: PaymentService, agreements: list[str]) -> None:
        self.req, self.prov, self.agreements = req, prov, agreements
        self.started = trio.current_time()
        self.broken: set[str] = set()

    def ms(self) -> int:
        return int((trio.current_time() - self.started) * 1000)

    def elapsed(self, agreement_id: str) -> tuple[int, int]:
        return self.ms(), 1

    async def usage(self, agreement_id: str) -> tuple[int, int, int, int]:
        if agreement_id in self.broken:
            raise RuntimeError("the exe-unit's meter of this agreement is broken")
        return self.ms(), self.ms(), 0, 1


@contextlib.asynccontextmanager
async def parties(tmp_path: Path, n: int = 1) -> AsyncIterator[Parties]:
    hub = MemoryHub()
    deals = [_agreement(i) for i in range(n)]
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        services = {}
        for key, role, peer in ((REQ, "requestor", PROV), (PROV, "provider", REQ)):
            store = await stack.enter_async_context(Store.open_ctx(tmp_path / f"{role}.db"))
            for agreement_id, raw in deals:
                await Agreements(store).insert(agreement_id=agreement_id, role=role, peer_id=peer.node_id, offer_id="o",
                                               demand_id=None, state="approved", raw=raw)
            config = PaymentConfig(network_id=NET, provider=role == "provider", requestor=role == "requestor",
                                   tick_s=0.1, resend_s=0.5)
            services[role] = PaymentService(key=key, config=config, rr=hub.node(key.node_id).rr, store=store,
                                            driver=SqliteLedger(store))
        both = Parties(services["requestor"], services["provider"], [a for a, _ in deals])
        assert both.req.requestor is not None and both.prov.provider is not None
        both.req.requestor.elapsed = both.elapsed
        both.prov.provider.usage = both.usage
        for svc in services.values():
            await nursery.start(svc.run)
        await both.req.fund(10**21)
        for agreement_id in both.agreements:
            await both.req.requestor.ensure_channel(agreement_id)
        yield both
        nursery.cancel_scope.cancel()


async def _status(svc: PaymentService, agreement_id: str) -> dict[str, Any]:
    return next(row for row in (await svc.status())["agreements"] if row["agreement_id"] == agreement_id)


async def _until(check: Any, timeout: float = 300) -> None:
    """Poll ``check`` until it holds (virtual time; no exact times)."""
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.05)


async def test_vouchers_take_one_path_and_the_provider_holds_what_the_requestor_signed(
        tmp_path: Path, clock: MockClock) -> None:
    async with parties(tmp_path) as both:
        agreement_id = both.agreements[0]

        async def settled_up() -> bool:
            req_row, prov_row = await _status(both.req, agreement_id), await _status(both.prov, agreement_id)
            # The provider holds the requestor's last voucher, and the requestor knows it (the reply acknowledged it).
            return (req_row["best_seq"] >= 3 and req_row["acked_seq"] == req_row["best_seq"] == prov_row["best_seq"]
                    and req_row["paid_units"] == prov_row["paid_units"] > 0)

        await _until(settled_up)
        assert both.prov.provider is not None and len(both.prov.provider.round_trips) >= 1


async def test_the_provider_acknowledges_only_after_its_commit_and_the_requestor_sends_again(
        tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    async with parties(tmp_path) as both:
        agreement_id = both.agreements[0]
        prov_channels = both.prov.provider._channels  # type: ignore[union-attr]
        req_channels = both.req.requestor._channels  # type: ignore[union-attr]
        save_best, set_acked = prov_channels.save_best, req_channels.set_acked
        failures: list[int] = []
        acks: list[tuple[int, int]] = []

        async def failing_save_best(*args: Any) -> bool:
            if len(failures) < 3:
                failures.append(args[1])
                raise StoreError("disk full")
            return await save_best(*args)

        async def checked_set_acked(channel_id: str, seq: int) -> bool:
            stored = await prov_channels.by_agreement(agreement_id)
            acks.append((seq, stored.best_seq if stored else 0))
            return await set_acked(channel_id, seq)

        monkeypatch.setattr(prov_channels, "save_best", failing_save_best)
        monkeypatch.setattr(req_channels, "set_acked", checked_set_acked)

        async def delivered() -> bool:
            row = await _status(both.req, agreement_id)
            return len(failures) == 3 and row["acked_seq"] >= 3

        await _until(delivered)
        assert failures[0] == 1  # the first voucher was not stored: not acknowledged, sent again
        assert acks and all(stored >= seq for seq, stored in acks)  # every ack follows the provider's commit


async def test_one_channel_failing_stays_in_that_channel(tmp_path: Path, clock: MockClock) -> None:
    async with parties(tmp_path, 2) as both:
        bad, good = both.agreements
        both.broken.add(bad)  # every debit note of this channel fails on the provider's side
        provider = both.prov.provider
        assert provider is not None

        async def good_paid_bad_failing() -> bool:
            return (await _status(both.req, good))["acked_seq"] >= 3 and provider._payees[bad].failures >= 3

        await _until(good_paid_bad_failing)  # without the channel's boundary the first failure ended the service
        assert provider._payees[good].failures == 0
        assert (await _status(both.prov, bad))["paid_units"] == 0
        both.broken.clear()

        async def bad_recovers() -> bool:
            return (await _status(both.prov, bad))["paid_units"] > 0

        await _until(bad_recovers)


async def test_a_requestor_channel_that_fails_retries_alone(tmp_path: Path, clock: MockClock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    async with parties(tmp_path, 2) as both:
        bad, good = both.agreements
        requestor = both.req.requestor
        assert requestor is not None
        channels = requestor._channels
        bad_channel = requestor._payers[bad].core.terms.channel_id
        set_acked = channels.set_acked

        async def broken_for_one(channel_id: str, seq: int) -> bool:
            if channel_id == bad_channel and requestor._payers[bad].failures < 2:
                raise RuntimeError("a bug in one channel")
            return await set_acked(channel_id, seq)

        monkeypatch.setattr(channels, "set_acked", broken_for_one)

        async def both_paid() -> bool:
            rows = [await _status(both.req, a) for a in (bad, good)]
            return all(row["acked_seq"] >= 3 for row in rows)

        await _until(both_paid)  # the failing channel's task retried (it would have ended the service)
        assert requestor._payers[bad].failures == 2 and requestor._payers[good].failures == 0
