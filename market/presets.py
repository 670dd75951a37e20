"""Provider presets: what one agreement gets (threads, memory, disk) and what it costs.

A provider sells its machine in slices described by presets (Golem's word):
each preset becomes one offer, and each agreement under it reserves the
preset's :meth:`Preset.needs` in the capacity ledger. Presets come from the
user (CLI, config file), so every field is checked on construction and a
mistake raises :class:`PresetError` naming the field, ready for a message such
as ``preset field 'threads': must be between 1 and 1024, got 0``.

:func:`offer_properties` turns a preset into the properties of an offer, with
Golem's standard names and the provider's default negotiable payment terms;
:data:`OFFER_CONSTRAINTS` is the provider's constraint on demands.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from market.capacity import Capacity
from market.errors import MarketError, PropertyError
from market.pricing import LinearPricing, PricingError
from market.properties import (
    COM_PAYMENT_PROTOCOL_VERSION,
    COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC,
    COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC,
    INF_CPU_THREADS,
    INF_MEM_GIB,
    INF_STORAGE_GIB,
    NODE_DEBUG_SUBNET,
    NODE_ID_NAME,
    PAYMENT_PROTOCOL_VERSION,
    RUNTIME_NAME,
    SRV_CAPS_MULTI_ACTIVITY,
    payment_platform_address,
    validate_properties,
)
from yagna.core.money import parse_amount

__all__ = [
    "DEFAULT_DEBIT_NOTE_INTERVAL_S",
    "DEFAULT_PAYMENT_TIMEOUT_S",
    "DEFAULT_PRICING",
    "MAX_SIZE_GIB",
    "MAX_THREADS",
    "OFFER_CONSTRAINTS",
    "PRESET_PROPERTY",
    "RUNTIMES",
    "Preset",
    "PresetError",
    "offer_properties",
]

DEFAULT_PRICING = LinearPricing.from_hourly(
    start_fee=0, per_cpu_hour=parse_amount("0.025"), per_duration_hour=parse_amount("0.005")
)
"""Golem's provider default: 0.025 GLM per CPU-hour, wall-clock time at a fifth of that, no start fee."""

DEFAULT_DEBIT_NOTE_INTERVAL_S = 120
DEFAULT_PAYMENT_TIMEOUT_S = 120
"""Golem's provider defaults for the negotiable payment terms."""

OFFER_CONSTRAINTS = "(golem.srv.comp.expiration>0)"
"""A demand must state when its agreement expires, as in Golem."""

PRESET_PROPERTY = "yagna.preset"
FIXED_PRICE_PROPERTY = "yagna.com.pricing.fixed"
"""True in the offer of a fixed-price preset: the linear pricing bills the duration only."""
"""Names the preset an offer was built from, so a proposal maps back to its preset."""

