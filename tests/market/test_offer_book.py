"""The offer book: duplicates, replacement, caps, rate limits, tombstones, expiry, catch-up."""

from __future__ import annotations

import pytest

from market.matching import Demand
from market.offer_book import (
    AddStatus,
    OfferBook,
    TokenBucket,
    WithdrawStatus,
    due_for_reannounce,
    reannounce_at,
)
from market.offers import SignedOffer, SignedWithdrawal, make_offer, make_withdrawal, verify_offer, verify_withdrawal
from yagna.core.identity import NodeKey

NET = "testnet"
T0 = 1_700_000_000_000
TTL = 600_000
P1 = NodeKey.from_seed(b"1" * 32)
P2 = NodeKey.from_seed(b"2" * 32)
R = NodeKey.from_seed(b"r" * 32)


def signed(key: NodeKey = P1, *, created: int = T0, ttl: int = TTL, n: int = 0, subnet: str = "public",
           props: dict[str, object] | None = None, cons: str = "()") -> SignedOffer:
    raw = make_offer(
        key, network_id=NET, subnet=subnet, properties=props or {"golem.runtime.name": "vm", "n": n},
        constraints=cons, created_at_ms=created, expires_at_ms=created + ttl,
    )
    return verify_offer(raw, network_id=NET, now_ms=created)


def tombstone(key: NodeKey, oid: str, at: int = T0 + 1) -> SignedWithdrawal:
    return verify_withdrawal(make_withdrawal(key, network_id=NET, offer_id=oid, at_ms=at), network_id=NET, now_ms=at)


def test_new_duplicate_get_live() -> None:
    book = OfferBook()
    o = signed()
    r = book.add(o, T0)
    assert r.status is AddStatus.NEW and r.accepted
    r = book.add(o, T0 + 1)
    assert r.status is AddStatus.DUPLICATE and not r.accepted
    assert book.get(o.offer_id) == o and o.offer_id in book and len(book) == 1
    assert book.get("0" * 64) is None
    assert book.live(T0) == [o]


def test_reannouncement_replaces_older_and_older_is_superseded() -> None:
    book = OfferBook()
    old, new = signed(created=T0), signed(created=T0 + 1000)
    assert book.add(old, T0).status is AddStatus.NEW
    r = book.add(new, T0 + 1000)
    assert r.status is AddStatus.REPLACED and r.replaced == old.offer_id and r.accepted
    assert book.get(old.offer_id) is None and len(book) == 1
    r = book.add(old, T0 + 1001)  # late gossip of the older copy
    assert (r.status, r.reason) == (AddStatus.REJECTED, "superseded")
    # different content from the same provider is another offer, not a replacement
    assert book.add(signed(created=T0 + 2000, n=1), T0 + 2000).status is AddStatus.NEW
    assert book.add(signed(created=T0 + 2000, subnet="other"), T0 + 2000).status is AddStatus.NEW
    # same content from another provider is another offer too
    assert book.add(signed(P2, created=T0 + 2000), T0 + 2000).status is AddStatus.NEW
    assert len(book) == 4


def test_expired_offer_refused() -> None:
    book = OfferBook()
    r = book.add(signed(), T0 + TTL)
    assert (r.status, r.reason) == (AddStatus.REJECTED, "expired")


def test_per_provider_count_cap() -> None:
    book = OfferBook(max_offers_per_provider=3)
    for n in range(3):
        assert book.add(signed(n=n), T0).status is AddStatus.NEW
    r = book.add(signed(n=3), T0)
    assert (r.status, r.reason) == (AddStatus.REJECTED, "over_cap")
    assert book.add(signed(P2, n=3), T0).status is AddStatus.NEW  # other providers unaffected
    # a replacement at the cap is fine: it frees its predecessor's place
    assert book.add(signed(n=0, created=T0 + 1), T0 + 1).status is AddStatus.REPLACED


def test_per_provider_bytes_cap() -> None:
    o = signed()
    book = OfferBook(max_bytes_per_provider=2 * len(o.raw) + 1)
    assert book.add(o, T0).status is AddStatus.NEW
    assert book.add(signed(n=1), T0).status is AddStatus.NEW
    r = book.add(signed(n=2), T0)
    assert (r.status, r.reason) == (AddStatus.REJECTED, "over_cap")


