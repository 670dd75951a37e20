"""Fuzz every request/response handler of ours with garbage from a peer: market offer sync,
negotiate, proposal, activity, payment and blob, on two full nodes (market, exe-unit, payments,
wired like the daemon) with an agreement between them, on the in-memory network twin.

The invariant is the server's: a handler answers, or raises :class:`RequestRejected` (a coded error
reply) or :class:`WireError` (``bad_request``), and what it answers can be encoded within the
protocol's response limit. Anything else would reach the peer as ``internal``: a bug. Peer exchange
has no handler on the twin; its decoder is fuzzed in ``test_net.py``.

The nodes stay up for all of a test's examples: hypothesis runs on a worker thread and calls into
the trio run that holds them (``trio.from_thread``), so an example costs a handler call, not a node.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from exeunit.errors import RuntimeFailure
from market.capacity import Capacity
from market.presets import Preset
from payments.channel_open import seal_channel_open
from payments.debit_note import Usage, sign_debit_note
from payments.voucher import ChannelTerms, sign_voucher
from yagna.activity_service import ActivityConfig, ActivityService
from yagna.activity_service.protocol import ACTIVITY, BLOB_STREAM
from yagna.core.errors import EncodeError, WireError
from yagna.core.identity import NodeKey
from yagna.core.wire import encode
from yagna.market_service import MarketConfig, MarketService
from yagna.market_service.offers import SYNC
from yagna.market_service.protocol import NEGOTIATE, PROPOSAL
from yagna.net.errors import RequestRejected
from yagna.net.memory import MemoryHub
from yagna.net.reqresp import Handler, ProtocolSpec, Request
from yagna.node import _connect_payments
from yagna.payment_service import PaymentConfig, PaymentService
from yagna.payment_service.protocol import PAYMENT
from yagna.store import Store
from yagna.store.payment_repos import SqliteLedger

from .strategies import FUZZ, cbor_values, mutated

NET = "fuzz-net"
HEX = "ab" * 32


class NoRuntime:
    """A runtime that has every image and can run nothing: the handlers' checks are what is fuzzed."""

    async def has_image(self, image_id: str) -> bool:
        return True

    async def leftovers(self, node_id: str) -> list[tuple[str, dict[str, str]]]:
        return []

    async def remove_orphan_volumes(self, node_id: str) -> list[str]:
        return []

    async def remove(self, container_id: str) -> None:
        return None

    async def resolve_image(self, image_ref: str) -> str:
        return image_ref

    async def peer_images(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeFailure(f"fuzz: no runtime ({name})")

        return refuse


class Tap:
    """The twin's request/response endpoint, keeping the handlers registered on it."""

    def __init__(self, rr: Any) -> None:
        self._rr = rr
        self.handlers: dict[str, tuple[ProtocolSpec, Handler]] = {}

    def register(self, spec: ProtocolSpec, handler: Handler) -> None:
        self.handlers[spec.name] = (spec, handler)
        self._rr.register(spec, handler)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rr, name)


class Node:
    def __init__(self, key: NodeKey, tap: Tap, market: MarketService, activity: ActivityService,
                 payments: PaymentService) -> None:
        self.key, self.tap, self.market, self.activity, self.payments = key, tap, market, activity, payments


