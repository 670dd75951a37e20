"""Anti-entropy in the offer directory, on the in-memory network twin and virtual time.

Gossip is lost on purpose (a port wrapper that drops what one node would have
received), catch-ups time out (a server that stalls its first requests), a
lone peer holds more than the per-relay cap, and hostile peers answer with
junk: every live offer still reaches every node within a few rounds.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable

import trio
import trio.testing

from market.anti_entropy import MAX_LIST_ITEMS, MAX_PULL_KEYS, offer_key
from market.offer_book import OfferBook
from market.offers import make_offer, make_withdrawal, offer_id
from yagna.core.identity import NodeKey
from yagna.market_service.anti_entropy import ANTI_ENTROPY
from yagna.market_service.offers import SYNC, OfferDirectory, offers_topic
from yagna.net.errors import RemoteError
from yagna.net.gossip import Inbound
from yagna.net.memory import MemoryHub, MemoryNode
from yagna.net.reqresp import Handler, ProtocolSpec, Request

NET = "testnet"
SUBNET = "public"
T0 = 1_700_000_000_000
TTL = 30 * 60_000


def clock() -> int:
    return T0 + int(trio.current_time() * 1000)


def sealed(key: NodeKey, n: int = 0, *, size: int = 0) -> bytes:
    props: dict[str, object] = {"golem.runtime.name": "vm", "n": n}
    if size:
        props["golem.x.pad"] = "x" * size
    now = clock()
    return make_offer(key, network_id=NET, subnet=SUBNET, properties=props, constraints="()",
                      created_at_ms=now, expires_at_ms=now + TTL)


class LossyGossip:
    """The node's gossip port, except that copies from peers are lost while ``lose(data)`` says so."""

    def __init__(self, inner, lose: Callable[[bytes], bool]) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self.lose = lose
        self.lost = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    def set_validator(self, topic, validator, *, on_invalid=None) -> None:  # type: ignore[no-untyped-def]
        me = self._inner._me

        def lossy(msg: Inbound) -> bool:
            if msg.forwarder != me and self.lose(msg.data):
                self.lost += 1
                return False
            return validator(msg)

        self._inner.set_validator(topic, lossy, on_invalid=on_invalid)


class StallingRR:
    """The node's request/response port; its handlers of ``protocols`` stall the first ``stalls`` requests."""

    def __init__(self, inner, protocols: set[str], stalls: int) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self._protocols = protocols
        self.stalls = stalls

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    def register(self, spec: ProtocolSpec, handler: Handler) -> None:
        if spec.name not in self._protocols:
            self._inner.register(spec, handler)
            return

        async def stalling(request: Request) -> object:
            if self.stalls > 0:
                self.stalls -= 1
                await trio.sleep(spec.timeout * 3)  # past both deadlines: the client times out
            return await handler(request)

        self._inner.register(spec, stalling)


