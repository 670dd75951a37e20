"""Signed offers, demands and offer withdrawals (sans-io).

Each is a :func:`yagna.core.envelope.seal` envelope under its own domain tag,
so an offer signature can never pass as a withdrawal or a demand. Payloads
(canonical CBOR maps)::

    offer / demand = {"network_id": str, "subnet": str, "properties": {...},
                      "constraints": str, "created_at_ms": int, "expires_at_ms": int}
    withdrawal     = {"network_id": str, "offer_id": str, "at_ms": int}

An offer's id is the content id (SHA-256 hex) of its sealed bytes. Builders
check their input first and raise :class:`~market.errors.PropertyError`,
:class:`~market.errors.ConstraintSyntaxError` or :class:`OfferError` for local
mistakes. Verifiers take bytes from peers and raise only :class:`OfferRejected`,
whose ``.reason`` is one of :data:`REASONS`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from market.constraints import MAX_CONSTRAINT_LENGTH, Constraint, parse
from market.errors import ConstraintSyntaxError, MarketError, PropertyError
from market.matching import Demand, Offer
from market.properties import PropertyValue, validate_properties
from yagna.core.envelope import content_id, seal
from yagna.core.errors import EncodeError, WireError
from yagna.core.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, NodeKey, node_id_from_public_key, verify
from yagna.core.wire import decode

__all__ = [
    "DEFAULT_MAX_TTL_MS",
    "DEMAND_DOMAIN",
    "MAX_CLOCK_SKEW_MS",
    "MAX_OFFER_SIZE",
    "MAX_WITHDRAWAL_SIZE",
    "OFFER_DOMAIN",
    "REASONS",
    "WITHDRAW_DOMAIN",
    "OfferError",
    "OfferRejected",
    "SignedDemand",
    "SignedOffer",
    "SignedWithdrawal",
    "make_demand",
    "make_offer",
    "make_withdrawal",
    "offer_id",
    "peek_domain_fast",
    "verify_demand",
    "verify_offer",
    "verify_withdrawal",
]

OFFER_DOMAIN: Final = "yagna/offer/1"
WITHDRAW_DOMAIN: Final = "yagna/offer-withdraw/1"
DEMAND_DOMAIN: Final = "yagna/demand/1"

MAX_OFFER_SIZE = 16 * 1024
"""Default bound on a sealed offer or demand, in bytes."""
MAX_WITHDRAWAL_SIZE = 1024
DEFAULT_MAX_TTL_MS = 60 * 60 * 1000
"""Longest lifetime (expires - created) accepted by default: one hour."""
MAX_CLOCK_SKEW_MS = 60 * 1000
"""How far in the future a ``created_at_ms`` may lie before it is refused."""

MAX_ID_LENGTH = 128
"""Longest network id or subnet tag."""
_MAX_TIME = (1 << 63) - 1
_OFFER_ID_LENGTH = 64

REASONS: Final = frozenset(
    {
        "malformed",
        "bad_signature",
        "wrong_network",
        "expired",
        "too_long_ttl",
        "from_future",
        "oversized",
        "bad_properties",
        "bad_constraints",
    }
)

_ITEM_FIELDS = frozenset({"network_id", "subnet", "properties", "constraints", "created_at_ms", "expires_at_ms"})
_WITHDRAW_FIELDS = frozenset({"network_id", "offer_id", "at_ms"})


class OfferError(MarketError):
    """A local mistake building an offer, demand or withdrawal (bad id, times, size)."""


class OfferRejected(MarketError):
    """Remote bytes are not an acceptable offer, demand or withdrawal.

    ``reason`` is a machine-readable code from :data:`REASONS`.
    """

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True, eq=False)
class SignedOffer:
    """A verified offer. Equal and hashed by ``offer_id`` (a function of ``raw``)."""

    offer_id: str
    provider_id: str
    subnet: str
    properties: dict[str, PropertyValue]
    constraints: str
    constraint: Constraint
    created_at_ms: int
    expires_at_ms: int
    raw: bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignedOffer) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.offer_id)

    def as_offer(self) -> Offer:
        """The :class:`~market.matching.Offer` to match against demands."""
        return Offer(issuer=self.provider_id, properties=self.properties, constraints=self.constraints)


@dataclass(frozen=True, eq=False)
class SignedDemand:
    """A verified demand. Equal and hashed by ``demand_id`` (a function of ``raw``)."""

    demand_id: str
    requestor_id: str
    subnet: str
    properties: dict[str, PropertyValue]
    constraints: str
    constraint: Constraint
    created_at_ms: int
    expires_at_ms: int
    raw: bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignedDemand) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.demand_id)

    def as_demand(self) -> Demand:
        """The :class:`~market.matching.Demand` to match against offers."""
        return Demand(issuer=self.requestor_id, properties=self.properties, constraints=self.constraints)


@dataclass(frozen=True)
class SignedWithdrawal:
    """A verified tombstone: ``signer`` withdraws ``offer_id`` as of ``at_ms``."""

    offer_id: str
    signer: str
    at_ms: int
    raw: bytes


# -- building ---------------------------------------------------------------------------
def offer_id(sealed: bytes) -> str:
    """The content id of a sealed offer (or demand): SHA-256 hex of exactly its bytes."""
    return content_id(sealed)


def _check_id(name: str, value: object, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or (not value and not allow_empty):
        raise OfferError(f"{name} must be a {'' if allow_empty else 'non-empty '}string of at most {MAX_ID_LENGTH} characters")


def _check_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIME:
        raise OfferError(f"{name} must be a non-negative 63-bit integer (ms since the epoch)")


def _make_item(
    key: NodeKey,
    domain: str,
    *,
    network_id: str,
    subnet: str,
    properties: dict[str, object],
    constraints: str,
    created_at_ms: int,
    expires_at_ms: int,
) -> bytes:
    _check_id("network_id", network_id)
    _check_id("subnet", subnet, allow_empty=True)
    props = validate_properties(properties)
    parse(constraints)
    _check_time("created_at_ms", created_at_ms)
    _check_time("expires_at_ms", expires_at_ms)
    if expires_at_ms <= created_at_ms:
        raise OfferError("expires_at_ms must be after created_at_ms")
    payload = {
        "network_id": network_id,
        "subnet": subnet,
        "properties": props,
        "constraints": constraints,
        "created_at_ms": created_at_ms,
        "expires_at_ms": expires_at_ms,
    }
    try:
        sealed = seal(key, domain, payload)
    except EncodeError as exc:  # pragma: no cover - every field was checked above
        raise OfferError(f"cannot encode: {exc}") from exc
    if len(sealed) > MAX_OFFER_SIZE:
        raise OfferError(f"sealed size {len(sealed)} bytes exceeds {MAX_OFFER_SIZE}; peers would refuse it")
    return sealed


def make_offer(
    key: NodeKey,
    *,
    network_id: str,
    subnet: str,
    properties: dict[str, object],
    constraints: str,
    created_at_ms: int,
    expires_at_ms: int,
) -> bytes:
    """Sign an offer with the provider's ``key``; return its sealed bytes."""
    return _make_item(
        key,
        OFFER_DOMAIN,
        network_id=network_id,
        subnet=subnet,
        properties=properties,
        constraints=constraints,
        created_at_ms=created_at_ms,
        expires_at_ms=expires_at_ms,
    )


