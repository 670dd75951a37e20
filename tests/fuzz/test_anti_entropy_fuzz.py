"""Fuzz offer anti-entropy: the server's handler and the client's reply decoders get garbage from a peer.

Server: the handler answers (within the protocol's response limit) or raises ``RequestRejected``.
Client: the decoders return or raise only ``AntiEntropyRejected``; what they return is within the asked
bounds. Valid messages are mutated and truncated (``mutated``) as well as replaced by any CBOR value.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from market.anti_entropy import (
    BUCKETS,
    MAX_LIST_ITEMS,
    AntiEntropyRejected,
    DigestReply,
    ListReply,
    ListRequest,
    PullReply,
    PullRequest,
    offer_key,
)
from market.offer_book import OfferBook
from market.offers import make_offer, verify_offer
from yagna.core.identity import NodeKey
from yagna.core.wire import encode
from yagna.market_service.anti_entropy import ANTI_ENTROPY, AntiEntropy
from yagna.net.errors import RequestRejected
from yagna.net.reqresp import Handler, ProtocolSpec, Request

from .strategies import FUZZ, cbor_values, mutated, only

NET = "fuzz-net"
T0 = 1_800_000_000_000


class _RR:
    def register(self, spec: ProtocolSpec, handler: Handler) -> None:
        pass


def _server() -> tuple[AntiEntropy, list[str]]:
    book = OfferBook()
    for i in range(40):
        raw = make_offer(NodeKey.from_seed(bytes([i + 1]) * 32), network_id=NET, subnet="public",
                         properties={"golem.runtime.name": "vm"}, constraints="()", created_at_ms=T0,
                         expires_at_ms=T0 + 600_000)
        book.add(verify_offer(raw, network_id=NET, now_ms=T0), T0)
    ae = AntiEntropy(book=book, rr=_RR(), clock_ms=lambda: T0, take_offer=lambda *a: None,  # type: ignore[arg-type]
                     take_withdrawal=lambda *a: "", charge=lambda peer, points: None)
    return ae, book.digest("public").keys()


SERVER, KEYS = _server()
VALID = [
    {"op": "digest", "subnet": "public", "root": b"\x00" * 8, "n": 3},
    {"op": "list", "subnet": "public", "buckets": b"\xff" * 32, "after": ""},
    {"op": "list", "subnet": "public", "buckets": b"\x0f" * 32, "after": KEYS[3]},
    {"op": "pull", "subnet": "public", "keys": KEYS[:5] + [offer_key("ab" * 32)]},
]


def _drive(coro: Coroutine[Any, Any, object]) -> object:
    """Run a coroutine that never waits (the handler does no I/O) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the handler waited")


@FUZZ
@given(st.one_of(cbor_values, *(mutated(m) for m in VALID), st.sampled_from(VALID)),
       st.sampled_from(["peer-a", "peer-b", "peer-c"]))
def test_the_server_answers_garbage_with_typed_errors(payload: object, peer: str) -> None:
    SERVER._budgets.clear()  # the rate limit is tested elsewhere; here every example is served
    try:
        result = _drive(SERVER.serve(Request(peer, ANTI_ENTROPY.name, payload)))
    except RequestRejected:
        return
    assert len(encode({"ok": result})) <= ANTI_ENTROPY.max_response_size


LIST_REQ = ListRequest("public", tuple(range(0, BUCKETS, 3)), "")
PULL_REQ = PullRequest("public", tuple(KEYS[:4]))
REPLIES = [
    DigestReply(False, 40, bytes(range(256)) * 8).encode(),
    {"equal": True},
    ListReply(tuple((k, T0) for k in sorted(k for k in KEYS if int(k[:2], 16) % 3 == 0)), None).encode(),
    PullReply((b"sealed-1", b"sealed-2")).encode(),
]


@FUZZ
@given(st.one_of(cbor_values, *(mutated(m) for m in REPLIES), st.sampled_from(REPLIES)))
def test_the_client_decodes_garbage_replies_with_typed_errors(reply: object) -> None:
    digest = only(AntiEntropyRejected, DigestReply.decode, reply)
    if digest is not None and not digest.equal:
        assert len(digest.buckets) == BUCKETS * 8
    listed = only(AntiEntropyRejected, ListReply.decode, reply, LIST_REQ)
    if listed is not None:
        assert len(listed.items) <= MAX_LIST_ITEMS
        assert all(int(k[:2], 16) in LIST_REQ.buckets for k, _ in listed.items)
        assert [k for k, _ in listed.items] == sorted({k for k, _ in listed.items})
    pulled = only(AntiEntropyRejected, PullReply.decode, reply, PULL_REQ)
    if pulled is not None:
        assert len(pulled.items) <= len(PULL_REQ.keys) and all(isinstance(x, bytes) for x in pulled.items)
