"""The provider's acceptance policy: a chain of small rules, each with a reason code.

When a demand's proposal arrives, the provider asks :meth:`Policy.check`
whether to negotiate. Every rule either passes or returns a :class:`Rejection`
with a machine ``code`` (stable, for the requestor's strategy and for tests)
and a ``message`` a person can act on ("agreement expiration must be 1 min to
24 h from now; the demand's is 5 s from now"). Golem users complain about
unclear rejections; this is the answer. The first rejection wins, in this
order (cheap identity checks first, then the demand's terms):

* :class:`DenyList`: ``requestor-denied``
* :class:`AllowList`: ``requestor-not-allowed``
* :class:`ExpirationBounds`: ``expiration-missing`` (absent or not an int of ms),
  ``expiration-out-of-bounds``
* :class:`PriceFloor`: ``pricing-invalid``, ``price-below-floor``
* :class:`DebitNoteInterval`: ``debit-note-interval-out-of-bounds``
* :class:`PaymentTimeout`: ``payment-timeout-out-of-bounds``

Capacity is not a rule: the daemon checks its ledger, and rejects with
:data:`NO_CAPACITY`. :meth:`Policy.counter_properties` builds the provider's
counter-proposal so the negotiable terms settle
(:func:`market.negotiation.settle_terms`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from market.errors import MarketError
from market.pricing import LinearPricing, PricingError
from market.properties import (
    COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC,
    COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC,
    SRV_COMP_EXPIRATION,
    lookup,
    validate_properties,
)

__all__ = [
    "CODES",
    "MAX_EXPIRATION_S",
    "MAX_TERM_S",
    "NO_CAPACITY",
    "AllowList",
    "DebitNoteInterval",
    "DenyList",
    "ExpirationBounds",
    "PaymentTimeout",
    "Policy",
    "PolicyConfig",
    "PolicyError",
    "PriceFloor",
    "ProposalContext",
    "Rejection",
    "Rule",
]

NO_CAPACITY = "no-capacity"
"""The daemon's code when the capacity ledger has no room for the preset's needs."""

MAX_TERM_S = 7 * 24 * 3600
"""Largest configurable payment term in seconds (a week)."""
MAX_EXPIRATION_S = 365 * 24 * 3600
"""Largest configurable agreement lifetime in seconds (a year)."""


class PolicyError(MarketError):
    """A policy configuration is invalid; the message names the field."""


@dataclass(frozen=True)
class Rejection:
    """Why a proposal was refused: a stable ``code`` and a ``message`` for people."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class ProposalContext:
    """What a rule may look at: who asks, both sides' properties, and the time."""

    requestor_id: str
    demand_properties: Mapping[str, object]
    offer_properties: Mapping[str, object]
    now_ms: int


class Rule(Protocol):
    @property
    def code(self) -> str: ...

    def check(self, ctx: ProposalContext) -> Rejection | None: ...


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration(seconds: int) -> str:
    """``90 s``, ``2 h``: the unit a person would use."""
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# -- rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenyList:
    """Refuse requestors the provider has denied."""

    deny: frozenset[str]
    code: ClassVar[str] = "requestor-denied"
    codes: ClassVar[frozenset[str]] = frozenset({code})

    def check(self, ctx: ProposalContext) -> Rejection | None:
        if ctx.requestor_id in self.deny:
            return Rejection(self.code, "this provider does not accept work from your node")
        return None


@dataclass(frozen=True)
class AllowList:
    """When the provider keeps an allow list (``None`` means everyone), refuse whoever is not on it."""

    allow: frozenset[str] | None
    code: ClassVar[str] = "requestor-not-allowed"
    codes: ClassVar[frozenset[str]] = frozenset({code})

    def check(self, ctx: ProposalContext) -> Rejection | None:
        if self.allow is not None and ctx.requestor_id not in self.allow:
            return Rejection(self.code, "this provider accepts work only from nodes on its allow list, and yours is not")
        return None


@dataclass(frozen=True)
class ExpirationBounds:
    """The demand must state when its agreement expires (ms since the epoch), within bounds."""

    min_s: int
    max_s: int
    code: ClassVar[str] = "expiration-out-of-bounds"
    MISSING: ClassVar[str] = "expiration-missing"
    codes: ClassVar[frozenset[str]] = frozenset({code, MISSING})

    def check(self, ctx: ProposalContext) -> Rejection | None:
        expiration = lookup(ctx.demand_properties, SRV_COMP_EXPIRATION)
        if expiration is None:
            return Rejection(self.MISSING, f"the demand must state {SRV_COMP_EXPIRATION} (agreement expiry, ms since the epoch)")
        if not _is_int(expiration):
            return Rejection(
                self.MISSING, f"{SRV_COMP_EXPIRATION} must be an integer of ms since the epoch, got {type(expiration).__name__}"
            )
        assert isinstance(expiration, int)
        low, high = ctx.now_ms + self.min_s * 1000, ctx.now_ms + self.max_s * 1000
        if not low <= expiration <= high:
            delta_s = (expiration - ctx.now_ms) // 1000
            when = f"{_duration(delta_s)} from now" if delta_s >= 0 else f"{_duration(-delta_s)} ago"
            return Rejection(
                self.code,
                f"agreement expiration must be {_duration(self.min_s)} to {_duration(self.max_s)} from now;"
                f" the demand's is {when}",
            )
        return None


