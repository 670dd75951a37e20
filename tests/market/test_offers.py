"""Signed offers, demands and withdrawals: round trips and every rejection reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.errors import ConstraintSyntaxError, MarketError, PropertyError
from market.matching import matches
from market.offers import (
    DEFAULT_MAX_TTL_MS,
    DEMAND_DOMAIN,
    MAX_CLOCK_SKEW_MS,
    OFFER_DOMAIN,
    REASONS,
    WITHDRAW_DOMAIN,
    OfferError,
    OfferRejected,
    make_demand,
    make_offer,
    make_withdrawal,
    offer_id,
    verify_demand,
    verify_offer,
    verify_withdrawal,
)
from yagna.core.identity import NodeKey
from yagna.core.wire import decode, encode

NET = "testnet"
T0 = 1_700_000_000_000
PROVIDER = NodeKey.from_seed(b"p" * 32)
REQUESTOR = NodeKey.from_seed(b"r" * 32)
PROPS = {"golem.inf.mem.gib": 8.0, "golem.runtime.name": "vm", "golem.inf.cpu.threads": 4}
CONS = "(golem.srv.comp.expiration>0)"


def offer(key: NodeKey = PROVIDER, **kw: object) -> bytes:
    args: dict[str, object] = dict(
        network_id=NET, subnet="public", properties=PROPS, constraints=CONS,
        created_at_ms=T0, expires_at_ms=T0 + 600_000,
    )
    args.update(kw)
    return make_offer(key, **args)  # type: ignore[arg-type]


def rejected(data: object, reason: str, **kw: object) -> OfferRejected:
    args: dict[str, object] = dict(network_id=NET, now_ms=T0 + 1000)
    args.update(kw)
    with pytest.raises(OfferRejected) as info:
        verify_offer(data, **args)  # type: ignore[arg-type]
    assert info.value.reason == reason, info.value
    assert info.value.reason in REASONS
    return info.value


def reseal(key: NodeKey, domain: str, payload: object) -> bytes:
    """Seal bypassing the builder's checks (what a buggy or hostile peer may send)."""
    body = encode([domain, key.public_key, payload])
    return encode([body, key.sign(body)])


def payload(**kw: object) -> dict[str, object]:
    p: dict[str, object] = {
        "network_id": NET, "subnet": "public", "properties": PROPS, "constraints": CONS,
        "created_at_ms": T0, "expires_at_ms": T0 + 600_000,
    }
    p.update(kw)
    return p


def test_round_trip() -> None:
    sealed = offer()
    got = verify_offer(sealed, network_id=NET, now_ms=T0 + 1000)
    assert got.offer_id == offer_id(sealed) and len(got.offer_id) == 64
    assert got.provider_id == PROVIDER.node_id
    assert got.subnet == "public"
    assert got.properties == PROPS
    assert got.constraints == CONS
    assert (got.created_at_ms, got.expires_at_ms) == (T0, T0 + 600_000)
    assert got.raw == sealed
    assert got == verify_offer(sealed, network_id=NET, now_ms=T0 + 2000)
    assert hash(got) == hash(got.offer_id)
    assert got.as_offer().issuer == PROVIDER.node_id
    assert decode(decode(sealed)[0])[0] == OFFER_DOMAIN  # type: ignore[index]


def test_signing_is_deterministic_and_ids_differ_by_content() -> None:
    assert offer() == offer()
    assert offer_id(offer()) != offer_id(offer(created_at_ms=T0 + 1))
    assert offer_id(offer()) != offer_id(offer(REQUESTOR))


def test_demand_round_trip_and_matching() -> None:
    sealed = make_demand(
        REQUESTOR, network_id=NET, subnet="public", properties={"golem.srv.comp.expiration": T0 + 10**6},
        constraints="(golem.inf.mem.gib>=4)", created_at_ms=T0, expires_at_ms=T0 + 60_000,
    )
    d = verify_demand(sealed, network_id=NET, now_ms=T0)
    assert d.requestor_id == REQUESTOR.node_id
    assert d.demand_id == offer_id(sealed)
    assert decode(decode(sealed)[0])[0] == DEMAND_DOMAIN  # type: ignore[index]
    o = verify_offer(offer(), network_id=NET, now_ms=T0)
    assert matches(o.as_offer(), d.as_demand())
    # a demand is not an offer, and vice versa
    rejected(sealed, "malformed")
    with pytest.raises(OfferRejected) as info:
        verify_demand(offer(), network_id=NET, now_ms=T0)
    assert info.value.reason == "malformed"


