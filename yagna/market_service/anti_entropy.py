"""Anti-entropy between neighbours: ``/yagna/market/anti-entropy/1.0.0`` (the I/O around :mod:`market.anti_entropy`).

:class:`AntiEntropy` serves the protocol from the offer book's digests (no
sort, no hashing per request: the book keeps them current) under a per-peer
rate limit, and runs one *round* with a peer (:meth:`AntiEntropy.reconcile`):
digest, list the differing buckets, pull what is missing, and hand every
pulled object to the directory, which verifies it exactly as it verifies
gossip. The directory (:mod:`yagna.market_service.offers`) runs a round with
one random neighbour per subnet every few seconds and with every new peer.

Pulled objects were asked for: refusals an honest peer may cause (the book is
full, the provider's rate, an offer superseded meanwhile) cost the peer
nothing; forged or malformed objects, or objects we did not ask for, are
charged as on gossip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from market.anti_entropy import (
    MAX_LIST_ITEMS,
    MAX_LIST_PAGES,
    MAX_PULL_KEYS,
    MAX_WANT,
    PULL_REPLY_BYTES,
    AntiEntropyRejected,
    DigestReply,
    DigestRequest,
    ListReply,
    ListRequest,
    PullReply,
    PullRequest,
    RecentlyRefused,
    SetDigest,
    decode_request,
    differing_buckets,
    offer_key,
    plan_pull,
    withdrawal_key,
)
from market.offer_book import OfferBook, TokenBucket
from market.offers import OFFER_DOMAIN, WITHDRAW_DOMAIN
from yagna.core.envelope import content_id
from yagna.net.errors import GossipInvalid, ProtocolNotSupported, RemoteError, RequestError, RequestRejected
from yagna.net.ports import RequestResponsePort
from yagna.net.reqresp import ProtocolSpec, Request

log = logging.getLogger("yagna.market.anti_entropy")

ANTI_ENTROPY = ProtocolSpec(
    "/yagna/market/anti-entropy/1.0.0", max_request_size=96 * 1024, max_response_size=1024 * 1024, timeout=5.0
)
DEFAULT_INTERVAL_S = 3.0
"""A round with one random neighbour per subnet every 1.5 to 4.5 s (the interval +-50%, jittered)."""
ROUND_TIMEOUT_S = 60.0
"""A whole round (digest, up to 16 lists, up to 16 full pulls) is abandoned after this."""

SERVE_REQUESTS_BURST = 128
SERVE_REQUESTS_PER_S = 4.0
"""Requests one peer may make of us: a round is 1 request when nothing differs, up to ~40 for a 16,384-offer pull."""
SERVE_BYTES_BURST = 32 * 1024 * 1024
SERVE_BYTES_PER_S = 2 * 1024 * 1024
"""Sealed bytes one peer may pull from us: a whole 12,000-offer book at once, then 2 MiB/s."""
MAX_SERVED_PEERS = 1024
"""Peers whose serving budget is remembered; idle (full) budgets are forgotten first."""

FREE_REFUSALS = frozenset({"expired", "withdrawn", "superseded", "rate_limited", "over_cap"})
"""Refusals of a pulled object that cost the peer nothing: an honest peer causes them."""
LASTING_REFUSALS = frozenset(FREE_REFUSALS - {"rate_limited"})
"""Refusals after which a key is not pulled again for a while (``RecentlyRefused``)."""
UNASKED_PENALTY = 20
"""A pulled object we did not ask for: no honest peer sends one."""


@dataclass
class AntiEntropyStats:
    rounds: int = 0
    equal: int = 0
    """Rounds that ended after the digest: the sets were equal."""
    failed: int = 0
    pulled: int = 0
    """Objects taken into the book from pulls (offers and withdrawals)."""
    refused: int = 0
    served: int = 0
    busy: int = 0
    """Requests we refused because the peer was over its serving budget."""


@dataclass
class RoundResult:
    outcome: str
    """``equal``, ``pulled`` (something differed), ``failed`` or ``unsupported``."""
    pulled: int = 0
    wanted: int = 0


TakeOffer = Callable[[str, bytes, str], None]
"""(subnet, sealed offer, peer): verify and add as a solicited offer; raises GossipInvalid."""
TakeWithdrawal = Callable[[str, bytes, Callable[[str], bool]], str]
"""(subnet, sealed withdrawal, asked(offer id)): verify, then apply if asked for; the withdrawn offer's id.
Raises GossipInvalid (``unasked`` if it was not asked for)."""


class BookView(Protocol):
    """What answering needs of a book (:class:`~market.offer_book.OfferBook`, or a simulator's model of one)."""

    def digest(self, subnet: str) -> SetDigest: ...

    def expiry(self, key: str) -> int | None: ...

    def sealed(self, key: str) -> bytes | None: ...


def answer(msg: DigestRequest | ListRequest | PullRequest, book: BookView) -> tuple[dict[str, object], int]:
    """The reply to a checked request, and the sealed bytes it carries."""
    digest = book.digest(msg.subnet)
    if isinstance(msg, DigestRequest):
        if msg.root == digest.root and msg.n == len(digest):
            return DigestReply(True).encode(), 0
        return DigestReply(False, len(digest), digest.buckets()).encode(), 0
    if isinstance(msg, ListRequest):
        keys, nxt = digest.keys_in(msg.buckets, after=msg.after, limit=MAX_LIST_ITEMS)
        items = []
        for key in keys:
            expires = book.expiry(key)
            items.append((key, expires if expires is not None else 0))
        return ListReply(tuple(items), nxt).encode(), 0
    out: list[bytes] = []
    size = 0
    for key in msg.keys:
        raw = book.sealed(key)
        if raw is None:
            continue
        if size + len(raw) > PULL_REPLY_BYTES:
            break
        out.append(raw)
        size += len(raw)
    return PullReply(tuple(out)).encode(), size


class _ServeBudget:
    __slots__ = ("requests", "bytes")

    def __init__(self, now_ms: int) -> None:
        self.requests = TokenBucket(SERVE_REQUESTS_BURST, SERVE_REQUESTS_PER_S, now_ms)
        self.bytes = TokenBucket(SERVE_BYTES_BURST, SERVE_BYTES_PER_S, now_ms)


class AntiEntropy:
    def __init__(self, *, book: OfferBook, rr: RequestResponsePort, clock_ms: Callable[[], int],
                 take_offer: TakeOffer, take_withdrawal: TakeWithdrawal, charge: Callable[[str, int], None]) -> None:
        self._book = book
        self._rr = rr
        self._clock_ms = clock_ms
        self._take_offer = take_offer
        self._take_withdrawal = take_withdrawal
        self._charge = charge
        self._budgets: dict[str, _ServeBudget] = {}
        self.refused = RecentlyRefused()
        self.stats = AntiEntropyStats()
        rr.register(ANTI_ENTROPY, self.serve)

    # -- serving --------------------------------------------------------------------------
    def _budget(self, peer: str, now: int) -> _ServeBudget:
        b = self._budgets.get(peer)
        if b is None:
            if len(self._budgets) >= MAX_SERVED_PEERS:
                self._budgets = {
                    p: x for p, x in self._budgets.items() if not (x.requests.full(now) and x.bytes.full(now))
                }
                while len(self._budgets) >= MAX_SERVED_PEERS:
                    del self._budgets[next(iter(self._budgets))]
            b = self._budgets[peer] = _ServeBudget(now)
        return b

    async def serve(self, request: Request) -> object:
        try:
            msg = decode_request(request.payload)
        except AntiEntropyRejected as exc:
            raise RequestRejected(exc.code, str(exc)) from None
        now = self._clock_ms()
        budget = self._budget(request.peer, now)
        if not budget.requests.take(now):
            self.stats.busy += 1
            raise RequestRejected("busy", "too many anti-entropy requests; try later")
        self.stats.served += 1
        reply, size = answer(msg, self._book)
        if size and not budget.bytes.take(now, size):
            self.stats.busy += 1
            raise RequestRejected("busy", "pulled too much; try later")
        return reply

    # -- a round ----------------------------------------------------------------------------
    async def reconcile(self, peer: str, subnet: str) -> RoundResult:
        """One round with ``peer`` in ``subnet``: pull what it has and we lack."""
        self.stats.rounds += 1
        result = RoundResult("failed")
        with trio.move_on_after(ROUND_TIMEOUT_S):
            try:
                result = await self._round(peer, subnet)
            except ProtocolNotSupported:
                result = RoundResult("unsupported")
            except RemoteError as exc:
                log.debug("anti-entropy with %s: %s", peer, exc)
            except RequestError as exc:
                log.debug("anti-entropy with %s failed: %s", peer, exc)
            except AntiEntropyRejected as exc:
                log.info("peer %s broke the anti-entropy protocol: %s", peer, exc)
                self._charge(peer, 20)
        if result.outcome == "equal":
            self.stats.equal += 1
        elif result.outcome == "failed":
            self.stats.failed += 1
        return result

    async def _round(self, peer: str, subnet: str) -> RoundResult:
        mine = self._book.digest(subnet)
        reply = DigestReply.decode(
            await self._rr.request(peer, ANTI_ENTROPY, DigestRequest(subnet, mine.root, len(mine)).encode())
        )
        if reply.equal:
            return RoundResult("equal")
        differ = differing_buckets(self._book.digest(subnet).buckets(), reply.buckets)
        want: list[str] = []
        after = ""
        for _ in range(MAX_LIST_PAGES):
            if not differ:
                break
            req = ListRequest(subnet, tuple(differ), after)
            listed = ListReply.decode(await self._rr.request(peer, ANTI_ENTROPY, req.encode()), req)
            book = self._book
            want += plan_pull(listed.items, holds=book.holds, withdrawn=book.is_withdrawn, refused=self.refused,
                              now_ms=self._clock_ms(), limit=MAX_WANT - len(want))
            if listed.next is None or len(want) >= MAX_WANT:
                break
            after = listed.next
        pulled = 0
        wanted = len(want)
        while want:
            chunk = want[:MAX_PULL_KEYS]
            pull = PullRequest(subnet, tuple(chunk))
            got = PullReply.decode(await self._rr.request(peer, ANTI_ENTROPY, pull.encode()), pull)
            position = {k: i for i, k in enumerate(chunk)}
            done = -1  # the peer answers in the order asked, stopping at its byte limit
            for raw in got.items:
                key, taken = self._take(peer, subnet, raw, position)
                pulled += taken
                if key is not None:
                    done = max(done, position[key])
            # keys up to the last one answered are done (answered, or no longer held there);
            # nothing answered: the peer holds none of this chunk any more
            want = want[done + 1:] if done >= 0 else want[len(chunk):]
        return RoundResult("pulled", pulled=pulled, wanted=wanted)

    def _take(self, peer: str, subnet: str, raw: bytes, asked: dict[str, int]) -> tuple[str | None, int]:
        """Hand one pulled object to the directory: (its key if we asked for it, 1 if taken)."""
        from yagna.market_service.offers import peek_domain  # offers imports this module

        domain = peek_domain(raw)
        now = self._clock_ms()
        key: str | None = None
        try:
            if domain == OFFER_DOMAIN:
                key = offer_key(content_id(raw))
                if key not in asked:
                    self._charge(peer, UNASKED_PENALTY)
                    return None, 0
                self._take_offer(subnet, raw, peer)
            elif domain == WITHDRAW_DOMAIN:
                # its key is known once verified; applied only if we asked for it
                oid = self._take_withdrawal(subnet, raw, lambda o: withdrawal_key(o) in asked)
                key = withdrawal_key(oid)
            else:
                self._charge(peer, UNASKED_PENALTY)
                return None, 0
        except GossipInvalid as exc:
            self.stats.refused += 1
            log.debug("pulled %s from %s refused: %s", key, peer, exc.reason)
            if key is not None:
                if exc.reason in LASTING_REFUSALS or exc.reason not in FREE_REFUSALS:
                    self.refused.add(key, now)
            if exc.reason not in FREE_REFUSALS:
                self._charge(peer, exc.penalty)
            return key if key in asked else None, 0
        self.stats.pulled += 1
        return key, 1
