"""One negotiation between a requestor and a provider, as a table-driven state machine (sans-io).

Like h11, this module does no I/O and keeps no clock: the caller feeds events
(:meth:`Negotiation.send` for our own moves, :meth:`Negotiation.receive` for
the peer's) together with the current time, and reads :attr:`Negotiation.state`.
Every legal move is one row of :data:`TRANSITIONS`, keyed by
``(state, event type, actor role)``; anything else raises
:class:`LocalProtocolError` (we broke the rules) or :class:`RemoteProtocolError`
(the peer did) and leaves the negotiation exactly as it was, so a hostile or
buggy peer can never push us into a state the table does not name.

Flow (Golem's, see ``reference/golem-facts.md`` "Flows")::

    INITIAL --Propose--> PROPOSED --Counter--> COUNTERED --Counter--> COUNTERED ...
    COUNTERED --ProposeAgreement (requestor)--> AGREEMENT_PROPOSED
    AGREEMENT_PROPOSED --Approve (provider)--> APPROVED --Terminate(reason)--> TERMINATED
                       --Reject (provider)---> REJECTED
                       --Cancel (requestor)--> CANCELLED
    PROPOSED / COUNTERED / AGREEMENT_PROPOSED --Expire--> EXPIRED
    PROPOSED / COUNTERED --Reject--> REJECTED

Guards the table cannot express (they raise the same errors, also change nothing):

* turns alternate: a ``Counter`` or ``ProposeAgreement`` answers the *other*
  side's latest proposal, so nobody counters themselves and the requestor
  proposes an agreement only on terms the provider stated last;
* each counter-proposal must still match the previous one (symmetric matching,
  :func:`market.matching.matches`);
* nothing happens after a deadline: if ``now_ms`` is at or past the current
  deadline the move is refused and only ``Expire``
  is legal (:meth:`Negotiation.expire_if_due` feeds it); ``Expire`` before
  the deadline is refused too.

Negotiable properties (names ending in ``?``, plus :data:`NEGOTIABLE_EXTRA`)
bind only when both sides state the same value; :func:`settle_terms` computes
those settled values, which become the agreement's terms.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from market.constraints import parse
from market.errors import ConstraintSyntaxError, MarketError, PropertyError
from market.matching import Demand, Offer, matches
from market.properties import SRV_COMP_EXPIRATION, is_negotiable, validate_properties
from yagna.core.errors import EncodeError
from yagna.core.wire import encode

__all__ = [
    "EVENT_TYPES",
    "NEGOTIABLE_EXTRA",
    "TERMINAL",
    "TRANSITIONS",
    "Approve",
    "Cancel",
    "Counter",
    "Event",
    "Expire",
    "HistoryEntry",
    "LocalProtocolError",
    "Negotiation",
    "NegotiationError",
    "Proposal",
    "Propose",
    "ProposeAgreement",
    "Reject",
    "RemoteProtocolError",
    "Role",
    "State",
    "Terminate",
    "is_term",
    "settle_terms",
]


# -- errors ----------------------------------------------------------------------------


class NegotiationError(MarketError):
    """An illegal move in a negotiation; ``reason`` says which rule it broke."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LocalProtocolError(NegotiationError):
    """*We* tried an illegal move (a bug or a stale view on our side)."""


class RemoteProtocolError(NegotiationError):
    """The *peer* made an illegal move: reply with an error, do not trust it further."""


# -- roles, states, events -------------------------------------------------------------


class Role(enum.Enum):
    REQUESTOR = "requestor"
    PROVIDER = "provider"

    @property
    def other(self) -> Role:
        return Role.PROVIDER if self is Role.REQUESTOR else Role.REQUESTOR


class State(enum.Enum):
    INITIAL = "initial"
    PROPOSED = "proposed"
    COUNTERED = "countered"
    AGREEMENT_PROPOSED = "agreement-proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Propose:
    """The opening proposal (an offer or a demand), valid until ``expires_at_ms``."""

    properties: Mapping[str, object]
    constraints: str
    expires_at_ms: int


@dataclass(frozen=True)
class Counter:
    """A counter-proposal answering the other side's latest proposal."""

    properties: Mapping[str, object]
    constraints: str
    expires_at_ms: int


@dataclass(frozen=True)
class ProposeAgreement:
    """The requestor proposes an agreement on the latest terms; the provider must approve by ``valid_until_ms``."""

    valid_until_ms: int


@dataclass(frozen=True)
class Approve:
    """The provider approves the proposed agreement."""


@dataclass(frozen=True)
class Reject:
    """Refuse a proposal or the proposed agreement, saying why (shown to the user)."""

    reason: str


@dataclass(frozen=True)
class Expire:
    """The current deadline has passed (fed by whoever watches the clock)."""


@dataclass(frozen=True)
class Cancel:
    """The requestor withdraws its agreement proposal before the provider approved."""


@dataclass(frozen=True)
class Terminate:
    """Either side ends an approved agreement; ``reason`` is a short code (e.g. ``"debit-note-unpaid"``)."""

    reason: str