class World:
    def __init__(self, prov: Node, req: Node, mallory: NodeKey, agreement_id: str, samples: dict[str, Any]) -> None:
        self.prov, self.req, self.mallory, self.agreement_id, self.samples = prov, req, mallory, agreement_id, samples

    @property
    def peers(self) -> list[str]:
        return [self.prov.key.node_id, self.req.key.node_id, self.mallory.node_id]


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    hub = MemoryHub()
    mallory = NodeKey.generate()
    hub.node(mallory.node_id)
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        nodes = {}
        for name, sells in (("prov", True), ("req", False)):
            key = NodeKey.generate()
            net = hub.node(key.node_id)
            tap = Tap(net.rr)
            store = await stack.enter_async_context(Store.open_ctx(tmp_path / f"{name}.db"))
            market = MarketService(key=key, config=MarketConfig(network_id=NET, provider=sells, requestor=not sells,
                                                                capacity=Capacity(4, 4.0, 40.0)),
                                   rr=tap, gossip=net.gossip, peers=net.peers, store=store)
            activity = ActivityService(node_id=key.node_id, config=ActivityConfig(
                network_id=NET, provider=sells, requestor=not sells, work_dir=tmp_path / name, keepalive_s=30.0),
                rr=tap, store=store, runtime=NoRuntime(), key=key)  # type: ignore[arg-type]
            payments = PaymentService(key=key, config=PaymentConfig(network_id=NET, provider=sells, requestor=not sells),
                                      rr=tap, store=store, driver=SqliteLedger(store))
            _connect_payments(market, activity, payments)
            for svc in (net.peers, market, activity, payments):
                await nursery.start(svc.run)
            nodes[name] = Node(key, tap, market, activity, payments)
        prov, req = nodes["prov"], nodes["req"]
        await prov.market.provider.create_preset(Preset(name="small", threads=1, mem_gib=0.25, storage_gib=0.25))  # type: ignore[union-attr]
        with trio.fail_after(5):
            while len(req.market.directory.book) < 1:
                await trio.sleep(0.01)
        offer = next(iter(req.market.directory.book.live(0)))  # type: ignore[attr-defined]
        demand = await req.market.requestor.create_demand({}, "")  # type: ignore[union-attr]
        result = await req.market.requestor.negotiate(demand.demand_id)  # type: ignore[union-attr]
        agreement_id = result["agreements"][0]["agreement_id"]
        await req.payments.fund(10**18)
        activity_id = "0" * 32
        with contextlib.suppress(Exception):  # the provider may refuse without a runtime; the ids still serve
            activity_id = (await req.activity.requestor.create(agreement_id))["activity_id"]  # type: ignore[union-attr]
        channel = next((c for c in await req.payments.channels() if c["agreement_id"] == agreement_id), None)
        channel_id, deposit = (channel["channel_id"], channel["deposit_units"]) if channel else ("ch-1", 10**15)
        samples = _samples(prov.key, req.key, agreement_id, activity_id, offer.offer_id, offer.raw, demand.demand_id,
                           channel_id, deposit)
        try:
            yield World(prov, req, mallory, agreement_id, samples)
        finally:
            nursery.cancel_scope.cancel()


def _samples(prov: NodeKey, req: NodeKey, agreement_id: str, activity_id: str, offer_id: str, offer_raw: bytes,
             demand_id: str, channel_id: str, deposit: int) -> dict[str, Any]:
    """Valid requests (for this world's agreement, activity and channel) to mutate."""
    terms = ChannelTerms(network_id=NET, driver="testnet-ledger", channel_id=channel_id,
                         agreement_id=agreement_id, payer=req.node_id, payee=prov.node_id, currency="tGLM", deposit=deposit)
    channel_open = seal_channel_open(req, network_id=NET, driver="testnet-ledger", channel_id=channel_id,
                                     agreement_id=agreement_id, payee=prov.node_id, currency="tGLM", deposit=deposit)
    note = sign_debit_note(prov, terms, seq=1, amount_due=10, usage=Usage(1000, 10, 1), issued_at_ms=1)
    return {
        SYNC.name: [{"subnet": "public", "after": "", "limit": 10}],
        NEGOTIATE.name: [
            {"op": "counter", "nid": "n1", "offer_id": offer_id, "properties": {"golem.srv.comp.expiration": 2**40},
             "constraints": "(golem.inf.mem.gib>=0.1)", "expires_at_ms": 2**41},
            {"op": "propose_agreement", "nid": "n1", "valid_until_ms": 2**41, "body": b"\xa0", "signature": b"\x00" * 64},
            {"op": "reject", "nid": "n1", "reason": "no"},
            {"op": "terminate", "agreement_id": agreement_id, "reason": "done"},
        ],
        PROPOSAL.name: [{"demand_id": demand_id, "offer": offer_raw}],
        ACTIVITY.name: [
            {"op": "create", "agreement_id": agreement_id},
            {"op": "exec", "activity_id": activity_id, "script": [{"deploy": {"image": "sha256:" + HEX}}, {"start": {}},
                                                                   {"run": {"argv": ["true"]}}]},
            {"op": "events", "activity_id": activity_id, "batch_id": "b", "after": 0, "wait_ms": 0},
            {"op": "state", "activity_id": activity_id},
            {"op": "destroy", "activity_id": activity_id},
        ],
        PAYMENT.name: [
            {"op": "open", "channel_open": channel_open},
            {"op": "voucher", "raw": sign_voucher(req, terms, 1, 5)},
            {"op": "debit_note", "channel_id": terms.channel_id, "raw": note},
            {"op": "notice", "agreement_id": agreement_id, "kind": "paused", "reason": "late"},
        ],
    }


