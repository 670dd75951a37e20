"""Canonical CBOR: exact bytes, round trips, and "garbage in -> only WireError"."""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import time

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yagna.core.errors import EncodeError, WireError
from yagna.core.wire import DEFAULT_MAX_SIZE, MAX_DEPTH_LIMIT, decode, decode_map, encode

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------

ints = st.integers(min_value=-(2**64), max_value=2**256 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | ints | floats | st.text() | st.binary()
keys = st.text(max_size=8) | st.integers(min_value=-(2**64), max_value=2**64 - 1)


def values(key_strategy: st.SearchStrategy[object] = keys) -> st.SearchStrategy[object]:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5)
        | st.dictionaries(key_strategy, children, max_size=5),
        max_leaves=25,
    )


# -- exact bytes ----------------------------------------------------------------

# RFC 8949 Appendix A (the untagged ones), which are all in deterministic form.
RFC_VECTORS = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"),
    (0.00006103515625, "f90400"),
    (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
]


@pytest.mark.parametrize(("value", "hex_"), RFC_VECTORS)
def test_rfc8949_vectors(value: object, hex_: str) -> None:
    assert encode(value).hex() == hex_
    decoded = decode(bytes.fromhex(hex_))
    assert decoded == value
    if isinstance(value, float):
        assert math.copysign(1.0, decoded) == math.copysign(1.0, value)  # -0.0 stays -0.0


def test_map_keys_sorted_bytewise_not_length_first() -> None:
    """RFC 8949 §4.2.1 orders keys by encoded bytes; cbor2 canonical=True does not.

    Example from the RFC: 10, 100, -1, "z", "aa" (10 -> 0a, 100 -> 1864, -1 -> 20).
    The old RFC 7049 "length-first" rule, which cbor2 6.x implements, would
    put -1 before 100; we must neither produce nor accept that order.
    """
    value = {"aa": 0, "z": 0, -1: 0, 100: 0, 10: 0}
    ours = encode(value)
    assert ours.hex() == "a5" "0a00" "186400" "2000" "617a00" "62616100"
    assert decode(ours) == value
    length_first = cbor2.dumps(value, canonical=True)
    assert length_first != ours
    with pytest.raises(WireError, match="canonical"):
        decode(length_first)


def test_tuple_encodes_as_list_and_decodes_as_list() -> None:
    assert encode((1, (2, 3))) == encode([1, [2, 3]])
    assert decode(encode((1, (2,)))) == [1, [2]]


def test_decoded_containers_are_plain_lists_and_dicts() -> None:
    decoded = decode(encode({"a": [1, {"b": []}]}))
    assert type(decoded) is dict
    assert type(decoded["a"]) is list
    assert type(decoded["a"][1]) is dict


def test_int_and_str_subclasses_encode_as_their_base() -> None:
    class Color(enum.IntEnum):
        RED = 1

    assert encode(Color.RED) == encode(1)
    assert encode(bytearray(b"ab")) == encode(b"ab")


# -- encode rejects what has no canonical form -----------------------------------

_cyclic: list[object] = []
_cyclic.append(_cyclic)


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset(),
        datetime.datetime(2024, 1, 1),
        datetime.date(2024, 1, 1),
        decimal.Decimal("1.5"),
        object(),
        1j,
        math.nan,
        math.inf,
        -math.inf,
        2**256,
        -(2**64) - 1,
        {2**64: 1},
        {1.5: 1},
        {True: 1},
        {None: 1},
        {(1,): 1},
        {b"k": 1},
        "\ud800",
        {"a": [math.nan]},
        _cyclic,
        cbor2.CBORTag(1, 0),
        cbor2.undefined,
        memoryview(b"x"),
    ],
    ids=repr,
)
def test_encode_rejects_values_outside_the_model(value: object) -> None:
    with pytest.raises(EncodeError):
        encode(value)


def test_encode_depth_limit() -> None:
    value: object = 1
    for _ in range(MAX_DEPTH_LIMIT):
        value = [value]
    encode(value)
    with pytest.raises(EncodeError, match="nested"):
        encode([value])


# -- properties ----------------------------------------------------------------


@PROPERTY
@given(values())
def test_round_trip(value: object) -> None:
    data = encode(value)
    assert decode(data, bignums=True) == value
    assert encode(decode(data, bignums=True)) == data


@PROPERTY
@given(values(key_strategy=st.text(max_size=8)))
def test_matches_cbor2_canonical_when_key_orders_agree(value: object) -> None:
    """With text keys only, RFC 7049 and RFC 8949 orders coincide: cross-check cbor2."""
    assert encode(value) == cbor2.dumps(value, canonical=True)