def make_demand(
    key: NodeKey,
    *,
    network_id: str,
    subnet: str,
    properties: dict[str, object],
    constraints: str,
    created_at_ms: int,
    expires_at_ms: int,
) -> bytes:
    """Sign a demand with the requestor's ``key``; return its sealed bytes."""
    return _make_item(
        key,
        DEMAND_DOMAIN,
        network_id=network_id,
        subnet=subnet,
        properties=properties,
        constraints=constraints,
        created_at_ms=created_at_ms,
        expires_at_ms=expires_at_ms,
    )


def make_withdrawal(key: NodeKey, *, network_id: str, offer_id: str, at_ms: int) -> bytes:
    """Sign a tombstone withdrawing ``offer_id`` (only its provider's is honoured)."""
    _check_id("network_id", network_id)
    if not _is_offer_id(offer_id):
        raise OfferError("offer_id must be 64 lowercase hex digits")
    _check_time("at_ms", at_ms)
    return seal(key, WITHDRAW_DOMAIN, {"network_id": network_id, "offer_id": offer_id, "at_ms": at_ms})


# -- verifying --------------------------------------------------------------------------
def _text_head(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 24
    return bytes([0x60 + len(raw)]) + raw


_DOMAIN_HEADS = {_text_head(d): d for d in (OFFER_DOMAIN, WITHDRAW_DOMAIN, DEMAND_DOMAIN)}


def peek_domain_fast(data: bytes) -> str | None:
    """The domain tag of a sealed offer, withdrawal or demand, read from its first bytes (unverified).

    A canonical envelope is ``0x82``, a byte-string head, then the body ``0x83`` +
    the tag as a text string. None when the bytes do not start that way (the
    caller then decodes, or refuses). Never raises.
    """
    if len(data) < 4 or data[0] != 0x82:
        return None
    head = data[1]
    if 0x40 <= head <= 0x57:
        start = 2
    elif head == 0x58:
        start = 3
    elif head == 0x59:
        start = 4
    else:
        return None
    if data[start:start + 1] != b"\x83":
        return None
    for encoded, domain in _DOMAIN_HEADS.items():
        if data.startswith(encoded, start + 1):
            return domain
    return None


def _is_offer_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == _OFFER_ID_LENGTH
        and all(c in "0123456789abcdef" for c in value)
    )


