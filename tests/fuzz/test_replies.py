"""Fuzz the client side of our protocols: a hostile provider answers the requestor's requests
with garbage (negotiation, offer catch-up pages, blob chunks; the activity client in
``test_activity_replies.py``).

The invariant is the requestor's: each call returns or raises the service's typed failure
(:class:`NegotiationFailed`, :class:`ActivityFailed`), and no background task of the node (the batch
pump, the keep-alive) dies of it: the world's nursery would take the test down with it (issue 11
rows 2 and 3 were such replies). Same set-up as ``test_protocols.py``: nodes up for all examples,
hypothesis on a worker thread.
"""

from __future__ import annotations

from pathlib import Path

import trio
from hypothesis import example, given
from hypothesis import strategies as st

from exeunit.errors import TransferRefused
from yagna.activity_service.blobs import fetch_blob
from yagna.activity_service.protocol import BLOB_PER_PEER, BLOB_STREAM, BLOB_TOTAL
from yagna.core.wire import encode
from yagna.net.bulk import ByteStream, StreamFailed, bulk_for
from yagna.net.framing import encode_frame
from yagna.market_service.offers import SYNC
from yagna.market_service.protocol import NEGOTIATE
from yagna.market_service.requestor import NegotiationFailed
from yagna.net.errors import RequestError
from yagna.net.reqresp import Request

from .strategies import FUZZ, cbor_values, mutated
from .test_protocols import World, world


class Rogue:
    """Answers every request of one protocol with the reply the current example drew for its op."""

    def __init__(self) -> None:
        self.replies: dict[str, object] = {}
        self.events_asked: dict[str, int] = {}

    async def __call__(self, request: Request) -> object:
        msg = request.payload if isinstance(request.payload, dict) else {}
        op = str(msg.get("op"))
        if op == "events":  # garbage once per batch, then a clean end (so each pump finishes)
            batch = str(msg.get("batch_id"))
            self.events_asked[batch] = self.events_asked.get(batch, 0) + 1
            if self.events_asked[batch] > 1:
                return {"events": [], "done": True, "receipt": None}
        return self.replies.get(op, {})


def _replies(valid: dict[str, list[dict[str, object]]]) -> st.SearchStrategy[dict[str, object]]:
    """Per op: garbage, or one of its valid replies, as is or mutated."""
    return st.fixed_dictionaries({op: st.one_of(cbor_values, *(mutated(r) for r in replies), st.sampled_from(replies))
                                  for op, replies in valid.items()})


COUNTER_REPLY: dict[str, object] = {"move": "counter", "properties": {"golem.srv.comp.expiration": 2**40},
                                    "constraints": "", "expires_at_ms": 2**41}
REJECT_REPLY: dict[str, object] = {"move": "reject", "code": "no-capacity", "message": "full"}


async def _negotiate(w: World, rogue: Rogue, demand_id: str, offer_id: str) -> None:
    requestor = w.req.market.requestor
    assert requestor is not None
    try:
        await requestor.counter(demand_id, offer_id)
        await requestor.propose_agreement(demand_id, offer_id)
    except NegotiationFailed:
        pass


async def test_negotiation_survives_garbage_replies(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        rogue = Rogue()
        w.prov.tap._rr.register(NEGOTIATE, rogue)  # the provider turns hostile
        requestor = w.req.market.requestor
        assert requestor is not None
        demand = await requestor.create_demand({}, "")
        offer_id = next(iter(w.req.market.directory.book.live(0))).offer_id  # type: ignore[attr-defined]
        token = trio.lowlevel.current_trio_token()

        @FUZZ
        @given(_replies({"counter": [COUNTER_REPLY, REJECT_REPLY],
                         "propose_agreement": [{"move": "approve", "signature": b"\x00" * 64}, REJECT_REPLY]}))
        @example({"counter": {"move": "reject", "code": ""}, "propose_agreement": {}})  # a reject without a reason
        @example({"counter": {"move": "reject", "code": [1], "message": {}}, "propose_agreement": {}})
        def one(replies: dict[str, object]) -> None:
            rogue.replies = replies
            trio.from_thread.run(_negotiate, w, rogue, demand.demand_id, offer_id, trio_token=token)

        await trio.to_thread.run_sync(one)


async def test_offer_catch_up_survives_garbage_pages(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        offer_raw = next(iter(w.req.market.directory.book.live(0))).raw  # type: ignore[attr-defined]
        rogue = Rogue()
        w.prov.tap._rr.register(SYNC, rogue)  # the provider's catch-up pages turn hostile
        token = trio.lowlevel.current_trio_token()
        page = {"offers": [offer_raw], "next": None}

        @FUZZ
        @given(st.one_of(cbor_values, mutated(page), mutated({"offers": [offer_raw, b"\x00"], "next": "z" * 64})))
        def one(reply: object) -> None:
            rogue.replies = {"None": reply}  # sync requests carry no op
            trio.from_thread.run(w.req.market.directory._sync_from, w.prov.key.node_id, "public", trio_token=token)

        await trio.to_thread.run_sync(one)


async def test_blob_fetch_survives_garbage_answers(tmp_path: Path) -> None:
    """A provider whose blob streams answer garbage: a bad header, a size that lies, too few or too many
    bytes. The fetch raises TransferRefused or a RequestError, and never writes past its limit."""
    limit = 4 * 2**20
    async with world(tmp_path) as w:
        answer: list[bytes] = [b""]

        async def rogue(stream: ByteStream) -> None:
            while await stream.receive_some(4096):
                pass
            await stream.send_all(answer[0])
            await stream.send_eof()

        bulk_for(w.prov.tap).set_handler(BLOB_STREAM, rogue, per_peer=BLOB_PER_PEER, total=BLOB_TOTAL)
        token = trio.lowlevel.current_trio_token()
        dest = tmp_path / "blob.part"

        async def fetch(expected: int | None) -> None:
            try:
                with trio.fail_after(20):
                    await fetch_blob(w.req.tap, w.prov.key.node_id, "file:" + "ab" * 32, dest, max_size=limit,
                                     expected_size=expected)
            except (TransferRefused, RequestError):
                pass
            assert not dest.exists() or dest.stat().st_size <= limit

        def framed(header: object, data: bytes) -> bytes:
            return encode_frame(encode(header)) + data

        @FUZZ
        @given(st.one_of(
            st.builds(framed, cbor_values, st.binary(max_size=64)),
            st.builds(framed, mutated({"ok": {"size": 5}}), st.binary(max_size=64)),
            st.builds(lambda n, d: framed({"ok": {"size": n}}, d), st.integers(-5, 2 * limit), st.binary(max_size=300)),
            st.builds(lambda c, m: framed({"err": {"code": c, "msg": m}}, b""), st.text(max_size=10), st.text(max_size=10)),
            st.binary(max_size=64),
        ), st.one_of(st.none(), st.integers(0, 300)))
        def one(raw: bytes, expected: int | None) -> None:
            answer[0] = raw
            trio.from_thread.run(fetch, expected, trio_token=token)

        await trio.to_thread.run_sync(one)
        assert isinstance(StreamFailed("x"), RequestError)
