"""The node's view of the offer market: gossip topics, validation, catch-up.

One gossip topic per (network, subnet) carries sealed offers and sealed
withdrawals; a second carries demands (the reverse auction, see
:mod:`yagna.market_service.provider`). Everything arriving is checked in the
topic *validator*, which runs before delivery and before relaying:

* the signature, network, expiry, size and shape (:func:`market.offers.verify_offer`);
* that the offer is for the topic's subnet;
* the offer book's per-provider caps and token bucket (:class:`market.OfferBook`).

A refused message is not relayed, and the peer that handed it to us is
charged (:class:`Penalties`): forged or malformed objects cost a lot, things
an honest relay may do (an offer that expired in flight) cost nothing. A peer
over the threshold is banned for a while. Forged offers never reach the book,
so they never reach the matcher.

Gossip loses offers; anti-entropy repairs the loss within seconds
(:mod:`yagna.market_service.anti_entropy`, :mod:`market.anti_entropy`): every
few seconds (``anti_entropy_s``, jittered) the node compares its offer set in
each subnet with one random neighbour's, one small message when they are
equal, and pulls what it lacks. A node that connects to a peer runs such a
round with it at once, so a late joiner sees every live offer within a few
round trips, pulling only what it lacks; a peer that does not speak
anti-entropy is asked for its whole book instead (``/yagna/market/offers/1.0.0``,
paged, served from the book's sorted index). Offers that come back from a
request of ours are *solicited*: the book does not hold them to the per-relay
cap meant for gossip floods (see :mod:`market.offer_book`), and an honest
peer's refusals (book full, superseded, ...) cost it nothing.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from market.offer_book import AddStatus, OfferBook, TokenBucket, WithdrawStatus
from market.offers import (
    MAX_OFFER_SIZE,
    OFFER_DOMAIN,
    WITHDRAW_DOMAIN,
    OfferRejected,
    SignedDemand,
    SignedOffer,
    peek_domain_fast,
    verify_demand,
    verify_offer,
    verify_withdrawal,
)
from yagna.core.envelope import content_id
from yagna.market_service.anti_entropy import DEFAULT_INTERVAL_S, FREE_REFUSALS, UNASKED_PENALTY, AntiEntropy
from yagna.core.errors import WireError
from yagna.core.wire import decode
from yagna.net.errors import GossipInvalid, RequestError, RequestRejected
from yagna.net.limits import TopicLimits
from yagna.net.ports import GossipPort, PeersPort, RequestResponsePort
from yagna.net.reqresp import ProtocolSpec, Request

log = logging.getLogger("yagna.market.offers")

SYNC = ProtocolSpec("/yagna/market/offers/1.0.0", max_request_size=1024, max_response_size=1024 * 1024, timeout=5.0)
SYNC_PAGE_BYTES = 900 * 1024
SYNC_PAGE_MAX = 1000
CONNECT_ROUND_WAIT_S = 10.0
"""How long a new peer's anti-entropy round may wait for the subnet's round in progress before it is skipped."""

# What a forwarder is charged per refused message, by reason. An honest relay
# validates what it forwards, so it never relays forged or malformed objects.
PENALTY = {
    "malformed": 20,
    "bad_signature": 50,
    "wrong_network": 20,
    "bad_properties": 20,
    "bad_constraints": 20,
    "oversized": 20,
    "too_long_ttl": 5,
    "from_future": 5,
    "wrong_subnet": 20,
    "unknown_kind": 20,
    "expired": 0,
    "rate_limited": 1,
    "over_cap": 1,
    "withdrawn": 0,
    "superseded": 0,
    "not_owner": 20,
}
OFFER_TOPIC_LIMITS = TopicLimits(max_size=MAX_OFFER_SIZE, messages_per_s=2000, bytes_per_s=8 * 1024 * 1024)
"""Per forwarding peer: a neighbour relays the whole subnet's offers, so this is the subnet's peak rate."""
DEMAND_TOPIC_LIMITS = TopicLimits(max_size=MAX_OFFER_SIZE, messages_per_s=200, bytes_per_s=1024 * 1024)
DEMAND_BURST = 10
DEMAND_PER_SECOND = 1.0
"""Demands one requestor may publish: each one makes every matching provider answer it."""
MAX_DEMAND_SENDERS = 10_000
BAN_THRESHOLD = 100
BAN_SECONDS = 600.0
PENALTY_HALF_LIFE_S = 60.0


def now_ms() -> int:
    return int(time.time() * 1000)


def offers_topic(network_id: str, subnet: str) -> str:
    return f"yagna/market/1/{network_id}/{subnet}/offers"


def demands_topic(network_id: str, subnet: str) -> str:
    return f"yagna/market/1/{network_id}/{subnet}/demands"


def peek_domain(data: bytes) -> str | None:
    """The domain tag of a sealed envelope, unverified (to pick the right verifier)."""
    fast = peek_domain_fast(data)
    if fast is not None:
        return fast
    try:
        outer = decode(data, max_depth=1)
        if isinstance(outer, list) and outer and isinstance(outer[0], bytes):
            inner = decode(outer[0])
            if isinstance(inner, list) and inner and isinstance(inner[0], str):
                return inner[0]
    except WireError:
        pass
    return None


class Penalties:
    """Per-peer misbehaviour score with exponential decay (half-life ``PENALTY_HALF_LIFE_S``)."""

    def __init__(self, ban: Callable[[str, float], None], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ban = ban
        self._clock = clock
        self._scores: dict[str, tuple[float, float]] = {}

    def score(self, peer: str) -> float:
        value, at = self._scores.get(peer, (0.0, self._clock()))
        return value * 0.5 ** ((self._clock() - at) / PENALTY_HALF_LIFE_S)

    def charge(self, peer: str, points: int) -> None:
        if points <= 0:
            return
        value = self.score(peer) + points
        if value >= BAN_THRESHOLD:
            self._scores.pop(peer, None)
            self._ban(peer, BAN_SECONDS)
        else:
            self._scores[peer] = (value, self._clock())

    def snapshot(self) -> dict[str, float]:
        return {peer: round(self.score(peer), 2) for peer in self._scores}


@dataclass
class OfferStats:
    accepted: int = 0
    replaced: int = 0
    withdrawn: int = 0
    refused: int = 0
    synced: int = 0


OfferListener = Callable[[SignedOffer, str], None]
"""(offer, how it came: "gossip", "sync" or what :meth:`OfferDirectory.take_offer` was told)."""
DemandListener = Callable[[SignedDemand], None]


class OfferDirectory:
    """Offers this node knows, kept current over gossip and catch-up.

    ``gossip``, ``rr`` and ``peers`` are the network's (or their in-memory
    twins'); ``peers`` needs ``on_connect``, ``ban`` and ``connected_peers``.
    Listeners run synchronously inside the validator: keep them cheap and
    non-blocking (push into a channel).
    """

    def __init__(self, *, network_id: str, gossip: GossipPort, rr: RequestResponsePort, peers: PeersPort, me: str,
                 clock_ms: Callable[[], int] = now_ms, book: OfferBook | None = None,
                 anti_entropy_s: float = DEFAULT_INTERVAL_S, rng: random.Random | None = None,
                 drop_gossip: float = 0.0) -> None:
        """``anti_entropy_s``: mean seconds between rounds (0: no periodic rounds; still one per new peer).
        ``drop_gossip``: a test's fault injection, the share of offer gossip from peers ignored."""
        self.network_id = network_id
        self.me = me
        self._gossip = gossip
        self._rr = rr
        self._peers = peers
        self._clock_ms = clock_ms
        self.book = book or OfferBook()
        self.stats = OfferStats()
        self.penalties = Penalties(peers.ban)
        self._subnets: set[str] = set()
        self._demand_subnets: set[str] = set()
        self._offer_listeners: list[OfferListener] = []
        self._removal_listeners: list[Callable[[str], None]] = []
        self._demand_listeners: list[DemandListener] = []
        self._demand_buckets: dict[str, TokenBucket] = {}
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self.anti_entropy_s = anti_entropy_s
        self._rng = rng or random.Random()
        self.drop_gossip = drop_gossip
        self._round_locks: dict[str, trio.Lock] = {}
        self.anti_entropy = AntiEntropy(book=self.book, rr=rr, clock_ms=clock_ms, take_offer=self._take_pulled,
                                        take_withdrawal=self._take_pulled_withdrawal,
                                        charge=self.penalties.charge)
        rr.register(SYNC, self._serve_sync)
        peers.on_connect(self._on_connect)

    # -- listeners -----------------------------------------------------------------
    def on_offer(self, listener: OfferListener) -> None:
        """Called with each offer newly taken into the book (new or re-announced)."""
        self._offer_listeners.append(listener)

    def on_removed(self, listener: Callable[[str], None]) -> None:
        """Called with the id of each offer withdrawn or replaced."""
        self._removal_listeners.append(listener)

    def on_demand(self, listener: DemandListener) -> None:
        """Called with each valid demand seen on a demands topic we joined."""
        self._demand_listeners.append(listener)

    # -- service -------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._expire_loop)
            if self.anti_entropy_s > 0:
                nursery.start_soon(self._anti_entropy_loop)
            task_status.started()

    @property
    def subnets(self) -> list[str]:
        return sorted(self._subnets)

    async def join(self, subnet: str) -> None:
        """Follow the offers of ``subnet`` (idempotent); catch up from connected peers."""
        async with self._lock:
            if subnet in self._subnets:
                return
            topic = offers_topic(self.network_id, subnet)
            self._gossip.set_limits(topic, OFFER_TOPIC_LIMITS)
            self._gossip.set_validator(
                topic, lambda msg: self._validate_offer_msg(subnet, msg.data, msg.forwarder), on_invalid=self._charge
            )
            channel = await self._gossip.subscribe(topic)
            self._subnets.add(subnet)
        assert self._nursery is not None
        self._nursery.start_soon(_discard, channel)
        for peer in self._peers.connected_peers():
            self._nursery.start_soon(self._catch_up, peer, subnet)

    async def join_demands(self, subnet: str) -> None:
        """Listen to demands published in ``subnet`` (providers answer them)."""
        async with self._lock:
            if subnet in self._demand_subnets:
                return
            topic = demands_topic(self.network_id, subnet)
            self._gossip.set_limits(topic, DEMAND_TOPIC_LIMITS)
            self._gossip.set_validator(
                topic, lambda msg: self._validate_demand_msg(subnet, msg.data), on_invalid=self._charge
            )
            channel = await self._gossip.subscribe(topic)
            self._demand_subnets.add(subnet)
        assert self._nursery is not None
        self._nursery.start_soon(self._demand_loop, channel)

    async def publish(self, subnet: str, sealed: bytes) -> None:
        """Broadcast our own sealed offer or withdrawal; our own validator takes it into the book."""
        await self.join(subnet)
        await self._gossip.publish(offers_topic(self.network_id, subnet), sealed)

    async def publish_demand(self, subnet: str, sealed: bytes) -> None:
        await self._gossip.publish(demands_topic(self.network_id, subnet), sealed)

    # -- validation (runs inside pubsub, synchronously) -------------------------------
    def _charge(self, peer: str, exc: GossipInvalid) -> None:
        self.stats.refused += 1
        if peer != self.me:
            self.penalties.charge(peer, exc.penalty)

    def _validate_offer_msg(self, subnet: str, data: bytes, forwarder: str) -> bool:
        if self.drop_gossip and forwarder != self.me and self._rng.random() < self.drop_gossip:
            return False  # fault injection (tests): as if this copy had been lost
        domain = peek_domain(data)
        if domain == OFFER_DOMAIN:
            return self._take_offer(subnet, data, via=None if forwarder == self.me else forwarder)
        if domain == WITHDRAW_DOMAIN:
            return self._take_withdrawal(data, subnet)
        raise GossipInvalid("unknown_kind", PENALTY["unknown_kind"])

    def take_offer(self, subnet: str | None, data: bytes, *, source: str) -> SignedOffer | None:
        """Verify and add an offer that came over a stream; None if refused (no exception)."""
        try:
            self._take_offer(subnet, data, source)
        except GossipInvalid:
            return None
        return self.book.get(content_id(data))

    def _take_offer(self, subnet: str | None, data: bytes, source: str = "gossip", *, via: str | None = None,
                    solicited: bool = False) -> bool:
        """``via``: the peer that handed the offer to us (None: this node), charged in the book's per-peer totals;
        ``solicited``: we asked ``via`` for it."""
        now = self._clock_ms()
        oid = content_id(data) if isinstance(data, bytes) else None
        held = self.book.get(oid) if oid is not None else None
        if held is not None and held.expires_at_ms > now:
            # The very bytes of a live offer already verified and kept: nothing to check
            # again (a copy from a second relay, or a catch-up page of offers we hold).
            return True
        try:
            offer = verify_offer(data, network_id=self.network_id, now_ms=now, known_id=oid)
        except OfferRejected as exc:
            raise GossipInvalid(exc.reason, PENALTY.get(exc.reason, 20)) from None
        if subnet is not None and offer.subnet != subnet:
            raise GossipInvalid("wrong_subnet", PENALTY["wrong_subnet"])
        result = self.book.add(offer, now, via=via, solicited=solicited)
        if result.status is AddStatus.DUPLICATE:
            return True
        if result.status is AddStatus.REJECTED:
            reason = result.reason or "over_cap"
            raise GossipInvalid(reason, PENALTY.get(reason, 1))
        self.stats.accepted += 1
        if result.replaced is not None:
            self.stats.replaced += 1
            for removed in self._removal_listeners:
                removed(result.replaced)
        for listener in self._offer_listeners:
            listener(offer, source)
        return True

    def take_withdrawal(self, data: bytes) -> bool:
        """Apply a sealed withdrawal (our own, before publishing it); False if refused."""
        try:
            return self._take_withdrawal(data)
        except GossipInvalid:
            return False

    def _take_pulled(self, subnet: str, data: bytes, peer: str) -> None:
        self._take_offer(subnet, data, "sync", via=peer, solicited=True)
        self.stats.synced += 1

    def _take_pulled_withdrawal(self, subnet: str, data: bytes, asked: Callable[[str], bool]) -> str:
        return self._apply_withdrawal(data, subnet, asked)

    def _take_withdrawal(self, data: bytes, subnet: str | None = None) -> bool:
        self._apply_withdrawal(data, subnet)
        return True

    def _apply_withdrawal(self, data: bytes, subnet: str | None, asked: Callable[[str], bool] | None = None) -> str:
        """Verify and apply a withdrawal; the withdrawn offer's id. Raises GossipInvalid.

        ``asked``: for a pulled withdrawal, whether we asked for the one of this offer id.
        """
        now = self._clock_ms()
        try:
            signed = verify_withdrawal(data, network_id=self.network_id, now_ms=now)
        except OfferRejected as exc:
            raise GossipInvalid(exc.reason, PENALTY.get(exc.reason, 20)) from None
        if asked is not None and not asked(signed.offer_id):
            raise GossipInvalid("unasked", UNASKED_PENALTY)
        result = self.book.withdraw(signed, now, subnet=subnet)
        if result.status is WithdrawStatus.REJECTED:
            reason = result.reason or "over_cap"
            raise GossipInvalid(reason, PENALTY.get(reason, 1))
        if result.status is WithdrawStatus.WITHDRAWN:
            self.stats.withdrawn += 1
            for removed in self._removal_listeners:
                removed(signed.offer_id)
        return signed.offer_id

    def _validate_demand_msg(self, subnet: str, data: bytes) -> bool:
        try:
            demand = verify_demand(data, network_id=self.network_id, now_ms=self._clock_ms())
        except OfferRejected as exc:
            raise GossipInvalid(exc.reason, PENALTY.get(exc.reason, 20)) from None
        if demand.subnet != subnet:
            raise GossipInvalid("wrong_subnet", PENALTY["wrong_subnet"])
        now = self._clock_ms()
        bucket = self._demand_buckets.get(demand.requestor_id)
        if bucket is None:
            if len(self._demand_buckets) >= MAX_DEMAND_SENDERS:
                self._demand_buckets = {k: b for k, b in self._demand_buckets.items() if not b.full(now)}
            bucket = self._demand_buckets[demand.requestor_id] = TokenBucket(DEMAND_BURST, DEMAND_PER_SECOND, now)
        if not bucket.take(now):
            raise GossipInvalid("rate_limited", PENALTY["rate_limited"])
        return True

    async def _demand_loop(self, channel) -> None:  # type: ignore[no-untyped-def]
        async with channel:
            async for msg in channel:
                try:
                    demand = verify_demand(msg.data, network_id=self.network_id, now_ms=self._clock_ms())
                except OfferRejected:
                    continue  # expired between validation and delivery
                for listener in self._demand_listeners:
                    listener(demand)

    # -- catch-up and anti-entropy ----------------------------------------------------
    async def _on_connect(self, peer: str) -> None:
        for subnet in sorted(self._subnets):
            await self._catch_up(peer, subnet)

    async def _catch_up(self, peer: str, subnet: str) -> None:
        """An anti-entropy round with a new peer; its whole book if it does not speak anti-entropy.

        Rounds run one at a time per subnet; one that cannot start within :data:`CONNECT_ROUND_WAIT_S`
        (many peers connecting at once, some of them slow) is skipped: the periodic rounds cover it.
        """
        outcome = await self.reconcile(peer, subnet, wait_s=CONNECT_ROUND_WAIT_S)
        if outcome == "unsupported":
            await self._sync_from(peer, subnet)

    async def reconcile(self, peer: str, subnet: str, *, wait_s: float = math.inf) -> str:
        """One anti-entropy round with ``peer`` (one at a time per subnet): ``equal``, ``pulled``, ``failed``,
        ``unsupported``, or ``skipped`` if another round held the subnet for ``wait_s``."""
        lock = self._round_locks.setdefault(subnet, trio.Lock())
        held = False
        with trio.move_on_after(wait_s):  # the wait for the lock only, not the round
            await lock.acquire()
            held = True
        if not held:
            return "skipped"
        try:
            return (await self.anti_entropy.reconcile(peer, subnet)).outcome
        finally:
            lock.release()

    def neighbours(self, subnet: str) -> list[str]:
        """Connected peers that follow ``subnet``'s offers (all connected peers if none says so yet)."""
        connected = [p for p in self._peers.connected_peers() if not self._peers.is_banned(p)]
        following = set(self._gossip.topic_peers(offers_topic(self.network_id, subnet)))
        return [p for p in connected if p in following] or connected

    async def _anti_entropy_loop(self) -> None:
        """Every ``anti_entropy_s`` (+-50%): a round with one random neighbour per subnet.

        A round that fails (the peer timed out, is busy or broke the protocol) is tried once more at
        once with another neighbour: an overloaded peer does not cost a whole period of repair.
        """
        while True:
            await trio.sleep(self.anti_entropy_s * self._rng.uniform(0.5, 1.5))
            for subnet in sorted(self._subnets):
                peers = self.neighbours(subnet)
                if not peers:
                    continue
                first = self._rng.choice(peers)
                if await self.reconcile(first, subnet) == "failed":
                    others = [p for p in self.neighbours(subnet) if p != first]
                    if others:
                        await self.reconcile(self._rng.choice(others), subnet)

    async def _sync_from(self, peer: str, subnet: str) -> None:
        """Pull ``peer``'s live offers in ``subnet``, page by page, through the same checks as gossip."""
        after = ""
        try:
            for _ in range(1000):
                reply = await self._rr.request(peer, SYNC, {"subnet": subnet, "after": after, "limit": SYNC_PAGE_MAX})
                if not isinstance(reply, dict) or not isinstance(reply.get("offers"), list):
                    log.info("peer %s sent a malformed offer page", peer)
                    self.penalties.charge(peer, PENALTY["malformed"])
                    return
                for raw in reply["offers"]:
                    if not isinstance(raw, bytes):
                        self.penalties.charge(peer, PENALTY["malformed"])
                        return
                    try:
                        self._take_offer(subnet, raw, "sync", via=peer, solicited=True)
                        self.stats.synced += 1
                    except GossipInvalid as exc:
                        self.stats.refused += 1
                        if exc.reason not in FREE_REFUSALS:  # we asked: an honest peer's refusals are free
                            self.penalties.charge(peer, exc.penalty)
                nxt = reply.get("next")
                if not isinstance(nxt, str) or not nxt or nxt <= after:
                    return
                after = nxt
        except RequestError as exc:
            log.debug("offer catch-up from %s failed: %s", peer, exc)

    async def _serve_sync(self, request: Request) -> object:
        p = request.payload
        if not isinstance(p, dict) or not isinstance(p.get("subnet"), str) or not isinstance(p.get("after", ""), str):
            raise RequestRejected("bad-request", "expected {subnet: str, after: str, limit: int}")
        limit = p.get("limit", SYNC_PAGE_MAX)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise RequestRejected("bad-request", "limit must be a positive integer")
        limit = min(limit, SYNC_PAGE_MAX)
        subnet, after = p["subnet"], p.get("after", "")
        page: list[bytes] = []
        size = 0
        more = False
        last = ""
        # the book's sorted index: a page costs a binary search and the page, not a sort of the book
        for offer in self.book.page_after(subnet, after[:64], self._clock_ms()):
            if len(page) >= limit or size + len(offer.raw) > SYNC_PAGE_BYTES:
                more = True
                break
            page.append(offer.raw)
            size += len(offer.raw)
            last = offer.offer_id
        return {"offers": page, "next": last if more and page else None}

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(1.0)
            for oid in self.book.expire(self._clock_ms()):
                for removed in self._removal_listeners:
                    removed(oid)


async def _discard(channel) -> None:  # type: ignore[no-untyped-def]
    """Offers are taken in the validator; the delivered copies are not needed."""
    async with channel:
        async for _ in channel:
            pass
