"""Fuzz the market's decoders: signed offers, demands, withdrawals and agreements; constraints,
properties, pricing, the JSON configs; and the negotiation machine fed hostile moves."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from market.agreement import AGREEMENT_DOMAIN, AgreementInvalid, agreement_id_of, build_agreement, cosign, \
    sign_agreement, verify_agreement
from market.capacity import Capacity, CapacityError
from market.constraints import Tri, compile, evaluate, format, parse
from market.errors import ConstraintSyntaxError, MarketError, PropertyError
from market.matching import Demand, Offer, matches
from market.negotiation import (
    Approve,
    Counter,
    Expire,
    Negotiation,
    NegotiationError,
    Propose,
    ProposeAgreement,
    Reject,
    Role,
    Terminate,
    settle_terms,
)
from market.offers import OFFER_DOMAIN, WITHDRAW_DOMAIN, OfferRejected, make_demand, make_offer, make_withdrawal, \
    offer_id, verify_demand, verify_offer, verify_withdrawal
from market.policy import PolicyConfig, PolicyError
from market.presets import OFFER_CONSTRAINTS, Preset, PresetError, offer_properties
from market.pricing import LinearPricing, PricingError
from market.properties import validate_properties
from market.strategy import StrategyConfig, StrategyError
from yagna.core.envelope import seal
from yagna.core.identity import NodeKey
from yagna.core.wire import decode, encode

from .strategies import FUZZ, cbor_values, garbage, mutated, only, texts

NET = "fuzz-net"
NOW = 1_700_000_000_000
PROVIDER = NodeKey.from_seed(b"p" * 32)
REQUESTOR = NodeKey.from_seed(b"r" * 32)
PROPS = offer_properties(Preset("small"), node_name="fuzz")
DEMAND_PROPS: dict[str, object] = {"golem.srv.comp.expiration": NOW + 600_000, "golem.node.id.name": "req",
                                   "golem.com.payment.debit-notes.accept-timeout?": 120}
OFFER_PAYLOAD: dict[str, object] = {"network_id": NET, "subnet": "public", "properties": PROPS,
                                    "constraints": OFFER_CONSTRAINTS, "created_at_ms": NOW, "expires_at_ms": NOW + 60_000}
OFFER = make_offer(PROVIDER, **{k: v for k, v in OFFER_PAYLOAD.items()})  # type: ignore[arg-type]
DEMAND = make_demand(REQUESTOR, network_id=NET, subnet="public", properties=DEMAND_PROPS,
                     constraints="(&(golem.inf.mem.gib>=0.5)(golem.runtime.name=docker))",
                     created_at_ms=NOW, expires_at_ms=NOW + 60_000)
WITHDRAWAL = make_withdrawal(PROVIDER, network_id=NET, offer_id=offer_id(OFFER), at_ms=NOW)

CONSTRAINTS = ["(&(golem.inf.mem.gib>=0.5)(golem.runtime.name=docker))", "(|(a=b*c)(!(x<=1.5))(v>=1.2.3-rc.1))",
               "(golem.srv.comp.expiration>0)", "(a=*)", "(a=\\(\\*\\))", "()", "(&)", "(x=[1,2])"]
constraint_texts = st.one_of(
    texts,
    st.sampled_from(CONSTRAINTS),
    st.text(alphabet="()&|!=<>*~\\ ab.1-?", max_size=60),
    st.sampled_from(CONSTRAINTS).flatmap(lambda c: st.integers(0, len(c)).map(lambda i: c[:i])),
)


# -- signed market objects -----------------------------------------------------------------------

def _sealed(domain: str, key: NodeKey = PROVIDER) -> Any:
    return lambda payload: seal(key, domain, payload)


@FUZZ
@given(st.one_of(garbage(OFFER), cbor_values.map(_sealed(OFFER_DOMAIN)), mutated(OFFER_PAYLOAD).map(_sealed(OFFER_DOMAIN)),
                 mutated(decode(OFFER)).map(encode), st.sampled_from([DEMAND, WITHDRAWAL])))
def test_offer_verifier_raises_only_offer_rejected(data: bytes) -> None:
    only(OfferRejected, verify_offer, data, network_id=NET, now_ms=NOW)


@FUZZ
@given(st.one_of(garbage(DEMAND), cbor_values.map(_sealed("yagna/demand/1", REQUESTOR)),
                 mutated(OFFER_PAYLOAD).map(_sealed("yagna/demand/1", REQUESTOR)), st.sampled_from([OFFER])))
def test_demand_verifier_raises_only_offer_rejected(data: bytes) -> None:
    only(OfferRejected, verify_demand, data, network_id=NET, now_ms=NOW)


@FUZZ
@given(st.one_of(garbage(WITHDRAWAL), cbor_values.map(_sealed(WITHDRAW_DOMAIN)),
                 mutated({"network_id": NET, "offer_id": offer_id(OFFER), "at_ms": NOW}).map(_sealed(WITHDRAW_DOMAIN))))
def test_withdrawal_verifier_raises_only_offer_rejected(data: bytes) -> None:
    only(OfferRejected, verify_withdrawal, data, network_id=NET, now_ms=NOW)


def _agreement_terms() -> dict[str, object]:
    body = build_agreement(network_id=NET, offer_id=offer_id(OFFER),
                           demand=Demand(REQUESTOR.node_id, DEMAND_PROPS, "(golem.runtime.name=docker)"),
                           offer=Offer(PROVIDER.node_id, PROPS, OFFER_CONSTRAINTS), valid_until_ms=NOW + 60_000)
    terms = decode(body)[2]  # type: ignore[index]
    assert isinstance(terms, dict)
    return terms


TERMS = _agreement_terms()
BODY = encode([AGREEMENT_DOMAIN, agreement_id_of(TERMS), TERMS])
AGREEMENT = cosign(BODY, REQUESTOR.sign(BODY), PROVIDER.sign(BODY))


def _with_id(terms: object) -> bytes:
    """A body whose id matches its (mutated) terms, so the checks past the id run."""
    try:
        aid = agreement_id_of(terms)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - not a map: any id
        aid = "0" * 64
    return encode([AGREEMENT_DOMAIN, aid, terms])


bodies = st.one_of(garbage(BODY), mutated(TERMS).map(_with_id), mutated(decode(BODY)).map(encode))


@FUZZ
@given(st.one_of(garbage(AGREEMENT),
                 bodies.map(lambda b: cosign(b, REQUESTOR.sign(b), PROVIDER.sign(b))),
                 st.tuples(bodies, st.binary(max_size=70), st.binary(max_size=70)).map(lambda t: cosign(*t)),
                 mutated(decode(AGREEMENT)).map(encode)))
def test_agreement_verifier_raises_only_agreement_invalid(data: bytes) -> None:
    only(AgreementInvalid, verify_agreement, data, network_id=NET)


@FUZZ
@given(bodies)
def test_signing_a_peer_body_raises_only_agreement_invalid(body: bytes) -> None:
    only(AgreementInvalid, sign_agreement, PROVIDER, body)


# -- constraints and properties ---------------------------------------------------------------

property_sets = st.one_of(mutated(PROPS), mutated(DEMAND_PROPS), st.dictionaries(
    st.sampled_from(["a", "b", "x", "v", "golem.runtime.name", "golem.inf.mem.gib", "a?", "x?"]),
    st.one_of(cbor_values, st.sampled_from(["1.2.3", "1.2.3-rc.1", "docker", "*", "(", ""])), max_size=5))


@FUZZ
@given(constraint_texts)
@example("(" * 1000 + "a=b" + ")" * 1000)  # deeper than any recursion limit
@example("(a=\\")
@example("(a>=1e999)")
def test_constraint_parser_raises_only_syntax_error(text: str) -> None:
    constraint = only(ConstraintSyntaxError, parse, text)
    if constraint is not None:
        assert parse(format(constraint)) == constraint


@FUZZ
@given(constraint_texts, property_sets)
def test_constraints_evaluate_any_valid_properties_without_error(text: str, props: object) -> None:
    constraint = only(ConstraintSyntaxError, parse, text)
    properties = only(PropertyError, validate_properties, props)
    if constraint is None or properties is None:
        return
    assert evaluate(constraint, properties) in (Tri.YES, Tri.NO, Tri.UNDEFINED)
    assert compile(constraint)(properties) in (Tri.YES, Tri.NO, Tri.UNDEFINED)
    assert matches(Offer(PROVIDER.node_id, properties, text), Demand(REQUESTOR.node_id, PROPS, text)) in (True, False)


@FUZZ
@given(st.one_of(cbor_values, property_sets))
def test_property_validator_raises_only_property_error(props: object) -> None:
    only(PropertyError, validate_properties, props)


@FUZZ
@given(st.one_of(cbor_values, mutated(PROPS)))
def test_pricing_reader_raises_only_pricing_error(props: object) -> None:
    only(PricingError, LinearPricing.from_properties, props)  # type: ignore[arg-type]


@FUZZ
@given(st.one_of(cbor_values, mutated(Preset("small").to_json()), mutated(PolicyConfig().to_json()),
                 mutated(StrategyConfig().to_json()), mutated({"threads": 2, "mem_gib": 1.5, "storage_gib": 3})))
@example({"deny": [[]]})  # an unhashable id: TypeError before the check
def test_json_configs_raise_only_their_errors(data: object) -> None:
    only(PricingError, LinearPricing.from_json, data)
    only(PresetError, Preset.from_json, data)
    only(PolicyError, PolicyConfig.from_json, data)
    only(StrategyError, StrategyConfig.from_json, data)
    only(CapacityError, Capacity.from_json, data)


# -- the negotiation machine ------------------------------------------------------------------

any_value = st.one_of(cbor_values, st.integers(NOW - 10, NOW + 10**6))
events = st.one_of(
    st.builds(Propose, properties=st.one_of(property_sets, cbor_values), constraints=st.one_of(constraint_texts, any_value),
              expires_at_ms=any_value),
    st.builds(Counter, properties=st.one_of(property_sets, cbor_values), constraints=st.one_of(constraint_texts, any_value),
              expires_at_ms=any_value),
    st.builds(ProposeAgreement, valid_until_ms=any_value),
    st.builds(Approve), st.builds(Expire),
    st.builds(Reject, reason=any_value), st.builds(Terminate, reason=any_value),
)


@FUZZ
@given(st.lists(st.tuples(st.booleans(), events, st.integers(0, 10**6)), max_size=12), st.sampled_from(list(Role)))
def test_negotiation_raises_only_negotiation_error(moves: list[tuple[bool, object, int]], role: Role) -> None:
    n = Negotiation(role, REQUESTOR.node_id, PROVIDER.node_id)
    for ours, event, later in moves:
        apply = n.send if ours else n.receive
        before = (n.state, len(n.history))
        try:
            apply(event, now_ms=NOW + later)  # type: ignore[arg-type]
        except NegotiationError:
            assert (n.state, len(n.history)) == before  # an illegal move changes nothing
    only(MarketError, settle_terms, PROPS, DEMAND_PROPS)
