"""Canonical CBOR: the one wire encoding of every message between nodes.

Why our own encoder: signatures and content ids are computed over bytes, so
two honest implementations must produce *identical* bytes for the same value.
We follow RFC 8949 §4.2.1 "core deterministic encoding": shortest integer and
length heads, definite lengths only, floats in the shortest form that keeps
the value, and map keys sorted by the **bytewise** order of their encodings.
``cbor2.dumps(canonical=True)`` (6.x) instead sorts keys length-first (the old
RFC 7049 rule), which differs as soon as a map mixes key kinds, e.g.
``{1000: .., "a": ..}``; so encoding is done here, and cbor2 (a fast Rust
decoder) only builds values from bytes we have already validated.

Decoding is strict because the input comes from peers: anything malformed,
oversized, tagged, indefinite, too deep, or merely non-canonical raises
:class:`~yagna.core.errors.WireError` and nothing else. One iterative pass
over the item heads (:func:`_validate`) checks structure *and* canonical
form, so there is exactly one accepted byte string per value; this is the
same as "re-encode and compare" (the tests assert that equivalence) but about
twice as fast, which matters because a 1 MiB message can hold a million items.

Value model (both directions): ``None``, ``bool``, ``int`` in
``[-2**64, 2**256 - 1]`` (CBOR major types 0/1; above ``2**64 - 1``, up to 256 bits for token
amounts, the unsigned bignum tag 2 over the shortest big-endian bytes, 9 to 32 of them, and
never as a map key; no other tag), finite
``float``, ``str``, ``bytes``, ``list`` (``tuple`` encodes as a list), and
``dict`` whose keys are ``str`` or ``int``. Decoding returns lists and dicts.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

import cbor2

from yagna.core.errors import EncodeError, WireError

__all__ = ["DEFAULT_MAX_SIZE", "MAX_DEPTH_LIMIT", "encode", "decode", "decode_map"]

DEFAULT_MAX_SIZE = 1 << 20
"""Default upper bound, in bytes, for one decoded message."""

DEFAULT_MAX_DEPTH = 32
"""Default bound on container nesting accepted from a peer."""

MAX_DEPTH_LIMIT = 256
"""Hard cap on nesting (encode and decode), far below Python's recursion limit."""

_UINT64_MAX = (1 << 64) - 1
_UINT256_MAX = (1 << 256) - 1
_BIGNUM_TAG = 0xC2  # tag 2, unsigned bignum

# Exceptions cbor2 6.x (Rust) can raise on hostile input. _validate makes
# most of them unreachable, but this is the boundary where they become ours.
_CBOR2_DECODE_ERRORS = (
    cbor2.CBORError,
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    OverflowError,
    EOFError,
    RecursionError,
    MemoryError,
)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def encode(obj: object) -> bytes:
    """Encode ``obj`` as RFC 8949 core deterministic CBOR.

    Raises :class:`EncodeError` for values outside the value model (sets,
    datetimes, Decimal, NaN/infinity, huge ints, non-str/int keys, lone
    surrogates, cycles or nesting deeper than :data:`MAX_DEPTH_LIMIT`): that is
    a bug on our side, never something a peer can trigger.
    """
    out = bytearray()
    _encode_into(obj, out, 0)
    return bytes(out)


def _head(major: int, arg: int) -> bytes:
    """The shortest head for ``major`` type with argument ``arg``."""
    mt = major << 5
    if arg < 24:
        return bytes((mt | arg,))
    if arg <= 0xFF:
        return bytes((mt | 24, arg))
    if arg <= 0xFFFF:
        return bytes((mt | 25,)) + arg.to_bytes(2, "big")
    if arg <= 0xFFFFFFFF:
        return bytes((mt | 26,)) + arg.to_bytes(4, "big")
    return bytes((mt | 27,)) + arg.to_bytes(8, "big")


def _encode_int(value: int) -> bytes:
    if 0 <= value <= _UINT64_MAX:
        return _head(0, value)
    if -_UINT64_MAX - 1 <= value < 0:
        return _head(1, -1 - value)
    if _UINT64_MAX < value <= _UINT256_MAX:
        size = (value.bit_length() + 7) // 8
        return bytes((_BIGNUM_TAG,)) + _head(2, size) + value.to_bytes(size, "big")
    raise EncodeError(f"integer {value} is outside -2**64 .. 2**256 - 1")


def _encode_float(value: float) -> bytes:
    """Shortest of half/single/double that round-trips exactly (RFC 8949 §4.2.1)."""
    if not math.isfinite(value):
        raise EncodeError(f"float {value!r} is not finite; NaN and infinity are not allowed")
    for fmt, initial in ((">e", 0xF9), (">f", 0xFA)):
        try:
            packed = struct.pack(fmt, value)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == value:
            return bytes((initial,)) + packed
    return b"\xfb" + struct.pack(">d", value)