@PROPERTY
@given(floats)
def test_float_shortest_form_is_exact(value: float) -> None:
    data = encode(value)
    assert len(data) in (3, 5, 9)
    back = decode(data)
    assert back == value and math.copysign(1, back) == math.copysign(1, value)


# -- decode: garbage in, WireError out -----------------------------------------------


def _only_wire_error(data: bytes, **kwargs: object) -> None:
    """Garbage gives WireError; whatever is accepted is exactly canonical."""
    try:
        value = decode(data, **kwargs)  # type: ignore[arg-type]
    except WireError:
        return
    assert encode(value) == data


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_wire_error(data)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(values())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "append", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=4))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=2))
        elif op == "delete" and data:
            del data[pos]
    return bytes(data)


@FUZZ
@given(mutated_encodings())
def test_fuzz_mutated_valid_encodings(data: bytes) -> None:
    _only_wire_error(data)


@FUZZ
@given(st.binary(max_size=40), st.integers(1, 8))
def test_fuzz_small_limits(data: bytes, max_depth: int) -> None:
    _only_wire_error(data, max_depth=max_depth, max_size=16)


HANDCRAFTED = {
    # tags
    "tag epoch datetime": "c11a00000000",
    "tag bignum with a leading zero": "c24900" + "01" * 8,
    "tag bignum, 8 bytes (fits a plain int)": "c248" + "01" * 8,
    "tag bignum, 33 bytes": "c25821" + "01" * 33,
    "tag bignum over text": "c269" + "61" * 9,
    "tag bignum as a map key": "a1c249" + "01" * 9 + "01",
    "tag negative bignum": "c349" + "01" * 9,
    "tag bignum, truncated": "c249" + "01" * 8,
    "tag bignum, non-canonical tag head": "d802" + "49" + "01" * 9,
    "tag self-describe": "d9d9f700",
    "tag wrapping bytes": "d818456449455446",
    "tag 8-byte number": "db000000000000000100",
    # indefinite lengths
    "indefinite array": "9f01ff",
    "indefinite map": "bf616101ff",
    "indefinite bytes": "5f4101ff",
    "indefinite text": "7f6161ff",
    "stray break": "ff",
    "indefinite int": "1f",
    # reserved additional information
    "reserved 28": "1c",
    "reserved 30": "5e",
    # truncation and trailing bytes
    "empty": "",
    "truncated head": "19 01",
    "truncated array": "8301 02",
    "truncated map": "a1 6161",
    "truncated text": "6561 62",
    "truncated float": "fb 3ff0",
    "trailing byte": "01 00",
    "two items": "80 80",
    # huge declared lengths (must fail fast, without allocating)
    "bytes 2**62": "5b 4000000000000000",
    "text 2**64-1": "7b ffffffffffffffff",
    "array 2**62": "9b 4000000000000000",
    "map 2**62": "bb 4000000000000000",
    "array 2**32 small input": "9a ffffffff 00",
    # map keys
    "duplicate keys": "a2 6161 01 6161 02",
    "duplicate int keys": "a2 01 01 01 02",
    "unsorted keys": "a2 6162 01 6161 02",
    "length-first order": "a2 20 00 1864 00",
    "bool key": "a1 f5 00",
    "null key": "a1 f6 00",
    "float key": "a1 f93c00 00",
    "bytes key": "a1 4161 00",
    "array key": "a1 8100 00",
    "map key": "a1 a0 00",
    # non-shortest forms
    "int 0 in 1 byte": "1800",
    "int 23 in 1 byte": "1817",
    "int 255 in 2 bytes": "1900ff",
    "int in 8 bytes": "1b0000000000000001",
    "negint non-shortest": "3800",
    "length non-shortest": "5800",
    "array length non-shortest": "980100",
    "map length non-shortest": "b800",
    # floats
    "1.0 as float64": "fb3ff0000000000000",
    "1.0 as float32": "fa3f800000",
    "1.5 as float32": "fa3fc00000",
    "0.0 as float64": "fb0000000000000000",
    "NaN half": "f97e00",
    "NaN double": "fb7ff8000000000000",
    "infinity half": "f97c00",
    "-infinity half": "f9fc00",
    # simple values
    "undefined": "f7",
    "simple 0": "e0",
    "simple 16": "f0",
    "simple 24 one byte": "f818",
    "simple 255": "f8ff",
    "simple false in two bytes": "f814",
    # strings
    "invalid utf-8": "62 fffe",
    "utf-8 surrogate": "63 eda080",
    "overlong utf-8": "62 c0af",
    # nesting (default max_depth 32)
    "33 nested arrays": "81" * 32 + "80",
    "33 nested maps": "a16161" * 32 + "a0",
}


