"""The negotiation state machine: every row of the table, and every move not in it."""

from __future__ import annotations

import copy
import itertools

import pytest

from market import properties as P
from market.errors import MarketError
from market.negotiation import (
    EVENT_TYPES,
    TRANSITIONS,
    Approve,
    Cancel,
    Counter,
    Event,
    Expire,
    LocalProtocolError,
    Negotiation,
    NegotiationError,
    Propose,
    ProposeAgreement,
    Reject,
    RemoteProtocolError,
    Role,
    State,
    Terminate,
    settle_terms,
)
from yagna.core.identity import NodeKey

R, PV = Role.REQUESTOR, Role.PROVIDER
REQ_ID = NodeKey.from_seed(b"r" * 32).node_id
PROV_ID = NodeKey.from_seed(b"p" * 32).node_id

NOW = 1_000
EXPIRES = 10_000
VALID_UNTIL = 20_000

DEMAND_PROPS = {
    P.NODE_DEBUG_SUBNET: "public",
    P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120,
    P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 300,
    P.SRV_COMP_EXPIRATION: 1_800_000_000_000,
}
DEMAND_TEXT = "(golem.runtime.name=vm)"
OFFER_PROPS = {
    P.RUNTIME_NAME: "vm",
    P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120,
    P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 120,
    P.SRV_COMP_EXPIRATION: 1_800_000_000_000,
}
OFFER_TEXT = "(golem.node.debug.subnet=public)"


def side(actor: Role) -> tuple[dict[str, object], str]:
    return (dict(DEMAND_PROPS), DEMAND_TEXT) if actor is R else (dict(OFFER_PROPS), OFFER_TEXT)


def make(etype: type, actor: Role) -> Event:
    """A well-formed event of ``etype`` for ``actor``'s side."""
    props, text = side(actor)
    if etype is Propose:
        return Propose(props, text, EXPIRES)
    if etype is Counter:
        return Counter(props, text, EXPIRES)
    if etype is ProposeAgreement:
        return ProposeAgreement(VALID_UNTIL)
    if etype is Reject:
        return Reject("not interested")
    if etype is Terminate:
        return Terminate("finished")
    return etype()


def apply(neg: Negotiation, event: Event, actor: Role, now_ms: int = NOW) -> State:
    if actor is neg.our_role:
        return neg.send(event, now_ms=now_ms)
    return neg.receive(event, now_ms=now_ms)


def negotiation(our: Role) -> Negotiation:
    return Negotiation(our_role=our, requestor_id=REQ_ID, provider_id=PROV_ID)


def drive(our: Role, state: State, actor: Role = R) -> Negotiation:
    """A negotiation in ``state`` in which ``actor`` has the turn (for Counter / ProposeAgreement)."""
    neg = negotiation(our)
    if state is State.INITIAL:
        return neg
    if state is State.PROPOSED:
        apply(neg, make(Propose, actor.other), actor.other)
        return neg
    if state is State.EXPIRED:
        apply(neg, make(Propose, R), R)
        apply(neg, Expire(), PV, EXPIRES)
        return neg
    opener = actor if state is State.COUNTERED else R
    apply(neg, make(Propose, opener), opener)
    apply(neg, make(Counter, opener.other), opener.other)
    if state is State.COUNTERED:
        return neg
    apply(neg, make(ProposeAgreement, R), R)
    if state is State.AGREEMENT_PROPOSED:
        return neg
    follow = {
        State.APPROVED: (Approve(), PV),
        State.REJECTED: (Reject("no"), PV),
        State.CANCELLED: (Cancel(), R),
        State.TERMINATED: (Approve(), PV),
    }
    event, who = follow[state]
    apply(neg, event, who)
    if state is State.TERMINATED:
        apply(neg, Terminate("done"), R)
    assert neg.state is state
    return neg


def test_errors_are_market_errors() -> None:
    assert issubclass(LocalProtocolError, NegotiationError)
    assert issubclass(RemoteProtocolError, NegotiationError)
    assert issubclass(NegotiationError, MarketError)


@pytest.mark.parametrize("our", [R, PV], ids=lambda r: f"we-{r.value}")
@pytest.mark.parametrize(
    ("state", "etype", "actor"),
    sorted(TRANSITIONS, key=lambda k: (k[0].value, k[1].__name__, k[2].value)),
    ids=lambda x: getattr(x, "value", getattr(x, "__name__", str(x))),
)
def test_every_transition(our: Role, state: State, etype: type, actor: Role) -> None:
    neg = drive(our, state, actor)
    before_len = len(neg.history)
    now = EXPIRES if etype is Expire else NOW
    if state is State.AGREEMENT_PROPOSED and etype is Expire:
        now = VALID_UNTIL
    event = make(etype, actor)
    after = apply(neg, event, actor, now)
    assert after is TRANSITIONS[(state, etype, actor)] is neg.state
    assert len(neg.history) == before_len + 1
    entry = neg.history[-1]
    assert (entry.actor, entry.event, entry.before, entry.after, entry.at_ms) == (actor, event, state, after, now)


