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
- a withdrawal is honoured only from the offer's own provider; its tombstone
  is remembered until the offer would have expired, so a late re-gossip of the
  withdrawn offer (or of an older copy of it) is refused as ``withdrawn``. A
  tombstone for an offer not yet seen is kept too (capped per signer) and
  applies if that signer's offer turns up later.

Rejection reasons of :meth:`OfferBook.add`: ``"expired"``, ``"withdrawn"``,
``"superseded"``, ``"rate_limited"``, ``"over_cap"``. Of
:meth:`OfferBook.withdraw`: ``"not_owner"``, ``"rate_limited"``, ``"over_cap"``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

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
        self._via: dict[str, str] = {}
        self._via_bytes: dict[str, int] = {}
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
        """Sealed bytes of the live offers that ``peer`` handed us first."""
        return self._via_bytes.get(peer, 0)

    def add(self, signed: SignedOffer, now_ms: int, *, via: str | None = None) -> AddResult:
        """Take a verified offer into the book, or say why not.

        ``via`` is the peer that handed it over (None: this node itself); an
        offer is charged to the peer that brought it first.
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
        charged_to = self._via.get(older.offer_id) if older is not None else via
        via_freed = freed_bytes if older is not None else 0
        if (
            len(p.offers) - freed_count >= self.max_offers_per_provider
            or p.bytes - freed_bytes + size > self.max_bytes_per_provider
            or len(self._offers) - freed_count >= self.max_offers
            or self._bytes - freed_bytes + size > self.max_bytes
            or (
                charged_to is not None
                and self._via_bytes.get(charged_to, 0) - via_freed + size > self.max_bytes_per_via
            )
        ):
            return AddResult(AddStatus.REJECTED, "over_cap")
        if older is not None:
            self._remove(older.offer_id)
        self._offers[oid] = signed
        self._by_slot[slot] = oid
        p.offers.add(oid)
        p.bytes += size
        self._bytes += size
        if charged_to is not None:
            self._via[oid] = charged_to
            self._via_bytes[charged_to] = self._via_bytes.get(charged_to, 0) + size
        self._matcher.add(oid, signed.as_offer())
        if older is not None:
            return AddResult(AddStatus.REPLACED, replaced=older.offer_id)
        return AddResult(AddStatus.NEW)

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
        via = self._via.pop(oid, None)
        if via is not None:
            left = self._via_bytes[via] - len(offer.raw)
            if left:
                self._via_bytes[via] = left
            else:
                del self._via_bytes[via]
        self._matcher.remove(oid)
        return offer

    # -- withdrawing ----------------------------------------------------------------
    def withdraw(self, signed: SignedWithdrawal, now_ms: int) -> WithdrawResult:
        """Honour a verified tombstone from the offer's own provider."""
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
            p.orphan_tombstones += 1
            self._tombstones[oid] = _Tombstone(signed.signer, signed.at_ms, now_ms + self.tombstone_ttl_ms, None)
            return WithdrawResult(WithdrawStatus.RECORDED)
        if known is not None and known.slot is None:  # another signer's orphan claim
            self._providers[known.signer].orphan_tombstones -= 1
        slot = _slot(offer)
        stone = _Tombstone(signed.signer, signed.at_ms, offer.expires_at_ms, slot)
        self._tombstones[oid] = stone
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
