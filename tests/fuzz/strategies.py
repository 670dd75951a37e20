"""Garbage for the decoders: random bytes, wrong-shaped CBOR, mutations and truncations of valid messages.

Every fuzz target states its invariant with :func:`only`: the call either
returns or raises one of the module's typed errors (subclasses of
:class:`~yagna.core.errors.YagnaError`); anything else (``TypeError``,
``KeyError``, ``ValueError``, ``AttributeError``, ``IndexError``,
``UnicodeError``, ``RecursionError``, ``OverflowError``, ...) escapes and
fails the example.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st

from yagna.core.errors import YagnaError
from yagna.core.wire import encode

from . import conftest  # noqa: F401 - registers the profiles when this module is used outside pytest

T = TypeVar("T")

LONG = os.environ.get("YAGNA_FUZZ") == "long"
FUZZ = settings.get_profile("fuzz-long" if LONG else "fuzz-ci")
"""Apply to every fuzz target: ``@FUZZ`` above ``@given``."""


def only(errors: type[YagnaError] | tuple[type[YagnaError], ...], fn: Callable[..., T], *args: Any,
         **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None when it raised one of ``errors``; any other exception escapes."""
    try:
        return fn(*args, **kwargs)
    except errors:
        return None


# -- values of the wire model --------------------------------------------------------------------

ints = st.one_of(st.integers(-(2**64), 2**64 - 1), st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, -(2**64)]))
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.one_of(st.text(max_size=40), st.sampled_from(["", "\x00", "\ud7ff", "é" * 3, "a" * 300]))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=64))
keys = st.one_of(st.text(max_size=20), st.integers(-(2**64), 2**64 - 1))

cbor_values: st.SearchStrategy[object] = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)),
    max_leaves=30,
)
"""Any value canonical CBOR can carry (so it reaches the decoder's shape checks, not just the wire's)."""


json_values: st.SearchStrategy[object] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), floats, texts),
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(st.text(max_size=20), children, max_size=6)),
    max_leaves=30,
)
"""Any value JSON can carry (for the decoders of JSON documents)."""


def deep(depth: int) -> object:
    """A list nested ``depth`` levels."""
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def mutated(valid: object, values: st.SearchStrategy[object] | None = None) -> st.SearchStrategy[object]:
    """``valid`` with one part replaced, dropped, added or retyped (by one of ``values``), anywhere in its tree."""

    def paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        out = [prefix]
        if isinstance(value, dict):
            for k, v in value.items():
                out += paths(v, (*prefix, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                out += paths(v, (*prefix, i))
        return out

    def apply(where: tuple[object, ...], how: str, new: object, extra_key: object) -> object:
        def rec(value: object, rest: tuple[object, ...]) -> object:
            if not rest:
                if how == "replace":
                    return new
                if how == "add" and isinstance(value, dict):
                    return {**value, extra_key: new}
                if how == "add" and isinstance(value, list):
                    return [*value, new]
                if how == "drop" and isinstance(value, dict) and value:
                    return dict(list(value.items())[1:])
                if how == "drop" and isinstance(value, list) and value:
                    return value[:-1]
                return new
            head, tail = rest[0], rest[1:]
            if isinstance(value, dict):
                return {k: (rec(v, tail) if k == head else v) for k, v in value.items()}
            assert isinstance(value, list)
            return [rec(v, tail) if i == head else v for i, v in enumerate(value)]

        return rec(valid, where)

    new = cbor_values if values is None else values
    return st.builds(apply, st.sampled_from(paths(valid)), st.sampled_from(["replace", "add", "drop"]),
                     new, keys if values is None else st.text(max_size=20))


def corrupted(valid: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, bit flips, splices and extensions of valid bytes."""
    n = len(valid)
    truncations = st.integers(0, max(n - 1, 0)).map(lambda i: valid[:i])
    flips = st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, 255)), min_size=1, max_size=4).map(
        lambda fs: _flip(valid, fs))
    splices = st.tuples(st.integers(0, n), st.binary(max_size=16)).map(lambda p: valid[: p[0]] + p[1] + valid[p[0]:])
    return st.one_of(truncations, flips, splices, st.binary(max_size=8).map(lambda b: valid + b))


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for i, x in flips:
        if out:
            out[i % len(out)] ^= x
    return bytes(out)


def garbage(*valid: bytes) -> st.SearchStrategy[bytes]:
    """Bytes a hostile peer might send in place of one of ``valid``."""
    choices = [st.binary(max_size=300), cbor_values.map(encode)]
    choices += [corrupted(v) for v in valid]
    return st.one_of(*choices)
