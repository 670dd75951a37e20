"""Co-signed agreements: verify offline; anything wrong raises only AgreementInvalid."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import properties as P
from market.agreement import (
    AGREEMENT_DOMAIN,
    AgreementInvalid,
    agreement_id_of,
    build_agreement,
    cosign,
    sign_agreement,
    verify_agreement,
)
from market.errors import MarketError
from market.matching import Demand, Offer
from yagna.core.identity import NodeKey
from yagna.core.wire import decode, encode

NET = "yagna-testnet"
REQ = NodeKey.from_seed(b"R" * 32)
PROV = NodeKey.from_seed(b"P" * 32)
EVE = NodeKey.from_seed(b"E" * 32)
OFFER_ID = hashlib.sha256(b"offer").hexdigest()

DEMAND = Demand(
    REQ.node_id,
    {P.NODE_DEBUG_SUBNET: "public", P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 300},
    "(golem.runtime.name=vm)",
)
OFFER = Offer(
    PROV.node_id,
    {P.RUNTIME_NAME: "vm", P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 120},
    "(golem.node.debug.subnet=public)",
)


def body(**overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "network_id": NET,
        "offer_id": OFFER_ID,
        "demand": DEMAND,
        "offer": OFFER,
        "valid_until_ms": 1_800_000_000_000,
    }
    kwargs.update(overrides)
    return build_agreement(**kwargs)  # type: ignore[arg-type]


def signed(b: bytes | None = None) -> bytes:
    b = body() if b is None else b
    return cosign(b, sign_agreement(REQ, b), sign_agreement(PROV, b))


def reencode_terms(change: dict[str, object], *, keep_id: bool = False) -> bytes:
    """A body with some terms changed (and, unless keep_id, a fresh matching id)."""
    tag, aid, terms = decode(body())  # type: ignore[misc]
    terms = {**terms, **change}
    if not keep_id:
        aid = hashlib.sha256(encode([AGREEMENT_DOMAIN, terms])).hexdigest()
    return encode([tag, aid, terms])


def test_error_is_a_market_error() -> None:
    assert issubclass(AgreementInvalid, MarketError)


def test_signed_by_both_verifies_offline() -> None:
    b = body()
    data = signed(b)
    ag = verify_agreement(data, network_id=NET)
    assert ag.requestor_id == REQ.node_id and ag.provider_id == PROV.node_id
    assert ag.network_id == NET and ag.offer_id == OFFER_ID
    assert ag.body == b and ag.raw == data
    assert ag.agreement_id == decode(b)[1] == agreement_id_of(decode(b)[2])  # type: ignore[index]
    # only the echoed negotiable value binds
    assert ag.terms == {P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120}
    assert ag.demand_properties == dict(DEMAND.properties)
    assert ag.offer_constraints == OFFER.constraints
    assert ag.valid_until_ms == 1_800_000_000_000
    assert hash(ag) == hash(verify_agreement(data, network_id=NET))


def test_build_is_deterministic_and_id_is_content_derived() -> None:
    assert body() == body()
    assert decode(body())[1] != decode(body(valid_until_ms=1))[1]  # type: ignore[index]
    assert decode(body())[1] != decode(body(network_id="other"))[1]  # type: ignore[index]


def test_signed_by_the_wrong_key() -> None:
    b = body()
    with pytest.raises(AgreementInvalid, match="provider signature"):
        verify_agreement(cosign(b, REQ.sign(b), EVE.sign(b)), network_id=NET)
    with pytest.raises(AgreementInvalid, match="requestor signature"):
        verify_agreement(cosign(b, EVE.sign(b), PROV.sign(b)), network_id=NET)


def test_swapped_signatures() -> None:
    b = body()
    with pytest.raises(AgreementInvalid, match="signature"):
        verify_agreement(cosign(b, PROV.sign(b), REQ.sign(b)), network_id=NET)


def test_one_party_signing_twice() -> None:
    b = body()
    with pytest.raises(AgreementInvalid, match="provider signature"):
        verify_agreement(cosign(b, REQ.sign(b), REQ.sign(b)), network_id=NET)


def test_non_party_cannot_sign() -> None:
    with pytest.raises(AgreementInvalid, match="not a party"):
        sign_agreement(EVE, body())


def test_wrong_network() -> None:
    with pytest.raises(AgreementInvalid, match="network"):
        verify_agreement(signed(), network_id="mainnet")


def test_tampered_body_keeps_old_signatures() -> None:
    b = body()
    sr, sp = sign_agreement(REQ, b), sign_agreement(PROV, b)
    tampered = reencode_terms({"valid_until_ms": 1_900_000_000_000})  # id recomputed: only signatures catch it
    with pytest.raises(AgreementInvalid, match="signature"):
        verify_agreement(cosign(tampered, sr, sp), network_id=NET)


def test_tampered_body_with_stale_id() -> None:
    tampered = reencode_terms({"valid_until_ms": 1}, keep_id=True)
    with pytest.raises(AgreementInvalid, match="agreement id"):
        verify_agreement(signed(tampered), network_id=NET)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"terms": {P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 300}}, "settled terms"),
        ({"terms": {}}, "settled terms"),
        ({"requestor_id": PROV.node_id}, "different nodes"),
        ({"provider_id": "not-a-node-id"}, "provider_id"),
        ({"network_id": ""}, "network_id"),
        ({"offer_id": 7}, "offer_id"),
        ({"valid_until_ms": -1}, "valid_until_ms"),
        ({"valid_until_ms": True}, "valid_until_ms"),
        ({"demand_properties": {"bad name!": 1}}, "demand properties"),
        ({"offer_constraints": "(unclosed"}, "offer constraints"),
        ({"extra": 1}, "exactly the fields"),
    ],
)
def test_malformed_terms_are_refused_even_when_signed(change: dict[str, object], match: str) -> None:
    b = reencode_terms(change)
    with pytest.raises(AgreementInvalid, match=match):
        verify_agreement(cosign(b, REQ.sign(b), PROV.sign(b)), network_id=NET)


def test_wrong_domain_tag() -> None:
    _tag, aid, terms = decode(body())  # type: ignore[misc]
    b = encode(["yagna/offer/1", aid, terms])
    with pytest.raises(AgreementInvalid, match="domain"):
        verify_agreement(cosign(b, REQ.sign(b), PROV.sign(b)), network_id=NET)


def test_build_refuses_what_would_not_verify() -> None:
    with pytest.raises(AgreementInvalid):
        body(demand=Demand(PROV.node_id, {}, "()"))
    with pytest.raises(AgreementInvalid):
        body(valid_until_ms="soon")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        encode([]),
        encode([b"x", b"y"]),
        encode(["body", b"s" * 64, b"s" * 64]),
        encode([b"not cbor \xff", b"s" * 64, b"s" * 64]),
        encode([encode([AGREEMENT_DOMAIN, "id", []]), b"s" * 64, b"s" * 64]),
        encode([encode([AGREEMENT_DOMAIN]), b"s" * 64, b"s" * 64]),
    ],
)
def test_garbage_examples(data: bytes) -> None:
    with pytest.raises(AgreementInvalid):
        verify_agreement(data, network_id=NET)


def test_truncated_and_oversized() -> None:
    data = signed()
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(AgreementInvalid):
            verify_agreement(data[:cut], network_id=NET)
    with pytest.raises(AgreementInvalid):
        verify_agreement(encode([b"x" * (300 * 1024), b"", b""]), network_id=NET)


@given(st.binary(max_size=512))
def test_random_bytes_raise_only_agreement_invalid(data: bytes) -> None:
    with pytest.raises(AgreementInvalid):
        verify_agreement(data, network_id=NET)


_VALID = signed()


@given(st.integers(min_value=0, max_value=len(_VALID) - 1), st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_is_refused(index: int, xor: int) -> None:
    data = bytearray(_VALID)
    data[index] ^= xor
    with pytest.raises(AgreementInvalid):
        verify_agreement(bytes(data), network_id=NET)


_cbor = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(_cbor, _cbor, _cbor)
def test_well_formed_cbor_of_the_wrong_shape_raises_only_agreement_invalid(a: object, b: object, c: object) -> None:
    for data in (encode([a, b, c]), encode([encode([AGREEMENT_DOMAIN, a, b]), c, c]), encode(a)):
        with pytest.raises(AgreementInvalid):
            verify_agreement(data, network_id=NET)