@pytest.mark.parametrize("hex_", HANDCRAFTED.values(), ids=HANDCRAFTED.keys())
def test_handcrafted_garbage(hex_: str) -> None:
    for bignums in (False, True):
        with pytest.raises(WireError):
            decode(bytes.fromhex(hex_.replace(" ", "")), bignums=bignums)


def test_depth_limit_boundary() -> None:
    assert decode(bytes.fromhex("81" * 31 + "80")) is not None
    assert decode(b"\x81" * 2 + b"\x80", max_depth=3) == [[[]]]
    with pytest.raises(WireError, match="nested"):
        decode(b"\x81" * 3 + b"\x80", max_depth=3)


@pytest.mark.parametrize(
    "data",
    [
        b"\x81" * 10_000 + b"\x01",
        b"\xa1\x61a" * 10_000 + b"\x01",
        b"\x9f" * 10_000,
        b"\x81" * 100_000,
    ],
    ids=["arrays", "maps", "indefinite", "unterminated"],
)
def test_deep_nesting_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)
    with pytest.raises(WireError):
        decode(data, max_depth=MAX_DEPTH_LIMIT)


def test_huge_declared_length_fails_fast() -> None:
    start = time.perf_counter()
    for head in (b"\x5b", b"\x7b", b"\x9b", b"\xbb"):
        with pytest.raises(WireError):
            decode(head + (2**62).to_bytes(8, "big"))
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("data", ["00", None, 0, [0], object()], ids=repr)
def test_non_bytes_input(data: object) -> None:
    with pytest.raises(WireError, match="expected bytes"):
        decode(data)  # type: ignore[arg-type]


def test_bytes_like_input_is_accepted() -> None:
    assert decode(bytearray(b"\x01")) == 1
    assert decode(memoryview(b"\x82\x01\x02")) == [1, 2]


def test_max_size() -> None:
    assert DEFAULT_MAX_SIZE == 1 << 20
    data = encode(b"x" * 100)
    assert decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(WireError, match="exceeds"):
        decode(data, max_size=len(data) - 1)
    with pytest.raises(WireError, match="exceeds"):
        decode(encode(b"x" * DEFAULT_MAX_SIZE))


def test_max_depth_argument_is_validated() -> None:
    with pytest.raises(ValueError):
        decode(b"\x01", max_depth=MAX_DEPTH_LIMIT + 1)
    with pytest.raises(ValueError):
        decode(b"\x01", max_depth=0)


def test_error_chain_hides_cbor2() -> None:
    with pytest.raises(WireError) as info:
        decode(bytes.fromhex("62fffe"))
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- decode_map ------------------------------------------------------------------


def test_decode_map_required_fields() -> None:
    data = encode({"id": "x", "n": 3, "price": 1.5, "ok": True, "blob": b"", "opt": None})
    required = {"id": str, "n": int, "price": float, "ok": bool, "blob": bytes, "opt": (type(None), int)}
    assert decode_map(data, required=required)["n"] == 3
    assert decode_map(data) == decode(data)


@pytest.mark.parametrize(
    ("value", "required", "match"),
    [
        ([1], None, "expected a CBOR map, got list"),
        (None, None, "expected a CBOR map, got null"),
        ({"a": 1}, {"b": int}, "missing required field 'b'"),
        ({"a": "1"}, {"a": int}, "field 'a' must be int, got str"),
        ({"a": True}, {"a": int}, "field 'a' must be int, got bool"),
        ({"a": 1}, {"a": float}, "field 'a' must be float, got int"),
        ({"a": 1}, {"a": bool}, "field 'a' must be bool, got int"),
        ({"a": None}, {"a": (str, bytes)}, "field 'a' must be str or bytes, got null"),
    ],
)
def test_decode_map_errors_name_the_field(value: object, required: dict[str, type] | None, match: str) -> None:
    with pytest.raises(WireError, match=match):
        decode_map(encode(value), required=required)


def test_decode_map_size_limit() -> None:
    with pytest.raises(WireError, match="exceeds"):
        decode_map(encode({"a": b"x" * 64}), max_size=32)


@pytest.mark.parametrize("value", [2**64, 2**64 + 1, 10**20, 2**255, 2**256 - 1])
def test_unsigned_256_bit_ints_travel_as_the_shortest_bignum(value: int) -> None:
    """Token amounts (issue 14): above 64 bits, tag 2 over the shortest big-endian bytes."""
    data = encode({"amount": value})
    size = (value.bit_length() + 7) // 8
    assert data.endswith(b"\xc2" + bytes((0x40 | size,) if size < 24 else (0x58, size)) + value.to_bytes(size, "big"))
    assert decode(data, bignums=True) == {"amount": value}
    # only where a caller expects amounts: every other message keeps its 64-bit bound
    with pytest.raises(WireError, match="tags are not allowed here"):
        decode(data)
