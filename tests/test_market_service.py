"""The market service on the in-memory network twin, with real SQLite stores.

Each test builds a few nodes (providers with presets, a requestor) on one
:class:`~yagna.net.memory.MemoryHub`; the same flows run across real
processes in ``e2e/test_market.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from market.agreement import verify_agreement
from market.capacity import Capacity
from market.offers import make_offer
from market.policy import PolicyConfig
from market.presets import OFFER_CONSTRAINTS, Preset, offer_properties
from market.pricing import LinearPricing
from market.strategy import StrategyConfig
from yagna.core.identity import NodeKey
from yagna.core.money import parse_amount
from yagna.market_service import MarketConfig, MarketService
from yagna.market_service.offers import now_ms, offers_topic
from yagna.market_service.protocol import NEGOTIATE, PROPOSAL
from yagna.market_service.requestor import NegotiationFailed
from yagna.net.errors import RemoteError
from yagna.net.memory import MemoryHub
from yagna.store import Store

NET = "test-net"


def pricing(cpu_hour: str, hour: str = "0", start: str = "0") -> LinearPricing:
    return LinearPricing(
        start_fee=parse_amount(start),
        per_cpu_sec=parse_amount(cpu_hour) // 3600,
        per_duration_sec=parse_amount(hour) // 3600,
    )


class World:
    def __init__(self, hub: MemoryHub, nursery: trio.Nursery, stack: contextlib.AsyncExitStack, tmp: Path) -> None:
        self.hub = hub
        self.nursery = nursery
        self.stack = stack
        self.tmp = tmp

    async def node(self, name: str, *, provider: bool = False, requestor: bool = False,
                   capacity: Capacity | None = None, presets: tuple[Preset, ...] = (),
                   policy: PolicyConfig | None = None) -> MarketService:
        key = NodeKey.generate()
        net = self.hub.node(key.node_id)
        store = await self.stack.enter_async_context(Store.open_ctx(self.tmp / f"{name}.db"))
        svc = MarketService(
            key=key,
            config=MarketConfig(network_id=NET, provider=provider, requestor=requestor,
                                capacity=capacity or Capacity(8, 16.0, 100.0), policy=policy or PolicyConfig()),
            rr=net.rr, gossip=net.gossip, peers=net.peers, store=store,
        )
        svc.key = key  # type: ignore[attr-defined]
        svc.net = net  # type: ignore[attr-defined]
        await self.nursery.start(net.peers.run)
        await self.nursery.start(svc.run)
        for preset in presets:
            await svc.provider.create_preset(preset)  # type: ignore[union-attr]
        return svc


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        yield World(MemoryHub(), nursery, stack, tmp_path)
        nursery.cancel_scope.cancel()


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.01)


SMALL = Preset(name="small", threads=1, mem_gib=1.0, storage_gib=1.0, pricing=pricing("0.02"))
BIG_CHEAP = Preset(name="big", threads=4, mem_gib=4.0, storage_gib=10.0, pricing=pricing("0.03"))
BIG_DEAR = Preset(name="dear", threads=4, mem_gib=4.0, storage_gib=10.0, pricing=pricing("0.5"))


async def test_demand_matches_only_eligible_offers_and_the_agreement_is_cosigned(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        small = await w.node("small", provider=True, presets=(SMALL,))
        cheap = await w.node("cheap", provider=True, presets=(BIG_CHEAP,))
        dear = await w.node("dear", provider=True, presets=(BIG_DEAR,))
        req = await w.node("req", requestor=True)
        await eventually(lambda: len(req.directory.book) == 3)

        demand = await req.requestor.create_demand({}, "(golem.inf.cpu.threads>=2)")  # type: ignore[union-attr]
        assert {o.provider_id for o in demand.proposals.values()} == {cheap.node_id, dear.node_id}

        caps = StrategyConfig(max_per_cpu_sec=parse_amount("0.1") // 3600)
        result = await req.requestor.negotiate(demand.demand_id, count=2, config=caps)  # type: ignore[union-attr]
        assert [a["provider_id"] for a in result["agreements"]] == [cheap.node_id]
        assert [(f["provider_id"], f["code"]) for f in result["failures"]] == [(dear.node_id, "over-price-cap")]
        agreement_id = result["agreements"][0]["agreement_id"]

        mine = await req.agreements.get(agreement_id)
        theirs = await cheap.agreements.get(agreement_id)
        assert mine is not None and theirs is not None and mine.raw == theirs.raw
        doc = verify_agreement(mine.raw, network_id=NET)
        assert (doc.requestor_id, doc.provider_id) == (req.node_id, cheap.node_id)
        assert doc.terms["golem.com.scheme.payu.debit-note.interval-sec?"] == 120
        assert (mine.role, theirs.role, mine.state, theirs.state) == ("requestor", "provider", "approved", "approved")
        assert small.provider.active == {}  # type: ignore[union-attr]
        assert list(cheap.provider.active) == [agreement_id]  # type: ignore[union-attr]


async def test_late_joiner_catches_up_without_a_reannouncement(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        providers = [await w.node(f"p{i}", provider=True, presets=(SMALL.replace(name=f"s{i}"),)) for i in range(3)]
        offered = {o.offer_id for p in providers for o in p.provider.current.values()}  # type: ignore[union-attr]
        assert len(offered) == 3
        late = await w.node("late", requestor=True)
        await eventually(lambda: {o.offer_id for o in late.directory.book.live(now_ms())} == offered)
        assert late.directory.stats.synced >= 3
        assert all(p.provider.current for p in providers)  # type: ignore[union-attr]


async def test_withdrawn_offer_disappears_everywhere(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        prov = await w.node("prov", provider=True, presets=(SMALL, BIG_CHEAP))
        others = [await w.node(f"r{i}", requestor=True) for i in range(2)]
        await eventually(lambda: all(len(o.directory.book) == 2 for o in others))
        gone = prov.provider.current["small"].offer_id  # type: ignore[union-attr]
        demand = await others[0].requestor.create_demand({}, "")  # type: ignore[union-attr]
        await prov.provider.delete_preset("small")  # type: ignore[union-attr]
        await eventually(lambda: all(gone not in o.directory.book for o in others))
        assert all(len(o.directory.book) == 1 for o in others)
        assert any(e["type"] == "proposal-withdrawn" and e["offer_id"] == gone for e in demand.events)
        assert all(o.directory.book.is_withdrawn(gone) for o in others)


async def test_forged_offer_never_reaches_the_book_and_the_forwarder_is_charged(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        req = await w.node("req", requestor=True)
        mallory = w.hub.node()
        victim = NodeKey.generate()
        sealed = make_offer(victim, network_id=NET, subnet="public", properties=offer_properties(SMALL, node_name="v"),
                            constraints=OFFER_CONSTRAINTS, created_at_ms=now_ms(), expires_at_ms=now_ms() + 60_000)
        forged = bytearray(sealed)
        forged[-1] ^= 1  # breaks the signature
        for _ in range(3):
            await mallory.gossip.publish(offers_topic(NET, "public"), bytes(forged))
        await mallory.gossip.publish(offers_topic(NET, "public"), b"garbage")
        assert len(req.directory.book) == 0
        assert req.directory.stats.refused == 4
        assert mallory.node_id in req.net.peers.bans  # type: ignore[attr-defined]


async def test_several_agreements_until_capacity_is_used_then_the_offer_is_withdrawn(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        prov = await w.node("prov", provider=True, capacity=Capacity(2, 8.0, 10.0), presets=(SMALL,))
        req = await w.node("req", requestor=True)
        await eventually(lambda: len(req.directory.book) == 1)
        offer_id = prov.provider.current["small"].offer_id  # type: ignore[union-attr]
        demand = await req.requestor.create_demand({}, "")  # type: ignore[union-attr]
        for _ in range(2):
            await req.requestor.counter(demand.demand_id, offer_id)  # type: ignore[union-attr]
            await req.requestor.propose_agreement(demand.demand_id, offer_id)  # type: ignore[union-attr]
        assert len(prov.provider.active) == 2  # type: ignore[union-attr]
        await eventually(lambda: offer_id not in req.directory.book)  # full: offer withdrawn
        with pytest.raises(NegotiationFailed) as info:
            await req.requestor.counter(demand.demand_id, offer_id)  # type: ignore[union-attr]
        assert info.value.code in ("offer-unknown", "no-capacity")
        # ending one agreement frees capacity and brings an offer back
        agreement_id = next(iter(prov.provider.active))  # type: ignore[union-attr]
        await req.terminate(agreement_id, "done")
        await eventually(lambda: "small" in prov.provider.current)  # type: ignore[union-attr]
        assert (await prov.agreements.get(agreement_id)).state == "terminated"  # type: ignore[union-attr]
        await eventually(lambda: len(req.directory.book) == 1)


async def test_policy_rejection_reaches_the_requestor_with_its_reason(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        req = await w.node("req", requestor=True)
        prov = await w.node("prov", provider=True, presets=(SMALL,), policy=PolicyConfig(deny=frozenset({req.node_id})))
        await eventually(lambda: len(req.directory.book) == 1)
        demand = await req.requestor.create_demand({}, "")  # type: ignore[union-attr]
        result = await req.requestor.negotiate(demand.demand_id)  # type: ignore[union-attr]
        assert result["agreements"] == []
        assert [(f["provider_id"], f["code"]) for f in result["failures"]] == [(prov.node_id, "requestor-denied")]
        assert any(e["type"] == "rejected" and e["code"] == "requestor-denied" for e in demand.events)
        record = await req.requestor._records.get(prov.node_id)  # type: ignore[union-attr]
        assert record is not None and record["rejections"] == 1


async def test_reverse_auction_answer_becomes_a_proposal(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        prov = await w.node("prov", provider=True, presets=(SMALL.replace(subnet="gpu"),))
        req = await w.node("req", requestor=True)
        demand = await req.requestor.create_demand({}, "(golem.runtime.name=docker)", subnet="gpu")  # type: ignore[union-attr]
        await eventually(lambda: len(demand.proposals) == 1)
        # and directly: a provider answering a demand over the proposal protocol
        other = await w.node("other", provider=True, presets=(SMALL.replace(name="x", subnet="elsewhere"),))
        offer = other.provider.current["x"]  # type: ignore[union-attr]
        # wrong subnet for this demand: refused by the subnet check, no proposal
        with pytest.raises(RemoteError) as info:
            await other.net.rr.request(req.node_id, PROPOSAL, {"demand_id": demand.demand_id, "offer": offer.raw})  # type: ignore[attr-defined]
        assert info.value.code == "offer-refused"
        assert offer.offer_id not in demand.proposals
        # the same provider's offer in the right subnet is taken, marked as an auction answer
        right = await other.provider.create_preset(SMALL.replace(name="y", subnet="gpu"))  # type: ignore[union-attr]
        assert right.subnet == "gpu"
        await eventually(lambda: any(o.provider_id == other.node_id for o in demand.proposals.values()))
        # an offer never gossiped, handed over as an answer to the demand, becomes an "auction" proposal
        direct = make_offer(other.key, network_id=NET, subnet="gpu",  # type: ignore[attr-defined]
                            properties=offer_properties(SMALL.replace(name="z", subnet="gpu"), node_name="o"),
                            constraints=OFFER_CONSTRAINTS, created_at_ms=now_ms(), expires_at_ms=now_ms() + 60_000)
        await other.net.rr.request(req.node_id, PROPOSAL, {"demand_id": demand.demand_id, "offer": direct})  # type: ignore[attr-defined]
        assert [e["source"] for e in demand.events if e["type"] == "proposal" and e["properties"]["yagna.preset"] == "z"] == ["auction"]
        assert prov.node_id in {o.provider_id for o in demand.proposals.values()}


async def test_illegal_moves_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        prov = await w.node("prov", provider=True, presets=(SMALL,))
        req = await w.node("req", requestor=True)
        await eventually(lambda: len(req.directory.book) == 1)
        rr = req.net.rr  # type: ignore[attr-defined]
        # propose an agreement without having countered
        reply = await rr.request(prov.node_id, NEGOTIATE, {"op": "propose_agreement", "nid": "n1", "valid_until_ms": now_ms() + 9000,
                                                           "body": b"x", "signature": b"y"})
        assert reply["code"] == "unknown-negotiation"
        with pytest.raises(RemoteError) as info:
            await rr.request(prov.node_id, NEGOTIATE, {"op": "counter", "nid": "n2"})
        assert info.value.code == "bad-request"
        with pytest.raises(RemoteError):
            await rr.request(prov.node_id, NEGOTIATE, {"op": "terminate", "agreement_id": "nope", "reason": "x"})
        assert prov.provider._open == {} and prov.provider.active == {}  # type: ignore[union-attr]


class QueuedGossip:
    """The real Gossip only queues a publish; a sender task validates it later. This twin does the same."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self._queue: list[tuple[str, bytes]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    async def publish(self, topic: str, data: bytes) -> None:
        self._queue.append((topic, data))

    async def flush(self) -> None:
        while self._queue:
            topic, data = self._queue.pop(0)
            await self._inner.publish(topic, data)


