"""Token amounts: exact parsing and formatting, every refusal, and the round trip."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yagna.core.errors import MoneyError, YagnaError
from yagna.core.money import (
    DECIMALS,
    MAX_TEXT_LENGTH,
    MAX_UNITS,
    TOKEN,
    UNIT,
    format_amount,
    parse_amount,
    to_decimal,
)

units = st.integers(min_value=0, max_value=MAX_UNITS)


def test_constants() -> None:
    assert DECIMALS == 18
    assert UNIT == 10**18
    assert TOKEN == "tGLM"
    assert MAX_UNITS == 2**255 - 1
    assert issubclass(MoneyError, YagnaError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.025", 25 * 10**15),
        ("1", UNIT),
        ("0", 0),
        ("0.0", 0),
        ("00.000", 0),
        ("0.000000000000000001", 1),
        ("1.000000000000000001", UNIT + 1),
        ("1.0000000000000000000000", UNIT),  # trailing zeros past 18 places lose nothing
        ("  0.5\n", UNIT // 2),
        ("\t7 ", 7 * UNIT),
        (".5", UNIT // 2),
        ("5.", 5 * UNIT),
        ("007", 7 * UNIT),
        ("1e3", 1000 * UNIT),
        ("1E+3", 1000 * UNIT),
        ("2.5e-3", 25 * 10**14),
        ("1e-18", 1),
        ("100e-20", 1),
        ("0e999999999", 0),
        ("0.000e-999999999", 0),
        ("123456789.123456789123456789", 123456789 * UNIT + 123456789123456789),
    ],
)
def test_parse_text(text: str, expected: int) -> None:
    assert parse_amount(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.025"), 25 * 10**15),
        (Decimal("2.50"), 5 * UNIT // 2),
        (Decimal("1E+2"), 100 * UNIT),
        (Decimal("-0"), 0),
        (Decimal("0E-50"), 0),
        (Decimal("1.000000000000000000000"), UNIT),
        (Decimal("0.025") * 1000, 25 * UNIT),
    ],
)
def test_parse_decimal(value: Decimal, expected: int) -> None:
    assert parse_amount(value) == expected


def test_int_is_whole_tokens() -> None:
    assert parse_amount(0) == 0
    assert parse_amount(3) == 3 * UNIT
    assert parse_amount(MAX_UNITS // UNIT) == (MAX_UNITS // UNIT) * UNIT


def test_largest_amount_parses() -> None:
    assert parse_amount(format_amount(MAX_UNITS)) == MAX_UNITS
    assert parse_amount(Decimal(format_amount(MAX_UNITS))) == MAX_UNITS


def refused(value: object, *words: str) -> MoneyError:
    with pytest.raises(MoneyError) as info:
        parse_amount(value)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value), (value, str(info.value))
    return info.value


@pytest.mark.parametrize("value", [0.5, 0.0, 1e-3, float("nan"), float("inf"), -1.0])
def test_floats_are_refused_with_a_clear_message(value: float) -> None:
    refused(value, "amounts are decimal strings, not floats")


def test_refuses_bool_and_other_types() -> None:
    refused(True, "not booleans")
    refused(False, "not booleans")
    refused(None, "NoneType")
    refused(b"1", "bytes")
    refused([1], "list")


@pytest.mark.parametrize("value", ["-1", "-0.5", " -3 ", -1, Decimal("-0.000000000000000001")])
def test_refuses_negatives(value: object) -> None:
    refused(value, "negative")


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_refuses_nan_and_infinity_decimals(value: Decimal) -> None:
    refused(value, "finite")


@pytest.mark.parametrize(
    "text",
    ["NaN", "nan", "inf", "Infinity", "+1", "1_000", "1,5", "0x10", "1.2.3", ".", "e5", "1e", "1 000", "١٢", "１", "abc", "1e+"],
)
def test_refuses_non_decimal_text(text: str) -> None:
    refused(text, "not a decimal amount")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_refuses_empty(text: str) -> None:
    refused(text, "empty")


@pytest.mark.parametrize(
    "value",
    ["0.0000000000000000001", "1.0000000000000000001", "1e-19", "123e-21", Decimal("1E-19"), "1e-999999999"],
)
def test_refuses_more_than_18_decimal_places(value: object) -> None:
    refused(value, "more than 18 decimal places")


@pytest.mark.parametrize(
    "value",
    [
        "1e999999999",
        "1e100",
        str(MAX_UNITS // UNIT + 1),
        MAX_UNITS // UNIT + 1,
        Decimal("1E+1000000"),
        Decimal(f"{MAX_UNITS + 1}e-{DECIMALS}"),
        "9" * 200,
    ],
)
def test_refuses_too_large(value: object) -> None:
    err = refused(value, "too large")
    assert len(str(err)) < 400  # the message never echoes a huge number in full


def test_just_over_the_largest_amount() -> None:
    text = format_amount(MAX_UNITS)
    whole, frac = text.split(".")
    bumped = f"{whole}.{int(frac) + 1:0{len(frac)}d}"
    refused(bumped, "too large")


def test_refuses_oversized_text() -> None:
    refused("0" * (MAX_TEXT_LENGTH + 1), "longer than")
    assert parse_amount("0" * MAX_TEXT_LENGTH) == 0
    assert parse_amount(" " * 1000 + "1" + " " * 1000) == UNIT


def test_exponent_with_more_than_nine_digits_is_refused() -> None:
    refused("1e1234567890", "not a decimal amount")


@pytest.mark.parametrize(
    ("units_", "text"),
    [
        (0, "0"),
        (1, "0.000000000000000001"),
        (25 * 10**15, "0.025"),
        (UNIT, "1"),
        (10 * UNIT, "10"),
        (UNIT + 1, "1.000000000000000001"),
        (15 * UNIT // 10, "1.5"),
        (6944444444444, "0.000006944444444444"),
    ],
)
def test_format(units_: int, text: str) -> None:
    assert format_amount(units_) == text


@pytest.mark.parametrize("value", [-1, MAX_UNITS + 1, 1.0, True, "1", Decimal(1), None])
def test_format_refuses_non_amounts(value: object) -> None:
    with pytest.raises(MoneyError):
        format_amount(value)  # type: ignore[arg-type]


def test_to_decimal() -> None:
    assert to_decimal(25 * 10**15) == Decimal("0.025")
    assert to_decimal(1) == Decimal("1E-18")
    assert parse_amount(to_decimal(MAX_UNITS)) == MAX_UNITS


@given(units)
def test_round_trip(x: int) -> None:
    text = format_amount(x)
    assert parse_amount(text) == x
    assert parse_amount(f"  {text} ") == x
    assert parse_amount(to_decimal(x)) == x


@given(units)
def test_format_is_canonical(x: int) -> None:
    text = format_amount(x)
    assert "e" not in text.lower() and not text.endswith(".")
    if "." in text:
        assert not text.endswith("0")
        assert len(text.split(".")[1]) <= DECIMALS
    with localcontext(prec=200):
        assert Decimal(text) * UNIT == x


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=-40, max_value=40))
def test_parse_agrees_with_decimal_arithmetic(coefficient: int, exponent: int) -> None:
    """``{c}e{e}`` parses exactly when it is a whole number of base units in range."""
    text = f"{coefficient}e{exponent}"
    with localcontext(prec=200):
        exact = Decimal(coefficient).scaleb(exponent) * UNIT
    if exact != exact.to_integral_value() or exact > MAX_UNITS:
        with pytest.raises(MoneyError):
            parse_amount(text)
    else:
        assert parse_amount(text) == int(exact)


@given(st.text(max_size=40))
def test_any_text_gives_an_int_or_money_error(text: str) -> None:
    try:
        result = parse_amount(text)
    except MoneyError:
        return
    assert isinstance(result, int) and 0 <= result <= MAX_UNITS
