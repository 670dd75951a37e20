"""Golem's linear pricing model, in exact integer base units.

A provider prices its work as a start fee plus one coefficient per usage
counter, stated in four properties (``reference/golem-facts.md``)::

    golem.com.scheme                      = "payu"
    golem.com.pricing.model               = "linear"
    golem.com.usage.vector                = ["golem.usage.cpu_sec", "golem.usage.duration_sec"]
    golem.com.pricing.model.linear.coeffs = [per_cpu_sec, per_duration_sec, start_fee]

One coefficient per counter in the vector's order, the start fee last. Golem
writes the coefficients as float GLM; here they are ``int`` base units
(:mod:`yagna.core.money`, 10**-18 token) so a bill computed by the provider and
checked by the requestor agree to the unit. Prices per hour are the per-second
coefficients times 3600; :meth:`LinearPricing.from_hourly` converts.

Pricing arrives from peers inside offers, so :meth:`LinearPricing.from_properties`
and :meth:`LinearPricing.from_json` raise only :class:`PricingError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from market.errors import MarketError
from market.properties import (
    COM_PRICING_MODEL,
    COM_PRICING_MODEL_LINEAR_COEFFS,
    COM_SCHEME,
    COM_USAGE_VECTOR,
    PRICING_LINEAR,
    SCHEME_PAYU,
    USAGE_CPU_SEC,
    USAGE_DURATION_SEC,
)
from yagna.core.errors import MoneyError
from yagna.core.money import format_amount, parse_amount

__all__ = [
    "COUNTERS",
    "MAX_COEFFICIENT",
    "LinearPricing",
    "PricingError",
]

MAX_COEFFICIENT = 2**63 - 1
"""Largest coefficient: fits SQLite's and CBOR's 64-bit integers."""

COUNTERS = (USAGE_CPU_SEC, USAGE_DURATION_SEC)
"""The usage counters we price, in the order :meth:`LinearPricing.to_properties` states them."""

_JSON_KEYS = ("start_fee", "per_cpu_sec", "per_duration_sec")


class PricingError(MarketError):
    """A pricing is missing, malformed or out of range; the message says which part."""


def _check_int(name: str, value: object, *, low: int = 0, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PricingError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f", at most {high}"
        raise PricingError(f"{name} must be at least {low}{upper}, got {value}")
    return value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LinearPricing:
    """Start fee plus a price per CPU-second and per second of wall-clock time, in base units."""

    start_fee: int
    per_cpu_sec: int
    per_duration_sec: int

    def __post_init__(self) -> None:
        for name in _JSON_KEYS:
            _check_int(name, getattr(self, name), high=MAX_COEFFICIENT)

    @classmethod
    def from_hourly(cls, *, start_fee: int, per_cpu_hour: int, per_duration_hour: int) -> LinearPricing:
        """Build from prices per hour (base units), rounding each per-second price half up."""
        hours = {"per_cpu_hour": per_cpu_hour, "per_duration_hour": per_duration_hour}
        for name, value in hours.items():
            _check_int(name, value, high=MAX_COEFFICIENT)
        return cls(start_fee, (per_cpu_hour + 1800) // 3600, (per_duration_hour + 1800) // 3600)

    # -- properties ------------------------------------------------------------------

    def to_properties(self) -> dict[str, object]:
        """The four standard pricing properties of an offer."""
        return {
            COM_SCHEME: SCHEME_PAYU,
            COM_PRICING_MODEL: PRICING_LINEAR,
            COM_USAGE_VECTOR: list(COUNTERS),
            COM_PRICING_MODEL_LINEAR_COEFFS: [self.per_cpu_sec, self.per_duration_sec, self.start_fee],
        }

    @classmethod
    def from_properties(cls, properties: Mapping[str, object]) -> LinearPricing:
        """Read an offer's pricing; :class:`PricingError` says what is missing or wrong.

        The usage vector may list the known counters in any order, or only some
        of them (a counter left out costs nothing); unknown or repeated counters
        are refused, since we could not bill for them.
        """
        if not isinstance(properties, Mapping):
            raise PricingError(f"properties must be a mapping, got {type(properties).__name__}")
        scheme = properties.get(COM_SCHEME)
        if scheme != SCHEME_PAYU:
            raise PricingError(f"{COM_SCHEME} must be {SCHEME_PAYU!r}, got {scheme!r}")
        model = properties.get(COM_PRICING_MODEL)
        if model != PRICING_LINEAR:
            raise PricingError(f"{COM_PRICING_MODEL} must be {PRICING_LINEAR!r}, got {model!r}")
        vector = properties.get(COM_USAGE_VECTOR)
        if not isinstance(vector, (list, tuple)):
            raise PricingError(f"{COM_USAGE_VECTOR} must be a list of usage counters, got {type(vector).__name__}")
        for counter in vector:
            if counter not in COUNTERS:
                raise PricingError(f"{COM_USAGE_VECTOR} names an unknown usage counter {counter!r} (known: {', '.join(COUNTERS)})")
        if len(set(vector)) != len(vector):
            raise PricingError(f"{COM_USAGE_VECTOR} names a usage counter twice")
        coeffs = properties.get(COM_PRICING_MODEL_LINEAR_COEFFS)
        if not isinstance(coeffs, (list, tuple)):
            raise PricingError(f"{COM_PRICING_MODEL_LINEAR_COEFFS} must be a list of integers, got {type(coeffs).__name__}")
        if len(coeffs) != len(vector) + 1:
            raise PricingError(
                f"{COM_PRICING_MODEL_LINEAR_COEFFS} has {len(coeffs)} coefficients, expected {len(vector) + 1}"
                " (one per usage counter, then the start fee)"
            )
        for i, c in enumerate(coeffs):
            _check_int(f"{COM_PRICING_MODEL_LINEAR_COEFFS}[{i}] (base units)", c, high=MAX_COEFFICIENT)
        by_counter = dict(zip(vector, coeffs))
        return cls(
            start_fee=coeffs[-1],
            per_cpu_sec=by_counter.get(USAGE_CPU_SEC, 0),
            per_duration_sec=by_counter.get(USAGE_DURATION_SEC, 0),
        )

    # -- arithmetic ------------------------------------------------------------------

    def cost(self, cpu_ms: int, duration_ms: int) -> int:
        """What ``cpu_ms`` of CPU time over ``duration_ms`` of wall-clock time costs.

        Exact: the start fee plus the metered part rounded *up* to a whole base
        unit, so usage is never billed at less than its price.
        """
        _check_int("cpu_ms", cpu_ms)
        _check_int("duration_ms", duration_ms)
        metered = self.per_cpu_sec * cpu_ms + self.per_duration_sec * duration_ms
        return self.start_fee + _ceil_div(metered, 1000)

    def estimate(self, threads: int, duration_s: int) -> int:
        """The worst case for ``duration_s`` seconds: every thread busy all the time (budget caps)."""
        _check_int("threads", threads)
        _check_int("duration_s", duration_s)
        return self.cost(cpu_ms=threads * duration_s * 1000, duration_ms=duration_s * 1000)

    def at_least(self, floor: LinearPricing) -> bool:
        """Whether every coefficient is at or above ``floor``'s (a provider's price floor)."""
        return (
            self.start_fee >= floor.start_fee
            and self.per_cpu_sec >= floor.per_cpu_sec
            and self.per_duration_sec >= floor.per_duration_sec
        )

    # -- JSON ------------------------------------------------------------------------

    def to_json(self) -> dict[str, str]:
        """``{"start_fee", "per_cpu_sec", "per_duration_sec"}`` as decimal token strings."""
        return {name: format_amount(getattr(self, name)) for name in _JSON_KEYS}

    @classmethod
    def from_json(cls, data: object) -> LinearPricing:
        """Read :meth:`to_json`'s form; amounts must be decimal strings (an int would be ambiguous)."""
        if not isinstance(data, Mapping):
            raise PricingError(f"pricing must be an object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _JSON_KEYS)
        if unknown:
            raise PricingError(f"unknown pricing field(s): {', '.join(unknown)} (known: {', '.join(_JSON_KEYS)})")
        values: dict[str, int] = {}
        for name in _JSON_KEYS:
            if name not in data:
                raise PricingError(f"pricing field {name!r} is missing")
            text = data[name]
            if not isinstance(text, str):
                raise PricingError(f"pricing field {name!r} must be a decimal string of tokens such as '0.025', got {type(text).__name__}")
            try:
                values[name] = parse_amount(text)
            except MoneyError as exc:
                raise PricingError(f"pricing field {name!r}: {exc}") from None
            if values[name] > MAX_COEFFICIENT:
                raise PricingError(f"pricing field {name!r} is too large (at most {format_amount(MAX_COEFFICIENT)})")
        return cls(**values)