async def _serve(spec: ProtocolSpec, handler: Handler, peer: str, payload: object) -> None:
    with trio.move_on_after(spec.timeout):  # the server's own deadline: then it resets the stream
        try:
            result = await handler(Request(peer, spec.name, payload))
        except (RequestRejected, WireError):
            return
        try:
            reply = encode({"ok": result})
        except EncodeError as exc:
            raise AssertionError(f"{spec.name} answered {payload!r:.200} with a value that cannot be encoded") from exc
        assert len(reply) <= spec.max_response_size, f"{spec.name}: a {len(reply)}-byte answer"


async def fuzz(w: World, node: Node, spec: ProtocolSpec) -> None:
    """Hypothesis on a worker thread: each example is one request to ``node``'s handler for ``spec``."""
    _, handler = node.tap.handlers[spec.name]
    token = trio.lowlevel.current_trio_token()
    valid = w.samples[spec.name]
    payloads = st.one_of(cbor_values, *(mutated(m) for m in valid), st.sampled_from(valid))

    @FUZZ
    @given(payloads, st.sampled_from([p for p in w.peers if p != node.key.node_id]))  # never itself
    def one(payload: object, peer: str) -> None:
        trio.from_thread.run(_serve, spec, handler, peer, payload, trio_token=token)

    await trio.to_thread.run_sync(one)


async def test_market_handlers_answer_garbage_with_typed_errors(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await fuzz(w, w.prov, SYNC)
        await fuzz(w, w.req, PROPOSAL)
        await fuzz(w, w.prov, NEGOTIATE)
        await fuzz(w, w.req, NEGOTIATE)


async def test_activity_and_blob_handlers_answer_garbage_with_typed_errors(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await fuzz(w, w.prov, ACTIVITY)
        await fuzz(w, w.req, ACTIVITY)
        await fuzz_blob_server(w, w.prov, w.req)
        await fuzz_blob_server(w, w.req, w.prov)


async def fuzz_blob_server(w: World, server: Node, client: Node) -> None:
    """The blob server (a stream, not request/response): garbage requests get an error frame, an end or a
    reset, never a handler failure; a valid request for a blob nobody offered gets ``not-found``."""
    from yagna.core.wire import encode
    from yagna.net.bulk import StreamFailed, bulk_for
    from yagna.net.framing import encode_frame

    token = trio.lowlevel.current_trio_token()
    bulk = bulk_for(client.tap)
    valid = [{"blob_id": "file:" + HEX}, {"blob_id": "image:sha256:" + HEX}]

    async def send(raw: bytes) -> None:
        stream = await bulk.open(server.key.node_id, BLOB_STREAM)
        try:
            with trio.fail_after(15):  # the server answers or gives up on its own (10 s for a request)
                await stream.send_all(raw)
                await stream.send_eof()
                got = b""
                while chunk := await stream.receive_some(4096):
                    got += chunk
        except StreamFailed:
            return
        assert len(got) < 2048, got[:100]  # an error frame at most: nothing was offered to anyone

    requests = st.one_of(
        st.builds(lambda v: encode_frame(encode(v)), st.one_of(cbor_values, *(mutated(m) for m in valid))),
        st.binary(max_size=64),
        st.sampled_from([encode_frame(encode(v)) for v in valid]),
    )

    @FUZZ
    @given(requests)
    def one(raw: bytes) -> None:
        trio.from_thread.run(send, raw, trio_token=token)

    await trio.to_thread.run_sync(one)
    assert bulk_for(server.tap).handler_failures == 0


async def test_payment_handlers_answer_garbage_with_typed_errors(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await fuzz(w, w.prov, PAYMENT)
        await fuzz(w, w.req, PAYMENT)