class CountingRR:
    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self.sent: list[str] = []
        self.log: list[tuple[float, str, str]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    async def request(self, peer: str, spec: ProtocolSpec, payload: object, *, timeout: float | None = None) -> object:
        if spec.name == ANTI_ENTROPY.name:
            self.sent.append(payload["op"] if isinstance(payload, dict) else "?")
            self.log.append((trio.current_time(), peer, self.sent[-1]))
        return await self._inner.request(peer, spec, payload, timeout=timeout)


class World:
    def __init__(self, hub: MemoryHub, nursery: trio.Nursery) -> None:
        self.hub = hub
        self.nursery = nursery
        self.nodes: dict[str, tuple[MemoryNode, OfferDirectory]] = {}

    async def node(self, name: str, *, gossip=None, rr=None, book: OfferBook | None = None,  # type: ignore[no-untyped-def]
                   anti_entropy_s: float = 3.0, join: bool = True, rng: random.Random | None = None) -> OfferDirectory:
        net = self.hub.node(name)
        d = OfferDirectory(network_id=NET, gossip=gossip(net.gossip) if gossip else net.gossip,
                           rr=rr(net.rr) if rr else net.rr, peers=net.peers, me=name, clock_ms=clock, book=book,
                           anti_entropy_s=anti_entropy_s, rng=rng)
        await self.nursery.start(net.peers.run)
        await self.nursery.start(d.run)
        if join:
            await d.join(SUBNET)
        self.nodes[name] = (net, d)
        return d


@contextlib.asynccontextmanager
async def world() -> AsyncIterator[World]:
    async with trio.open_nursery() as nursery:
        yield World(MemoryHub(), nursery)
        nursery.cancel_scope.cancel()


async def eventually(check: Callable[[], bool], *, within: float = 60.0) -> float:
    """Virtual seconds until ``check()`` holds (fails past ``within``)."""
    start = trio.current_time()
    with trio.fail_after(within):
        while not check():
            await trio.sleep(0.1)
    return trio.current_time() - start


async def publish(d: OfferDirectory, raw: bytes) -> None:
    await d.publish(SUBNET, raw)


async def test_offers_lost_by_gossip_reach_the_node_by_anti_entropy(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        lossy: list[LossyGossip] = []

        def lose_all(inner) -> LossyGossip:  # type: ignore[no-untyped-def]
            lossy.append(LossyGossip(inner, lambda data: True))
            return lossy[0]

        a, b = await w.node("a"), await w.node("b")
        deaf = await w.node("deaf", gossip=lose_all)
        await trio.sleep(1)  # connected, caught up (nothing to catch up yet)
        keys = [NodeKey.generate() for _ in range(20)]
        for i, k in enumerate(keys):
            await publish(a if i % 2 else b, sealed(k, i))
        assert len(a.book) == len(b.book) == 20 and len(deaf.book) == 0 and lossy[0].lost >= 20
        took = await eventually(lambda: len(deaf.book) == 20)
        assert took <= 3 * 4.5  # a few rounds of at most 4.5 s
        assert deaf.anti_entropy.stats.pulled == 20 and not w.nodes["deaf"][0].peers.bans
        # withdrawals lost by gossip are pulled too; nobody pulls the withdrawn offer back
        gone = sealed(keys[1], 100)
        await publish(a, gone)
        await eventually(lambda: offer_id(gone) in deaf.book)
        await a.publish(SUBNET, make_withdrawal(keys[1], network_id=NET, offer_id=offer_id(gone), at_ms=clock()))
        assert offer_id(gone) not in a.book and offer_id(gone) in deaf.book
        await eventually(lambda: offer_id(gone) not in deaf.book and deaf.book.is_withdrawn(offer_id(gone)))
        await trio.sleep(30)
        assert all(offer_id(gone) not in d.book for d in (a, b, deaf))
        assert a.anti_entropy.stats.refused == b.anti_entropy.stats.refused == 0


async def test_equal_sets_cost_one_request_a_round(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        counting: list[CountingRR] = []

        def count(inner) -> CountingRR:  # type: ignore[no-untyped-def]
            counting.append(CountingRR(inner))
            return counting[0]

        a = await w.node("a")
        for i in range(300):
            await publish(a, sealed(NodeKey.generate(), i))
        b = await w.node("b", rr=count)
        await eventually(lambda: len(b.book) == 300)
        counting[0].sent.clear()
        rounds = b.anti_entropy.stats.rounds
        await trio.sleep(60)
        done = b.anti_entropy.stats.rounds - rounds
        assert done >= 10 and counting[0].sent == ["digest"] * done
        assert b.anti_entropy.stats.equal >= done


async def test_a_timed_out_catch_up_is_repaired(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        stalling: list[StallingRR] = []

        def stall(inner) -> StallingRR:  # type: ignore[no-untyped-def]
            stalling.append(StallingRR(inner, {ANTI_ENTROPY.name, SYNC.name}, stalls=3))
            return stalling[0]

        holder = await w.node("holder", rr=stall)
        for i in range(50):
            await publish(holder, sealed(NodeKey.generate(), i))
        late = await w.node("late")
        await trio.sleep(6)  # the catch-up at connect timed out
        assert late.anti_entropy.stats.failed >= 1 and len(late.book) == 0
        await eventually(lambda: len(late.book) == 50)
        assert stalling[0].stalls == 0 and not w.nodes["late"][0].peers.bans


async def test_a_lone_peer_holding_more_than_the_relay_cap_is_not_banned(autojump_clock: trio.testing.MockClock) -> None:
    """Before: the joiner refused every offer past the per-relay cap as over_cap and banned its only peer."""
    async with world() as w:
        holder = await w.node("holder")
        raws = [sealed(NodeKey.generate(), i, size=2000) for i in range(80)]
        for raw in raws:
            await publish(holder, raw)
        cap = 40 * len(raws[0])  # the joiner's share for one relay: half of what the peer holds
        joiner = await w.node("joiner", book=OfferBook(max_bytes_per_via=cap))
        await eventually(lambda: len(joiner.book) == 80)
        assert not w.nodes["joiner"][0].peers.bans and joiner.book.via_bytes("holder") == 0
        assert joiner.book.pulled_bytes("holder") == sum(len(r) for r in raws)
        # gossip the same peer relays afterwards is still welcome (its own, unasked share is empty)
        fresh = sealed(NodeKey.generate(), 99)
        await publish(holder, fresh)
        assert offer_id(fresh) in joiner.book and joiner.book.via_bytes("holder") == len(fresh)


async def test_catch_up_falls_back_to_the_whole_book_for_a_peer_without_anti_entropy(
        autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        old = await w.node("old", anti_entropy_s=0)
        del w.nodes["old"][0].rr._handlers[ANTI_ENTROPY.name]  # a node of an earlier version
        for i in range(30):
            await publish(old, sealed(NodeKey.generate(), i))
        new = await w.node("new")
        await eventually(lambda: len(new.book) == 30)
        assert new.stats.synced == 30 and new.anti_entropy.stats.pulled == 0


async def test_sync_pages_come_from_the_sorted_index(autojump_clock: trio.testing.MockClock) -> None:
    from yagna.market_service import offers as offers_mod

    async with world() as w:
        a = await w.node("a", anti_entropy_s=0)
        for i in range(120):
            await publish(a, sealed(NodeKey.generate(), i))
        b = await w.node("b", anti_entropy_s=0, join=False)
        ids: list[str] = []
        after = ""
        while True:
            reply = await w.nodes["b"][0].rr.request("a", SYNC, {"subnet": SUBNET, "after": after, "limit": 50})
            assert isinstance(reply, dict)
            ids += [offer_id(raw) for raw in reply["offers"]]
            if not reply["next"]:
                break
            after = reply["next"]
        assert ids == sorted(a.book.digest(SUBNET).keys()[i][:64] for i in range(120)) and len(set(ids)) == 120
        assert offers_mod.SYNC_PAGE_MAX == 1000 and len(b.book) == 0


async def test_serving_is_rate_limited_per_peer(autojump_clock: trio.testing.MockClock) -> None:
    from yagna.market_service.anti_entropy import SERVE_REQUESTS_BURST

    async with world() as w:
        a = await w.node("a", anti_entropy_s=0)
        await w.node("b", anti_entropy_s=0, join=False)
        await w.node("c", anti_entropy_s=0, join=False)
        digest = a.book.digest(SUBNET)
        msg = {"op": "digest", "subnet": SUBNET, "root": digest.root, "n": 0}
        busy = 0
        for _ in range(SERVE_REQUESTS_BURST + 10):
            try:
                await w.nodes["b"][0].rr.request("a", ANTI_ENTROPY, msg)
            except RemoteError as exc:
                assert exc.code == "busy"
                busy += 1
        assert busy == 10 and a.anti_entropy.stats.busy == 10
        assert await w.nodes["c"][0].rr.request("a", ANTI_ENTROPY, msg) == {"equal": True}  # others unaffected
        await trio.sleep(2)
        assert await w.nodes["b"][0].rr.request("a", ANTI_ENTROPY, msg) == {"equal": True}  # refilled


class HostileServer:
    """Answers anti-entropy with ``answer(op, payload)``; offers whatever it likes."""

    def __init__(self, node: MemoryNode, answer: Callable[[str, dict], object]) -> None:  # type: ignore[type-arg]
        async def handle(request: Request) -> object:
            payload = request.payload
            assert isinstance(payload, dict)
            return answer(payload["op"], payload)

        node.rr.register(ANTI_ENTROPY, handle)


async def test_hostile_answers_are_charged_and_change_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        good = sealed(NodeKey.generate(), 1)
        unasked = sealed(NodeKey.generate(), 2)
        listed = offer_key(offer_id(good))
        bucket = bytearray(2048)

        def lying(op: str, payload: dict) -> object:  # type: ignore[type-arg]
            if op == "digest":
                bucket[int(listed[:2], 16) * 8] = 1
                return {"equal": False, "n": 1, "buckets": bytes(bucket)}
            if op == "list":
                # the listed key, plus keys of a bucket not asked for
                other = "ff" * 32 + "o" if listed[:2] != "ff" else "00" * 32 + "o"
                return {"items": [[listed, clock() + TTL], [other, clock() + TTL]], "next": None}
            return {"items": []}

        def flooding(op: str, payload: dict) -> object:  # type: ignore[type-arg]
            if op == "digest":
                return {"equal": False, "n": 1, "buckets": b"\x01" * 2048}
            if op == "list":
                return {"items": [[listed, clock() + TTL]], "next": None}
            return {"items": [unasked]}  # not what was asked for

        stranger = NodeKey.generate()
        withdrawal = make_withdrawal(stranger, network_id=NET, offer_id="cd" * 32, at_ms=clock())

        def withdrawing(op: str, payload: dict) -> object:  # type: ignore[type-arg]
            return {"items": [withdrawal]} if op == "pull" else flooding(op, payload)

        for name, answer in (("liar", lying), ("flooder", flooding), ("withdrawer", withdrawing)):
            HostileServer(w.hub.node(name), answer)
        victim = await w.node("victim", anti_entropy_s=0)
        assert await victim.reconcile("liar", SUBNET) == "failed"
        assert len(victim.book) == 0 and victim.penalties.score("liar") > 0
        assert await victim.reconcile("flooder", SUBNET) == "pulled"
        assert len(victim.book) == 0 and victim.penalties.score("flooder") >= 20
        # a valid withdrawal nobody asked for is not recorded either
        assert await victim.reconcile("withdrawer", SUBNET) == "pulled"
        assert not victim.book.is_withdrawn("cd" * 32) and victim.penalties.score("withdrawer") >= 20


async def test_list_replies_are_paged(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        a = await w.node("a", anti_entropy_s=0)
        n = MAX_LIST_ITEMS + 500  # more than one list page when every bucket differs
        for i in range(n):
            a.take_offer(SUBNET, sealed(NodeKey.generate(), i), source="test")
        counting: list[CountingRR] = []

        def count(inner) -> CountingRR:  # type: ignore[no-untyped-def]
            counting.append(CountingRR(inner))
            return counting[0]

        b = await w.node("b", rr=count, anti_entropy_s=0)
        await eventually(lambda: len(b.book) == n)
        assert counting[0].sent.count("list") == 2 and counting[0].sent[0] == "digest"
        assert counting[0].sent.count("pull") >= n // MAX_PULL_KEYS
        assert offers_topic(NET, SUBNET)


async def test_a_failed_round_is_tried_at_once_with_another_neighbour(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        stalling: list[StallingRR] = []

        def stall_forever(inner) -> StallingRR:  # type: ignore[no-untyped-def]
            stalling.append(StallingRR(inner, {ANTI_ENTROPY.name}, stalls=10**9))
            return stalling[0]

        counting: list[CountingRR] = []

        def count(inner) -> CountingRR:  # type: ignore[no-untyped-def]
            counting.append(CountingRR(inner))
            return counting[0]

        await w.node("stuck", rr=stall_forever, anti_entropy_s=0)
        good = await w.node("good", anti_entropy_s=0)
        # a seed whose first pick of ["good", "stuck"] is "stuck"
        seed = next(i for i in range(100) if _first_pick(i) == 1)
        me = await w.node("me", rr=count, anti_entropy_s=60, rng=random.Random(seed))
        await trio.sleep(20)  # the rounds at connect are over (the stuck peer's timed out); periodic ones from 30 s
        assert me.anti_entropy.stats.failed == 1
        for i in range(5):  # as if gossip to `me` had been lost
            good.take_offer(SUBNET, sealed(NodeKey.generate(), i), source="test")
        await eventually(lambda: len(me.book) == 5, within=200)
        periodic = [(t, peer, op) for t, peer, op in counting[0].log if t >= 20]  # after the rounds at connect
        assert [(peer, op) for _, peer, op in periodic[:3]] == [("stuck", "digest"), ("good", "digest"),
                                                                ("good", "list")]
        assert periodic[1][0] - periodic[0][0] <= 6  # the stuck peer's timeout, not another period


def _first_pick(seed: int) -> int:
    rng = random.Random(seed)
    rng.uniform(0.5, 1.5)
    return rng.choice([0, 1])


async def test_rounds_at_connect_wait_for_each_other_only_so_long(autojump_clock: trio.testing.MockClock) -> None:
    """Many new peers at once, some of them stuck: a round at connect that cannot start within
    CONNECT_ROUND_WAIT_S is skipped (the periodic rounds cover it), not queued for minutes."""
    from yagna.market_service.offers import CONNECT_ROUND_WAIT_S

    async with world() as w:
        me = await w.node("me", anti_entropy_s=0)
        lock = me._round_locks.setdefault(SUBNET, trio.Lock())
        await lock.acquire()  # a round in progress (with a peer that is stuck)
        await w.node("other", anti_entropy_s=0)  # connects: its round waits for the lock ...
        await trio.sleep(CONNECT_ROUND_WAIT_S + 1)
        lock.release()
        await trio.sleep(1)
        assert me.anti_entropy.stats.rounds == 0  # ... and was skipped, not left queued
        assert await me.reconcile("other", SUBNET) == "equal" and me.anti_entropy.stats.rounds == 1


async def test_every_node_converges_when_half_of_all_gossip_is_lost(autojump_clock: trio.testing.MockClock) -> None:
    async with world() as w:
        rng = random.Random(7)
        dirs = [await w.node(f"n{i}", gossip=lambda inner: LossyGossip(inner, lambda data: rng.random() < 0.5))
                for i in range(6)]
        await trio.sleep(1)
        published = []
        for i in range(60):
            raw = sealed(NodeKey.generate(), i)
            published.append(offer_id(raw))
            await publish(dirs[i % 6], raw)
        assert any(len(d.book) < 60 for d in dirs)  # gossip lost some
        await eventually(lambda: all(oid in d.book for d in dirs for oid in published))
        roots = {d.book.digest(SUBNET).root for d in dirs}
        assert len(roots) == 1  # the same set everywhere: rounds from now on are one message