Event: TypeAlias = Propose | Counter | ProposeAgreement | Approve | Reject | Expire | Cancel | Terminate
EVENT_TYPES: tuple[type, ...] = (Propose, Counter, ProposeAgreement, Approve, Reject, Expire, Cancel, Terminate)

R, P = Role.REQUESTOR, Role.PROVIDER

TRANSITIONS: Mapping[tuple[State, type, Role], State] = {
    (State.INITIAL, Propose, R): State.PROPOSED,
    (State.INITIAL, Propose, P): State.PROPOSED,
    (State.PROPOSED, Counter, R): State.COUNTERED,
    (State.PROPOSED, Counter, P): State.COUNTERED,
    (State.PROPOSED, Reject, R): State.REJECTED,
    (State.PROPOSED, Reject, P): State.REJECTED,
    (State.PROPOSED, Expire, R): State.EXPIRED,
    (State.PROPOSED, Expire, P): State.EXPIRED,
    (State.COUNTERED, Counter, R): State.COUNTERED,
    (State.COUNTERED, Counter, P): State.COUNTERED,
    (State.COUNTERED, ProposeAgreement, R): State.AGREEMENT_PROPOSED,
    (State.COUNTERED, Reject, R): State.REJECTED,
    (State.COUNTERED, Reject, P): State.REJECTED,
    (State.COUNTERED, Expire, R): State.EXPIRED,
    (State.COUNTERED, Expire, P): State.EXPIRED,
    (State.AGREEMENT_PROPOSED, Approve, P): State.APPROVED,
    (State.AGREEMENT_PROPOSED, Reject, P): State.REJECTED,
    (State.AGREEMENT_PROPOSED, Cancel, R): State.CANCELLED,
    (State.AGREEMENT_PROPOSED, Expire, R): State.EXPIRED,
    (State.AGREEMENT_PROPOSED, Expire, P): State.EXPIRED,
    (State.APPROVED, Terminate, R): State.TERMINATED,
    (State.APPROVED, Terminate, P): State.TERMINATED,
}
"""Every legal move: ``(state, event type, actor) -> next state``. Nothing else is legal."""

del R, P

TERMINAL = frozenset({State.REJECTED, State.EXPIRED, State.CANCELLED, State.TERMINATED})


# -- negotiable terms ------------------------------------------------------------------

NEGOTIABLE_EXTRA = frozenset({SRV_COMP_EXPIRATION})
"""Properties without a ``?`` that are still terms both sides must agree on."""


def is_term(name: str) -> bool:
    """Whether ``name`` is a negotiable term (binds only when both sides state it alike)."""
    return is_negotiable(name) or name in NEGOTIABLE_EXTRA


def _same(a: object, b: object) -> bool:
    """Equality as the wire sees it (``1`` is not ``1.0`` nor ``True``)."""
    try:
        return encode(a) == encode(b)
    except EncodeError:
        return False


def settle_terms(demand: Mapping[str, object], offer: Mapping[str, object]) -> dict[str, object]:
    """The negotiable terms both sides state with the same value, keyed by their name.

    A term stated by one side only, or with different values, does not bind
    (Golem: a ``?`` property binds when the other side echoes it). ``name`` and
    ``name?`` are the same property and it is a term if either side marks it;
    the key is the ``?`` form (or the plain name for :data:`NEGOTIABLE_EXTRA`).
    """
    demand_by_base = {name.rstrip("?"): name for name in demand}
    settled: dict[str, object] = {}
    for offer_name, value in offer.items():
        base = offer_name.rstrip("?")
        demand_name = demand_by_base.get(base)
        if demand_name is None or not (is_term(offer_name) or is_term(demand_name)):
            continue
        if _same(demand[demand_name], value):
            settled[base if base in NEGOTIABLE_EXTRA else base + "?"] = value
    return settled


# -- the machine -----------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """One side's stated properties and constraints, as accepted by the machine."""

    author: Role
    properties: Mapping[str, object]
    constraints: str
    expires_at_ms: int


@dataclass(frozen=True)
class HistoryEntry:
    """One applied move: who, what, from which state to which, and when."""

    actor: Role
    event: Event
    before: State
    after: State
    at_ms: int


