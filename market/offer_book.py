"""The offer book: the live signed offers a node knows (sans-io, explicit ``now_ms``).

Offers arrive already verified (:func:`market.offers.verify_offer`); the book
decides whether to keep them:

- an offer already known is a *duplicate*;
- a re-announcement (same provider, subnet, properties and constraints, newer
  ``created_at_ms``) *replaces* the older copy; an older copy arriving after a
  newer one is refused as ``superseded``;
- each provider is held to caps (live offers, bytes) and a token-bucket rate;
  the whole book to total caps (offers and bytes), since provider ids cost
  nothing to mint; and each *relaying peer* (``via``: the peer that handed us
  the offer) to a share of the bytes, so that one connected peer minting
  identities cannot fill the book for everyone else (issue 11, row 5);
- offers this node *asked for* (``solicited``: a catch-up page or an
  anti-entropy pull) are charged to the peer on a separate counter and may go
  past that share while the book is less than half full: a new node whose only
  peer holds the whole market takes all of it (the per-peer cap alone refused
  everything past ~11,400 offers and banned the peer), while one peer can still
  fill at most half the book with offers of minted identities;
- a withdrawal is honoured only from the offer's own provider; its tombstone
  is remembered until the offer would have expired, so a late re-gossip of the
  withdrawn offer (or of an older copy of it) is refused as ``withdrawn``. A
  tombstone for an offer not yet seen is kept too (capped per signer) and
  applies if that signer's offer turns up later; it lasts the tombstone TTL
  from the withdrawal's own signed time, so every node forgets it together.

The book keeps, per subnet, a :class:`~market.anti_entropy.SetDigest` of its
live offers and tombstones (:meth:`OfferBook.digest`), updated on every
change: what anti-entropy compares, and a sorted index for catch-up pages.

Rejection reasons of :meth:`OfferBook.add`: ``"expired"``, ``"withdrawn"``,
``"superseded"``, ``"rate_limited"``, ``"over_cap"``. Of
:meth:`OfferBook.withdraw`: ``"not_owner"``, ``"rate_limited"``, ``"over_cap"``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from market.anti_entropy import SetDigest, offer_key, withdrawal_key
from market.matching import Demand, Matcher
from market.offers import DEFAULT_MAX_TTL_MS, SignedOffer, SignedWithdrawal

__all__ = [
    "AddResult",
    "AddStatus",
    "OfferBook",
    "TokenBucket",
    "WithdrawResult",
    "WithdrawStatus",
    "due_for_reannounce",
    "reannounce_at",
]


class AddStatus(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AddResult:
    """What :meth:`OfferBook.add` did; ``replaced`` is the older offer's id for ``REPLACED``."""

    status: AddStatus
    reason: str | None = None
    replaced: str | None = None

    @property
    def accepted(self) -> bool:
        """True if the offer is now in the book (new or replacing); gossip it on."""
        return self.status in (AddStatus.NEW, AddStatus.REPLACED)


class WithdrawStatus(enum.Enum):
    WITHDRAWN = "withdrawn"  # a live offer was removed
    RECORDED = "recorded"  # offer unknown (or already gone): tombstone kept for later
    DUPLICATE = "duplicate"  # tombstone already known
    REJECTED = "rejected"


@dataclass(frozen=True)
class WithdrawResult:
    status: WithdrawStatus
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """True if the tombstone is new and honoured; gossip it on."""
        return self.status in (WithdrawStatus.WITHDRAWN, WithdrawStatus.RECORDED)