async def test_own_offer_is_known_before_the_queued_publish_runs(tmp_path: Path) -> None:
    """Regression: the provider looked its offer up in its book right after a (queued) publish and lost it."""
    async with Store.open_ctx(tmp_path / "p.db") as store, trio.open_nursery() as nursery:
        hub = MemoryHub()
        key = NodeKey.generate()
        net = hub.node(key.node_id)
        gossip = QueuedGossip(net.gossip)
        svc = MarketService(key=key, config=MarketConfig(network_id=NET, requestor=False, capacity=Capacity(4, 8.0, 20.0)),
                            rr=net.rr, gossip=gossip, peers=net.peers, store=store)
        await nursery.start(net.peers.run)
        await nursery.start(svc.run)
        await svc.provider.create_preset(SMALL)  # type: ignore[union-attr]
        offer = svc.provider.current["small"]  # type: ignore[union-attr]
        assert offer.offer_id in svc.directory.book
        await svc.provider.delete_preset("small")  # type: ignore[union-attr]
        assert offer.offer_id not in svc.directory.book and svc.directory.book.is_withdrawn(offer.offer_id)
        # when the queue runs, the offer is already withdrawn: our own validator stops it going out
        await gossip.flush()
        assert svc.directory.stats.refused == 1
        assert offer.offer_id not in svc.directory.book
        assert svc.directory.penalties.snapshot() == {}  # we never charge ourselves
        nursery.cancel_scope.cancel()