@dataclass(frozen=True)
class PriceFloor:
    """The offer's pricing must parse and be at or above the floor, coefficient by coefficient.

    It reads ``ctx.offer_properties``: the terms the provider is about to
    commit to, so a preset priced below the floor by mistake never sells.
    """

    floor: LinearPricing | None
    code: ClassVar[str] = "price-below-floor"
    INVALID: ClassVar[str] = "pricing-invalid"
    codes: ClassVar[frozenset[str]] = frozenset({code, INVALID})

    def check(self, ctx: ProposalContext) -> Rejection | None:
        if self.floor is None:
            return None
        try:
            pricing = LinearPricing.from_properties(ctx.offer_properties)
        except PricingError as exc:
            return Rejection(self.INVALID, f"the offer's pricing is invalid: {exc}")
        if not pricing.at_least(self.floor):
            return Rejection(self.code, "the offer's price is below this provider's price floor")
        return None


@dataclass(frozen=True)
class _TermBounds:
    """A negotiable payment term in seconds: checked only when the demand states it."""

    low: int
    high: int
    name: ClassVar[str]
    what: ClassVar[str]
    code: ClassVar[str]

    def value(self, demand: Mapping[str, object]) -> object | None:
        return lookup(demand, self.name.rstrip("?"))

    def in_bounds(self, value: object) -> bool:
        return _is_int(value) and self.low <= value <= self.high  # type: ignore[operator]

    def check(self, ctx: ProposalContext) -> Rejection | None:
        value = self.value(ctx.demand_properties)
        if value is None or self.in_bounds(value):
            return None
        return Rejection(
            self.code,
            f"{self.what} ({self.name}) must be a whole number of seconds from {self.low} to {self.high}; the demand says {value!r}",
        )


@dataclass(frozen=True)
class DebitNoteInterval(_TermBounds):
    name: ClassVar[str] = COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC
    what: ClassVar[str] = "the debit-note interval"
    code: ClassVar[str] = "debit-note-interval-out-of-bounds"
    codes: ClassVar[frozenset[str]] = frozenset({code})


@dataclass(frozen=True)
class PaymentTimeout(_TermBounds):
    name: ClassVar[str] = COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC
    what: ClassVar[str] = "the payment timeout"
    code: ClassVar[str] = "payment-timeout-out-of-bounds"
    codes: ClassVar[frozenset[str]] = frozenset({code})


CODES: frozenset[str] = frozenset().union(
    *(r.codes for r in (DenyList, AllowList, ExpirationBounds, PriceFloor, DebitNoteInterval, PaymentTimeout)),
    {NO_CAPACITY},
)
"""Every code a provider's rejection may carry."""


# -- config ------------------------------------------------------------------------------


def _ids(name: str, value: object) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise PolicyError(f"{name} must be a list of node ids, got {type(value).__name__}")
    items = list(value)
    for node_id in items:  # checked before hashing: a list among them is not hashable
        if not isinstance(node_id, str) or not node_id:
            raise PolicyError(f"{name} must hold non-empty node id strings, got {node_id!r:.80}")
    return frozenset(items)


def _seconds(name: str, value: object, *, low: int = 0, high: int = MAX_TERM_S) -> int:
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        raise PolicyError(f"{name} must be a whole number of seconds from {low} to {high}, got {value!r}")
    return value  # type: ignore[return-value]


def _bounds(name: str, value: object) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise PolicyError(f"{name} must be a pair [low, high] of seconds, got {value!r}")
    low, high = (_seconds(name, v, low=1) for v in value)
    if low > high:
        raise PolicyError(f"{name}: low {low} is above high {high}")
    return (low, high)


_JSON_FIELDS = (
    "min_expiration_s",
    "max_expiration_s",
    "price_floor",
    "deny",
    "allow",
    "debit_note_interval_s",
    "payment_timeout_s",
    "default_debit_note_interval_s",
    "default_payment_timeout_s",
)