def _encode_str(value: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string is not valid Unicode (lone surrogate?): {exc}") from None
    return _head(3, len(raw)) + raw


def _encode_key(key: object) -> bytes:
    # bool is an int subclass, but True/False are not valid keys in our model.
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise EncodeError(f"map key {key!r} of type {type(key).__name__} is not str or int")
    if isinstance(key, int) and key > _UINT64_MAX:
        raise EncodeError(f"map key {key} does not fit in 64 bits")
    return _encode_str(key) if isinstance(key, str) else _encode_int(key)


def _encode_into(obj: object, out: bytearray, depth: int) -> None:
    if obj is None:
        out += b"\xf6"
    elif obj is True:
        out += b"\xf5"
    elif obj is False:
        out += b"\xf4"
    elif isinstance(obj, int):
        out += _encode_int(obj)
    elif isinstance(obj, float):
        out += _encode_float(obj)
    elif isinstance(obj, str):
        out += _encode_str(obj)
    elif isinstance(obj, (bytes, bytearray)):
        out += _head(2, len(obj))
        out += obj
    elif isinstance(obj, (list, tuple)):
        _check_depth(depth)
        out += _head(4, len(obj))
        for item in obj:
            _encode_into(item, out, depth + 1)
    elif isinstance(obj, dict):
        _check_depth(depth)
        _encode_map(obj, out, depth)
    else:
        raise EncodeError(f"cannot encode {type(obj).__name__} {obj!r:.80}: not in the wire value model")


def _check_depth(depth: int) -> None:
    if depth >= MAX_DEPTH_LIMIT:
        raise EncodeError(f"value nested deeper than {MAX_DEPTH_LIMIT} levels (or cyclic)")


def _encode_map(obj: Mapping[object, object], out: bytearray, depth: int) -> None:
    pairs = sorted(((_encode_key(k), v) for k, v in obj.items()), key=lambda kv: kv[0])
    for (a, _), (b, _) in zip(pairs, pairs[1:]):
        if a == b:  # e.g. an IntEnum and an int of equal value
            raise EncodeError(f"duplicate map key encoding {a.hex()}")
    out += _head(5, len(pairs))
    for key_bytes, value in pairs:
        out += key_bytes
        _encode_into(value, out, depth + 1)


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def decode(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    bignums: bool = False,
) -> object:
    """Decode one canonical CBOR item from a peer; raise only :class:`WireError`.

    ``max_size`` bounds ``len(data)``; ``max_depth`` bounds container nesting
    (``[]`` is depth 1). ``max_depth`` above :data:`MAX_DEPTH_LIMIT` is a
    caller bug and raises ``ValueError``. Integers above ``2**64 - 1`` (token amounts,
    up to 256 bits) are accepted only with ``bignums``: every other message keeps the
    64-bit bound its fields (sequence numbers, times, sizes, SQLite INTEGER columns) rely on.
    """
    if not 0 < max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be in 1..{MAX_DEPTH_LIMIT}, got {max_depth}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_size} bytes")
    _validate(data, max_depth, bignums)
    # The bytes are now known to be canonical and within our value model;
    # cbor2's own limits are a second fence, and its job is building values.
    try:
        return cbor2.loads(
            data,
            max_depth=max_depth + 1 if bignums else max_depth,  # cbor2 counts a tag as a level
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except _CBOR2_DECODE_ERRORS as exc:  # in practice: invalid UTF-8 in a text string
        raise WireError(f"malformed CBOR: {exc}") from None


def decode_map(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    required: Mapping[str, type | tuple[type, ...]] | None = None,
    bignums: bool = False,
) -> dict[str | int, object]:
    """Decode a message that must be a map, checking ``required`` fields' types.

    ``required`` maps field name to a type (or tuple of types) as for
    ``isinstance``, except that ``bool`` never satisfies ``int``/``float`` and
    ``int`` never satisfies ``float``: wire fields are exact.
    """
    value = decode(data, max_size=max_size, max_depth=max_depth, bignums=bignums)
    if not isinstance(value, dict):
        raise WireError(f"expected a CBOR map, got {_wire_type_name(value)}")
    for name, expected in (required or {}).items():
        if name not in value:
            raise WireError(f"missing required field {name!r}")
        if not _is_exactly(value[name], expected):
            raise WireError(
                f"field {name!r} must be {_type_names(expected)}, got {_wire_type_name(value[name])}"
            )
    return value


def _is_exactly(value: object, expected: type | tuple[type, ...]) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    return any(type(value) is t or (isinstance(value, t) and t not in (int, float)) for t in types)


def _type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


def _wire_type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


# --------------------------------------------------------------------------
# Validation: structure and canonical form in one pass over the heads
# --------------------------------------------------------------------------

_MIN_ARG = (24, 1 << 8, 1 << 16, 1 << 32)  # smallest argument allowed for info 24..27
_KEY_MAJORS = frozenset((0, 1, 3))  # uint, negint, text
_SIMPLE_OK = frozenset((20, 21, 22))  # false, true, null
_FLOAT_INFO = frozenset((25, 26, 27))
_ARRAY, _MAP = 0, 1


def _validate(data: bytes, max_depth: int, bignums: bool = False) -> None:
    """Check that ``data`` is exactly one item in core deterministic form.

    Iterative and allocation-free with respect to *declared* lengths: a head
    announcing 2**62 bytes or items fails against the bytes actually present.
    Checks: definite lengths only; no tags; shortest heads; shortest exact
    floats, no NaN/infinity; only false/true/null simple values; map keys are
    ints or text, strictly increasing in bytewise order (so no duplicates);
    nesting within ``max_depth``; no truncation, no trailing bytes. Only
    UTF-8 validity of text is left to the decoder. Equivalent to "re-encoding
    gives the same bytes", which the tests check against :func:`encode`.
    """
    end = len(data)
    pos = 0
    # Open containers: [items still expected, kind, previous key (maps)].
    # A map expects 2*n items; the next item is a key when that count is even.
    stack: list[list[object]] = []
    top: list[object] | None = None
    while True:
        if pos >= end:
            raise WireError("truncated CBOR")
        start = pos
        initial = data[pos]
        major = initial >> 5
        info = initial & 0x1F
        pos += 1
        if info < 24:
            arg = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > end:
                raise WireError("truncated CBOR head")
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
            if major != 7 and arg < _MIN_ARG[info - 24]:
                raise WireError("non-canonical CBOR: integer or length not in its shortest form")
        elif info == 31:
            raise WireError(f"indefinite-length item or break (major type {major}) is not allowed")
        else:
            raise WireError(f"reserved CBOR additional information {info}")

        opened = 0
        if major <= 1:
            pass
        elif major <= 3:
            if arg > end - pos:
                raise WireError(f"string declares {arg} bytes, only {end - pos} remain")
            pos += arg
        elif major == 4:
            if arg > end - pos:  # every element takes at least one byte
                raise WireError(f"array declares {arg} items, only {end - pos} bytes remain")
            opened = arg
        elif major == 5:
            if 2 * arg > end - pos:
                raise WireError(f"map declares {arg} pairs, only {end - pos} bytes remain")
            opened = 2 * arg
        elif major == 6:
            if not bignums:
                raise WireError("CBOR tags are not allowed here (integers above 64 bits only in amounts)")
            pos = _check_bignum(data, start, pos, arg)
        elif info in _FLOAT_INFO:
            _check_float(data[start:pos])
        elif info not in _SIMPLE_OK:
            raise WireError(f"CBOR simple value (additional info {info}) is not allowed")

        if top is not None and top[1] == _MAP and top[0] % 2 == 0:  # type: ignore[operator]
            _check_key(top, major, data[start:pos])
        if major >= 4 and major <= 5:
            if len(stack) >= max_depth:
                raise WireError(f"CBOR nested deeper than {max_depth} levels")
            if opened:
                top = [opened, major - 4, None]
                stack.append(top)
                continue
        # An item just finished: close every container it completes.
        while top is not None:
            top[0] -= 1  # type: ignore[operator]
            if top[0]:
                break
            stack.pop()
            top = stack[-1] if stack else None
        if top is None:
            break
    if pos != end:
        raise WireError(f"{end - pos} trailing bytes after the CBOR item")


def _check_bignum(data: bytes, start: int, pos: int, tag: int) -> int:
    """Tag 2 over 9..32 bytes without a leading zero (a value that does not fit in 64 bits, in
    its shortest form); returns the position after it. Any other tag is refused."""
    if tag != 2 or pos - start != 1:
        raise WireError("CBOR tags are not allowed (only the unsigned bignum, tag 2)")
    if pos >= len(data):
        raise WireError("truncated CBOR bignum")
    head = data[pos]
    if head >> 5 != 2:
        raise WireError("CBOR bignum must tag a byte string")
    info = head & 0x1F
    if info < 24:
        size, pos = info, pos + 1
    elif info == 24 and pos + 1 < len(data):
        size, pos = data[pos + 1], pos + 2
        if size < 24:
            raise WireError("non-canonical CBOR: integer or length not in its shortest form")
    else:
        raise WireError("CBOR bignum longer than 32 bytes")
    if not 9 <= size <= 32:
        raise WireError(f"CBOR bignum of {size} bytes: only 9 to 32 (smaller values are plain integers)")
    if pos + size > len(data):
        raise WireError("truncated CBOR bignum")
    if data[pos] == 0:
        raise WireError("non-canonical CBOR: bignum with a leading zero byte")
    return pos + size


def _check_key(top: list[object], major: int, key: bytes) -> None:
    if major not in _KEY_MAJORS:
        raise WireError("map key must be an integer or a text string")
    previous = top[2]
    if previous is not None and key <= previous:  # type: ignore[operator]
        what = "duplicate map key" if key == previous else "map keys not in canonical (bytewise) order"
        raise WireError(what)
    top[2] = key


def _check_float(item: bytes) -> None:
    value = struct.unpack({3: ">e", 5: ">f", 9: ">d"}[len(item)], item[1:])[0]
    try:
        canonical = _encode_float(value)
    except EncodeError as exc:
        raise WireError(str(exc)) from None
    if canonical != item:
        raise WireError("non-canonical CBOR: float not in its shortest exact form")
