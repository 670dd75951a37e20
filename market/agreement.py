"""The agreement as one canonical, co-signed document anyone can verify offline.

Golem does not sign agreements; we do, so a payment dispute or a reputation
claim can be settled from the bytes alone. Layout (all canonical CBOR)::

    body      = encode([AGREEMENT_DOMAIN, agreement_id, terms])
    cosigned  = encode([body, requestor_signature, provider_signature])

``terms`` is a map naming every id that binds the agreement (network id,
requestor, provider, offer id) plus both sides' properties and constraints,
the settled negotiable terms and the approval deadline. ``agreement_id`` is
the SHA-256 of ``encode([AGREEMENT_DOMAIN, terms])``: content-derived, so two
different agreements can never share an id. Both parties sign exactly the
body bytes; each signature is checked against the key embedded in the node id
the body names for that role, so a swapped or re-attributed signature fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from market.constraints import MAX_CONSTRAINT_LENGTH, parse
from market.errors import ConstraintSyntaxError, MarketError, PropertyError
from market.matching import Demand, Offer
from market.negotiation import settle_terms
from market.properties import validate_properties
from yagna.core.errors import WireError
from yagna.core.identity import SIGNATURE_SIZE, NodeKey, public_key_from_node_id, verify
from yagna.core.wire import decode, encode

__all__ = [
    "AGREEMENT_DOMAIN",
    "MAX_AGREEMENT_SIZE",
    "Agreement",
    "AgreementInvalid",
    "agreement_id_of",
    "build_agreement",
    "cosign",
    "sign_agreement",
    "verify_agreement",
]

AGREEMENT_DOMAIN = "yagna/agreement/1"

MAX_AGREEMENT_SIZE = 256 * 1024
"""Two property sets (64 KiB each encoded) and two constraints (16 KiB each) fit with room to spare."""

_MAX_ID_LENGTH = 128
_TERM_FIELDS = frozenset(
    {
        "network_id",
        "requestor_id",
        "provider_id",
        "offer_id",
        "demand_properties",
        "demand_constraints",
        "offer_properties",
        "offer_constraints",
        "terms",
        "valid_until_ms",
    }
)


class AgreementInvalid(MarketError):
    """An agreement document is malformed, tampered with, mis-signed or for another network."""


@dataclass(frozen=True)
class Agreement:
    """A verified agreement. Only :func:`verify_agreement` should build these."""

    agreement_id: str
    network_id: str
    requestor_id: str
    provider_id: str
    offer_id: str
    demand_properties: Mapping[str, object]
    demand_constraints: str
    offer_properties: Mapping[str, object]
    offer_constraints: str
    terms: Mapping[str, object]
    valid_until_ms: int
    body: bytes
    requestor_signature: bytes
    provider_signature: bytes
    raw: bytes

    def __hash__(self) -> int:
        return hash(self.raw)


def agreement_id_of(terms: Mapping[str, object]) -> str:
    """The content-derived id: lowercase hex SHA-256 of ``encode([AGREEMENT_DOMAIN, terms])``."""
    return hashlib.sha256(encode([AGREEMENT_DOMAIN, terms])).hexdigest()


def build_agreement(
    *,
    network_id: str,
    offer_id: str,
    demand: Demand,
    offer: Offer,
    valid_until_ms: int,
) -> bytes:
    """The canonical body both parties sign; the requestor is ``demand.issuer``, the provider ``offer.issuer``.

    The settled negotiable terms are computed here from both property sets
    (never passed in), so the body cannot claim a term one side did not state.
    Raises :class:`AgreementInvalid` if the inputs would not verify.
    """
    terms = {
        "network_id": network_id,
        "requestor_id": demand.issuer,
        "provider_id": offer.issuer,
        "offer_id": offer_id,
        "demand_properties": dict(demand.properties),
        "demand_constraints": demand.constraints,
        "offer_properties": dict(offer.properties),
        "offer_constraints": offer.constraints,
        "terms": settle_terms(demand.properties, offer.properties),
        "valid_until_ms": valid_until_ms,
    }
    _check_terms(terms)
    body = encode([AGREEMENT_DOMAIN, agreement_id_of(terms), terms])
    if len(body) > MAX_AGREEMENT_SIZE - 2 * SIGNATURE_SIZE - 16:
        raise AgreementInvalid("agreement body too large")
    return body


def sign_agreement(key: NodeKey, body: bytes) -> bytes:
    """Sign exactly ``body``; refuse (:class:`AgreementInvalid`) if ``key`` is not a party to it."""
    _tag, _aid, terms = _decode_body(body)
    if key.node_id not in (terms["requestor_id"], terms["provider_id"]):
        raise AgreementInvalid(f"{key.node_id} is not a party to this agreement")
    return key.sign(body)


def cosign(body: bytes, requestor_signature: bytes, provider_signature: bytes) -> bytes:
    """The co-signed document ``[body, requestor_signature, provider_signature]``."""
    return encode([body, requestor_signature, provider_signature])


def verify_agreement(data: bytes, *, network_id: str) -> Agreement:
    """Decode and check a co-signed agreement offline; raise only :class:`AgreementInvalid`.

    Checks: canonical encoding, size, domain tag, network, field types,
    content-derived id, settled terms consistent with both property sets, and
    both signatures against the node ids the body names for each role.
    """
    try:
        outer = decode(data, max_size=MAX_AGREEMENT_SIZE, max_depth=1)
    except WireError as exc:
        raise AgreementInvalid(f"not a canonical agreement document: {exc}") from None
    if not (isinstance(outer, list) and len(outer) == 3):
        raise AgreementInvalid("agreement must be a 3-element array [body, requestor_sig, provider_sig]")
    body, requestor_sig, provider_sig = outer
    if not all(isinstance(x, bytes) for x in outer):
        raise AgreementInvalid("agreement body and signatures must be byte strings")
    tag, agreement_id, terms = _decode_body(body)
    if terms["network_id"] != network_id:
        raise AgreementInvalid(f"agreement is for network {terms['network_id']!r:.80}, expected {network_id!r}")
    for role, node_id, sig in (
        ("requestor", terms["requestor_id"], requestor_sig),
        ("provider", terms["provider_id"], provider_sig),
    ):
        try:
            verify(node_id, body, sig)
        except WireError as exc:
            raise AgreementInvalid(f"{role} signature invalid for {node_id}: {exc}") from None
    return Agreement(
        agreement_id=agreement_id,
        network_id=terms["network_id"],
        requestor_id=terms["requestor_id"],
        provider_id=terms["provider_id"],
        offer_id=terms["offer_id"],
        demand_properties=terms["demand_properties"],
        demand_constraints=terms["demand_constraints"],
        offer_properties=terms["offer_properties"],
        offer_constraints=terms["offer_constraints"],
        terms=terms["terms"],
        valid_until_ms=terms["valid_until_ms"],
        body=body,
        requestor_signature=requestor_sig,
        provider_signature=provider_sig,
        raw=bytes(data),
    )


# -- internals -------------------------------------------------------------------------


def _decode_body(body: bytes) -> tuple[str, str, dict[str, Any]]:
    try:
        inner = decode(body, max_size=MAX_AGREEMENT_SIZE)
    except WireError as exc:
        raise AgreementInvalid(f"agreement body is not canonical CBOR: {exc}") from None
    if not (isinstance(inner, list) and len(inner) == 3):
        raise AgreementInvalid("agreement body must be [domain, agreement_id, terms]")
    tag, agreement_id, terms = inner
    if tag != AGREEMENT_DOMAIN:
        raise AgreementInvalid(f"wrong domain tag {tag!r:.80}, expected {AGREEMENT_DOMAIN!r}")
    if not isinstance(terms, dict):
        raise AgreementInvalid("agreement terms must be a map")
    _check_terms(terms)
    if agreement_id != agreement_id_of(terms):
        raise AgreementInvalid("agreement id does not match the content of the terms")
    return tag, agreement_id, terms


def _check_terms(terms: Mapping[str, object]) -> None:
    """Shape and consistency of the terms map; the same rules for building and verifying."""
    if set(terms) != _TERM_FIELDS:
        raise AgreementInvalid(f"agreement terms must have exactly the fields {sorted(_TERM_FIELDS)}")
    for name in ("network_id", "offer_id"):
        value = terms[name]
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_LENGTH:
            raise AgreementInvalid(f"{name} must be a non-empty string of at most {_MAX_ID_LENGTH} characters")
    for name in ("requestor_id", "provider_id"):
        try:
            public_key_from_node_id(terms[name])  # type: ignore[arg-type]
        except WireError as exc:
            raise AgreementInvalid(f"{name} is not a node id: {exc}") from None
    if terms["requestor_id"] == terms["provider_id"]:
        raise AgreementInvalid("requestor and provider must be different nodes")
    valid_until = terms["valid_until_ms"]
    if not isinstance(valid_until, int) or isinstance(valid_until, bool) or not 0 <= valid_until < 1 << 63:
        raise AgreementInvalid("valid_until_ms must be a non-negative 63-bit integer")
    for side in ("demand", "offer"):
        try:
            validate_properties(terms[f"{side}_properties"])
        except PropertyError as exc:
            raise AgreementInvalid(f"{side} properties invalid: {exc}") from None
        text = terms[f"{side}_constraints"]
        if not isinstance(text, str) or len(text) > MAX_CONSTRAINT_LENGTH:
            raise AgreementInvalid(f"{side} constraints must be a string of at most {MAX_CONSTRAINT_LENGTH} characters")
        try:
            parse(text)
        except ConstraintSyntaxError as exc:
            raise AgreementInvalid(f"{side} constraints invalid: {exc}") from None
    settled = terms["terms"]
    expected = settle_terms(terms["demand_properties"], terms["offer_properties"])  # type: ignore[arg-type]
    if not isinstance(settled, dict) or encode(settled) != encode(expected):
        raise AgreementInvalid("settled terms are not exactly the negotiable values both sides state alike")
