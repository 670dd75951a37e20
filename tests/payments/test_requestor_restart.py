"""A requestor killed mid-activity and restarted still pays for the whole time the container ran (issue 11 row 12).

The requestor's payment side is built twice over one SQLite file, as a
restarted daemon would. The exe-unit side's clock of the activity (the
``elapsed`` hook) starts again at zero in the new process; the provider's
debit notes carry the true usage. The voucher after the restart must cover
that usage, never more than the requestor's own meter allows.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from market import properties as P
from market.agreement import build_agreement, cosign, sign_agreement, verify_agreement
from market.matching import Demand, Offer
from market.pricing import LinearPricing
from payments.debit_note import Usage, sign_debit_note
from payments.messages import DebitNoteAnswer, DebitNoteMsg
from payments.voucher import ChannelTerms, Voucher, open_voucher
from yagna.core.identity import NodeKey
from yagna.payment_service.protocol import terms_from_bytes
from yagna.payment_service.requestor import SLACK_MS, RequestorPayments
from yagna.store import Store
from yagna.store.market_repos import Agreements
from yagna.store.payment_repos import Invoices, PayChannels, SqliteLedger

NET = "restart-net"
REQ = NodeKey.from_seed(b"r" * 32)
PROV = NodeKey.from_seed(b"p" * 32)
PRICING = LinearPricing(start_fee=10**15, per_cpu_sec=10**14, per_duration_sec=10**13)
T0 = 1_700_000_000.0


def _agreement() -> tuple[str, bytes]:
    demand = Demand(REQ.node_id, {P.NODE_DEBUG_SUBNET: "public"}, "()")
    offer = Offer(PROV.node_id, {**PRICING.to_properties(), P.INF_CPU_THREADS: 1}, "()")
    body = build_agreement(network_id=NET, offer_id=hashlib.sha256(b"o").hexdigest(), demand=demand, offer=offer,
                           valid_until_ms=4_000_000_000_000)
    raw = cosign(body, sign_agreement(REQ, body), sign_agreement(PROV, body))
    return verify_agreement(raw, network_id=NET).agreement_id, raw


class FakeNet:
    """The provider's end of the payment protocol: takes the channel-open and acknowledges every voucher."""

    def __init__(self) -> None:
        self.vouchers: list[Voucher] = []
        self.terms: ChannelTerms | None = None

    async def request(self, peer: str, spec: Any, msg: dict[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        if msg.get("op") == "voucher":
            assert self.terms is not None
            self.vouchers.append(open_voucher(msg["raw"], self.terms))
            return {"ack_seq": self.vouchers[-1].seq}
        return {}


class Clock:
    """The exe-unit side's reading (this process only) and the wall clock."""

    def __init__(self) -> None:
        self.wall = T0
        self.elapsed_ms = 0
        self.activities = 0

    def reading(self, agreement_id: str) -> tuple[int, int]:
        return self.elapsed_ms, self.activities


@asynccontextmanager
async def requestor(path: Path, clock: Clock, net: FakeNet) -> AsyncIterator[RequestorPayments]:
    async with Store.open_ctx(path) as store, trio.open_nursery() as nursery:
        payments = RequestorPayments(key=REQ, network_id=NET, rr=net, driver=SqliteLedger(store),
                                     channels=PayChannels(store), invoices=Invoices(store), agreements=Agreements(store),
                                     resend_s=1.0)
        payments.elapsed = clock.reading
        payments.clock = lambda: clock.wall
        await nursery.start(payments.run)
        yield payments
        nursery.cancel_scope.cancel()  # the process dies: nothing is flushed on the way out


async def _setup(path: Path, agreement_id: str, raw: bytes) -> None:
    async with Store.open_ctx(path) as store:
        await Agreements(store).insert(agreement_id=agreement_id, role="requestor", peer_id=PROV.node_id,
                                       offer_id="o", demand_id=None, state="approved", raw=raw)
        await SqliteLedger(store).fund(REQ.node_id, 10**21)


async def _note(payments: RequestorPayments, *, seq: int, ms: int, terms_raw: bytes) -> DebitNoteAnswer:
    terms = terms_from_bytes(terms_raw)
    raw = sign_debit_note(PROV, terms, seq=seq, amount_due=PRICING.cost(ms, ms), usage=Usage(ms, ms, 0),
                          issued_at_ms=int(T0 * 1000) + ms)
    return await payments.on_debit_note(PROV.node_id, DebitNoteMsg(terms.channel_id, raw))


def _live(payments: RequestorPayments, agreement_id: str) -> dict[str, Any]:
    live = payments.live(agreement_id)
    assert live is not None
    return live


async def _first_life(path: Path, clock: Clock, net: FakeNet, agreement_id: str) -> bytes:
    """Channel, one activity for 30 s, one note at 20 s, then a kill -9 at 30 s."""
    async with requestor(path, clock, net) as payments:
        await payments.ensure_channel(agreement_id)
        row = await payments._channels.by_agreement(agreement_id)
        assert row is not None
        net.terms = terms_from_bytes(row.terms)
        clock.activities = 1
        clock.wall, clock.elapsed_ms = T0 + 20, 20_000
        reply = await _note(payments, seq=1, ms=20_000, terms_raw=row.terms)
        assert reply.accepted, reply
        clock.wall, clock.elapsed_ms = T0 + 30, 30_000
        await trio.sleep(1.5)  # the meter is stored every resend_s
    return row.terms


async def test_a_restarted_requestor_pays_for_the_time_before_and_during_its_restart(tmp_path: Path,
                                                                                    autojump_clock: Any) -> None:
    path = tmp_path / "req.db"
    agreement_id, raw = _agreement()
    await _setup(path, agreement_id, raw)
    clock, net = Clock(), FakeNet()
    terms_raw = await _first_life(path, clock, net, agreement_id)
    # Restarted 10 s later: the activity is still open, the exe-unit side's clock starts at zero again.
    clock.wall, clock.elapsed_ms = T0 + 40, 0
    async with requestor(path, clock, net) as payments:
        clock.wall, clock.elapsed_ms = T0 + 50, 10_000
        reply = await _note(payments, seq=2, ms=50_000, terms_raw=terms_raw)
        assert reply.accepted, reply  # was: above-agreed-price, the voucher covered 12 s of 50
        assert _live(payments, agreement_id)["signed"] == PRICING.cost(50_000, 50_000)
        await trio.sleep(0.1)  # the voucher goes out by the one delivery path and is acknowledged
        assert net.vouchers[-1].amount == PRICING.cost(50_000, 50_000)
        assert _live(payments, agreement_id)["acked_seq"] == net.vouchers[-1].seq == reply.voucher_seq
        # Still never more than our own meter plus the slack: 50 s of life by our clock.
        clock.wall, clock.elapsed_ms = T0 + 51, 11_000
        reply = await _note(payments, seq=3, ms=60_000, terms_raw=terms_raw)
        assert not reply.accepted and reply.code == "above-agreed-price"
        assert _live(payments, agreement_id)["signed"] == PRICING.cost(51_000 + SLACK_MS, 51_000 + SLACK_MS)


async def test_an_activity_that_ended_before_the_crash_is_not_paid_for_the_downtime(tmp_path: Path,
                                                                                    autojump_clock: Any) -> None:
    path = tmp_path / "req.db"
    agreement_id, raw = _agreement()
    await _setup(path, agreement_id, raw)
    clock, net = Clock(), FakeNet()
    terms_raw = await _first_life(path, clock, net, agreement_id)
    # Restarted much later; the activity had ended (it is not open in the new process).
    clock.wall, clock.elapsed_ms, clock.activities = T0 + 3600, 0, 0
    async with requestor(path, clock, net) as payments:
        reply = await _note(payments, seq=2, ms=30_000, terms_raw=terms_raw)
        assert reply.accepted, reply  # was: nothing paid after a restart (no activity by the new process's clock)
        assert _live(payments, agreement_id)["signed"] == PRICING.cost(30_000, 30_000)
        reply = await _note(payments, seq=3, ms=3_600_000, terms_raw=terms_raw)
        assert not reply.accepted
        assert _live(payments, agreement_id)["signed"] == PRICING.cost(30_000 + SLACK_MS, 30_000 + SLACK_MS)