@dataclass
class Negotiation:
    """One negotiation as seen by ``our_role``; requestor and provider are node ids."""

    our_role: Role
    requestor_id: str
    provider_id: str
    state: State = State.INITIAL
    history: list[HistoryEntry] = field(default_factory=list)
    proposals: dict[Role, Proposal] = field(default_factory=dict)
    last_proposer: Role | None = None
    deadline_ms: int | None = None
    agreement_valid_until_ms: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.requestor_id == self.provider_id:
            raise ValueError("a node does not negotiate with itself")

    # -- public API --------------------------------------------------------------

    def send(self, event: Event, *, now_ms: int) -> State:
        """Apply our own move; :class:`LocalProtocolError` if illegal (nothing changes)."""
        return self._apply(event, self.our_role, now_ms)

    def receive(self, event: Event, *, now_ms: int) -> State:
        """Apply the peer's move; :class:`RemoteProtocolError` if illegal (nothing changes)."""
        return self._apply(event, self.our_role.other, now_ms)

    def expire_if_due(self, now_ms: int) -> bool:
        """Apply ``Expire`` (as our observation) if the current deadline has passed."""
        if self.deadline_ms is None or now_ms < self.deadline_ms:
            return False
        if (self.state, Expire, self.our_role) not in TRANSITIONS:
            return False
        self._apply(Expire(), self.our_role, now_ms)
        return True

    def legal_moves(self, actor: Role) -> list[type]:
        """Event types the table allows ``actor`` now (guards may still refuse them)."""
        return [etype for (state, etype, role) in TRANSITIONS if state is self.state and role is actor]

    def settled_terms(self) -> dict[str, object]:
        """The negotiable terms both sides' latest proposals agree on."""
        demand = self.proposals.get(Role.REQUESTOR)
        offer = self.proposals.get(Role.PROVIDER)
        if demand is None or offer is None:
            return {}
        return settle_terms(demand.properties, offer.properties)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    # -- internals ---------------------------------------------------------------

    def _error(self, actor: Role, reason: str) -> NegotiationError:
        cls = LocalProtocolError if actor is self.our_role else RemoteProtocolError
        return cls(f"{actor.value} {reason}")

    def _apply(self, event: Event, actor: Role, now_ms: int) -> State:
        # Check everything first, then mutate: an illegal move changes nothing.
        etype = type(event)
        if etype not in EVENT_TYPES:
            raise self._error(actor, f"sent an unknown event {etype.__name__}")
        after = TRANSITIONS.get((self.state, etype, actor))
        if after is None:
            raise self._error(actor, f"may not {etype.__name__} in state {self.state.value}")
        due = self.deadline_ms is not None and now_ms >= self.deadline_ms
        if isinstance(event, Expire):
            if not due:
                raise self._error(actor, f"claimed expiry at {now_ms} before the deadline {self.deadline_ms}")
        elif due:
            raise self._error(
                actor, f"moved ({etype.__name__}) at {now_ms}, at or after the deadline {self.deadline_ms}: only Expire is legal now"
            )
        proposal = self._check(event, actor, now_ms)

        # -- commit --
        before = self.state
        if proposal is not None:
            self.proposals[actor] = proposal
            self.last_proposer = actor
            self.deadline_ms = proposal.expires_at_ms
        if isinstance(event, ProposeAgreement):
            self.deadline_ms = self.agreement_valid_until_ms = event.valid_until_ms
        elif isinstance(event, Approve):
            self.deadline_ms = None  # an approved agreement ends by Terminate, not by a deadline
        if isinstance(event, (Reject, Terminate)):
            self.reason = event.reason
        self.state = after
        self.history.append(HistoryEntry(actor, event, before, after, now_ms))
        return after

    def _check(self, event: Event, actor: Role, now_ms: int) -> Proposal | None:
        """Guards beyond the table; returns the new proposal for Propose/Counter."""
        if isinstance(event, (Reject, Terminate)):
            if not isinstance(event.reason, str) or not event.reason:
                raise self._error(actor, f"{type(event).__name__} needs a non-empty reason")
            return None
        if isinstance(event, (Counter, ProposeAgreement)) and self.last_proposer is actor:
            raise self._error(actor, "answered its own proposal: turns alternate")
        if isinstance(event, ProposeAgreement):
            if not _is_int(event.valid_until_ms) or event.valid_until_ms <= now_ms:
                raise self._error(actor, f"proposed an agreement valid until {event.valid_until_ms!r}, not after {now_ms}")
            self._check_match(actor, self.proposals[actor.other], self.proposals[actor])
            return None
        if not isinstance(event, (Propose, Counter)):
            return None
        if not _is_int(event.expires_at_ms) or event.expires_at_ms <= now_ms:
            raise self._error(actor, f"sent a proposal expiring at {event.expires_at_ms!r}, not after {now_ms}")
        if not isinstance(event.constraints, str):
            raise self._error(actor, "sent constraints that are not a string")
        try:
            properties = validate_properties(event.properties)
        except PropertyError as exc:
            raise self._error(actor, f"sent invalid properties: {exc}") from None
        proposal = Proposal(actor, properties, event.constraints, event.expires_at_ms)
        if isinstance(event, Counter):
            self._check_match(actor, proposal, self.proposals[actor.other])
        else:
            self._check_match(actor, proposal, None)
        return proposal

    def _check_match(self, actor: Role, new: Proposal, previous: Proposal | None) -> None:
        """A counter must still match the other side's latest proposal (symmetric, strict yes)."""
        try:
            parse(new.constraints)
        except ConstraintSyntaxError as exc:
            raise self._error(actor, f"sent unparsable constraints: {exc}") from None
        if previous is None:
            return
        sides = {new.author: new, previous.author: previous}
        offer = Offer(self.provider_id, sides[Role.PROVIDER].properties, sides[Role.PROVIDER].constraints)
        demand = Demand(self.requestor_id, sides[Role.REQUESTOR].properties, sides[Role.REQUESTOR].constraints)
        if not matches(offer, demand):
            raise self._error(
                actor,
                "sent a proposal that no longer matches the other side's latest proposal"
                " (one side's constraints are not a strict yes on the other's properties)",
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