def test_builder_refuses_local_mistakes() -> None:
    with pytest.raises(PropertyError):
        offer(properties={"bad name!": 1})
    with pytest.raises(ConstraintSyntaxError):
        offer(constraints="(golem.inf.mem.gib>=")
    with pytest.raises(OfferError):
        offer(expires_at_ms=T0)
    with pytest.raises(OfferError):
        offer(network_id="")
    with pytest.raises(OfferError):
        offer(created_at_ms=-1)
    with pytest.raises(OfferError):
        offer(properties={f"p{i}": "x" * 4000 for i in range(5)})  # > 16 KiB sealed
    with pytest.raises(OfferError):
        make_withdrawal(PROVIDER, network_id=NET, offer_id="nothex", at_ms=T0)
    assert issubclass(OfferError, MarketError) and issubclass(OfferRejected, MarketError)


def test_bad_signature_flipped_byte() -> None:
    sealed = bytearray(offer())
    sealed[-1] ^= 0x01  # the signature is the last 64 bytes
    rejected(bytes(sealed), "bad_signature")


def test_bad_signature_flipped_body_byte() -> None:
    sealed = offer()
    body, sig = decode(sealed)  # type: ignore[misc]
    tampered = body.replace(b"public", b"publiX")
    rejected(encode([tampered, sig]), "bad_signature")


def test_payload_of_another_signer() -> None:
    # PROVIDER's body with REQUESTOR's signature, and REQUESTOR's body claiming PROVIDER's key
    body, _ = decode(offer())  # type: ignore[misc]
    rejected(encode([body, REQUESTOR.sign(body)]), "bad_signature")
    forged = encode([OFFER_DOMAIN, PROVIDER.public_key, payload()])
    rejected(encode([forged, REQUESTOR.sign(forged)]), "bad_signature")


def test_wrong_network() -> None:
    rejected(offer(network_id="othernet"), "wrong_network")


def test_expired() -> None:
    rejected(offer(), "expired", now_ms=T0 + 600_000)
    rejected(offer(), "expired", now_ms=T0 + 10**9)


def test_too_long_ttl() -> None:
    rejected(offer(expires_at_ms=T0 + DEFAULT_MAX_TTL_MS + 1), "too_long_ttl")
    verify_offer(offer(expires_at_ms=T0 + DEFAULT_MAX_TTL_MS), network_id=NET, now_ms=T0)
    rejected(offer(expires_at_ms=T0 + 20_000), "too_long_ttl", max_ttl_ms=10_000)


def test_from_future() -> None:
    sealed = offer(created_at_ms=T0 + 10**6, expires_at_ms=T0 + 10**6 + 1000)
    rejected(sealed, "from_future", now_ms=T0)
    # within the clock skew it is fine
    ok = offer(created_at_ms=T0 + MAX_CLOCK_SKEW_MS, expires_at_ms=T0 + MAX_CLOCK_SKEW_MS + 1000)
    verify_offer(ok, network_id=NET, now_ms=T0)


def test_oversized() -> None:
    big = offer(properties={f"p{i}": "x" * 3000 for i in range(5)})
    rejected(big, "oversized", max_size=1024)
    rejected(b"\x00" * (16 * 1024 + 1), "oversized")


def test_bad_properties_and_constraints() -> None:
    rejected(reseal(PROVIDER, OFFER_DOMAIN, payload(properties={"bad name!": 1})), "bad_properties")
    rejected(reseal(PROVIDER, OFFER_DOMAIN, payload(properties=[1, 2])), "bad_properties")
    rejected(reseal(PROVIDER, OFFER_DOMAIN, payload(constraints="(a=")), "bad_constraints")
    rejected(reseal(PROVIDER, OFFER_DOMAIN, payload(constraints=7)), "bad_constraints")


