"""Anti-entropy's sans-io core: digests, what differs, what to pull, bounds, hostile messages."""

from __future__ import annotations

import hashlib
import random

import pytest

from market.anti_entropy import (
    BUCKETS,
    DIGEST_BYTES,
    EXPIRY_MARGIN_MS,
    MAX_LIST_ITEMS,
    MAX_PULL_KEYS,
    AntiEntropyRejected,
    DigestReply,
    DigestRequest,
    ListReply,
    ListRequest,
    PullReply,
    PullRequest,
    RecentlyRefused,
    SetDigest,
    bitmap_of,
    buckets_of_bitmap,
    decode_request,
    differing_buckets,
    is_key,
    offer_key,
    plan_pull,
    withdrawal_key,
)
from market.offer_book import OfferBook
from market.offers import make_offer, make_withdrawal, verify_offer, verify_withdrawal
from yagna.core import wire
from yagna.core.identity import NodeKey

NET = "testnet"
T0 = 1_700_000_000_000


def oid(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def keys(n: int, start: int = 0) -> list[str]:
    return [offer_key(oid(i)) for i in range(start, start + n)]


def wire_size(msg: object) -> int:
    return len(wire.encode(msg))


# -- the digest ------------------------------------------------------------------------------
def test_equal_sets_compare_with_one_small_message() -> None:
    a, b = SetDigest(keys(5000)), SetDigest(reversed(keys(5000)))  # order of arrival does not matter
    request = DigestRequest("public", a.root, len(a)).encode()
    assert wire_size(request) < 80
    assert (a.root, len(a)) == (b.root, len(b)) and a.buckets() == b.buckets()
    assert differing_buckets(a.buckets(), b.buckets()) == []
    assert wire_size(DigestReply(True).encode()) < 16


def test_a_difference_narrows_to_its_bucket_and_its_keys() -> None:
    common = keys(3000)
    extra = offer_key(oid(99_999))
    a, b = SetDigest(common), SetDigest(common + [extra])
    assert a.root != b.root
    differ = differing_buckets(a.buckets(), b.buckets())
    assert differ == [int(extra[:2], 16)]
    listed, nxt = b.keys_in(differ)
    assert extra in listed and nxt is None
    assert len(listed) < 3000 / BUCKETS * 3  # only that bucket's keys
    want = plan_pull([(k, T0 + 60_000) for k in listed], holds=a.__contains__, withdrawn=lambda _: False,
                     refused=lambda k, now: False, now_ms=T0)
    assert want == [extra]


def test_add_and_discard_keep_the_digest_as_if_built_afresh() -> None:
    rng = random.Random(3)
    d = SetDigest()
    held: set[str] = set()
    for _ in range(3000):
        k = offer_key(oid(rng.randrange(800))) if rng.random() < 0.7 else withdrawal_key(oid(rng.randrange(800)))
        if rng.random() < 0.6:
            d.add(k)
            held.add(k)
        else:
            d.discard(k)
            held.discard(k)
    fresh = SetDigest(held)
    assert (d.root, len(d), d.buckets(), d.keys()) == (fresh.root, len(fresh), fresh.buckets(), sorted(held))
    assert SetDigest().root == bytes(8) and len(SetDigest().buckets()) == DIGEST_BYTES


def test_listing_pages_through_the_asked_buckets_with_a_cursor() -> None:
    d = SetDigest(keys(20_000))
    wanted = [0, 7, 255]
    expected = [k for k in sorted(d.keys()) if int(k[:2], 16) in wanted]
    got: list[str] = []
    after = ""
    while True:
        page, nxt = d.keys_in(wanted, after=after, limit=50)
        assert len(page) <= 50
        got += page
        if nxt is None:
            break
        after = nxt
    assert got == expected


def test_catch_up_cursor_walks_offers_only_in_id_order() -> None:
    ks = keys(100)
    d = SetDigest(ks + [withdrawal_key(k[:64]) for k in ks[:10]])
    order = sorted(k[:64] for k in ks)
    assert [k[:64] for k in d.keys_after("")] == order
    assert [k[:64] for k in d.keys_after(order[41])] == order[42:]
    prefix = order[41][:3]  # any string works as a cursor, as it did: ids greater than it
    assert [k[:64] for k in d.keys_after(prefix)] == [o for o in order if o > prefix]


# -- deciding what to pull -------------------------------------------------------------------
def test_plan_skips_held_withdrawn_refused_expiring_and_duplicates_and_is_bounded() -> None:
    ks = keys(10)
    refused = RecentlyRefused(ttl_ms=1000)
    refused.add(ks[3], T0)
    listed = [(k, T0 + 600_000) for k in ks] + [(ks[5], T0 + 600_000)]
    listed[4] = (ks[4], T0 + EXPIRY_MARGIN_MS)  # expires too soon to be worth it
    want = plan_pull(listed, holds=lambda k: k == ks[0], withdrawn=lambda o: o == ks[1][:64], refused=refused,
                     now_ms=T0)
    assert want == [ks[2], ks[5], ks[6], ks[7], ks[8], ks[9]]
    assert len(plan_pull(listed, holds=lambda k: False, withdrawn=lambda o: False, refused=refused, now_ms=T0,
                         limit=2)) == 2
    # a withdrawal is pulled even though its offer is withdrawn here ... unless held
    w = withdrawal_key(ks[1][:64])
    assert plan_pull([(w, T0 + 600_000)], holds=lambda k: False, withdrawn=lambda o: True, refused=refused,
                     now_ms=T0) == [w]
    assert not refused(ks[3], T0 + 1000)  # forgotten after its ttl


def test_recently_refused_is_bounded() -> None:
    r = RecentlyRefused(max_keys=100)
    for k in keys(1000):
        r.add(k, T0)
    assert len(r) == 100 and r(keys(1000)[-1], T0) and not r(keys(1)[0], T0)


# -- the wire: every bound, every hostile shape -------------------------------------------------
def test_requests_round_trip() -> None:
    d = SetDigest(keys(10))
    assert decode_request(DigestRequest("public", d.root, 10).encode()) == DigestRequest("public", d.root, 10)
    lr = ListRequest("public", (0, 9, 255), keys(1)[0])
    assert decode_request(lr.encode()) == lr
    pr = PullRequest("public", tuple(keys(MAX_PULL_KEYS)))
    assert decode_request(pr.encode()) == pr
    assert buckets_of_bitmap(bitmap_of(range(BUCKETS))) == list(range(BUCKETS))


@pytest.mark.parametrize("msg", [
    None, [], {"op": "gossip", "subnet": "public"},
    {"op": "digest", "subnet": "public", "root": b"\0" * 7, "n": 0},
    {"op": "digest", "subnet": "public", "root": b"\0" * 8, "n": -1},
    {"op": "digest", "subnet": "public", "root": b"\0" * 8, "n": True},
    {"op": "digest", "subnet": "x" * 129, "root": b"\0" * 8, "n": 0},
    {"op": "digest", "subnet": 5, "root": b"\0" * 8, "n": 0},
    {"op": "list", "subnet": "public", "buckets": b"\xff" * 31, "after": ""},
    {"op": "list", "subnet": "public", "buckets": b"\xff" * 32, "after": "zz"},
    {"op": "pull", "subnet": "public", "keys": keys(MAX_PULL_KEYS + 1)},
    {"op": "pull", "subnet": "public", "keys": [oid(1) + "x"]},
    {"op": "pull", "subnet": "public", "keys": [oid(1).upper() + "o"]},
    {"op": "pull", "subnet": "public", "keys": "abc"},
])
def test_hostile_requests_are_rejected(msg: object) -> None:
    with pytest.raises(AntiEntropyRejected):
        decode_request(msg)


def test_hostile_replies_are_rejected() -> None:
    with pytest.raises(AntiEntropyRejected):
        DigestReply.decode({"equal": False, "n": 1, "buckets": b"\0" * (DIGEST_BYTES + 1)})
    with pytest.raises(AntiEntropyRejected):
        DigestReply.decode({"equal": "yes"})
    with pytest.raises(AntiEntropyRejected):
        differing_buckets(b"\0" * DIGEST_BYTES, b"\0" * 10)
    ks = sorted(keys(3000))
    b0 = [k for k in ks if k.startswith("00")]
    req = ListRequest("public", (0,))
    assert ListReply.decode({"items": [[k, 1] for k in b0], "next": None}, req).items == tuple((k, 1) for k in b0)
    for bad in (
        {"items": [[k, 1] for k in ks[:MAX_LIST_ITEMS + 1]], "next": None},  # too many
        {"items": [[k, 1] for k in reversed(b0)], "next": None},  # out of order (or repeated)
        {"items": [[b0[0], 1], [b0[0], 1]], "next": None},
        {"items": [[ks[-1], 1]], "next": None},  # a bucket not asked for
        {"items": [[b0[0], -5]], "next": None},
        {"items": [[b0[0]]], "next": None},
        {"items": [[b0[0], 1]], "next": b0[1]},  # a cursor that is not the last key
        {"items": [], "next": b0[0]},
    ):
        with pytest.raises(AntiEntropyRejected):
            ListReply.decode(bad, req)
    with pytest.raises(AntiEntropyRejected):  # an item after the cursor is required
        ListReply.decode({"items": [[b0[0], 1]], "next": None}, ListRequest("public", (0,), b0[0]))
    pull = PullRequest("public", tuple(ks[:2]))
    with pytest.raises(AntiEntropyRejected):
        PullReply.decode({"items": [b"a", b"b", b"c"]}, pull)  # more than asked
    with pytest.raises(AntiEntropyRejected):
        PullReply.decode({"items": [b"x" * (1024 * 1024)]}, pull)
    with pytest.raises(AntiEntropyRejected):
        PullReply.decode({"items": ["text"]}, pull)


def test_the_biggest_messages_fit_the_protocol_limits() -> None:
    from yagna.market_service.anti_entropy import ANTI_ENTROPY

    ks = sorted(keys(40_000))
    assert wire_size(PullRequest("x" * 128, tuple(ks[:MAX_PULL_KEYS])).encode()) < ANTI_ENTROPY.max_request_size
    assert wire_size(ListRequest("x" * 128, tuple(range(BUCKETS)), ks[0]).encode()) < 300
    reply = ListReply(tuple((k, 2**62) for k in ks[:MAX_LIST_ITEMS]), ks[MAX_LIST_ITEMS - 1]).encode()
    assert wire_size(reply) < ANTI_ENTROPY.max_response_size
    assert wire_size(DigestReply(False, 50_000, b"\xff" * DIGEST_BYTES).encode()) < 2200
    assert is_key(ks[0]) and not is_key(ks[0][:-1])


# -- the book keeps the digests ---------------------------------------------------------------
def _offer(key: NodeKey, n: int = 0, subnet: str = "public", created: int = T0):  # type: ignore[no-untyped-def]
    raw = make_offer(key, network_id=NET, subnet=subnet, properties={"golem.runtime.name": "vm", "n": n},
                     constraints="()", created_at_ms=created, expires_at_ms=created + 600_000)
    return verify_offer(raw, network_id=NET, now_ms=created)


def test_the_book_keeps_a_digest_per_subnet_with_offers_and_tombstones() -> None:
    book = OfferBook()
    p, q = NodeKey.from_seed(b"p" * 32), NodeKey.from_seed(b"q" * 32)
    a, b, c = _offer(p, 1), _offer(p, 2, subnet="gpu"), _offer(q, 3)
    for o in (a, b, c):
        assert book.add(o, T0).accepted
    assert book.subnets() == ["gpu", "public"]
    assert set(book.digest("public").keys()) == {offer_key(a.offer_id), offer_key(c.offer_id)}
    w = verify_withdrawal(make_withdrawal(p, network_id=NET, offer_id=a.offer_id, at_ms=T0 + 1), network_id=NET,
                          now_ms=T0 + 1)
    book.withdraw(w, T0 + 1)
    assert set(book.digest("public").keys()) == {withdrawal_key(a.offer_id), offer_key(c.offer_id)}
    assert book.sealed(withdrawal_key(a.offer_id)) == w.raw and book.sealed(offer_key(a.offer_id)) is None
    assert book.expiry(withdrawal_key(a.offer_id)) == a.expires_at_ms
    assert book.holds(offer_key(c.offer_id)) and not book.holds(offer_key(a.offer_id))
    # a re-announcement is a new key; the old one leaves the digest
    c2 = _offer(q, 3, created=T0 + 1000)
    assert book.add(c2, T0 + 1000).accepted
    assert set(book.digest("public").keys()) == {withdrawal_key(a.offer_id), offer_key(c2.offer_id)}
    # an orphan withdrawal goes into the subnet it came on, and lasts from its own signed time
    orphan = verify_withdrawal(make_withdrawal(q, network_id=NET, offer_id=oid(7), at_ms=T0 + 5), network_id=NET,
                               now_ms=T0 + 5)
    book.withdraw(orphan, T0 + 50, subnet="public")
    assert withdrawal_key(oid(7)) in book.digest("public")
    assert book.expiry(withdrawal_key(oid(7))) == T0 + 5 + book.tombstone_ttl_ms
    book.expire(T0 + 10**8)
    assert book.subnets() == [] and len(book.digest("public")) == 0
    # ... so a copy pulled after every node forgot it is not recorded again
    assert book.withdraw(orphan, T0 + 5 + book.tombstone_ttl_ms).reason == "expired"
