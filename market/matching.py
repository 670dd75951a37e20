"""Symmetric matching of offers and demands, and a :class:`Matcher` over many offers.

An offer and a demand match only if *both* constraint sets say a strict
``YES`` about the other side's properties: the demand's constraints on the
offer's properties, and the offer's constraints on the demand's properties.
``UNDEFINED`` is no match (a provider that does not state its memory does not
satisfy ``(golem.inf.mem.gib>=4)``). An offer and a demand from the same node
(same issuer id) never match: a node does not trade with itself.

:class:`Matcher` answers "which of these offers match this demand" fast
enough to re-run on every new demand: constraint texts are parsed and compiled
to closures once (cached by text), offers are grouped by their constraint text
so each distinct offer constraint is evaluated at most once per query, and demands
whose top level requires ``attr=value`` on a string use a lazily built
``attr -> value -> offers`` index to skip offers that cannot match.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field

from market.constraints import And, Compare, Constraint, Op, Predicate, Tri, compile_text, parse
from market.constraints import compile as compile_constraint
from market.properties import lookup

YES = Tri.YES

MAX_INDEXES = 64
"""Most attributes a :class:`Matcher` indexes; demands naming others are scanned, so
hostile demands with ever new attribute names cannot grow memory without bound."""


@dataclass(frozen=True, eq=False)
class Offer:
    """A provider's side: who issued it, its properties, its constraints on demands."""

    issuer: str
    properties: Mapping[str, object]
    constraints: str = "()"


@dataclass(frozen=True, eq=False)
class Demand:
    """A requestor's side: who issued it, its properties, its constraints on offers."""

    issuer: str
    properties: Mapping[str, object]
    constraints: str = "()"


def matches(offer: Offer, demand: Demand) -> bool:
    """True only for a strict two-way ``YES`` between different issuers.

    Raises :class:`~market.errors.ConstraintSyntaxError` if either constraint
    text does not parse.
    """
    if offer.issuer == demand.issuer:
        return False
    return (
        compile_text(demand.constraints)(offer.properties) is YES
        and compile_text(offer.constraints)(demand.properties) is YES
    )


def _required_equalities(constraint: Constraint) -> list[tuple[str, str]]:
    """``(attr, value)`` pairs every YES needs: top-level ``=`` leaves without ``$v``.

    A property holding a string different from ``value`` makes the leaf ``NO``
    and a missing one ``UNDEFINED``; either way the conjunction cannot be
    ``YES``, so offers outside the index entry can be skipped. Offers whose
    property is not a plain string (a number, a list) are kept as candidates.
    """
    if isinstance(constraint, Compare):
        items: tuple[Constraint, ...] = (constraint,)
    elif isinstance(constraint, And):
        items = constraint.items
    else:
        return []
    return [(c.attr, c.value) for c in items if isinstance(c, Compare) and c.op is Op.EQ and not c.version]


@dataclass
class _AttrIndex:
    by_value: dict[str, set[Hashable]] = field(default_factory=dict)
    other: set[Hashable] = field(default_factory=set)  # present but not a plain string


class Matcher:
    """The offers a node knows, answering :meth:`match` for one demand at a time."""

    def __init__(self) -> None:
        self._offers: dict[Hashable, Offer] = {}
        self._groups: dict[str, dict[Hashable, Offer]] = {}
        self._group_preds: dict[str, Predicate] = {}
        self._indexes: dict[str, _AttrIndex] = {}

    def __len__(self) -> int:
        return len(self._offers)

    def __contains__(self, key: object) -> bool:
        return key in self._offers

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._offers)

    def add(self, key: Hashable, offer: Offer) -> None:
        """Add or replace the offer under ``key`` (e.g. its content id).

        Raises :class:`~market.errors.ConstraintSyntaxError` for a constraint
        that does not parse; the matcher is then unchanged.
        """
        text = offer.constraints
        pred = self._group_preds.get(text) or compile_constraint(parse(text))
        if key in self._offers:
            self.remove(key)
        self._offers[key] = offer
        self._groups.setdefault(text, {})[key] = offer
        self._group_preds[text] = pred
        for attr, index in self._indexes.items():
            self._index_one(index, attr, key, offer)

    def remove(self, key: Hashable) -> None:
        """Forget the offer under ``key`` (no error if unknown)."""
        offer = self._offers.pop(key, None)
        if offer is None:
            return
        group = self._groups[offer.constraints]
        del group[key]
        if not group:
            del self._groups[offer.constraints]
            del self._group_preds[offer.constraints]
        for attr, index in self._indexes.items():
            value = lookup(offer.properties, attr)
            if isinstance(value, str):
                keys = index.by_value.get(value)
                if keys is not None:
                    keys.discard(key)
            else:
                index.other.discard(key)

    @staticmethod
    def _index_one(index: _AttrIndex, attr: str, key: Hashable, offer: Offer) -> None:
        value = lookup(offer.properties, attr)
        if isinstance(value, str):
            index.by_value.setdefault(value, set()).add(key)
        elif value is not None:
            index.other.add(key)

    def _index(self, attr: str) -> _AttrIndex | None:
        index = self._indexes.get(attr)
        if index is None:
            if len(self._indexes) >= MAX_INDEXES:
                return None
            index = self._indexes[attr] = _AttrIndex()
            for key, offer in self._offers.items():
                self._index_one(index, attr, key, offer)
        return index

    def _candidates(self, demand_constraint: Constraint) -> set[Hashable] | None:
        """Keys that may match, from the equality indexes; None means "all"."""
        result: set[Hashable] | None = None
        for attr, value in _required_equalities(demand_constraint):
            index = self._index(attr)
            if index is None:
                continue
            keys = index.by_value.get(value, set())
            keys = keys | index.other if index.other else keys
            result = keys if result is None else result & keys
            if not result:
                break
        return result

    def match(self, demand: Demand) -> list[Hashable]:
        """Keys of the offers matching ``demand`` (strict two-way ``YES``), in no particular order.

        Raises :class:`~market.errors.ConstraintSyntaxError` if the demand's
        constraint does not parse.
        """
        demand_pred: Predicate = compile_text(demand.constraints)
        candidates = self._candidates(_parse_cached(demand.constraints))
        props = demand.properties
        issuer = demand.issuer
        offers = self._offers
        out: list[Hashable] = []
        if candidates is None and len(self._groups) * 4 <= len(offers):
            # few shared offer constraints: answer each once, then scan its offers
            for text, group in self._groups.items():
                if self._group_preds[text](props) is not YES:
                    continue
                for key, offer in group.items():
                    if offer.issuer != issuer and demand_pred(offer.properties) is YES:
                        out.append(key)
            return out
        # many distinct offer constraints, or an index narrowed the offers: check the
        # demand side first and answer each offer constraint at most once per query
        preds = self._group_preds
        answered: dict[str, bool] = {}
        for key in offers if candidates is None else candidates:
            offer = offers[key]
            if offer.issuer == issuer or demand_pred(offer.properties) is not YES:
                continue
            ok = answered.get(offer.constraints)
            if ok is None:
                ok = answered[offer.constraints] = preds[offer.constraints](props) is YES
            if ok:
                out.append(key)
        return out


_PARSED: dict[str, Constraint] = {}


def _parse_cached(text: str) -> Constraint:
    tree = _PARSED.get(text)
    if tree is None:
        tree = parse(text)
        if len(_PARSED) >= 1024:
            _PARSED.clear()
        _PARSED[text] = tree
    return tree