@dataclass(frozen=True)
class PolicyConfig:
    """What the provider accepts. Validated on construction; id collections become frozensets."""

    min_expiration_s: int = 60
    max_expiration_s: int = 24 * 3600
    price_floor: LinearPricing | None = None
    deny: frozenset[str] = field(default_factory=frozenset)
    allow: frozenset[str] | None = None
    debit_note_interval_s: tuple[int, int] = (1, 3600)
    payment_timeout_s: tuple[int, int] = (1, 3600)
    default_debit_note_interval_s: int = 120
    default_payment_timeout_s: int = 120

    def __post_init__(self) -> None:
        _seconds("min_expiration_s", self.min_expiration_s, high=MAX_EXPIRATION_S)
        _seconds("max_expiration_s", self.max_expiration_s, high=MAX_EXPIRATION_S)
        if self.min_expiration_s > self.max_expiration_s:
            raise PolicyError(f"min_expiration_s {self.min_expiration_s} is above max_expiration_s {self.max_expiration_s}")
        if self.price_floor is not None and not isinstance(self.price_floor, LinearPricing):
            raise PolicyError(f"price_floor must be a LinearPricing or None, got {type(self.price_floor).__name__}")
        set_ = object.__setattr__
        set_(self, "deny", _ids("deny", self.deny))
        if self.allow is not None:
            set_(self, "allow", _ids("allow", self.allow))
        for name, default_name in (
            ("debit_note_interval_s", "default_debit_note_interval_s"),
            ("payment_timeout_s", "default_payment_timeout_s"),
        ):
            low, high = _bounds(name, getattr(self, name))
            set_(self, name, (low, high))
            default = _seconds(default_name, getattr(self, default_name), low=1)
            if not low <= default <= high:
                raise PolicyError(f"{default_name} {default} is outside {name} [{low}, {high}]")

    def to_json(self) -> dict[str, object]:
        return {
            "min_expiration_s": self.min_expiration_s,
            "max_expiration_s": self.max_expiration_s,
            "price_floor": None if self.price_floor is None else self.price_floor.to_json(),
            "deny": sorted(self.deny),
            "allow": None if self.allow is None else sorted(self.allow),
            "debit_note_interval_s": list(self.debit_note_interval_s),
            "payment_timeout_s": list(self.payment_timeout_s),
            "default_debit_note_interval_s": self.default_debit_note_interval_s,
            "default_payment_timeout_s": self.default_payment_timeout_s,
        }

    @classmethod
    def from_json(cls, data: object) -> PolicyConfig:
        """Read :meth:`to_json`'s form; missing fields take their defaults, unknown ones are refused."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"policy must be an object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _JSON_FIELDS)
        if unknown:
            raise PolicyError(f"unknown policy field(s): {', '.join(unknown)} (known: {', '.join(_JSON_FIELDS)})")
        kwargs = dict(data)
        floor = kwargs.get("price_floor")
        if floor is not None:
            try:
                kwargs["price_floor"] = LinearPricing.from_json(floor)
            except PricingError as exc:
                raise PolicyError(f"price_floor: {exc}") from None
        return cls(**kwargs)


# -- the policy --------------------------------------------------------------------------


class Policy:
    """The rule chain for one :class:`PolicyConfig`; the first rejection wins."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config if config is not None else PolicyConfig()
        c = self.config
        self.debit_note_interval = DebitNoteInterval(*c.debit_note_interval_s)
        self.payment_timeout = PaymentTimeout(*c.payment_timeout_s)
        self.rules: list[Rule] = [
            DenyList(c.deny),
            AllowList(c.allow),
            ExpirationBounds(c.min_expiration_s, c.max_expiration_s),
            PriceFloor(c.price_floor),
            self.debit_note_interval,
            self.payment_timeout,
        ]

    def check(self, ctx: ProposalContext) -> Rejection | None:
        """The first rule's rejection, or ``None`` to go on negotiating."""
        for rule in self.rules:
            rejection = rule.check(ctx)
            if rejection is not None:
                return rejection
        return None

    def counter_properties(
        self, offer_properties: Mapping[str, object], demand_properties: Mapping[str, object]
    ) -> dict[str, object]:
        """The provider's counter-proposal: its offer, with the terms set so they settle.

        Each negotiable payment term takes the demand's value when the demand
        states one within bounds, otherwise the provider's default; the
        demand's expiration is echoed. Both sides then state the same values,
        so :func:`market.negotiation.settle_terms` binds them.
        """
        out = dict(offer_properties)
        terms = (
            (self.debit_note_interval, self.config.default_debit_note_interval_s),
            (self.payment_timeout, self.config.default_payment_timeout_s),
        )
        for term, default in terms:
            out.pop(term.name.rstrip("?"), None)
            wanted = term.value(demand_properties)
            out[term.name] = wanted if term.in_bounds(wanted) else default
        expiration = lookup(demand_properties, SRV_COMP_EXPIRATION)
        if _is_int(expiration) and 0 <= expiration < 2**63:  # type: ignore[operator]
            out.pop(SRV_COMP_EXPIRATION + "?", None)
            out[SRV_COMP_EXPIRATION] = expiration
        return validate_properties(out)  # type: ignore[return-value]