RUNTIMES = frozenset({"docker"})
MAX_THREADS = 1024
MAX_SIZE_GIB = 1_000_000

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SUBNET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PresetError(MarketError):
    """A preset field is invalid; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"preset field {field!r}: {message}")


@dataclass(frozen=True)
class Preset:
    """One slice of the machine and its price. Validated on construction; sizes become floats."""

    name: str
    runtime: str = "docker"
    threads: int = 1
    mem_gib: float = 1.0
    storage_gib: float = 2.0
    pricing: LinearPricing = field(default=DEFAULT_PRICING)
    subnet: str = "public"
    fixed: bool = False
    """A fixed price per hour for this size (Flux's model): the pricing bills duration only, no CPU
    time and no start fee, and the offer says so (:data:`FIXED_PRICE_PROPERTY`)."""

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "mem_gib", float(self.mem_gib))
        object.__setattr__(self, "storage_gib", float(self.storage_gib))

    def validate(self) -> None:
        """Raise :class:`PresetError` on the first invalid field."""
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise PresetError("name", f"must be 1-64 of a-z, 0-9, '_' or '-', starting with a letter or digit, got {self.name!r}")
        if not isinstance(self.runtime, str) or self.runtime not in RUNTIMES:
            raise PresetError("runtime", f"must be one of {', '.join(sorted(RUNTIMES))}, got {self.runtime!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int):
            raise PresetError("threads", f"must be an integer, got {type(self.threads).__name__}")
        if not 1 <= self.threads <= MAX_THREADS:
            raise PresetError("threads", f"must be between 1 and {MAX_THREADS}, got {self.threads}")
        for name in ("mem_gib", "storage_gib"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PresetError(name, f"must be a number of GiB, got {type(value).__name__}")
            if not (math.isfinite(value) and 0 < value <= MAX_SIZE_GIB):
                raise PresetError(name, f"must be more than 0 and at most {MAX_SIZE_GIB} GiB, got {value!r}")
        if not isinstance(self.pricing, LinearPricing):
            raise PresetError("pricing", f"must be a LinearPricing, got {type(self.pricing).__name__}")
        if not isinstance(self.fixed, bool):
            raise PresetError("fixed", f"must be true or false, got {self.fixed!r}")
        if self.fixed and isinstance(self.pricing, LinearPricing) and (self.pricing.per_cpu_sec or self.pricing.start_fee):
            raise PresetError("pricing", "a fixed-price preset bills by the hour only: no CPU price, no start fee")
        if not isinstance(self.subnet, str) or not _SUBNET_RE.fullmatch(self.subnet):
            raise PresetError("subnet", f"must be 1-64 of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit, got {self.subnet!r}")

    def replace(self, **changes: Any) -> Preset:
        """A validated copy with ``changes`` applied."""
        for key in changes:
            if key not in _FIELDS:
                raise PresetError(key, f"unknown field (known: {', '.join(_FIELDS)})")
        return dataclasses.replace(self, **changes)

    def needs(self) -> Capacity:
        """What one agreement under this preset reserves."""
        return Capacity(self.threads, self.mem_gib, self.storage_gib)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "threads": self.threads,
            "mem_gib": self.mem_gib,
            "storage_gib": self.storage_gib,
            "pricing": self.pricing.to_json(),
            "subnet": self.subnet,
            "fixed": self.fixed,
        }

    @classmethod
    def from_json(cls, data: object) -> Preset:
        """Read :meth:`to_json`'s form; missing fields take their defaults except ``name``."""
        if not isinstance(data, Mapping):
            raise PresetError("preset", f"must be an object, got {type(data).__name__}")
        for key in data:
            if key not in _FIELDS:
                raise PresetError(str(key), f"unknown field (known: {', '.join(_FIELDS)})")
        if "name" not in data:
            raise PresetError("name", "is required")
        kwargs = dict(data)
        if "pricing" in kwargs:
            try:
                kwargs["pricing"] = LinearPricing.from_json(kwargs["pricing"])
            except PricingError as exc:
                raise PresetError("pricing", str(exc)) from None
        return cls(**kwargs)


_FIELDS = tuple(f.name for f in dataclasses.fields(Preset))


def _check_seconds(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PresetError(name, f"must be a positive whole number of seconds, got {value!r}")
    return value


def offer_properties(
    preset: Preset,
    *,
    node_name: str,
    debit_note_interval_s: int = DEFAULT_DEBIT_NOTE_INTERVAL_S,
    payment_timeout_s: int = DEFAULT_PAYMENT_TIMEOUT_S,
    payment_platforms: Mapping[str, str] | None = None,
    capabilities: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The properties of the offer for ``preset``, with Golem's standard names (validated).

    ``payment_platforms`` (platform name -> this node's account on it) become Golem's
    ``golem.com.payment.platform.<platform>.address`` properties, with the payment protocol
    version: Golem's requestors match only offers that name their platform."""
    if not isinstance(preset, Preset):
        raise PresetError("preset", f"must be a Preset, got {type(preset).__name__}")
    if not isinstance(node_name, str) or not node_name:
        raise PresetError("node_name", f"must be a non-empty string, got {node_name!r}")
    props: dict[str, object] = {
        INF_CPU_THREADS: preset.threads,
        INF_MEM_GIB: preset.mem_gib,
        INF_STORAGE_GIB: preset.storage_gib,
        RUNTIME_NAME: preset.runtime,
        NODE_ID_NAME: node_name,
        NODE_DEBUG_SUBNET: preset.subnet,
        SRV_CAPS_MULTI_ACTIVITY: True,
        **preset.pricing.to_properties(),
        COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: _check_seconds("debit_note_interval_s", debit_note_interval_s),
        COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: _check_seconds("payment_timeout_s", payment_timeout_s),
        PRESET_PROPERTY: preset.name,
    }
    if preset.fixed:
        props[FIXED_PRICE_PROPERTY] = True
    for platform, address in (payment_platforms or {}).items():
        props[payment_platform_address(platform)] = address
    if payment_platforms:
        props[COM_PAYMENT_PROTOCOL_VERSION] = PAYMENT_PROTOCOL_VERSION
    props.update(capabilities or {})  # what this node can run beyond the preset (e.g. Golem VM packages)
    try:
        return validate_properties(props)  # type: ignore[return-value]
    except PropertyError as exc:  # only node_name is free-form enough to fail here
        raise PresetError("node_name", str(exc)) from None