class TokenBucket:
    """``burst`` tokens, refilled at ``per_second``; time comes from the caller."""

    __slots__ = ("burst", "per_second", "tokens", "last_ms")

    def __init__(self, burst: float, per_second: float, now_ms: int) -> None:
        self.burst = burst
        self.per_second = per_second
        self.tokens = float(burst)
        self.last_ms = now_ms

    def _refill(self, now_ms: int) -> None:
        if now_ms > self.last_ms:  # a clock stepping back refills nothing
            self.tokens = min(self.burst, self.tokens + (now_ms - self.last_ms) * self.per_second / 1000)
            self.last_ms = now_ms

    def take(self, now_ms: int, n: float = 1) -> bool:
        """Take ``n`` tokens if available."""
        self._refill(now_ms)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def full(self, now_ms: int) -> bool:
        self._refill(now_ms)
        return self.tokens >= self.burst


def _slot(offer: SignedOffer) -> bytes:
    """What a re-announcement keeps: provider, subnet, properties and constraints.

    Hashed from the ``repr`` of the properties sorted by name rather than from a
    CBOR re-encoding (~100 us an offer): property values are scalars or lists of
    scalars, whose ``repr`` tells apart whatever CBOR tells apart (1, 1.0 and True).
    """
    return hashlib.sha256(
        repr((offer.provider_id, offer.subnet, sorted(offer.properties.items()), offer.constraints)).encode()
    ).digest()


@dataclass
class _Tombstone:
    signer: str
    at_ms: int
    until_ms: int
    slot: bytes | None  # known when the withdrawn offer was in the book
    raw: bytes = b""  # the sealed withdrawal (anti-entropy hands it on)
    subnet: str | None = None  # the digest it is in (None: none)


@dataclass
class _Provider:
    bucket: TokenBucket
    offers: set[str] = field(default_factory=set)
    bytes: int = 0
    orphan_tombstones: int = 0