def _is_time(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TIME


_parse = functools.lru_cache(maxsize=1024)(parse)
"""Constraint texts recur (most offers carry their preset's); the tree is immutable. Errors are not cached."""
_node_id = functools.lru_cache(maxsize=4096)(node_id_from_public_key)
"""Node id of a signer key (base58 and the point check cost ~60 us; providers recur). Raises WireError."""


def _open(data: object, domain: str, max_size: int) -> tuple[str, dict[object, object]]:
    """Check the envelope; return ``(signer node id, payload map)``.

    The structure is checked first so that garbage is ``malformed`` and only a
    well-formed envelope whose signature fails is ``bad_signature``. Each layer
    is decoded once (the same checks as :func:`yagna.core.envelope.open_signed`,
    which decodes both layers again).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise OfferRejected("malformed", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise OfferRejected("oversized", f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        outer = decode(data, max_size=max_size, max_depth=1)
        if not (isinstance(outer, list) and len(outer) == 2):
            raise WireError("envelope must be [body, signature]")
        body, signature = outer
        if not isinstance(body, bytes) or not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            raise WireError("envelope body and signature must be byte strings of the right size")
        inner = decode(body, max_size=max_size)
        if not (isinstance(inner, list) and len(inner) == 3):
            raise WireError("envelope body must be [domain, signer key, payload]")
        tag, public_key, payload = inner
        if tag != domain:
            raise WireError(f"domain is {tag!r:.80}, expected {domain!r}")
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
            raise WireError("signer key has the wrong size")
        signer = _node_id(public_key)
    except WireError as exc:
        raise OfferRejected("malformed", str(exc)) from None
    try:
        verify(public_key, body, signature)
    except WireError as exc:
        raise OfferRejected("bad_signature", str(exc)) from None
    if not isinstance(payload, dict):
        raise OfferRejected("malformed", "payload must be a map")
    return signer, payload


def _verify_item(
    data: bytes, domain: str, *, network_id: str, now_ms: int, max_size: int, max_ttl_ms: int, max_skew_ms: int
) -> tuple[str, str, dict[str, PropertyValue], str, Constraint, int, int]:
    signer, p = _open(data, domain, max_size)
    if set(p) != _ITEM_FIELDS:
        raise OfferRejected("malformed", f"payload must have exactly the fields {sorted(_ITEM_FIELDS)}")
    net, subnet, props, text = p["network_id"], p["subnet"], p["properties"], p["constraints"]
    created, expires = p["created_at_ms"], p["expires_at_ms"]
    if not isinstance(net, str) or not isinstance(subnet, str) or len(subnet) > MAX_ID_LENGTH:
        raise OfferRejected("malformed", "network_id and subnet must be short strings")
    if not _is_time(created) or not _is_time(expires) or expires <= created:  # type: ignore[operator]
        raise OfferRejected("malformed", "created_at_ms/expires_at_ms must be 63-bit integers, expiry after creation")
    assert isinstance(created, int) and isinstance(expires, int)
    if net != network_id:
        raise OfferRejected("wrong_network", f"for network {net!r:.80}, expected {network_id!r}")
    try:
        # The properties are a part of `data`, re-encoded to the same canonical bytes:
        # when `data` fits the encoded-size cap, so do they (no need to re-encode them).
        properties = validate_properties(props, encoded_size_at_most=len(data))
    except PropertyError as exc:
        raise OfferRejected("bad_properties", str(exc)) from None
    if not isinstance(text, str) or len(text) > MAX_CONSTRAINT_LENGTH:
        raise OfferRejected("bad_constraints", f"constraints must be a string of at most {MAX_CONSTRAINT_LENGTH} characters")
    try:
        constraint = _parse(text)
    except ConstraintSyntaxError as exc:
        raise OfferRejected("bad_constraints", str(exc)) from None
    if created > now_ms + max_skew_ms:
        raise OfferRejected("from_future", f"created {created - now_ms} ms in the future")
    if expires - created > max_ttl_ms:
        raise OfferRejected("too_long_ttl", f"lifetime {expires - created} ms exceeds {max_ttl_ms} ms")
    if expires <= now_ms:
        raise OfferRejected("expired", f"expired {now_ms - expires} ms ago")
    return signer, subnet, properties, text, constraint, created, expires


def verify_offer(
    data: bytes,
    *,
    network_id: str,
    now_ms: int,
    max_size: int = MAX_OFFER_SIZE,
    max_ttl_ms: int = DEFAULT_MAX_TTL_MS,
    max_skew_ms: int = MAX_CLOCK_SKEW_MS,
    known_id: str | None = None,
) -> SignedOffer:
    """Check a sealed offer from a peer; raise only :class:`OfferRejected`.

    ``known_id``: :func:`offer_id` of ``data`` if the caller already computed it.
    """
    signer, subnet, props, text, constraint, created, expires = _verify_item(
        data, OFFER_DOMAIN, network_id=network_id, now_ms=now_ms,
        max_size=max_size, max_ttl_ms=max_ttl_ms, max_skew_ms=max_skew_ms,
    )
    raw = bytes(data)
    return SignedOffer(
        offer_id=known_id or content_id(raw),
        provider_id=signer,
        subnet=subnet,
        properties=props,
        constraints=text,
        constraint=constraint,
        created_at_ms=created,
        expires_at_ms=expires,
        raw=raw,
    )


def verify_demand(
    data: bytes,
    *,
    network_id: str,
    now_ms: int,
    max_size: int = MAX_OFFER_SIZE,
    max_ttl_ms: int = DEFAULT_MAX_TTL_MS,
    max_skew_ms: int = MAX_CLOCK_SKEW_MS,
) -> SignedDemand:
    """Check a sealed demand from a peer; raise only :class:`OfferRejected`."""
    signer, subnet, props, text, constraint, created, expires = _verify_item(
        data, DEMAND_DOMAIN, network_id=network_id, now_ms=now_ms,
        max_size=max_size, max_ttl_ms=max_ttl_ms, max_skew_ms=max_skew_ms,
    )
    raw = bytes(data)
    return SignedDemand(
        demand_id=content_id(raw),
        requestor_id=signer,
        subnet=subnet,
        properties=props,
        constraints=text,
        constraint=constraint,
        created_at_ms=created,
        expires_at_ms=expires,
        raw=raw,
    )


def verify_withdrawal(
    data: bytes,
    *,
    network_id: str,
    now_ms: int,
    max_size: int = MAX_WITHDRAWAL_SIZE,
    max_age_ms: int = DEFAULT_MAX_TTL_MS,
    max_skew_ms: int = MAX_CLOCK_SKEW_MS,
) -> SignedWithdrawal:
    """Check a sealed withdrawal from a peer; raise only :class:`OfferRejected`.

    A tombstone older than ``max_age_ms`` is ``expired``: every offer it could
    withdraw has expired by then (with the default TTL cap).
    """
    signer, p = _open(data, WITHDRAW_DOMAIN, max_size)
    if set(p) != _WITHDRAW_FIELDS:
        raise OfferRejected("malformed", f"payload must have exactly the fields {sorted(_WITHDRAW_FIELDS)}")
    net, oid, at = p["network_id"], p["offer_id"], p["at_ms"]
    if not isinstance(net, str) or not _is_offer_id(oid) or not _is_time(at):
        raise OfferRejected("malformed", "network_id must be a string, offer_id 64 hex digits, at_ms an integer")
    assert isinstance(oid, str) and isinstance(at, int)
    if net != network_id:
        raise OfferRejected("wrong_network", f"for network {net!r:.80}, expected {network_id!r}")
    if at > now_ms + max_skew_ms:
        raise OfferRejected("from_future", f"issued {at - now_ms} ms in the future")
    if at < now_ms - max_age_ms:
        raise OfferRejected("expired", f"issued {now_ms - at} ms ago")
    return SignedWithdrawal(offer_id=oid, signer=signer, at_ms=at, raw=bytes(data))