def test_total_cap() -> None:
    book = OfferBook(max_offers=2)
    assert book.add(signed(P1), T0).accepted
    assert book.add(signed(P2), T0).accepted
    assert book.add(signed(R), T0).reason == "over_cap"


def test_rate_limit_with_explicit_times() -> None:
    book = OfferBook(burst=3, refill_per_second=2, max_offers_per_provider=1000)
    for n in range(3):
        assert book.add(signed(n=n), T0).status is AddStatus.NEW
    r = book.add(signed(n=3), T0)
    assert (r.status, r.reason) == (AddStatus.REJECTED, "rate_limited")
    assert book.add(signed(P2, n=3), T0).status is AddStatus.NEW  # buckets are per provider
    assert book.add(signed(n=3), T0 + 499).reason == "rate_limited"  # 0.998 tokens
    assert book.add(signed(n=3), T0 + 500).status is AddStatus.NEW  # one token after 0.5 s
    assert book.add(signed(n=4), T0 + 500).reason == "rate_limited"
    # refill is capped at the burst
    for n in range(5, 8):
        assert book.add(signed(n=n), T0 + 100_000).status is AddStatus.NEW
    assert book.add(signed(n=8), T0 + 100_000).reason == "rate_limited"
    # duplicates cost no tokens
    assert book.add(signed(n=5), T0 + 100_000).status is AddStatus.DUPLICATE


def test_token_bucket_ignores_clock_going_back() -> None:
    b = TokenBucket(2, 1, T0)
    assert b.take(T0) and b.take(T0) and not b.take(T0)
    assert not b.take(T0 - 10_000)
    assert not b.take(T0 + 999) and b.take(T0 + 1000)


def test_withdrawal_by_provider_and_tombstone_blocks_readd() -> None:
    book = OfferBook()
    o = signed()
    book.add(o, T0)
    r = book.withdraw(tombstone(P1, o.offer_id), T0 + 1)
    assert r.status is WithdrawStatus.WITHDRAWN and r.accepted
    assert book.get(o.offer_id) is None and book.is_withdrawn(o.offer_id)
    assert book.withdraw(tombstone(P1, o.offer_id), T0 + 2).status is WithdrawStatus.DUPLICATE
    r2 = book.add(o, T0 + 5)  # late re-gossip of the withdrawn offer
    assert (r2.status, r2.reason) == (AddStatus.REJECTED, "withdrawn")
    # an older copy of the same offer is blocked too; a fresh re-offer after the withdrawal is not
    older = signed(created=T0 - 1000)
    assert book.add(older, T0 + 5).reason == "withdrawn"
    assert book.add(signed(created=T0 + 10), T0 + 10).status is AddStatus.NEW
    # the tombstone is forgotten when the offer would have expired
    book.expire(T0 + TTL)
    assert not book.is_withdrawn(o.offer_id)


def test_withdrawal_by_wrong_signer_refused() -> None:
    book = OfferBook()
    o = signed(P1)
    book.add(o, T0)
    r = book.withdraw(tombstone(P2, o.offer_id), T0 + 1)
    assert (r.status, r.reason) == (WithdrawStatus.REJECTED, "not_owner") and not r.accepted
    assert book.get(o.offer_id) == o and not book.is_withdrawn(o.offer_id)


def test_withdrawal_before_offer_arrives() -> None:
    book = OfferBook()
    o = signed(P1)
    # a stranger's claim on an unknown id does not block the real provider's offer
    assert book.withdraw(tombstone(P2, o.offer_id), T0).status is WithdrawStatus.RECORDED
    assert book.add(o, T0).status is AddStatus.NEW
    # the provider's own early tombstone does
    o2 = signed(P1, n=9)
    assert book.withdraw(tombstone(P1, o2.offer_id), T0).status is WithdrawStatus.RECORDED
    assert book.add(o2, T0).reason == "withdrawn"
    # the provider can still withdraw the first one, replacing the stranger's claim
    assert book.withdraw(tombstone(P1, o.offer_id), T0 + 1).status is WithdrawStatus.WITHDRAWN
    # orphan claims are forgotten after the tombstone TTL and their signers pruned
    book.expire(T0 + 10**9)
    assert not book.is_withdrawn(o2.offer_id) and not book._providers