class OfferBook:
    """The in-memory set of live offers, with caps, rate limits and tombstones."""

    def __init__(
        self,
        *,
        max_offers_per_provider: int = 64,
        max_bytes_per_provider: int = 256 * 1024,
        max_offers: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_bytes_per_via: int = 8 * 1024 * 1024,
        burst: float = 100,
        refill_per_second: float = 20,
        tombstone_ttl_ms: int = DEFAULT_MAX_TTL_MS,
    ) -> None:
        self.max_offers_per_provider = max_offers_per_provider
        self.max_bytes_per_provider = max_bytes_per_provider
        self.max_offers = max_offers
        self.max_bytes = max_bytes
        self.max_bytes_per_via = max_bytes_per_via
        self._bytes = 0
        self._via: dict[str, tuple[str, bool]] = {}
        """offer id -> (peer charged, solicited?)"""
        self._via_bytes: dict[str, int] = {}
        self._pulled_bytes: dict[str, int] = {}
        self._digests: dict[str, SetDigest] = {}
        self.burst = burst
        self.refill_per_second = refill_per_second
        self.tombstone_ttl_ms = tombstone_ttl_ms
        self._offers: dict[str, SignedOffer] = {}
        self._by_slot: dict[bytes, str] = {}
        self._providers: dict[str, _Provider] = {}
        self._tombstones: dict[str, _Tombstone] = {}
        self._slot_tombstones: dict[bytes, _Tombstone] = {}
        self._matcher = Matcher()

    def __len__(self) -> int:
        return len(self._offers)

    def __contains__(self, offer_id: object) -> bool:
        return offer_id in self._offers

    def _provider(self, node_id: str, now_ms: int) -> _Provider:
        p = self._providers.get(node_id)
        if p is None:
            p = self._providers[node_id] = _Provider(TokenBucket(self.burst, self.refill_per_second, now_ms))
        return p

    # -- adding ---------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        """Sealed bytes of all live offers."""
        return self._bytes

    def via_bytes(self, peer: str) -> int:
        """Sealed bytes of the live offers that ``peer`` handed us first, unasked (gossip)."""
        return self._via_bytes.get(peer, 0)

    def pulled_bytes(self, peer: str) -> int:
        """Sealed bytes of the live offers we asked ``peer`` for (catch-up, anti-entropy)."""
        return self._pulled_bytes.get(peer, 0)

    def _counter(self, solicited: bool) -> dict[str, int]:
        return self._pulled_bytes if solicited else self._via_bytes

    def add(self, signed: SignedOffer, now_ms: int, *, via: str | None = None, solicited: bool = False) -> AddResult:
        """Take a verified offer into the book, or say why not.

        ``via`` is the peer that handed it over (None: this node itself); an
        offer is charged to the peer that brought it first. ``solicited``: we
        asked ``via`` for it (see the module's docstring for what that changes).
        """
        oid = signed.offer_id
        if oid in self._offers:
            return AddResult(AddStatus.DUPLICATE)
        if signed.expires_at_ms <= now_ms:
            return AddResult(AddStatus.REJECTED, "expired")
        stone = self._tombstones.get(oid)
        if stone is not None and stone.signer == signed.provider_id:
            return AddResult(AddStatus.REJECTED, "withdrawn")
        slot = _slot(signed)
        slot_stone = self._slot_tombstones.get(slot)
        if slot_stone is not None and signed.created_at_ms <= slot_stone.at_ms:
            return AddResult(AddStatus.REJECTED, "withdrawn")
        older_id = self._by_slot.get(slot)
        older = self._offers.get(older_id) if older_id is not None else None
        if older is not None and older.created_at_ms >= signed.created_at_ms:
            return AddResult(AddStatus.REJECTED, "superseded")
        p = self._provider(signed.provider_id, now_ms)
        if not p.bucket.take(now_ms):
            return AddResult(AddStatus.REJECTED, "rate_limited")
        freed_count, freed_bytes = (1, len(older.raw)) if older is not None else (0, 0)
        size = len(signed.raw)
        charge = self._via.get(older.offer_id) if older is not None else (via, solicited) if via is not None else None
        via_freed = freed_bytes if older is not None else 0
        if (
            len(p.offers) - freed_count >= self.max_offers_per_provider
            or p.bytes - freed_bytes + size > self.max_bytes_per_provider
            or len(self._offers) - freed_count >= self.max_offers
            or self._bytes - freed_bytes + size > self.max_bytes
            or (charge is not None and self._over_via_cap(charge, size - via_freed))
        ):
            return AddResult(AddStatus.REJECTED, "over_cap")
        if older is not None:
            self._remove(older.offer_id)
        self._offers[oid] = signed
        self._by_slot[slot] = oid
        p.offers.add(oid)
        p.bytes += size
        self._bytes += size
        if charge is not None:
            self._via[oid] = charge
            counter = self._counter(charge[1])
            counter[charge[0]] = counter.get(charge[0], 0) + size
        self._matcher.add(oid, signed.as_offer())
        self._digest(signed.subnet).add(offer_key(oid))
        if older is not None:
            return AddResult(AddStatus.REPLACED, replaced=older.offer_id)
        return AddResult(AddStatus.NEW)

    def _over_via_cap(self, charge: tuple[str, bool], extra: int) -> bool:
        peer, solicited = charge
        if self._counter(solicited).get(peer, 0) + extra <= self.max_bytes_per_via:
            return False
        if not solicited:
            return True
        # asked for: past the per-peer share only while the book is under half full
        return self._bytes + extra > self.max_bytes // 2 or len(self._offers) >= self.max_offers // 2

    def _digest(self, subnet: str) -> SetDigest:
        d = self._digests.get(subnet)
        if d is None:
            d = self._digests[subnet] = SetDigest()
        return d

    def _remove(self, oid: str) -> SignedOffer | None:
        offer = self._offers.pop(oid, None)
        if offer is None:
            return None
        slot = _slot(offer)
        if self._by_slot.get(slot) == oid:
            del self._by_slot[slot]
        p = self._providers[offer.provider_id]
        p.offers.discard(oid)
        p.bytes -= len(offer.raw)
        self._bytes -= len(offer.raw)
        charge = self._via.pop(oid, None)
        if charge is not None:
            counter = self._counter(charge[1])
            left = counter[charge[0]] - len(offer.raw)
            if left:
                counter[charge[0]] = left
            else:
                del counter[charge[0]]
        self._matcher.remove(oid)
        self._digest_discard(offer.subnet, offer_key(oid))
        return offer

    def _digest_discard(self, subnet: str | None, key: str) -> None:
        d = self._digests.get(subnet) if subnet is not None else None
        if d is not None:
            d.discard(key)
            if not len(d):
                del self._digests[subnet]  # type: ignore[arg-type]

    def _set_tombstone(self, oid: str, stone: _Tombstone) -> None:
        old = self._tombstones.get(oid)
        if old is not None:
            self._digest_discard(old.subnet, withdrawal_key(oid))
        self._tombstones[oid] = stone
        if stone.subnet is not None:
            self._digest(stone.subnet).add(withdrawal_key(oid))

    # -- withdrawing ----------------------------------------------------------------
    def withdraw(self, signed: SignedWithdrawal, now_ms: int, *, subnet: str | None = None) -> WithdrawResult:
        """Honour a verified tombstone from the offer's own provider.

        ``subnet``: where it came from, for a withdrawal of an offer not held
        (a held offer's own subnet wins); it puts the tombstone in that
        subnet's digest.
        """
        oid = signed.offer_id
        offer = self._offers.get(oid)
        if offer is not None and offer.provider_id != signed.signer:
            return WithdrawResult(WithdrawStatus.REJECTED, "not_owner")
        known = self._tombstones.get(oid)
        if known is not None and known.signer == signed.signer:
            return WithdrawResult(WithdrawStatus.DUPLICATE)
        p = self._provider(signed.signer, now_ms)
        if not p.bucket.take(now_ms):
            return WithdrawResult(WithdrawStatus.REJECTED, "rate_limited")
        if offer is None:
            # Unknown offer: remember the claim, bounded per signer; it binds only
            # an offer of this signer (an offer id names its provider's signature).
            if known is not None or p.orphan_tombstones >= self.max_offers_per_provider:
                return WithdrawResult(WithdrawStatus.REJECTED, "over_cap")
            until = min(signed.at_ms, now_ms) + self.tombstone_ttl_ms
            if until <= now_ms:
                return WithdrawResult(WithdrawStatus.REJECTED, "expired")
            p.orphan_tombstones += 1
            self._set_tombstone(oid, _Tombstone(signed.signer, signed.at_ms, until, None, signed.raw, subnet))
            return WithdrawResult(WithdrawStatus.RECORDED)
        if known is not None and known.slot is None:  # another signer's orphan claim
            self._providers[known.signer].orphan_tombstones -= 1
        slot = _slot(offer)
        stone = _Tombstone(signed.signer, signed.at_ms, offer.expires_at_ms, slot, signed.raw, offer.subnet)
        self._set_tombstone(oid, stone)
        previous = self._slot_tombstones.get(slot)
        if previous is None or previous.at_ms < stone.at_ms:
            self._slot_tombstones[slot] = stone
        self._remove(oid)
        return WithdrawResult(WithdrawStatus.WITHDRAWN)

    # -- time -----------------------------------------------------------------------
    def expire(self, now_ms: int) -> list[str]:
        """Drop offers and tombstones past their expiry; return the dropped offers' ids."""
        gone = [oid for oid, o in self._offers.items() if o.expires_at_ms <= now_ms]
        for oid in gone:
            self._remove(oid)
        for oid, stone in list(self._tombstones.items()):
            if stone.until_ms <= now_ms:
                del self._tombstones[oid]
                self._digest_discard(stone.subnet, withdrawal_key(oid))
                if stone.slot is None:
                    self._providers[stone.signer].orphan_tombstones -= 1
        for slot, stone in list(self._slot_tombstones.items()):
            if stone.until_ms <= now_ms:
                del self._slot_tombstones[slot]
        for node_id, p in list(self._providers.items()):
            if not p.offers and not p.orphan_tombstones and p.bucket.full(now_ms):
                del self._providers[node_id]
        return gone

    # -- reading --------------------------------------------------------------------
    def get(self, offer_id: str) -> SignedOffer | None:
        return self._offers.get(offer_id)

    def live(self, now_ms: int) -> list[SignedOffer]:
        """Offers not yet expired at ``now_ms`` (whether or not :meth:`expire` ran)."""
        return [o for o in self._offers.values() if o.expires_at_ms > now_ms]

    def snapshot(self, now_ms: int) -> list[bytes]:
        """The raw sealed live offers, for a late joiner's catch-up (it re-verifies them)."""
        return [o.raw for o in self.live(now_ms)]

    def is_withdrawn(self, offer_id: str) -> bool:
        return offer_id in self._tombstones

    # -- anti-entropy -------------------------------------------------------------------
    def digest(self, subnet: str) -> SetDigest:
        """The digest of ``subnet``'s offers and tombstones (read it, do not change it)."""
        return self._digests.get(subnet) or SetDigest()

    def subnets(self) -> list[str]:
        return sorted(self._digests)

    def holds(self, key: str) -> bool:
        """Is the element named by an anti-entropy key (offer or tombstone) here?"""
        oid = key[:64]
        return oid in self._offers if key[-1] == "o" else oid in self._tombstones

    def expiry(self, key: str) -> int | None:
        """When the element named by ``key`` expires here (None: not held)."""
        oid = key[:64]
        if key[-1] == "o":
            offer = self._offers.get(oid)
            return offer.expires_at_ms if offer is not None else None
        stone = self._tombstones.get(oid)
        return stone.until_ms if stone is not None else None

    def sealed(self, key: str) -> bytes | None:
        """The sealed offer or withdrawal named by ``key`` (None: not held)."""
        oid = key[:64]
        if key[-1] == "o":
            offer = self._offers.get(oid)
            return offer.raw if offer is not None else None
        stone = self._tombstones.get(oid)
        return stone.raw if stone is not None and stone.raw else None

    def page_after(self, subnet: str, after: str, now_ms: int) -> Iterable[SignedOffer]:
        """Live offers of ``subnet`` with ids after ``after``, in id order (catch-up pages; no sort)."""
        for key in self.digest(subnet).keys_after(after):
            offer = self._offers.get(key[:64])
            if offer is not None and offer.expires_at_ms > now_ms:
                yield offer

    def match(self, demand: Demand, now_ms: int, *, subnet: str | None = None) -> list[SignedOffer]:
        """Live offers matching ``demand`` (strict two-way yes), optionally in one subnet.

        Raises :class:`~market.errors.ConstraintSyntaxError` if the demand's
        constraint does not parse.
        """
        out = []
        for oid in self._matcher.match(demand):
            offer = self._offers[oid]  # type: ignore[index]
            if offer.expires_at_ms > now_ms and (subnet is None or offer.subnet == subnet):
                out.append(offer)
        return out


# -- re-announcing our own offers ---------------------------------------------------------
def reannounce_at(offer: SignedOffer, *, margin_ms: int = 0) -> int:
    """When to re-announce ``offer``: halfway through its life, or ``margin_ms`` before expiry if earlier."""
    half = offer.created_at_ms + (offer.expires_at_ms - offer.created_at_ms) // 2
    return min(half, offer.expires_at_ms - margin_ms)


def due_for_reannounce(own_offers: Iterable[SignedOffer], now_ms: int, *, margin_ms: int = 0) -> list[SignedOffer]:
    """Those of ``own_offers`` to re-sign (fresh times) and re-announce now."""
    return [o for o in own_offers if now_ms >= reannounce_at(o, margin_ms=margin_ms)]
