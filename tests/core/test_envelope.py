"""Signed envelopes: round trips, every tampering is a WireError, and nothing else escapes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yagna.core.envelope import Signed, content_id, open_signed, seal
from yagna.core.errors import EncodeError, WireError
from yagna.core.identity import NodeKey
from yagna.core.wire import decode, encode

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALICE = NodeKey.from_seed(b"A" * 32)
BOB = NodeKey.from_seed(b"B" * 32)
OFFER = "yagna/offer/1"

payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=15,
)


def _resign(key: NodeKey, body: bytes) -> bytes:
    """An envelope around an arbitrary body, validly signed by ``key``."""
    return encode([body, key.sign(body)])


# -- round trip ---------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_seal_open_round_trip(payload: object) -> None:
    sealed = seal(ALICE, OFFER, payload)
    opened = open_signed(sealed, domain=OFFER, expected_signer=ALICE.node_id)
    assert opened.payload == payload
    assert opened.domain == OFFER
    assert opened.signer == ALICE.node_id
    assert opened.signer_public_key == ALICE.public_key
    assert opened.raw == sealed
    assert decode(opened.body) == [OFFER, ALICE.public_key, payload]
    assert ALICE.sign(opened.body) == opened.signature


def test_layout_body_starts_with_domain_tag() -> None:
    sealed = seal(ALICE, OFFER, {"price": 1})
    body, signature = decode(sealed)  # type: ignore[misc]
    assert body.startswith(b"\x83" + encode(OFFER))
    assert len(signature) == 64


def test_signed_is_frozen() -> None:
    opened = open_signed(seal(ALICE, OFFER, 1))
    assert isinstance(opened, Signed)
    with pytest.raises(AttributeError):
        opened.payload = 2  # type: ignore[misc]


def test_signed_is_hashable_even_with_a_dict_payload() -> None:
    sealed = seal(ALICE, OFFER, {"a": [1]})
    assert len({open_signed(sealed), open_signed(sealed)}) == 1


def test_domain_is_optional_on_open() -> None:
    assert open_signed(seal(ALICE, "yagna/voucher/1", [1, 2])).domain == "yagna/voucher/1"


def test_content_id() -> None:
    sealed = seal(ALICE, OFFER, {"a": 1})
    assert content_id(sealed) == hashlib.sha256(sealed).hexdigest()
    assert content_id(seal(ALICE, OFFER, {"a": 1})) == content_id(sealed)  # ed25519 is deterministic
    assert content_id(seal(ALICE, OFFER, {"a": 2})) != content_id(sealed)
    assert content_id(seal(BOB, OFFER, {"a": 1})) != content_id(sealed)


def test_seal_rejects_bad_input() -> None:
    for domain in ("", None, b"yagna/offer/1"):
        with pytest.raises(EncodeError):
            seal(ALICE, domain, 1)  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        seal(ALICE, OFFER, {1, 2})


# -- tampering ------------------------------------------------------------------------


def test_wrong_domain() -> None:
    sealed = seal(ALICE, OFFER, 1)
    for domain in ("yagna/offer/2", "yagna/offer", "yagna/offer/1 ", "YAGNA/OFFER/1"):
        with pytest.raises(WireError, match="domain"):
            open_signed(sealed, domain=domain)


def test_unexpected_signer() -> None:
    with pytest.raises(WireError, match="expected"):
        open_signed(seal(ALICE, OFFER, 1), expected_signer=BOB.node_id)


def test_forged_signature() -> None:
    body, signature = decode(seal(ALICE, OFFER, 1))  # type: ignore[misc]
    for i in (0, 31, 32, 63):
        forged = bytearray(signature)
        forged[i] ^= 0x01
        with pytest.raises(WireError, match="signature"):
            open_signed(encode([body, bytes(forged)]))


def test_payload_swapped_between_envelopes() -> None:
    body_a, sig_a = decode(seal(ALICE, OFFER, {"price": 100}))  # type: ignore[misc]
    body_b, sig_b = decode(seal(ALICE, OFFER, {"price": 1}))  # type: ignore[misc]
    for body, sig in ((body_a, sig_b), (body_b, sig_a)):
        with pytest.raises(WireError, match="signature"):
            open_signed(encode([body, sig]))


def test_signer_swapped() -> None:
    """Claiming Bob signed what Alice signed (or the reverse) fails."""
    sealed = seal(ALICE, OFFER, {"x": 1})
    _, signature = decode(sealed)  # type: ignore[misc]
    claimed_body = encode([OFFER, BOB.public_key, {"x": 1}])
    with pytest.raises(WireError, match="signature"):
        open_signed(encode([claimed_body, signature]))


def test_replay_in_another_domain() -> None:
    """A signature over an offer body never validates a body with another tag."""
    _, signature = decode(seal(ALICE, OFFER, {"x": 1}))  # type: ignore[misc]
    body = encode(["yagna/voucher/1", ALICE.public_key, {"x": 1}])
    with pytest.raises(WireError, match="signature"):
        open_signed(encode([body, signature]))


def test_non_canonical_outer_envelope() -> None:
    body, signature = decode(seal(ALICE, OFFER, 1))  # type: ignore[misc]
    assert len(body) < 256
    # body length in a 2-byte head instead of a 1-byte head
    padded = b"\x82" + b"\x59" + len(body).to_bytes(2, "big") + body + encode(signature)
    with pytest.raises(WireError, match="canonical"):
        open_signed(padded)


def test_non_canonical_body_even_if_validly_signed() -> None:
    canonical = encode([OFFER, ALICE.public_key, 1])
    non_canonical = canonical[:-1] + b"\x18\x01"  # 1 as a two-byte integer
    with pytest.raises(WireError, match="canonical"):
        open_signed(_resign(ALICE, non_canonical))


@pytest.mark.parametrize(
    ("outer", "match"),
    [
        (1, "2-element array"),
        ([], "2-element array"),
        ([b"x"], "2-element array"),
        ([b"x", b"y", b"z"], "2-element array"),
        ({"body": b"", "sig": b""}, "2-element array"),
        (["body", bytes(64)], "byte strings"),
        ([b"\x01", "sig"], "byte strings"),
        ([b"\x01", bytes(63)], "64 bytes"),
        ([b"\x01", bytes(65)], "64 bytes"),
    ],
)
def test_malformed_outer(outer: object, match: str) -> None:
    with pytest.raises(WireError, match=match):
        open_signed(encode(outer))


@pytest.mark.parametrize(
    ("inner", "match"),
    [
        (1, "3-element array"),
        ([OFFER, ALICE.public_key], "3-element array"),
        ([OFFER, ALICE.public_key, 1, 2], "3-element array"),
        ([b"yagna/offer/1", ALICE.public_key, 1], "text string"),
        ([OFFER, ALICE.public_key[:31], 1], "32 bytes"),
        ([OFFER, ALICE.node_id, 1], "32 bytes"),
        ([OFFER, bytes([1]) + bytes(31), 1], "valid ed25519"),  # small-order point
    ],
)
def test_malformed_body(inner: object, match: str) -> None:
    with pytest.raises(WireError, match=match):
        open_signed(_resign(ALICE, encode(inner)))


def test_garbage_body_bytes() -> None:
    with pytest.raises(WireError):
        open_signed(_resign(ALICE, b"\xc1\x00"))  # a tag
    with pytest.raises(WireError):
        open_signed(_resign(ALICE, b""))


def test_size_limit() -> None:
    sealed = seal(ALICE, OFFER, b"x" * 1000)
    assert open_signed(sealed, max_size=len(sealed)).payload == b"x" * 1000
    with pytest.raises(WireError, match="exceeds"):
        open_signed(sealed, max_size=len(sealed) - 1)


# -- fuzz -----------------------------------------------------------------------------


def _only_wire_error(data: object) -> None:
    try:
        open_signed(data, domain=OFFER)  # type: ignore[arg-type]
    except WireError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_garbage(data: bytes) -> None:
    _only_wire_error(data)


@FUZZ
@given(st.lists(st.binary(max_size=80) | st.text(max_size=10) | st.integers(-(2**63), 2**63), max_size=4))
def test_fuzz_well_formed_cbor_of_wrong_shape(items: list[object]) -> None:
    _only_wire_error(encode(items))
    _only_wire_error(_resign(ALICE, encode(items)))


@FUZZ
@given(payloads, st.data())
def test_any_single_byte_change_is_rejected(payload: object, data: st.DataObject) -> None:
    """Every one-byte mutation of a valid envelope is detected (structure or signature)."""
    sealed = bytearray(seal(ALICE, OFFER, payload))
    pos = data.draw(st.integers(0, len(sealed) - 1))
    sealed[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(WireError):
        open_signed(bytes(sealed), domain=OFFER)


@FUZZ
@given(payloads, st.data())
def test_truncated_or_extended_envelope_is_rejected(payload: object, data: st.DataObject) -> None:
    sealed = seal(ALICE, OFFER, payload)
    cut = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(WireError):
        open_signed(sealed[:cut])
    with pytest.raises(WireError):
        open_signed(sealed + data.draw(st.binary(min_size=1, max_size=4)))


@FUZZ
@given(payloads, st.data())
def test_fuzz_mutated_envelopes(payload: object, data: st.DataObject) -> None:
    sealed = bytearray(seal(ALICE, OFFER, payload))
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, max(len(sealed) - 1, 0)))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set" and sealed:
            sealed[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            sealed[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
        elif sealed:
            del sealed[pos]
    _only_wire_error(bytes(sealed))
