"""The offer-propagation scenario: providers publish signed offers; who learns each, and when.

Every node follows one subnet's offer topic. ``providers`` nodes each publish
one offer (a daemon's real default offer: :func:`market.presets.offer_properties`,
signed with an ed25519 key derived from the seed) at a random moment in the
first ``publish_window`` seconds.

*Real* nodes (``real`` of them, chosen at random among all nodes) run the daemon's :class:`~yagna.market_service.offers.OfferDirectory`
unchanged over the simulated ports: topic validator (signature, network,
expiry, subnet), the offer book's caps and per-provider token bucket,
per-forwarder admission, the anti-entropy round at connect and, with
``repair_interval``, every that many seconds (``/yagna/market/anti-entropy/1.0.0``).
*Light* nodes run the same gossip layer (seen cache, forwarding) and keep one
bit per offer: an offer is accepted if it verified once at set-up (every offer
here is valid and each provider publishes one, so no cap or rate limit can
refuse it). Light nodes answer the real nodes' anti-entropy requests with the
daemon's own answering code over their offer bits, and run a model of the same
rounds (:meth:`OfferSim._light_round`): one with each live neighbour in turn
on reconnecting (the catch-up at connect) and, with ``repair_interval``, one
with a random live neighbour per period.

Churn: ``churn`` of the non-provider nodes go down at a random moment in the
publish window and come back between ``rejoin_at`` and ``rejoin_at`` + 5 s.
"""

from __future__ import annotations

import gc
import logging
import hashlib
import math
import random
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
import trio.testing

from market.anti_entropy import (
    BUCKETS,
    DIGEST_BYTES,
    MAX_PULL_KEYS,
    SetDigest,
    decode_request,
    offer_key,
)
from market.offers import SignedOffer, verify_offer
from market.presets import OFFER_CONSTRAINTS, Preset, offer_properties
from market.offers import make_offer
from yagna.core.envelope import content_id
from yagna.core.identity import NodeKey
from yagna.market_service.anti_entropy import ANTI_ENTROPY, answer
from yagna.market_service.offers import SYNC, SYNC_PAGE_BYTES, SYNC_PAGE_MAX, OfferDirectory, offers_topic

from .network import RR_OVERHEAD, SimNetwork, chance

NETWORK_ID = "netsim"
SUBNET = "public"
EPOCH_MS = 1_800_000_000_000
"""Wall-clock ms at virtual time 0 (offers are created then and live 30 minutes)."""
OFFER_TTL_MS = 30 * 60 * 1000
HIST_BIN_S = 0.001
HIST_MAX_S = 120.0
"""Arrivals later than this land in the last bin (a run's --duration is at most this)."""


@dataclass
class Config:
    nodes: int = 1000
    degree: int = 8
    providers: int = 100
    real: int = 100
    loss: float = 0.0
    churn: float = 0.0
    seed: int = 1
    latency_ms: tuple[float, float] = (5.0, 80.0)
    publish_window: float = 1.0
    rejoin_at: float = 20.0
    duration: float = 60.0
    ideal_sample: int = 32
    repair_interval: float = 0.0
    """Anti-entropy every this many s (jittered +-50% at real nodes, as in the daemon): the real sample runs
    the daemon's rounds, light nodes a model of them (0: off; the daemon's default is 3)."""


@dataclass
class Result:
    config: Config
    wall_s: float = 0.0
    setup_wall_s: float = 0.0
    events: int = 0
    hist: array = field(default_factory=lambda: array("I"))
    ideal: list[float] = field(default_factory=list)
    ideal_all_known_s: float = math.nan
    pairs_expected: int = 0
    missing_settled: int = 0
    missing_settled_real: int = 0
    settled_at: float = math.nan
    missing_end: int = 0
    missing_end_real: int = 0
    pairs_expected_real: int = 0
    all_known_at: float = math.nan
    last_arrival_at: float = math.nan
    gossip_sent: list[int] = field(default_factory=list)
    gossip_bytes: list[int] = field(default_factory=list)
    rr_sent: list[int] = field(default_factory=list)
    rr_bytes: list[int] = field(default_factory=list)
    duplicates: int = 0
    lost: int = 0
    rss_base: int = 0
    rss_net: int = 0
    rss_end: int = 0
    light_node_bytes: float = 0.0
    real_node_bytes: int = 0
    real_count: int = 0
    synced_real: int = 0
    offer_size: int = 0
    repair_s: float = math.nan
    light_missing_end: int = 0
    light_repair_s: float = math.nan
    """Gossip settled -> no light node misses an offer (the modelled anti-entropy's repair time)."""


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def provider_key(seed: int, i: int) -> NodeKey:
    return NodeKey.from_seed(hashlib.sha256(f"netsim/{seed}/{i}".encode()).digest())