def test_orphan_tombstones_are_capped() -> None:
    book = OfferBook(max_offers_per_provider=2)
    ids = [signed(n=n).offer_id for n in range(3)]
    assert book.withdraw(tombstone(P2, ids[0]), T0).accepted
    assert book.withdraw(tombstone(P2, ids[1]), T0).accepted
    assert book.withdraw(tombstone(P2, ids[2]), T0).reason == "over_cap"


def test_withdrawals_are_rate_limited() -> None:
    book = OfferBook(burst=1, refill_per_second=1)
    ids = [signed(n=n).offer_id for n in range(2)]
    assert book.withdraw(tombstone(P2, ids[0]), T0).accepted
    assert book.withdraw(tombstone(P2, ids[1]), T0).reason == "rate_limited"


def test_expire() -> None:
    book = OfferBook()
    short, long_ = signed(ttl=1000), signed(n=1, ttl=TTL)
    book.add(short, T0)
    book.add(long_, T0)
    assert book.live(T0 + 1000) == [long_]  # live() hides expired ones even before expire()
    assert book.expire(T0 + 999) == []
    assert book.expire(T0 + 1000) == [short.offer_id]
    assert len(book) == 1 and book.get(short.offer_id) is None
    assert book.expire(T0 + TTL) == [long_.offer_id]
    assert len(book) == 0 and book.live(T0 + TTL) == []
    # nothing left for P1: its bookkeeping is pruned once its bucket is full again
    book.expire(T0 + TTL + 60_000)
    assert not book._providers


def test_snapshot_reverifies_in_a_fresh_book() -> None:
    book = OfferBook()
    offers = [signed(P1, n=0), signed(P1, n=1), signed(P2), signed(P2, n=2, ttl=1000)]
    for o in offers:
        book.add(o, T0)
    snap = book.snapshot(T0 + 1000)
    assert len(snap) == 3
    joiner = OfferBook()
    for raw in snap:
        assert joiner.add(verify_offer(raw, network_id=NET, now_ms=T0 + 1000), T0 + 1000).status is AddStatus.NEW
    assert {o.offer_id for o in joiner.live(T0 + 1000)} == {o.offer_id for o in offers[:3]}


def test_match_demands_against_live_offers() -> None:
    book = OfferBook()
    vm = signed(P1, props={"golem.runtime.name": "vm", "golem.inf.mem.gib": 8})
    wasm = signed(P2, props={"golem.runtime.name": "wasm", "golem.inf.mem.gib": 8}, subnet="devnet")
    picky = signed(P2, props={"golem.runtime.name": "vm", "golem.inf.mem.gib": 16}, cons="(golem.srv.comp.expiration>0)")
    short = signed(P2, props={"golem.runtime.name": "vm", "golem.inf.mem.gib": 32}, ttl=1000)
    for o in (vm, wasm, picky, short):
        book.add(o, T0)
    d = Demand(R.node_id, {}, "(&(golem.runtime.name=vm)(golem.inf.mem.gib>=4))")
    assert {o.offer_id for o in book.match(d, T0)} == {vm.offer_id, short.offer_id}
    assert {o.offer_id for o in book.match(d, T0 + 1000)} == {vm.offer_id}  # expired ones never match
    d2 = Demand(R.node_id, {"golem.srv.comp.expiration": T0}, "(golem.inf.mem.gib>=4)")
    assert {o.offer_id for o in book.match(d2, T0, subnet="public")} == {vm.offer_id, picky.offer_id, short.offer_id}
    assert [o.offer_id for o in book.match(d2, T0, subnet="devnet")] == [wasm.offer_id]
    # a provider's own demand never matches its offers; withdrawn offers leave the matcher
    assert P1.node_id not in {o.provider_id for o in book.match(Demand(P1.node_id, {}, "()"), T0)}
    book.withdraw(tombstone(P1, vm.offer_id), T0 + 1)
    assert vm.offer_id not in {o.offer_id for o in book.match(d, T0 + 2)}