ILLEGAL = [
    (s, e, a)
    for s, e, a in itertools.product(State, EVENT_TYPES, Role)
    if (s, e, a) not in TRANSITIONS
]


def test_complement_is_nonempty_and_disjoint() -> None:
    assert len(ILLEGAL) + len(TRANSITIONS) == len(State) * len(EVENT_TYPES) * len(Role)


@pytest.mark.parametrize("our", [R, PV], ids=lambda r: f"we-{r.value}")
@pytest.mark.parametrize(
    ("state", "etype", "actor"),
    ILLEGAL,
    ids=lambda x: getattr(x, "value", getattr(x, "__name__", str(x))),
)
def test_every_illegal_move_raises_and_changes_nothing(our: Role, state: State, etype: type, actor: Role) -> None:
    neg = drive(our, state, actor)
    snapshot = copy.deepcopy(neg)
    expected = LocalProtocolError if actor is our else RemoteProtocolError
    now = EXPIRES if etype is Expire else NOW
    with pytest.raises(expected) as info:
        apply(neg, make(etype, actor), actor, now)
    assert not isinstance(info.value, LocalProtocolError if expected is RemoteProtocolError else RemoteProtocolError)
    assert etype.__name__ in info.value.reason
    assert neg == snapshot


def refused(neg: Negotiation, event: Event, actor: Role, error: type, match: str, now_ms: int = NOW) -> None:
    snapshot = copy.deepcopy(neg)
    with pytest.raises(error, match=match):
        apply(neg, event, actor, now_ms)
    assert neg == snapshot


# -- guards ----------------------------------------------------------------------------


def test_turns_alternate() -> None:
    neg = negotiation(R)
    apply(neg, make(Propose, R), R)
    refused(neg, make(Counter, R), R, LocalProtocolError, "turns alternate")
    apply(neg, make(Counter, PV), PV)
    refused(neg, make(Counter, PV), PV, RemoteProtocolError, "turns alternate")
    apply(neg, make(Counter, R), R)
    # the requestor countered last: it may not propose an agreement on its own terms
    refused(neg, ProposeAgreement(VALID_UNTIL), R, LocalProtocolError, "turns alternate")
    apply(neg, make(Counter, PV), PV)
    assert apply(neg, ProposeAgreement(VALID_UNTIL), R) is State.AGREEMENT_PROPOSED


def test_counter_that_no_longer_matches_is_refused_with_a_reason() -> None:
    neg = negotiation(R)
    apply(neg, make(Propose, R), R)
    bad = Counter({**OFFER_PROPS, P.RUNTIME_NAME: "docker"}, OFFER_TEXT, EXPIRES)
    refused(neg, bad, PV, RemoteProtocolError, "no longer matches")
    # the provider's constraint is not satisfied by the requestor's counter either
    apply(neg, make(Counter, PV), PV)
    refused(neg, Counter({P.NODE_DEBUG_SUBNET: "lab"}, DEMAND_TEXT, EXPIRES), R, LocalProtocolError, "no longer matches")


def test_undefined_is_no_match() -> None:
    neg = negotiation(PV)
    apply(neg, make(Propose, PV), PV)
    refused(neg, Counter({}, DEMAND_TEXT, EXPIRES), R, RemoteProtocolError, "no longer matches")


def test_garbage_proposals_are_remote_errors() -> None:
    neg = negotiation(PV)
    refused(neg, Propose({"bad name!": 1}, "()", EXPIRES), R, RemoteProtocolError, "invalid properties")
    refused(neg, Propose({}, "(unclosed", EXPIRES), R, RemoteProtocolError, "unparsable constraints")
    refused(neg, Propose({}, 42, EXPIRES), R, RemoteProtocolError, "not a string")  # type: ignore[arg-type]
    refused(neg, Propose({}, "()", True), R, RemoteProtocolError, "expiring")  # type: ignore[arg-type]
    refused(neg, Propose({}, "()", NOW), R, RemoteProtocolError, "expiring")


def test_unknown_event_is_refused() -> None:
    neg = negotiation(PV)
    refused(neg, "hello", R, RemoteProtocolError, "unknown event")  # type: ignore[arg-type]
    refused(neg, "hello", PV, LocalProtocolError, "unknown event")  # type: ignore[arg-type]


def test_reject_and_terminate_need_a_reason_which_is_kept() -> None:
    neg = drive(R, State.COUNTERED)
    refused(neg, Reject(""), PV, RemoteProtocolError, "reason")
    neg = drive(R, State.APPROVED)
    refused(neg, Terminate(""), R, LocalProtocolError, "reason")
    apply(neg, Terminate("debit-note-unpaid"), PV)
    assert neg.state is State.TERMINATED and neg.reason == "debit-note-unpaid" and neg.finished


