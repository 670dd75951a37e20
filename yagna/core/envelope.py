"""Signed envelopes: ``[body_bytes, signature]`` with a domain-tagged body.

Layout (all canonical CBOR)::

    sealed = encode([body, signature])          signature: 64-byte ed25519 over body
    body   = encode([domain, signer_public_key, payload])

The body *starts* with its domain tag (``"yagna/offer/1"``, ...), so a
signature made for one kind of object can never be accepted as another, and
it names the signer's key, so a signature cannot be re-attributed. The body
is kept as bytes inside the envelope: the signature covers exactly the bytes
that travel, never a re-encoding. Payloads should carry every id that binds
them (network id, agreement id, channel id) for the same reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from yagna.core.errors import EncodeError, WireError
from yagna.core.identity import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    NodeKey,
    node_id_from_public_key,
    verify,
)
from yagna.core.wire import DEFAULT_MAX_SIZE, decode, encode

__all__ = ["Signed", "seal", "open_signed", "content_id"]


@dataclass(frozen=True)
class Signed:
    """A verified envelope. Only :func:`open_signed` and :func:`seal` should build these."""

    domain: str
    signer: str  # node id
    signer_public_key: bytes
    payload: object
    body: bytes
    signature: bytes
    raw: bytes

    def __hash__(self) -> int:
        # Every field is a function of ``raw``; payload dicts are unhashable.
        return hash(self.raw)


def seal(key: NodeKey, domain: str, payload: object) -> bytes:
    """Sign ``payload`` under ``domain`` with ``key``; return the envelope bytes."""
    if not isinstance(domain, str) or not domain:
        raise EncodeError(f"domain tag must be a non-empty str, got {domain!r}")
    body = encode([domain, key.public_key, payload])
    return encode([body, key.sign(body)])


def open_signed(
    data: bytes,
    *,
    domain: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    expected_signer: str | None = None,
    bignums: bool = False,
) -> Signed:
    """Decode and verify an envelope; raise only :class:`WireError` on anything wrong.

    ``domain``, if given, must match the body's tag exactly; ``expected_signer``
    (a node id), if given, must be the signer; ``bignums`` lets the payload carry
    integers above 64 bits (token amounts; :func:`yagna.core.wire.decode`).
    """
    outer = decode(data, max_size=max_size, max_depth=1)
    if not (isinstance(outer, list) and len(outer) == 2):
        raise WireError("envelope must be a 2-element array [body, signature]")
    body, signature = outer
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise WireError("envelope body and signature must be byte strings")
    if len(signature) != SIGNATURE_SIZE:
        raise WireError(f"envelope signature must be {SIGNATURE_SIZE} bytes")
    inner = decode(body, max_size=max_size, bignums=bignums)
    if not (isinstance(inner, list) and len(inner) == 3):
        raise WireError("envelope body must be a 3-element array [domain, signer key, payload]")
    tag, public_key, payload = inner
    if not isinstance(tag, str):
        raise WireError("envelope domain tag must be a text string")
    if domain is not None and tag != domain:
        raise WireError(f"envelope domain is {tag!r:.80}, expected {domain!r}")
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise WireError(f"envelope signer key must be {PUBLIC_KEY_SIZE} bytes")
    signer = node_id_from_public_key(public_key)
    if expected_signer is not None and signer != expected_signer:
        raise WireError(f"envelope signed by {signer}, expected {expected_signer}")
    verify(public_key, body, signature)
    return Signed(
        domain=tag,
        signer=signer,
        signer_public_key=public_key,
        payload=payload,
        body=body,
        signature=signature,
        raw=bytes(data),
    )


def content_id(data: bytes) -> str:
    """Content address of sealed bytes: lowercase hex SHA-256 of exactly those bytes."""
    return hashlib.sha256(data).hexdigest()