@pytest.mark.parametrize(("created", "ttl", "margin", "expected"), [
    (T0, 600_000, 0, T0 + 300_000),
    (T0, 600_000, 400_000, T0 + 200_000),
    (T0, 1, 0, T0),
])
def test_reannounce_at(created: int, ttl: int, margin: int, expected: int) -> None:
    assert reannounce_at(signed(created=created, ttl=ttl), margin_ms=margin) == expected


def test_due_for_reannounce() -> None:
    a, b = signed(ttl=600_000), signed(n=1, ttl=100_000)
    assert due_for_reannounce([a, b], T0) == []
    assert due_for_reannounce([a, b], T0 + 50_000) == [b]
    assert due_for_reannounce([a, b], T0 + 300_000) == [a, b]
    assert due_for_reannounce([a], T0 + 100_000, margin_ms=500_000) == [a]


def test_relaying_peer_is_held_to_its_share_of_bytes() -> None:
    """Issue 11 row 5: one connected peer minting identities could fill every node's book."""
    one = len(signed(P1).raw)
    book = OfferBook(max_bytes_per_via=3 * one + one // 2)
    keys = [NodeKey.from_seed(bytes([i]) * 32) for i in range(1, 7)]
    results = [book.add(signed(k), T0, via="rogue").reason for k in keys[:4]]
    assert results == [None, None, None, "over_cap"]
    assert book.via_bytes("rogue") == 3 * one
    assert book.add(signed(keys[4]), T0, via="honest").accepted  # other relays are unaffected
    assert book.add(signed(keys[5]), T0).accepted  # and so is this node's own
    # a re-announcement replaces in place and stays charged to the first relay
    again = signed(keys[0], created=T0 + 1000)
    assert book.add(again, T0 + 1000, via="honest").status is AddStatus.REPLACED
    assert book.via_bytes("rogue") == 3 * one and book.via_bytes("honest") == one
    book.withdraw(tombstone(keys[0], again.offer_id, T0 + 2000), T0 + 2000)
    assert book.via_bytes("rogue") == 2 * one


def test_book_total_bytes_are_capped() -> None:
    one = len(signed(P1).raw)
    book = OfferBook(max_bytes=2 * one + one // 2)
    keys = [NodeKey.from_seed(bytes([i]) * 32) for i in range(10, 13)]
    assert [book.add(signed(k), T0, via=f"p{i}").reason for i, k in enumerate(keys)] == [None, None, "over_cap"]
    assert book.total_bytes == 2 * one
    assert book.expire(T0 + TTL + 1) and book.total_bytes == 0


def test_offers_we_asked_for_pass_the_relay_share_while_the_book_is_under_half_full() -> None:
    """bench/netsim --lone-peer-offers 12000: a new node whose only peer held more than the per-relay
    share refused the rest of its catch-up as over_cap (and banned the peer). Asked-for offers go on a
    separate count, past the share while the book is under half full; unasked gossip keeps its share."""
    one = len(signed(P1).raw)
    keys = [NodeKey.from_seed(bytes([i]) * 32) for i in range(20, 40)]
    book = OfferBook(max_bytes_per_via=2 * one + one // 2, max_bytes=12 * one + one // 2)
    # a catch-up from the only peer: 6 offers (the book's half), past the 2-offer share
    assert [book.add(signed(k), T0, via="lone", solicited=True).reason for k in keys[:7]] == [None] * 6 + ["over_cap"]
    assert book.pulled_bytes("lone") == 6 * one and book.via_bytes("lone") == 0
    # the same peer's gossip afterwards is held to its own share, not to what we asked it for
    assert [book.add(signed(k), T0, via="lone").reason for k in keys[7:10]] == [None, None, "over_cap"]
    assert book.via_bytes("lone") == 2 * one
    # past half full, asked-for offers too are held to the share
    assert book.add(signed(keys[10]), T0, via="other", solicited=True).accepted
    assert book.add(signed(keys[11]), T0, via="other", solicited=True).accepted
    assert book.add(signed(keys[12]), T0, via="other", solicited=True).reason == "over_cap"
    # removal gives the bytes back to the right count
    book.expire(T0 + TTL + 1)
    assert book.pulled_bytes("lone") == book.via_bytes("lone") == book.pulled_bytes("other") == 0