def test_agreement_deadline_must_be_in_the_future() -> None:
    neg = drive(R, State.COUNTERED)
    refused(neg, ProposeAgreement(NOW), R, LocalProtocolError, "valid until")


def test_a_node_does_not_negotiate_with_itself() -> None:
    with pytest.raises(ValueError):
        Negotiation(our_role=R, requestor_id=REQ_ID, provider_id=REQ_ID)


def test_legal_moves_follow_the_table() -> None:
    neg = drive(PV, State.AGREEMENT_PROPOSED)
    assert set(neg.legal_moves(PV)) == {Approve, Reject, Expire}
    assert set(neg.legal_moves(R)) == {Cancel, Expire}


# -- expiry ----------------------------------------------------------------------------


def test_moves_at_or_after_the_deadline_are_refused_only_expire_is_legal() -> None:
    neg = negotiation(R)
    apply(neg, make(Propose, R), R)
    refused(neg, make(Counter, PV), PV, RemoteProtocolError, "deadline", now_ms=EXPIRES)
    refused(neg, Expire(), R, LocalProtocolError, "before the deadline", now_ms=EXPIRES - 1)
    assert not neg.expire_if_due(EXPIRES - 1)
    assert neg.expire_if_due(EXPIRES + 5)
    assert neg.state is State.EXPIRED and neg.history[-1].actor is R
    assert not neg.expire_if_due(EXPIRES + 10)


def test_each_counter_moves_the_deadline() -> None:
    neg = negotiation(R)
    apply(neg, make(Propose, R), R)
    apply(neg, Counter(dict(OFFER_PROPS), OFFER_TEXT, EXPIRES + 500), PV, EXPIRES - 1)
    assert neg.deadline_ms == EXPIRES + 500
    apply(neg, make(ProposeAgreement, R), R, EXPIRES + 1)
    assert neg.deadline_ms == VALID_UNTIL


def test_unapproved_agreement_expires_approved_one_does_not() -> None:
    neg = drive(PV, State.AGREEMENT_PROPOSED)
    refused(neg, Approve(), PV, LocalProtocolError, "deadline", now_ms=VALID_UNTIL)
    assert neg.expire_if_due(VALID_UNTIL)
    assert neg.state is State.EXPIRED
    neg = drive(PV, State.APPROVED)
    assert neg.deadline_ms is None and not neg.expire_if_due(VALID_UNTIL * 10)
    apply(neg, Terminate("done"), R, VALID_UNTIL * 10)
    assert neg.state is State.TERMINATED


# -- negotiable terms ------------------------------------------------------------------


def test_negotiable_property_binds_only_when_echoed() -> None:
    neg = negotiation(R)
    apply(neg, make(Propose, R), R)
    assert neg.settled_terms() == {}  # only one side has spoken
    apply(neg, make(Counter, PV), PV)
    # debit-note interval echoed (120 = 120), payment timeout differs (300 vs 120)
    assert neg.settled_terms() == {
        P.COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC: 120,
        P.SRV_COMP_EXPIRATION: 1_800_000_000_000,
    }
    apply(neg, Counter({**DEMAND_PROPS, P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC: 120}, DEMAND_TEXT, EXPIRES), R)
    assert neg.settled_terms()[P.COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC] == 120


@pytest.mark.parametrize(
    ("demand", "offer", "settled"),
    [
        ({"a.b?": 1}, {"a.b?": 1}, {"a.b?": 1}),
        ({"a.b?": 1}, {"a.b?": 2}, {}),
        ({"a.b?": 1}, {}, {}),
        ({}, {"a.b?": 1}, {}),
        ({"a.b?": 1}, {"a.b?": 1.0}, {}),  # the wire tells 1 from 1.0
        ({"a.b?": 1}, {"a.b?": True}, {}),
        ({"a.b": 1}, {"a.b?": 1}, {"a.b?": 1}),  # name and name? are one property
        ({"a.b?": 1}, {"a.b": 1}, {"a.b?": 1}),
        ({"a.b": 1}, {"a.b": 1}, {}),  # not negotiable: a plain property, not a term
        ({P.SRV_COMP_EXPIRATION: 5}, {P.SRV_COMP_EXPIRATION: 5}, {P.SRV_COMP_EXPIRATION: 5}),
        ({"l?": [1, 2]}, {"l?": [1, 2]}, {"l?": [1, 2]}),
    ],
)
def test_settle_terms(demand: dict[str, object], offer: dict[str, object], settled: dict[str, object]) -> None:
    assert settle_terms(demand, offer) == settled
