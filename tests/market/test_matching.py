"""Symmetric matching and the Matcher (against the naive definition)."""

from __future__ import annotations

import random

import pytest

from market import ConstraintSyntaxError, Demand, Matcher, Offer, matches
from market import properties as P

OFFER_PROPS = {
    P.INF_MEM_GIB: 8.0,
    P.INF_CPU_THREADS: 4,
    P.RUNTIME_NAME: "vm",
    P.NODE_DEBUG_SUBNET: "public",
    P.SRV_COMP_EXPIRATION: 1_800_000_000_000,
}
DEMAND_PROPS = {P.NODE_DEBUG_SUBNET: "public", P.SRV_COMP_EXPIRATION: 1_750_000_000_000}
DEMAND_TEXT = "(&(golem.inf.mem.gib>=0.5)(golem.inf.cpu.threads>=1)(golem.runtime.name=vm))"
OFFER_TEXT = "(golem.node.debug.subnet=public)"


def test_two_way_yes_matches() -> None:
    assert matches(Offer("p", OFFER_PROPS, OFFER_TEXT), Demand("r", DEMAND_PROPS, DEMAND_TEXT))


def test_offer_side_no_is_no_match() -> None:
    offer = Offer("p", OFFER_PROPS, "(golem.node.debug.subnet=lab)")
    assert not matches(offer, Demand("r", DEMAND_PROPS, DEMAND_TEXT))


def test_demand_side_no_is_no_match() -> None:
    offer = Offer("p", OFFER_PROPS, OFFER_TEXT)
    assert not matches(offer, Demand("r", DEMAND_PROPS, "(golem.inf.mem.gib>=16)"))


def test_undefined_is_no_match_either_way() -> None:
    offer = Offer("p", OFFER_PROPS, "(golem.srv.comp.task_package=*)")
    assert not matches(offer, Demand("r", DEMAND_PROPS, "()"))  # NO
    offer = Offer("p", OFFER_PROPS, "(missing=1)")
    assert not matches(offer, Demand("r", DEMAND_PROPS, "()"))  # UNDEFINED
    offer = Offer("p", OFFER_PROPS, "(!(missing=1))")
    assert not matches(offer, Demand("r", DEMAND_PROPS, "()"))  # still UNDEFINED
    assert not matches(Offer("p", OFFER_PROPS), Demand("r", DEMAND_PROPS, "(golem.inf.gpu.model=*a*)"))


def test_same_node_never_matches() -> None:
    assert matches(Offer("p", OFFER_PROPS), Demand("r", DEMAND_PROPS))
    assert not matches(Offer("n", OFFER_PROPS), Demand("n", DEMAND_PROPS))


def test_bad_constraints_raise_syntax_errors() -> None:
    with pytest.raises(ConstraintSyntaxError):
        matches(Offer("p", OFFER_PROPS, "(a=1"), Demand("r", DEMAND_PROPS))
    matcher = Matcher()
    with pytest.raises(ConstraintSyntaxError):
        matcher.add(1, Offer("p", OFFER_PROPS, "(a=1"))
    assert len(matcher) == 0
    with pytest.raises(ConstraintSyntaxError):
        matcher.match(Demand("r", DEMAND_PROPS, "nope"))


def random_offers(n: int, rng: random.Random) -> list[Offer]:
    offers = []
    for i in range(n):
        props: dict[str, object] = {
            P.INF_CPU_THREADS: rng.choice([1, 2, 4, 8]),
            P.INF_MEM_GIB: rng.choice([0.5, 2.0, 8.0]),
            P.NODE_DEBUG_SUBNET: rng.choice(["public", "lab"]),
            P.RUNTIME_VERSION: rng.choice(["0.2.9", "0.3.0", "1.0"]),
        }
        name = rng.choice(["vm", "docker", ["vm", "docker"], 7, None])
        if name is not None:
            props[P.RUNTIME_NAME] = name
        if rng.random() < 0.3:
            props["golem.runtime.name?"] = props.pop(P.RUNTIME_NAME, "vm")
        text = rng.choice(["()", "(golem.node.debug.subnet=public)", "(golem.node.debug.subnet=lab)", "(missing=*)",
                           "(!(golem.node.debug.subnet=lab))"])
        offers.append(Offer(f"node-{i % 50}", props, text))
    return offers


DEMANDS = [
    DEMAND_TEXT,
    "(golem.runtime.name=vm)",
    "(&(golem.runtime.name=vm)(golem.node.debug.subnet=public))",
    "(&(golem.runtime.name=docker)(golem.runtime.name=vm))",
    "(golem.runtime.name=v*)",
    "(|(golem.runtime.name=vm)(golem.inf.cpu.threads>=8))",
    "(&(golem.runtime.version$v>=0.3)(golem.inf.mem.gib>2))",
    "(golem.runtime.name=7)",
    "()",
]


@pytest.mark.parametrize("text", DEMANDS)
@pytest.mark.parametrize("subnet", ["public", "lab"])
def test_matcher_agrees_with_matches(text: str, subnet: str) -> None:
    rng = random.Random(7)
    offers = random_offers(300, rng)
    matcher = Matcher()
    for i, offer in enumerate(offers):
        matcher.add(i, offer)
    demand = Demand("node-3", {P.NODE_DEBUG_SUBNET: subnet}, text)
    expected = {i for i, o in enumerate(offers) if matches(o, demand)}
    assert set(matcher.match(demand)) == expected
    # the index stays right across removals, replacements and re-adds
    for i in range(0, 300, 3):
        matcher.remove(i)
    for i in range(1, 300, 3):
        matcher.add(i, offers[(i * 7) % 300])
    matcher.remove(10_000)  # unknown: no error
    current = {i: offers[(i * 7) % 300] if i % 3 == 1 else offers[i] for i in range(300) if i % 3}
    assert set(matcher) == set(current)
    assert set(matcher.match(demand)) == {i for i, o in current.items() if matches(o, demand)}


def test_matcher_on_10k_offers_agrees_with_the_naive_scan() -> None:
    rng = random.Random(1)
    offers = random_offers(10_000, rng)
    matcher = Matcher()
    for i, offer in enumerate(offers):
        matcher.add(i, offer)
    demand = Demand("r", DEMAND_PROPS, "(&(golem.inf.mem.gib>=0.5)(golem.inf.cpu.threads>=2)(golem.runtime.name=vm))")
    # speed is measured in bench/matching.py, not asserted here
    assert set(matcher.match(demand)) == {i for i, o in enumerate(offers) if matches(o, demand)}


def test_index_count_is_capped() -> None:
    from market.matching import MAX_INDEXES

    matcher = Matcher()
    offers = random_offers(50, random.Random(3))
    for i, offer in enumerate(offers):
        matcher.add(i, offer)
    for n in range(MAX_INDEXES + 10):
        demand = Demand("r", {P.NODE_DEBUG_SUBNET: "public"}, f"(&(attr{n}=x)(golem.runtime.name=vm))")
        assert matcher.match(demand) == []
    assert len(matcher._indexes) == MAX_INDEXES
    demand = Demand("r", {P.NODE_DEBUG_SUBNET: "public"}, "(golem.runtime.name=vm)")
    assert set(matcher.match(demand)) == {i for i, o in enumerate(offers) if matches(o, demand)}