async def test_provider_restart_keeps_its_agreements_and_committed_capacity(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        req = await w.node("req", requestor=True)
        prov_key = NodeKey.generate()
        net = w.hub.node(prov_key.node_id)
        config = MarketConfig(network_id=NET, requestor=False, capacity=Capacity(1, 8.0, 20.0))
        await w.nursery.start(net.peers.run)
        async with Store.open_ctx(tmp_path / "prov.db") as store, trio.open_nursery() as inner:
            prov = MarketService(key=prov_key, config=config, rr=net.rr, gossip=net.gossip, peers=net.peers, store=store)
            await inner.start(prov.run)
            await prov.provider.create_preset(SMALL)  # type: ignore[union-attr]
            await eventually(lambda: len(req.directory.book) == 1)
            demand = await req.requestor.create_demand({}, "")  # type: ignore[union-attr]
            result = await req.requestor.negotiate(demand.demand_id)  # type: ignore[union-attr]
            assert len(result["agreements"]) == 1
            inner.cancel_scope.cancel()
        # the daemon comes back on the same database
        async with Store.open_ctx(tmp_path / "prov.db") as store, trio.open_nursery() as inner:
            again = MarketService(key=prov_key, config=config, rr=net.rr, gossip=net.gossip, peers=net.peers, store=store)
            await inner.start(again.run)
            assert list(again.provider.active) == [result["agreements"][0]["agreement_id"]]  # type: ignore[union-attr]
            assert again.provider.ledger.free().threads == 0  # type: ignore[union-attr]
            assert "small" not in again.provider.current  # type: ignore[union-attr]  # full: not offered
            inner.cancel_scope.cancel()


async def test_catch_up_pages_through_a_large_book(tmp_path: Path) -> None:
    from yagna.market_service import offers as offers_mod

    async with world(tmp_path) as w:
        seed = await w.node("seed", requestor=True)
        now = now_ms()
        for i in range(60):  # 60 providers x 40 offers = 2,400 offers, several pages
            key = NodeKey.generate()
            for j in range(40):
                sealed = make_offer(key, network_id=NET, subnet="public",
                                    properties={**offer_properties(SMALL, node_name=f"n{i}"), "x.n": j},
                                    constraints=OFFER_CONSTRAINTS, created_at_ms=now, expires_at_ms=now + 600_000)
                assert seed.directory.take_offer("public", sealed, source="test") is not None
        assert len(seed.directory.book) == 2400
        offers_mod.SYNC_PAGE_MAX = 500  # smaller pages: the cursor has to work
        try:
            late = await w.node("late", requestor=True)
            await eventually(lambda: len(late.directory.book) == 2400, timeout=30)
        finally:
            offers_mod.SYNC_PAGE_MAX = 1000
        assert late.directory.stats.synced == 2400


def test_penalties_decay_and_ban_at_the_threshold() -> None:
    from yagna.market_service.offers import BAN_THRESHOLD, PENALTY_HALF_LIFE_S, Penalties

    now = [0.0]
    banned: list[tuple[str, float]] = []
    p = Penalties(lambda peer, s: banned.append((peer, s)), clock=lambda: now[0])
    p.charge("a", 50)
    now[0] += PENALTY_HALF_LIFE_S  # halves to 25
    assert p.score("a") == pytest.approx(25)
    p.charge("a", 50)
    assert banned == [] and p.score("a") == pytest.approx(75)
    p.charge("a", 0)  # free reasons cost nothing
    p.charge("a", BAN_THRESHOLD)
    assert [peer for peer, _ in banned] == ["a"] and p.score("a") == 0


def test_peek_domain_reads_only_envelopes() -> None:
    from market.offers import make_withdrawal
    from yagna.market_service.offers import peek_domain

    key = NodeKey.generate()
    assert peek_domain(make_withdrawal(key, network_id=NET, offer_id="a" * 64, at_ms=1)) == "yagna/offer-withdraw/1"
    for junk in (b"", b"\x80", b"\x82\x40\x40", b"\xff" * 10):
        assert peek_domain(junk) is None


async def test_a_requestor_flooding_demands_is_rate_limited(tmp_path: Path) -> None:
    from market.offers import make_demand
    from yagna.market_service.offers import DEMAND_BURST, demands_topic

    async with world(tmp_path) as w:
        prov = await w.node("prov", provider=True, presets=(SMALL,))
        flood = w.hub.node()
        key = NodeKey.generate()
        for i in range(DEMAND_BURST + 5):
            sealed = make_demand(key, network_id=NET, subnet="public", properties={"n": i}, constraints="()",
                                 created_at_ms=now_ms(), expires_at_ms=now_ms() + 60_000)
            await flood.gossip.publish(demands_topic(NET, "public"), sealed)
        assert prov.directory.stats.refused == 5


async def test_expired_agreements_end_on_both_sides(tmp_path: Path) -> None:
    """Wall time (offers, agreements) is a settable fake. Not autojump_clock: the store's worker
    thread looks idle to it, so it would fire every protocol timeout at once."""
    now = [now_ms()]
    clock = lambda: now[0]  # noqa: E731
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        hub = MemoryHub()
        services = []
        for name, provider in (("prov", True), ("req", False)):
            key = NodeKey.generate()
            net = hub.node(key.node_id)
            store = await stack.enter_async_context(Store.open_ctx(tmp_path / f"{name}.db"))
            svc = MarketService(key=key, config=MarketConfig(network_id=NET, provider=provider, requestor=not provider,
                                                             capacity=Capacity(1, 8.0, 20.0), agreement_check_s=0.05),
                                rr=net.rr, gossip=net.gossip, peers=net.peers, store=store, clock_ms=clock)
            await nursery.start(net.peers.run)
            await nursery.start(svc.run)
            services.append(svc)
        prov, req = services
        await prov.provider.create_preset(SMALL)  # type: ignore[union-attr]
        demand = await req.requestor.create_demand({}, "", expiration_s=120)  # type: ignore[union-attr]
        result = await req.requestor.negotiate(demand.demand_id)  # type: ignore[union-attr]
        agreement_id = result["agreements"][0]["agreement_id"]
        hub.disconnect(req.node_id)  # the provider cannot tell the requestor: each side must end it alone
        now[0] += 121_000
        with trio.fail_after(10):
            while prov.provider.active or (await req.agreements.get(agreement_id)).state != "terminated":  # type: ignore[union-attr]
                await trio.sleep(0.05)
        assert (await prov.agreements.get(agreement_id)).reason == "expired"  # type: ignore[union-attr]
        assert (await req.agreements.get(agreement_id)).reason == "expired"  # type: ignore[union-attr]
        assert prov.provider.ledger.free().threads == 1  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
