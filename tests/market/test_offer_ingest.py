"""The offer-ingest fast paths (issue 12): the same verdicts as the full checks, for less work."""

from __future__ import annotations

import cbor2
import pytest

from market.offer_book import OfferBook, _slot
from market.offers import (
    DEMAND_DOMAIN,
    OFFER_DOMAIN,
    WITHDRAW_DOMAIN,
    OfferRejected,
    make_demand,
    make_offer,
    make_withdrawal,
    offer_id,
    peek_domain_fast,
    verify_offer,
)
from market.properties import PropertyError, validate_properties
from yagna.core.identity import NodeKey
from yagna.core.wire import encode
from yagna.market_service.offers import OfferDirectory, peek_domain
from yagna.net.errors import GossipInvalid

NET = "testnet"
T0 = 1_700_000_000_000
KEY = NodeKey.from_seed(b"i" * 32)
PROPS = {"golem.inf.mem.gib": 8.0, "golem.runtime.name": "vm", "golem.inf.cpu.threads": 4}
CONS = "(golem.srv.comp.expiration>0)"


def offer(props: dict[str, object] = PROPS, *, created: int = T0, ttl: int = 600_000) -> bytes:
    return make_offer(KEY, network_id=NET, subnet="public", properties=props, constraints=CONS,
                      created_at_ms=created, expires_at_ms=created + ttl)


def test_fast_peek_names_each_kind_and_declines_the_rest() -> None:
    demand = make_demand(KEY, network_id=NET, subnet="public", properties=PROPS, constraints=CONS,
                         created_at_ms=T0, expires_at_ms=T0 + 1000)
    withdrawal = make_withdrawal(KEY, network_id=NET, offer_id=offer_id(offer()), at_ms=T0)
    big = offer({**PROPS, "golem.x.blob": "x" * 300})  # a body over 255 bytes: 0x59 head
    assert peek_domain_fast(offer()) == OFFER_DOMAIN
    assert peek_domain_fast(big) == OFFER_DOMAIN and big[1] == 0x59
    assert peek_domain_fast(demand) == DEMAND_DOMAIN
    assert peek_domain_fast(withdrawal) == WITHDRAW_DOMAIN
    for junk in (b"", b"\x82", b"\x82\x41\x83", b"\x83" + offer()[1:], b"\xff" * 40):
        assert peek_domain_fast(junk) is None
    other = encode([encode(["yagna/other/1", KEY.public_key, {}]), b"s" * 64])
    assert peek_domain_fast(other) is None and peek_domain(other) == "yagna/other/1"


def test_properties_size_is_still_checked_without_a_known_bound() -> None:
    huge = {f"golem.p{i}": "x" * 1000 for i in range(100)}
    with pytest.raises(PropertyError):
        validate_properties(huge)
    with pytest.raises(PropertyError):
        validate_properties(huge, encoded_size_at_most=10**9)  # a bound over the cap checks again
    assert validate_properties(PROPS, encoded_size_at_most=200) == PROPS


def test_verify_still_refuses_non_canonical_and_forged_offers() -> None:
    good = offer()
    outer = cbor2.loads(good)
    body, sig = outer
    non_canonical = cbor2.dumps([body, sig], canonical=False)[:-64] + sig  # same bytes: canonical already
    assert non_canonical == good
    padded = b"\x82\x59" + len(body).to_bytes(2, "big") + body + b"\x58\x40" + sig  # non-shortest length head
    with pytest.raises(OfferRejected) as info:
        verify_offer(padded, network_id=NET, now_ms=T0 + 1)
    assert info.value.reason == "malformed"
    forged = encode([body, bytes(64)])
    with pytest.raises(OfferRejected) as info:
        verify_offer(forged, network_id=NET, now_ms=T0 + 1)
    assert info.value.reason == "bad_signature"


def test_slot_key_tells_values_apart_like_cbor_and_ignores_key_order() -> None:
    now = T0 + 1
    a = verify_offer(offer({"golem.a": 1, "golem.b": "x"}), network_id=NET, now_ms=now)
    a_later = verify_offer(offer({"golem.b": "x", "golem.a": 1}, created=T0 + 10), network_id=NET, now_ms=now + 10)
    assert _slot(a) == _slot(a_later)
    for value in (1.0, True, "1", [1]):
        other = verify_offer(offer({"golem.a": value, "golem.b": "x"}), network_id=NET, now_ms=now)
        assert _slot(other) != _slot(a), value
    book = OfferBook()
    assert book.add(a, now).accepted
    assert book.add(a_later, now + 10).replaced == a.offer_id


class _Null:
    def register(self, *a: object) -> None: ...
    def on_connect(self, *a: object) -> None: ...
    def ban(self, *a: object) -> None: ...


def test_a_known_live_offer_is_not_verified_again_but_an_expired_copy_is_refused() -> None:
    clock = [T0 + 1]
    d = OfferDirectory(network_id=NET, gossip=None, rr=_Null(), peers=_Null(), me="me",  # type: ignore[arg-type]
                       clock_ms=lambda: clock[0])
    data = offer(ttl=5_000)
    assert d._validate_offer_msg("public", data, "peer-a")
    assert d.stats.accepted == 1
    assert d._validate_offer_msg("public", data, "peer-b")  # a second relay's copy: a duplicate
    assert d.stats.accepted == 1
    clock[0] = T0 + 6_000  # expired, still in the book until the expiry loop runs
    with pytest.raises(GossipInvalid) as info:
        d._validate_offer_msg("public", data, "peer-c")
    assert info.value.reason == "expired"
