"""Token amounts: integers of a base unit, parsed from and formatted as decimal strings.

Money is never a float: ``0.1 + 0.2`` is not ``0.3`` in binary floating point,
and a ledger that drifts by one base unit per debit note is a ledger nobody
trusts. An amount is an ``int`` of base units, 10**-18 of a token (like wei for
ether, the unit the ERC-20 token and a later chain driver use), so sums and
comparisons are exact. People and JSON see decimal strings in *tokens*::

    parse_amount("0.025") == 25 * 10**15
    format_amount(25 * 10**15) == "0.025"

:func:`parse_amount` takes what a user or a peer may type and raises only
:class:`~yagna.core.errors.MoneyError`; every amount it returns satisfies
``0 <= units <= MAX_UNITS`` and round-trips through :func:`format_amount`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from yagna.core.errors import MoneyError

__all__ = [
    "DECIMALS",
    "MAX_TEXT_LENGTH",
    "MAX_UNITS",
    "TOKEN",
    "UNIT",
    "format_amount",
    "parse_amount",
    "to_decimal",
]

DECIMALS: Final = 18
"""Decimal places of a token: one base unit is 10**-18 of a token."""
UNIT: Final = 10**DECIMALS
"""Base units in one token."""
TOKEN: Final = "tGLM"
"""The token's symbol (test GLM, as on Golem's test networks)."""
MAX_UNITS: Final = 2**255 - 1
"""Largest amount in base units (fits a signed 256-bit integer, as on chain)."""
MAX_TEXT_LENGTH: Final = 256
"""Longest amount text accepted (after stripping whitespace); the largest amount needs 78 characters."""

_TEXT_RE = re.compile(r"(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?:[eE](?P<exp>[+-]?[0-9]{1,9}))?", re.ASCII)
_MAX_DIGITS = len(str(MAX_UNITS))
"""Significant digits beyond this are either too large or too precise, whatever the exponent."""


def parse_amount(value: str | int | Decimal) -> int:
    """An amount in *tokens* (decimal string, ``Decimal`` or whole-token ``int``) as base units.

    Accepts ``"0.025"``, ``" 1 "``, ``"1.5e-3"``, ``".5"``, ``Decimal("2.50")``
    and ``3`` (three tokens). Refuses floats, booleans, negatives, NaN and
    infinities, more precision than one base unit (nonzero digits past the
    18th decimal place; trailing zeros are fine), amounts over
    :data:`MAX_UNITS`, empty or oversized text, with a :class:`MoneyError`
    saying which. Exponents are bounded before anything is computed, so
    ``"1e999999999"`` fails fast instead of building a huge number.
    """
    if isinstance(value, float):
        raise MoneyError(f"amounts are decimal strings, not floats: write {str(value)!r} in quotes")
    if isinstance(value, bool):
        raise MoneyError("amounts are decimal strings, not booleans")
    if isinstance(value, int):
        if value < 0:
            raise MoneyError(f"amount must not be negative, got {value}")
        if value > MAX_UNITS // UNIT:
            raise MoneyError(f"amount {value} {TOKEN} is too large (at most {format_amount(MAX_UNITS)})")
        return value * UNIT
    if isinstance(value, Decimal):
        return _from_decimal(value, repr(value))
    if isinstance(value, str):
        return _from_text(value)
    raise MoneyError(f"amounts are decimal strings, Decimals or whole-token ints, not {type(value).__name__}")


def _from_text(value: str) -> int:
    text = value.strip()
    if not text:
        raise MoneyError("amount is empty: expected a decimal number of tokens such as '0.025'")
    if len(text) > MAX_TEXT_LENGTH:
        raise MoneyError(f"amount text longer than {MAX_TEXT_LENGTH} characters")
    if text.startswith("-"):
        raise MoneyError(f"amount must not be negative, got {text!r}")
    m = _TEXT_RE.fullmatch(text)
    if m is None or not (m.group("int") or m.group("frac")):
        raise MoneyError(f"not a decimal amount: {text!r} (expected digits with an optional '.', e.g. '0.025')")
    # Decimal parses the checked text exactly; the regex already kept out NaN,
    # Infinity, signs, underscores and non-ASCII digits, which Decimal would accept.
    return _from_decimal(Decimal(text), repr(text))


def _from_decimal(value: Decimal, shown: str) -> int:
    if value.is_nan() or value.is_infinite():
        raise MoneyError(f"amount must be a finite number, got {shown}")
    if value < 0:
        raise MoneyError(f"amount must not be negative, got {shown}")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    # Normalise to coefficient * 10**exponent with no trailing zeros in the
    # coefficient, so the checks below never build a power of ten larger than
    # the result could be.
    end = len(digits)
    while end and digits[end - 1] == 0:
        end -= 1
    if end == 0:
        return 0
    exponent += len(digits) - end
    digits = digits[:end]
    while digits and digits[0] == 0:
        digits = digits[1:]
    shift = exponent + DECIMALS
    if shift < 0:
        raise MoneyError(f"amount {shown} has more than {DECIMALS} decimal places (the smallest amount is 1e-{DECIMALS})")
    if len(digits) + shift > _MAX_DIGITS:
        raise MoneyError(f"amount {shown} is too large (at most {format_amount(MAX_UNITS)} {TOKEN})")
    units = int("".join(map(str, digits))) * 10**shift
    if units > MAX_UNITS:
        raise MoneyError(f"amount {shown} is too large (at most {format_amount(MAX_UNITS)} {TOKEN})")
    return units


def _check_units(units: object) -> int:
    if not isinstance(units, int) or isinstance(units, bool):
        raise MoneyError(f"an amount in base units is an int, not {type(units).__name__}")
    if not 0 <= units <= MAX_UNITS:
        raise MoneyError(f"amount {units} base units is out of range [0, 2**255)")
    return units


def format_amount(units: int) -> str:
    """The canonical decimal string in tokens: ``"0.025"``, ``"1"``, ``"0.000000000000000001"``.

    No exponent, no trailing zeros, no trailing ``.``; :func:`parse_amount`
    reads it back exactly.
    """
    whole, frac = divmod(_check_units(units), UNIT)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{DECIMALS}d}".rstrip("0")


def to_decimal(units: int) -> Decimal:
    """The amount as an exact ``Decimal`` of tokens (for APIs that speak Decimal)."""
    return Decimal(format_amount(units))