def deep_size(root: object, stop: tuple[type, ...]) -> int:
    """Bytes of every object reachable from ``root`` (not through ``stop`` types, modules, classes or functions)."""
    seen: set[int] = set()
    todo = [root]
    total = 0
    skip = (type, type(sys), type(deep_size), type(len)) + stop
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total


class OfferSim:
    """One run of the scenario (build with :meth:`build`, then ``trio.run(sim.main, clock=MockClock(...))``)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.result = Result(cfg)

    # -- set-up (outside trio: pure CPU) ----------------------------------------------------
    def build(self) -> None:
        cfg = self.cfg
        r = self.result
        t = time.perf_counter()
        r.rss_base = rss_bytes()
        lo, hi = cfg.latency_ms
        self.net = net = SimNetwork(cfg.nodes, degree=cfg.degree, seed=cfg.seed, loss=cfg.loss,
                                    latency_s=(lo / 1000, hi / 1000))
        rng = random.Random(cfg.seed * 7919 + 1)
        n = cfg.nodes
        self.providers = sorted(rng.sample(range(n), min(cfg.providers, n)))
        others = [i for i in range(n) if i not in set(self.providers)]
        self.real_ids = sorted(rng.sample(range(n), min(cfg.real, n)))
        real_set = set(self.real_ids)
        self.light_ids = [i for i in range(n) if i not in real_set]
        self.churners = sorted(rng.sample(others, int(round(cfg.churn * len(others))))) if cfg.churn else []
        # offers: one per provider, signed once here, verified once (light nodes reuse the verdict)
        p = len(self.providers)
        self.raw: list[bytes] = []
        self.offer_ids: list[str] = []
        self.offer_index: dict[str, int] = {}
        for k, node in enumerate(self.providers):
            key = provider_key(cfg.seed, node)
            raw = make_offer(key, network_id=NETWORK_ID, subnet=SUBNET,
                             properties=offer_properties(Preset("default"), node_name=f"sim-{node}"),
                             constraints=OFFER_CONSTRAINTS, created_at_ms=EPOCH_MS,
                             expires_at_ms=EPOCH_MS + OFFER_TTL_MS)
            verify_offer(raw, network_id=NETWORK_ID, now_ms=EPOCH_MS)
            self.raw.append(raw)
            oid = content_id(raw)
            self.offer_ids.append(oid)
            self.offer_index[oid] = k
        r.offer_size = len(self.raw[0]) if self.raw else 0
        self.sorted_offers = sorted(range(p), key=lambda k: self.offer_ids[k])
        self.offer_of_msg: dict[int, int] = {}
        self.published_at = array("d", [math.nan]) * p
        self.held = [bytearray((p + 7) // 8) for _ in range(n)]
        self.known = array("I", bytes(4 * n))
        self.hist = array("I", bytes(4 * int(HIST_MAX_S / HIST_BIN_S)))
        self.last_arrival = 0.0
        self.light_last_arrival = 0.0
        self.is_real = bytearray(n)
        for i in self.real_ids:
            self.is_real[i] = 1
        net.light_accept = self._light_accept
        net.light_rr[SYNC.name] = self._light_serve_sync
        net.light_rr[ANTI_ENTROPY.name] = self._light_serve_anti_entropy
        self.keys = [offer_key(oid) for oid in self.offer_ids]
        self.bucket_of = [int(oid[:2], 16) for oid in self.offer_ids]
        net.on_rejoin.append(self._on_rejoin)
        r.rss_net = rss_bytes() - sys.getsizeof(self.hist)  # the histogram is the bench's, not the nodes'
        # the ideal: shortest-path latency from a sample of providers, every node up, no loss
        sample = rng.sample(range(p), min(cfg.ideal_sample, p))
        worst = 0.0
        for k in sample:
            dist = net.ideal_times(self.providers[k])
            finite = [d for i, d in enumerate(dist) if i != self.providers[k] and d < math.inf]
            r.ideal.extend(finite)
            worst = max(worst, max(finite, default=0.0))
        r.ideal_all_known_s = worst
        r.setup_wall_s = time.perf_counter() - t

    # -- bookkeeping ------------------------------------------------------------------------
    def _record(self, node: int, k: int) -> None:
        held = self.held[node]
        byte, bit = k >> 3, 1 << (k & 7)
        if held[byte] & bit:
            return
        held[byte] |= bit
        self.known[node] += 1
        now = trio.current_time()
        self.last_arrival = now
        if not self.is_real[node]:
            self.light_last_arrival = now
        at = self.published_at[k]
        if node != self.providers[k] and at == at:
            b = int((now - at) / HIST_BIN_S)
            self.hist[min(b, len(self.hist) - 1)] += 1

    def _listener(self, node: int) -> Callable[[SignedOffer, str], None]:
        """The real directory's on_offer listener at ``node``: count the offer as known there."""
        def taken(offer: SignedOffer, source: str) -> None:
            self._record(node, self.offer_index[offer.offer_id])
        return taken

    def _holds(self, node: int, k: int) -> bool:
        return bool(self.held[node][k >> 3] & (1 << (k & 7)))

    def _light_accept(self, node: int, msg: int, sender: int) -> bool:
        k = self.offer_of_msg.get(msg)
        if k is None:
            return False
        self._record(node, k)
        return True

    async def _light_serve_sync(self, node: int, peer: str, payload: object) -> object:
        """A light node answers a catch-up request as OfferDirectory._serve_sync does (pages by offer id)."""
        assert isinstance(payload, dict)
        after = payload.get("after", "")
        limit = min(int(payload.get("limit", SYNC_PAGE_MAX)), SYNC_PAGE_MAX)
        held = [k for k in self.sorted_offers if self._holds(node, k) and self.offer_ids[k] > after]
        page: list[bytes] = []
        size = 0
        for k in held:
            if len(page) >= limit or size + len(self.raw[k]) > SYNC_PAGE_BYTES:
                break
            page.append(self.raw[k])
            size += len(self.raw[k])
        more = len(page) < len(held)
        return {"offers": page, "next": self.offer_ids[held[len(page) - 1]] if more and page else None}

    async def _light_serve_anti_entropy(self, node: int, peer: str, payload: object) -> object:
        """A light node answers anti-entropy with the daemon's own code over a digest of its offer bits."""
        return answer(decode_request(payload), _LightBook(self, node))[0]

    def _on_rejoin(self, node: int) -> None:
        """A light node back: an anti-entropy round with each live neighbour, one after another (as the daemon's
        rounds are, one at a time per subnet), so only the first pulls much."""
        if node in self.real_nodes:
            return  # the real directory's on_connect listener runs its own rounds
        self._rejoin_round(node, self.net.live_neighbours(node), 0)

    def _rejoin_round(self, node: int, peers: list[int], salt: int) -> None:
        net = self.net
        if not peers or not net.up[node]:
            return
        peer, rest = peers[0], peers[1:]
        took = self._light_round(node, peer, -10_000 - salt) if net.up[peer] else 0.0
        if rest:
            net.schedule(took, self._rejoin_round, node, rest, salt + 1)

    def _repair_tick(self, node: int, round_: int) -> None:
        """Modelled anti-entropy at a light node: a round with one random live neighbour, period jittered +-50%."""
        net = self.net
        jitter = 0.5 + chance(net.seed, node, round_, -4_000_000)
        net.schedule(self.cfg.repair_interval * jitter, self._repair_tick, node, round_ + 1)
        live = net.live_neighbours(node)
        if live:
            peer = live[int(chance(net.seed, node, round_, -3_000_000) * len(live))]
            took = self._light_round(node, peer, round_)
            others = [b for b in live if b != peer]
            if took >= 5.0 and others:  # failed: once more at once with another neighbour, as the daemon does
                other = others[int(chance(net.seed, node, round_, -6_000_000) * len(others))]
                net.schedule(took, self._light_retry, node, other, round_)

    def _light_retry(self, node: int, peer: int, round_: int) -> None:
        if self.net.up[node] and self.net.up[peer]:
            self._light_round(node, peer, -20_000_000 - round_)

    def _light_round(self, node: int, peer: int, salt: int) -> float:
        """One anti-entropy round of a light node with ``peer``, shaped like the daemon's (market/anti_entropy.py).

        A digest request (~60 bytes); equal sets end the round with a ~10-byte reply. Otherwise the 2 KiB bucket
        hashes come back, one ``list`` of the differing buckets (~75 bytes a key listed) and ``pull`` requests of
        up to 1,024 keys (~67 bytes a key) for the offers it lacks, which arrive three round trips after the
        digest was sent. Each request and each reply is lost with ``loss`` as the real nodes' are; the round
        fails if any is. Returns how long the round takes (virtual s).
        """
        net = self.net
        net.rr_sent[node] += 1
        net.rr_bytes[node] += 60 + RR_OVERHEAD
        rtt = 2 * net.latency(node, peer)
        if net.loss and chance(net.seed, node, peer, -2_000_000 - salt) < net.loss:
            return rtt  # the digest request is lost
        net.rr_sent[peer] += 1
        mine, theirs = self.held[node], self.held[peer]
        if mine == theirs:
            net.rr_bytes[peer] += 10 + RR_OVERHEAD
            return rtt
        differ = set()
        for byte, (a, b) in enumerate(zip(mine, theirs)):
            x = a ^ b
            while x:
                low = x & -x
                differ.add(self.bucket_of[byte * 8 + low.bit_length() - 1])
                x ^= low
        listed = sum(1 for k in range(len(self.raw)) if self.bucket_of[k] in differ and self._holds(peer, k))
        lacking = sum(1 for k in range(len(self.raw)) if self._holds(peer, k) and not self._holds(node, k))
        pulls = (lacking + MAX_PULL_KEYS - 1) // MAX_PULL_KEYS
        net.rr_bytes[peer] += DIGEST_BYTES + 20 + RR_OVERHEAD + listed * 75 + 20 + RR_OVERHEAD
        net.rr_sent[node] += 1 + pulls
        net.rr_sent[peer] += 1 + pulls
        net.rr_bytes[node] += 40 + BUCKETS // 8 + RR_OVERHEAD + pulls * (40 + RR_OVERHEAD) + lacking * 67
        messages = 2 * (2 + pulls) - 1  # the digest request already went through
        if net.loss and chance(net.seed, peer, node, -5_000_000 - salt) >= (1 - net.loss) ** messages:
            return 5.0 + rtt  # a later request or reply is lost: the round times out
        if lacking:
            net.schedule((2 + pulls) * rtt, self._repair_pull, node, peer)
        return (2 + pulls) * rtt

    def _repair_pull(self, node: int, peer: int) -> None:
        net = self.net
        if not net.up[node] or not net.up[peer]:
            return
        mine, theirs = self.held[node], self.held[peer]
        got = 0
        for byte, (a, b) in enumerate(zip(mine, theirs)):
            new = b & ~a
            while new:
                low = new & -new
                self._record(node, byte * 8 + low.bit_length() - 1)
                new ^= low
                got += 1
        net.rr_bytes[peer] += got * (len(self.raw[0]) if self.raw else 0) + RR_OVERHEAD

    def missing(self, nodes: list[int] | range) -> tuple[int, int]:
        """(pairs missing, pairs expected) over ``nodes``, up or down (every churned node comes back)."""
        p = len(self.raw)
        nodes = list(nodes)
        return sum(p - self.known[i] for i in nodes), p * len(nodes)

    # -- the run (inside trio) ---------------------------------------------------------------
    async def main(self) -> None:
        cfg, net, r = self.cfg, self.net, self.result
        t_wall = time.perf_counter()
        self.real_nodes: dict[int, OfferDirectory] = {}
        topic = offers_topic(NETWORK_ID, SUBNET)
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            for i in self.real_ids:
                sim = net.make_real(i)
                d = OfferDirectory(network_id=NETWORK_ID, gossip=sim.gossip, rr=sim.rr, peers=sim.peers, me=sim.node_id,
                                   clock_ms=lambda: EPOCH_MS + int(trio.current_time() * 1000),
                                   anti_entropy_s=cfg.repair_interval, rng=random.Random(cfg.seed * 1_000_003 + i))
                d.on_offer(self._listener(i))
                self.real_nodes[i] = d
                await nursery.start(sim.peers.run)
                await nursery.start(d.run)
            for d in self.real_nodes.values():
                await d.join(SUBNET)
            if cfg.repair_interval > 0:
                phase = random.Random(cfg.seed * 31 + 5)
                for i in range(cfg.nodes):
                    if i not in self.real_nodes:
                        net.schedule(phase.uniform(0, cfg.repair_interval), self._repair_tick, i, 0)
            start = trio.current_time()
            rng = random.Random(cfg.seed * 104729 + 3)
            events: list[tuple[float, int, int]] = []  # (at, kind, node): 0 down, 1 publish, 2 up
            for k, node in enumerate(self.providers):
                events.append((start + rng.uniform(0, cfg.publish_window), 1, k))
            for node in self.churners:
                events.append((start + rng.uniform(0, cfg.publish_window), 0, node))
                events.append((start + cfg.rejoin_at + rng.uniform(0, 5.0), 2, node))
            events.sort()
            settle_checked = False
            for at, kind, who in events:
                if kind == 2 and not settle_checked:
                    await self._settle(start)
                    settle_checked = True
                await trio.sleep_until(at)
                if kind == 0:
                    net.go_down(who)
                elif kind == 2:
                    net.come_up(who)
                else:
                    node = self.providers[who]
                    self.published_at[who] = trio.current_time()
                    own = self.real_nodes.get(node)
                    if own is not None:
                        before = len(net.messages)
                        await own.publish(SUBNET, self.raw[who])
                        if len(net.messages) > before:
                            self.offer_of_msg[before] = who
                    else:
                        self._record(node, who)
                        msg = net.new_message(topic, self.raw[who], node)
                        self.offer_of_msg[msg] = who
                        net.mark_seen(node, msg)
                        if net.up[node]:
                            net.forward(node, msg, -1)
            if not settle_checked:
                await self._settle(start)
            # after the last event: run to the end, noting when the last missing pair was filled
            end = start + cfg.duration
            while trio.current_time() < end:
                await trio.sleep(min(0.5, end - trio.current_time()))
                if self.missing(range(cfg.nodes))[0] == 0 and r.all_known_at != r.all_known_at:
                    r.all_known_at = self.last_arrival - start
                if r.light_repair_s != r.light_repair_s and r.missing_settled and not self.missing(self.light_ids)[0]:
                    r.light_repair_s = self.light_last_arrival - (start + r.settled_at)
            r.missing_end, r.pairs_expected = self.missing(range(cfg.nodes))
            r.missing_end_real, r.pairs_expected_real = self.missing(self.real_ids)
            r.last_arrival_at = self.last_arrival - start
            r.light_missing_end = self.missing(self.light_ids)[0]
            if r.missing_settled and r.missing_end == 0:
                r.repair_s = self.last_arrival - (start + r.settled_at)
            nursery.cancel_scope.cancel()
        r.wall_s = time.perf_counter() - t_wall
        r.events = net.events
        r.hist = self.hist
        r.gossip_sent = list(net.gossip_sent)
        r.gossip_bytes = list(net.gossip_bytes)
        r.rr_sent = list(net.rr_sent)
        r.rr_bytes = list(net.rr_bytes)
        r.duplicates = net.duplicates
        r.lost = net.lost
        r.real_count = len(self.real_nodes)
        r.synced_real = sum(d.stats.synced for d in self.real_nodes.values())
        r.rss_end = rss_bytes() - sys.getsizeof(self.hist)
        p = len(self.raw)
        r.light_node_bytes = (sys.getsizeof(self.held[0]) + sys.getsizeof(net.seen[0]) + sys.getsizeof(net.adj[0])
                              + sys.getsizeof(net.lats[0]) + 4 + 8 + 4 + 8 + 4 + 1 + 2 * 8 * 4)
        if self.real_nodes:
            first = self.real_nodes[self.real_ids[0]]
            r.real_node_bytes = deep_size(first, (SimNetwork, OfferSim, trio.Nursery, trio.lowlevel.Task, logging.Logger,
                                                     logging.Manager, logging.Handler))
        _ = p

    async def _settle(self, start: float) -> None:
        """Wait until no gossip copy is in flight; note what is missing then."""
        r = self.result
        while not self.net.idle():
            await trio.sleep(0.05)
        r.settled_at = self.last_arrival - start
        r.missing_settled, _ = self.missing(range(self.cfg.nodes))
        r.missing_settled_real, _ = self.missing(self.real_ids)


def run(cfg: Config) -> Result:
    sim = OfferSim(cfg)
    sim.build()
    trio.run(sim.main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim.result


class _LightBook:
    """A light node's offer bits seen as a book, for the daemon's answering code (:func:`answer`)."""

    def __init__(self, sim: OfferSim, node: int) -> None:
        self._sim = sim
        self._node = node

    def digest(self, subnet: str) -> SetDigest:
        sim = self._sim
        return SetDigest(sim.keys[k] for k in range(len(sim.raw)) if sim._holds(self._node, k))

    def expiry(self, key: str) -> int | None:
        return EPOCH_MS + OFFER_TTL_MS

    def sealed(self, key: str) -> bytes | None:
        sim = self._sim
        k = sim.offer_index.get(key[:64])
        if k is None or key[-1] != "o" or not sim._holds(self._node, k):
            return None
        return sim.raw[k]