@pytest.mark.parametrize(
    "bad",
    [
        payload(extra=1),
        {k: v for k, v in payload().items() if k != "subnet"},
        payload(created_at_ms="now"),
        payload(expires_at_ms=True),
        payload(expires_at_ms=T0 - 1),
        payload(network_id=5),
        payload(subnet="s" * 200),
        [1, 2, 3],
    ],
)
def test_malformed_payloads(bad: object) -> None:
    rejected(reseal(PROVIDER, OFFER_DOMAIN, bad), "malformed")


def test_malformed_envelopes() -> None:
    body = encode([OFFER_DOMAIN, PROVIDER.public_key, payload()])
    sig = PROVIDER.sign(body)
    for data in [
        b"",
        b"\xff",
        encode([body]),
        encode([body, sig, sig]),
        encode([body, sig[:63]]),
        encode(["text", sig]),
        encode([encode([OFFER_DOMAIN, PROVIDER.public_key]), sig]),
        encode([encode([OFFER_DOMAIN, b"\x00" * 32, payload()]), sig]),  # weak key
        encode([encode([WITHDRAW_DOMAIN, PROVIDER.public_key, payload()]), sig]),
        "not bytes",
    ]:
        rejected(data, "malformed")


@given(st.binary(max_size=512))
def test_garbage_bytes_only_offer_rejected(data: bytes) -> None:
    with pytest.raises(OfferRejected):
        verify_offer(data, network_id=NET, now_ms=T0)


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=70)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=7),
    max_leaves=20,
)


@given(cbor_values, cbor_values)
def test_structured_garbage_only_offer_rejected(a: object, b: object) -> None:
    for data in (
        encode(a),
        encode([a, b]),
        encode([encode([OFFER_DOMAIN, PROVIDER.public_key, a]), PROVIDER.sign(b"x")]),
        reseal(PROVIDER, OFFER_DOMAIN, a),
        reseal(PROVIDER, OFFER_DOMAIN, payload(properties=a, constraints=b)),
        reseal(PROVIDER, OFFER_DOMAIN, payload(created_at_ms=a, expires_at_ms=b)),
    ):
        with pytest.raises(OfferRejected):
            verify_offer(data, network_id=NET, now_ms=T0 + 10**9)
        with pytest.raises(OfferRejected):
            verify_withdrawal(data, network_id=NET, now_ms=T0)


@given(st.data())
def test_mutated_offer_never_crashes(data: st.DataObject) -> None:
    sealed = bytearray(offer())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(sealed) - 1))
        sealed[i] = data.draw(st.integers(0, 255))
    try:
        got = verify_offer(bytes(sealed), network_id=NET, now_ms=T0 + 1000)
    except OfferRejected:
        return
    assert bytes(sealed) == offer() and got.provider_id == PROVIDER.node_id


# -- withdrawals ------------------------------------------------------------------------
def test_withdrawal_round_trip_and_rejections() -> None:
    oid = offer_id(offer())
    sealed = make_withdrawal(PROVIDER, network_id=NET, offer_id=oid, at_ms=T0)
    w = verify_withdrawal(sealed, network_id=NET, now_ms=T0 + 5)
    assert (w.offer_id, w.signer, w.at_ms, w.raw) == (oid, PROVIDER.node_id, T0, sealed)

    def reason(data: object, **kw: object) -> str:
        args: dict[str, object] = dict(network_id=NET, now_ms=T0)
        args.update(kw)
        with pytest.raises(OfferRejected) as info:
            verify_withdrawal(data, **args)  # type: ignore[arg-type]
        return info.value.reason

    assert reason(sealed, network_id="other") == "wrong_network"
    assert reason(sealed, now_ms=T0 - MAX_CLOCK_SKEW_MS - 1) == "from_future"
    assert reason(sealed, now_ms=T0 + DEFAULT_MAX_TTL_MS + 1) == "expired"
    assert reason(sealed, max_size=50) == "oversized"
    flipped = bytearray(sealed)
    flipped[-3] ^= 0x40
    assert reason(bytes(flipped)) == "bad_signature"
    assert reason(offer()) == "malformed"  # an offer is not a withdrawal
    assert reason(reseal(PROVIDER, WITHDRAW_DOMAIN, {"network_id": NET, "offer_id": "x", "at_ms": T0})) == "malformed"
    assert reason(reseal(PROVIDER, WITHDRAW_DOMAIN, {"network_id": NET, "offer_id": oid})) == "malformed"
