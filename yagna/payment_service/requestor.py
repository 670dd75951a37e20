"""The payer (requestor) side: lock a deposit per agreement, answer debit notes with vouchers, settle.

Before the first activity of an agreement (:meth:`RequestorPayments.ensure_channel`)
the deposit is locked through the driver and the provider is told with a
signed channel-open. Each debit note is checked against our own meter of the
agreement's activities (:class:`payments.meter.OwnMeter`, stored with the
channel so it survives restarts; :func:`payments.debit_note.decide_payment`:
never more than our estimate, never more than the deposit).

A voucher takes one path, whatever signed it (a debit note's answer, a bonus,
a restart): it is stored durably first, then the channel's delivery task sends
it until the provider's reply acknowledges it (the provider replies only after
its own commit). Each channel's task runs in its own cancel scope: settling the
channel cancels it, and its failure is caught at the channel's boundary.

When the agreement has ended and the invoice is paid (or did not come within
``settle_wait_s``), the channel is settled on our side: what we signed is
spent, the rest of the deposit is free again.
"""

from __future__ import annotations

import dataclasses

import functools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from market.agreement import verify_agreement
from market.pricing import LinearPricing
from market.properties import SRV_COMP_EXPIRATION
from payments.channel import PayerChannel
from payments.channel_open import seal_channel_open
from payments.debit_note import DebitNote, decide_payment, open_debit_note
from payments.driver import SettlementDriver
from payments.errors import (
    ChainUnavailable,
    ChannelError,
    DebitNoteRejected,
    MessageRejected,
    PaymentError,
    SettlementPending,
)
from payments.evm import binding
from payments.messages import (
    ChannelOpenMsg,
    DebitNoteAnswer,
    DebitNoteMsg,
    HelloMsg,
    NoticeMsg,
    TopUpMsg,
    VoucherMsg,
    decode_hello_answer,
    decode_voucher_ack,
    encode_request,
)
from payments.meter import MeterRecord, OwnMeter
from payments.states import ChannelState, InvoiceStatus, Role
from payments.voucher import ChannelTerms
from yagna.core.identity import NodeKey
from yagna.core.money import format_amount
from yagna.net.errors import RemoteError, RequestError, RequestRejected
from yagna.payment_service.protocol import (
    PAYMENT,
    SettlementInfo,
    channel_expiry,
    pricing_of,
    terms_bytes,
    terms_from_bytes,
    threads_of,
)
from yagna.store.market_repos import Agreements
from yagna.store.payment_repos import Invoices, PayChannels

log = logging.getLogger("yagna.payment.requestor")

SLACK_MS = 2000
"""Per activity: how far the provider's clock may run ahead of ours before we pay less than it asks."""

Elapsed = Callable[[str], tuple[int, int]]
"""agreement id -> (milliseconds of activity life by our clock, activities)."""


class PaymentRequired(PaymentError):
    """The channel for an agreement could not be opened (funds, the provider refused, unreachable)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


MAX_RECEIVED = 10_000
"""Debit notes and invoices kept for Golem's API (the oldest forgotten first)."""


@dataclass
class ReceivedNote:
    """A debit note (or, ``final``, an invoice) as Golem's API shows it to its client."""

    note_id: str
    agreement_id: str
    provider: str
    seq: int
    amount_due: int
    final: bool
    received_ms: int
    acceptable: int
    """The cumulative amount our own meter allows for it (what an accept may sign at most)."""
    status: str = "RECEIVED"
    """RECEIVED, ACCEPTED or REJECTED (it asked more than our meter allows)."""


ANSWER_GRACE_S = 0.02
"""How long the voucher message waits after a debit-note answer carried the same voucher."""


@dataclass
class _Payer:
    core: PayerChannel
    pricing: LinearPricing
    threads: int
    provider: str
    confirmed: bool = False
    invoice_paid: bool = False
    ended_seen: float | None = None
    notice: str | None = None
    bonus: int = 0
    """Paid on top of metered usage (``pay_bonus``); kept out of the usage accounting."""
    due: int = 0
    """The largest amount a debit note of the provider asked for (what the agreement cost so far)."""
    untold_top_up: bool = False
    """A top-up raised the deposit and the provider has not acknowledged it yet (re-sent with vouchers)."""
    meter: OwnMeter = field(default_factory=OwnMeter)
    """Our own clock of the agreement's activities (stored with the channel: it survives restarts)."""
    lock: trio.Lock = field(default_factory=trio.Lock)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    """The channel's own tasks (voucher delivery); cancelled when the channel is settled."""
    kick: trio.Event = field(default_factory=trio.Event)
    """Set when a new voucher is stored: deliver it now, not at the next retry."""
    deliver_after: float = 0.0
    """A voucher that went out in a debit-note answer is sent as its own message (the acknowledged
    copy) only after this (trio time): the provider is storing it, off that round trip's path."""
    failures: int = 0
    """Unexpected errors caught at the channel's boundary."""


class RequestorPayments:
    def __init__(self, *, key: NodeKey, network_id: str, rr, driver: SettlementDriver,  # type: ignore[no-untyped-def]
                 channels: PayChannels, invoices: Invoices, agreements: Agreements, currency: str = "tGLM",
                 resend_s: float = 2.0, settle_wait_s: float = 10.0, withhold: bool = False,
                 settlement: SettlementInfo | None = None) -> None:
        self._key = key
        self.settlement = settlement
        """On a chain: our binding, chain id and contract (None on the ledger)."""
        self._settling: dict[str, tuple[str, int]] = {}
        """channel id -> (agreement id, amount signed): ended, waiting for the chain to be final."""
        self._network_id = network_id
        self._rr = rr
        self.driver = driver
        self._channels = channels
        self._invoices = invoices
        self._agreements = agreements
        self._currency = currency
        self._resend_s = resend_s
        self._settle_wait_s = settle_wait_s
        self.withhold = withhold
        """Test-only fault: answer debit notes without paying (``--test-fault withhold-payments``)."""
        self.elapsed: Elapsed | None = None
        self.clock: Callable[[], float] = time.time
        """Wall clock (seconds): the own meter counts a restart's downtime with it."""
        self._payers: dict[str, _Payer] = {}  # by agreement id
        self.client_accepts: set[str] = set()
        """Agreements whose debit notes wait for the client's accept (Golem's API, yagna.api.golem)
        instead of being paid by our own meter at once; unaccepted, they fall to the provider's
        enforcement like any unpaid note."""
        self.deposit_caps: dict[str, int] = {}
        """agreement id -> the most its deposit may lock (what is left of the Golem allocation it
        was made under); the deposit is the worst case of the agreement, capped by this."""
        self.received: dict[str, ReceivedNote] = {}
        self.received_changed = trio.Event()
        self._wake = trio.Event()
        self._opening: dict[str, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for row in await self._channels.list(role=Role.PAYER, state=ChannelState.OPEN):
            agreement_row = await self._agreements.get(row.agreement_id)
            if agreement_row is None:
                continue
            terms = terms_from_bytes(row.terms)
            core = PayerChannel(terms, self._key, self._proof(terms.channel_id))
            if row.best_voucher is not None:
                core = PayerChannel.from_record(terms, self._key, {"last_seq": row.best_seq, "last_amount": row.best_amount,
                                                                   "last": row.best_voucher, "acked_seq": row.acked_seq},
                                                self._proof(terms.channel_id))
            agreement = verify_agreement(agreement_row.raw, network_id=self._network_id)
            payer = _Payer(core, pricing_of(agreement), threads_of(agreement), row.peer_id, confirmed=True,
                           meter=OwnMeter(await self._channels.get_meter(row.channel_id)))
            # The exe-unit side started its clock again with this process: go on from the stored meter.
            elapsed_ms, activities = self._reading(row.agreement_id)
            payer.meter.resume(now_ms=self._now_ms(), elapsed_ms=elapsed_ms, activities=activities)
            await self._channels.set_meter(row.channel_id, payer.meter.record)
            self._payers[row.agreement_id] = payer
        for row in await self._channels.list(role=Role.PAYER, state=ChannelState.CLOSING):
            self._settling[row.channel_id] = (row.agreement_id, row.best_amount)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for payer in self._payers.values():
                nursery.start_soon(self._channel_task, payer)
            nursery.start_soon(self._loop)
            task_status.started()
            await trio.sleep_forever()

    # -- opening -----------------------------------------------------------------------
    async def ensure_channel(self, agreement_id: str) -> None:
        """Open (or finish opening) the agreement's channel; :class:`PaymentRequired` if it cannot be."""
        lock = self._opening.setdefault(agreement_id, trio.Lock())
        async with lock:
            payer = self._payers.get(agreement_id)
            if payer is not None and payer.confirmed:
                return
            if payer is None:
                payer = await self._lock_deposit(agreement_id)
            raw = seal_channel_open(self._key, network_id=self._network_id, driver=self.driver.name,
                                    channel_id=payer.core.terms.channel_id, agreement_id=agreement_id,
                                    payee=payer.provider, currency=self._currency, deposit=payer.core.terms.deposit)
            bound = self.settlement.binding if self.settlement else b""
            try:
                await self._rr.request(payer.provider, PAYMENT, encode_request(ChannelOpenMsg(raw, agreement_id, bound)))
            except RemoteError as exc:
                raise PaymentRequired(exc.code, f"the provider refused the payment channel: {exc.message}") from None
            except RequestError as exc:
                raise PaymentRequired("provider-unreachable", f"cannot open the payment channel: {exc}") from None
            payer.confirmed = True
            payer.kick.set()  # a bonus signed before the channel was confirmed goes out now

    async def _lock_deposit(self, agreement_id: str) -> _Payer:
        row = await self._agreements.get(agreement_id)
        if row is None or row.role != "requestor" or row.state != "approved":
            raise PaymentRequired("unknown-agreement", f"no approved agreement {agreement_id!r} of ours")
        agreement = verify_agreement(row.raw, network_id=self._network_id)
        pricing, threads = pricing_of(agreement), threads_of(agreement)
        expires = agreement.terms.get(SRV_COMP_EXPIRATION, agreement.demand_properties.get(SRV_COMP_EXPIRATION))
        lifetime_s = max(60, (int(expires) - int(time.time() * 1000)) // 1000) if isinstance(expires, int) else 3600
        # The worst case over the agreement's whole life: every thread busy all the time.
        deposit = max(1, pricing.estimate(threads, lifetime_s))
        cap = self.deposit_caps.get(agreement_id)
        if cap is not None:
            if cap <= 0:
                raise PaymentRequired("allocation-spent", "the allocation this agreement was made under has nothing left")
            deposit = min(deposit, cap)
        payer_account, payee_account, expiry = self._key.node_id, row.peer_id, 0
        if self.settlement is not None:
            payer_account = self.driver.account_of(self._key.node_id)
            payee_account = await self._provider_account(row.peer_id, agreement_id)
            expiry = channel_expiry(int(time.time()), lifetime_s)
        try:
            info = await self.driver.lock_deposit(secrets.token_hex(16), payer_account, payee_account, deposit,
                                                  expiry=expiry)
        except PaymentError as exc:
            code = getattr(exc, "code", "payment-error")
            raise PaymentRequired(code, f"cannot lock a deposit of {format_amount(deposit)} for this agreement: {exc}"
                                  " (on a test network: yagna payment fund --amount 10)") from None
        channel_id = info.channel_id
        chain = self.settlement is not None
        terms = ChannelTerms(self._network_id, self.driver.name, channel_id, agreement_id, self._key.node_id,
                             row.peer_id, self._currency, deposit, payer_account=payer_account if chain else "",
                             payee_account=payee_account if chain else "", expiry=info.expiry if chain else 0)
        await self._channels.insert(channel_id, agreement_id, Role.PAYER, row.peer_id, terms_bytes(terms), deposit)
        payer = _Payer(PayerChannel(terms, self._key, self._proof(channel_id)), pricing, threads, row.peer_id)
        self._payers[agreement_id] = payer
        assert self._nursery is not None, "run() starts before any channel opens"
        self._nursery.start_soon(self._channel_task, payer)
        log.info("deposit %d locked in channel %s for agreement %s", deposit, channel_id[:12], agreement_id[:12])
        return payer

    def _proof(self, channel_id: str) -> Callable[[int], bytes] | None:
        if self.settlement is None:
            return None
        return functools.partial(self.driver.voucher_proof, channel_id)

    async def _provider_account(self, provider: str, agreement_id: str) -> str:
        """Ask the provider where it settles; its binding must verify and its chain and contract be ours."""
        assert self.settlement is not None
        try:
            answer = decode_hello_answer(await self._rr.request(provider, PAYMENT, encode_request(HelloMsg(agreement_id))))
        except RemoteError as exc:
            raise PaymentRequired(exc.code, f"the provider would not say where it settles: {exc.message}") from None
        except RequestError as exc:
            raise PaymentRequired("provider-unreachable", f"cannot reach the provider: {exc}") from None
        except MessageRejected as exc:
            raise PaymentRequired("bad-answer", f"the provider's settlement answer: {exc}") from None
        mine = (self.driver.name, self.settlement.chain_id, self.settlement.contract.lower())
        theirs = (answer.driver, answer.chain_id, answer.contract.lower())
        if theirs != mine:
            raise PaymentRequired("wrong-chain", f"the provider settles with {answer.driver} on chain {answer.chain_id} "
                                  f"contract {answer.contract or '-'}; this node with {mine[0]} on chain {mine[1]} "
                                  f"contract {self.settlement.contract}")
        try:
            return binding.verify(answer.binding, provider).address
        except binding.BindingError as exc:
            raise PaymentRequired("bad-binding", f"the provider's settlement binding: {exc}") from None

    # -- requests from the provider ---------------------------------------------------------
    def _by_channel(self, peer: str, channel_id: object) -> _Payer:
        payer = next((p for p in self._payers.values()
                      if p.core.terms.channel_id == channel_id and p.provider == peer), None)
        if payer is None:
            raise RequestRejected("unknown-channel", "no open channel with you under this id")
        return payer

    async def on_debit_note(self, peer: str, msg: DebitNoteMsg) -> DebitNoteAnswer:
        """Judge the note; a voucher it earns is stored, then delivered by the channel's task."""
        payer = self._by_channel(peer, msg.channel_id)
        try:
            note = open_debit_note(msg.raw, terms=payer.core.terms)
        except DebitNoteRejected as exc:
            raise RequestRejected(exc.code, str(exc)) from None
        async with payer.lock:
            payer.due = max(payer.due, note.amount_due)
            meter_moved = self._observe_only(payer)
            estimate = self._estimate(payer, note)
            decision = decide_payment(note, own_estimate=estimate, last_signed=payer.core.last_amount - payer.bonus,
                                      deposit=payer.core.terms.deposit - payer.bonus, tolerance=0)
            signed: bytes | None = None
            if note.agreement_id in self.client_accepts:
                self._receive(note, peer, decision.voucher_amount, decision.accepted)
                if meter_moved:
                    await self._channels.set_meter(payer.core.terms.channel_id, payer.meter.record)
                if note.final:
                    await self._invoices.upsert(note.agreement_id, Role.PAYER, note.amount_due, InvoiceStatus.ISSUED,
                                                note.raw)
                # accepted for now: the voucher follows the client's accept (or never: enforcement). For
                # the invoice, name the seq it will carry, so the provider waits for it before redeeming.
                promised = payer.core.last_seq + 1 if note.final and decision.accepted else payer.core.last_seq
                return DebitNoteAnswer(decision.accepted, decision.code, decision.reason, promised or None, None)
            if decision.voucher_amount is not None and not self.withhold:
                # the meter reading goes into the voucher's own commit
                payer.deliver_after = trio.current_time() + ANSWER_GRACE_S
                signed = await self._sign(payer, decision.voucher_amount + payer.bonus,
                                          meter=payer.meter.record if meter_moved else None)
            elif meter_moved:
                await self._channels.set_meter(payer.core.terms.channel_id, payer.meter.record)
            if note.final:
                payer.invoice_paid = decision.accepted and not self.withhold
                await self._invoices.upsert(note.agreement_id, Role.PAYER, note.amount_due,
                                            InvoiceStatus.PAID if payer.invoice_paid else InvoiceStatus.ISSUED, note.raw)
                if payer.invoice_paid:
                    self._wake.set()
        if not decision.accepted:
            log.warning("debit note %d of %s rejected: %s", note.seq, note.agreement_id[:12], decision.reason)
        return DebitNoteAnswer(decision.accepted, decision.code, decision.reason, payer.core.last_seq or None,
                               signed)

    def _receive(self, note: DebitNote, provider: str, acceptable: int | None, ok: bool) -> None:
        import hashlib

        note_id = hashlib.sha256(note.raw).hexdigest()[:32]
        if note_id not in self.received:
            self.received[note_id] = ReceivedNote(note_id, note.agreement_id, provider, note.seq, note.amount_due,
                                                  note.final, int(time.time() * 1000), acceptable or 0,
                                                  "RECEIVED" if ok else "REJECTED")
            while len(self.received) > MAX_RECEIVED:
                del self.received[next(iter(self.received))]
        self.received_changed.set()
        self.received_changed = trio.Event()

    async def accept_note(self, note_id: str, amount: int) -> ReceivedNote:
        """The client accepts a debit note or invoice for ``amount`` (cumulative): sign a voucher for
        it, never above what our own meter allows for that note (nor the deposit)."""
        rec = self.received.get(note_id)
        if rec is None:
            raise PaymentRequired("unknown-note", f"no debit note or invoice {note_id!r}")
        if rec.status == "REJECTED":
            raise PaymentRequired("above-agreed-price", "this note asked more than the agreed price of the usage "
                                  "we measured; it cannot be accepted")
        payer = self._payers.get(rec.agreement_id)
        if payer is None:
            if rec.status == "ACCEPTED":
                return rec
            raise PaymentRequired("channel-closed", f"the payment channel of agreement {rec.agreement_id} is settled")
        async with payer.lock:
            target = min(amount, rec.acceptable) + payer.bonus
            if target > payer.core.last_amount:
                await self._sign(payer, min(target, payer.core.terms.deposit))
            rec.status = "ACCEPTED"
            if rec.final:
                payer.invoice_paid = True
                await self._invoices.upsert(rec.agreement_id, Role.PAYER, rec.amount_due, InvoiceStatus.PAID)
                self._wake.set()
        return rec

    def account_of_channel(self, agreement_id: str) -> tuple[str, str]:
        """(payer account, payee account) of an agreement's channel (node ids on the ledger)."""
        payer = self._payers.get(agreement_id)
        if payer is None:
            return "", ""
        t = payer.core.terms
        return t.payer_account or t.payer, t.payee_account or t.payee

    async def _sign(self, payer: _Payer, amount: int, *, meter: MeterRecord | None = None) -> bytes:
        """Sign ``amount`` under the next seq and store it durably (with ``meter``, if given); the
        channel's task delivers it."""
        try:
            seq, voucher = payer.core.next_voucher(amount)
        except ChannelError as exc:
            raise RequestRejected("channel-error", str(exc)) from None
        # Stored before it is sent: one seq never carries two amounts, and it is re-sent until acknowledged.
        await self._channels.save_signed(payer.core.terms.channel_id, seq, amount, voucher, meter=meter)
        payer.kick.set()
        return voucher

    async def pay_bonus(self, agreement_id: str, amount: int) -> dict[str, Any]:
        """Pay ``amount`` on top of the metered usage now (e.g. a verified task's bonus share)."""
        payer = self._payers.get(agreement_id)
        if payer is None:
            raise PaymentRequired("unknown-channel", f"no open payment channel for agreement {agreement_id!r}")
        if amount <= 0:
            raise PaymentRequired("bad-amount", "a bonus must be positive")
        async with payer.lock:
            total = payer.core.last_amount + amount
            if total > payer.core.terms.deposit:
                raise PaymentRequired("above-deposit", f"the deposit ({format_amount(payer.core.terms.deposit)}) "
                                      "cannot cover this bonus")
            await self._sign(payer, total)
            payer.bonus += amount
        return {"agreement_id": agreement_id, "bonus": format_amount(payer.bonus), "signed": format_amount(total)}

    async def top_up(self, agreement_id: str, amount: int) -> dict[str, Any]:
        """Lock ``amount`` more into the agreement's channel (a lease that runs on) and tell the provider;
        vouchers may then go up to the new deposit. The provider hears it now or with the next voucher."""
        payer = self._payers.get(agreement_id)
        if payer is None:
            raise PaymentRequired("unknown-agreement", f"no open payment channel for agreement {agreement_id!r}")
        async with payer.lock:
            channel_id = payer.core.terms.channel_id
            try:
                info = await self.driver.top_up(channel_id, amount)
            except PaymentError as exc:
                code = getattr(exc, "code", "payment-error")
                raise PaymentRequired(code, f"cannot top up the deposit by {format_amount(amount)}: {exc}"
                                      " (on a test network: yagna payment fund --amount 10)") from None
            terms = dataclasses.replace(payer.core.terms, deposit=info.deposit)
            await self._channels.set_deposit(channel_id, info.deposit, terms_bytes(terms))
            payer.core.terms = terms
            payer.untold_top_up = True
        await self._tell_top_up(payer)
        log.info("channel %s of %s topped up by %d to %d", channel_id[:12], agreement_id[:12], amount, info.deposit)
        return {"agreement_id": agreement_id, "channel_id": channel_id, "deposit": format_amount(info.deposit),
                "deposit_units": info.deposit, "provider_told": not payer.untold_top_up}

    async def _tell_top_up(self, payer: _Payer) -> None:
        terms = payer.core.terms
        with trio.move_on_after(PAYMENT.timeout):
            try:
                await self._rr.request(payer.provider, PAYMENT, encode_request(TopUpMsg(terms.channel_id, terms.deposit)))
                if payer.core.terms.deposit == terms.deposit:
                    payer.untold_top_up = False
            except RequestError as exc:
                log.info("top-up of %s not acknowledged yet: %s", terms.channel_id[:12], exc)
                payer.kick.set()

    def _estimate(self, payer: _Payer, note: DebitNote) -> int:
        """What the note's usage costs at the agreed price, capped by our own clock of the activities."""
        cap = payer.meter.cap_ms(SLACK_MS)
        if cap == 0:
            return 0
        usage = note.usage.capped(cap, payer.threads)
        return payer.pricing.cost(usage.cpu_ms, usage.duration_ms)

    def _reading(self, agreement_id: str) -> tuple[int, int]:
        return self.elapsed(agreement_id) if self.elapsed else (0, 0)

    def _now_ms(self) -> int:
        return max(0, int(self.clock() * 1000))

    async def _observe(self, payer: _Payer) -> None:
        """Read the exe-unit's clock into our own meter; store it when it moved."""
        if self._observe_only(payer):
            await self._channels.set_meter(payer.core.terms.channel_id, payer.meter.record)

    def _observe_only(self, payer: _Payer) -> bool:
        """Read the exe-unit's clock into our own meter; True if it moved (the caller stores it)."""
        elapsed_ms, activities = self._reading(payer.core.terms.agreement_id)
        return payer.meter.observe(now_ms=self._now_ms(), elapsed_ms=elapsed_ms, activities=activities)

    async def on_notice(self, peer: str, msg: NoticeMsg) -> None:
        payer = self._payers.get(msg.agreement_id)
        if payer is not None and payer.provider == peer:
            payer.notice = f"{msg.kind.value}: {msg.reason[:200]}"
            log.warning("provider says agreement %s is %s", msg.agreement_id[:12], payer.notice)
            await self._channels.set_state(payer.core.terms.channel_id, ChannelState.OPEN, payer.notice)

    # -- per channel: the one delivery path of vouchers ----------------------------------------
    async def _channel_task(self, payer: _Payer) -> None:
        """The channel's tasks, in its own cancel scope; an unexpected error stays inside the channel."""
        backoff = self._resend_s
        with payer.scope:
            while True:
                try:
                    await self._deliver(payer)
                except Exception:  # the channel's boundary: logged and retried, never the node's root
                    payer.failures += 1
                    log.exception("payment channel %s failed (%d); retrying in %.0f s",
                                  payer.core.terms.channel_id[:12], payer.failures, backoff)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 60.0)

    async def _deliver(self, payer: _Payer) -> None:
        """Send the stored, unacknowledged voucher (and an untold top-up) until the provider acknowledges it."""
        channel_id = payer.core.terms.channel_id
        while True:
            if payer.deliver_after > trio.current_time():
                await trio.sleep_until(payer.deliver_after)
            if payer.untold_top_up and payer.confirmed:
                await self._tell_top_up(payer)
            pending = payer.core.pending()
            if pending is not None and payer.confirmed:
                with trio.move_on_after(PAYMENT.timeout):
                    try:
                        reply = await self._rr.request(payer.provider, PAYMENT,
                                                       encode_request(VoucherMsg(pending, channel_id)))
                        ack = decode_voucher_ack(reply)
                        if payer.core.acked(ack.ack_seq):
                            await self._channels.set_acked(channel_id, ack.ack_seq)
                            self._wake.set()  # an ended agreement may settle now
                    except (RequestError, MessageRejected) as exc:
                        log.debug("voucher to %s not acknowledged yet: %s", payer.provider, exc)
            if (payer.core.pending() is None and not payer.untold_top_up) or not payer.confirmed:
                await payer.kick.wait()  # nothing to deliver until a new voucher is stored
            else:
                with trio.move_on_after(self._resend_s):
                    await payer.kick.wait()
            payer.kick = trio.Event()

    # -- the loop: our own meter, settle ended agreements ----------------------------------------
    async def _loop(self) -> None:
        while True:
            with trio.move_on_after(self._resend_s):
                await self._wake.wait()  # a paid invoice settles now, not at the next tick
            self._wake = trio.Event()
            for channel_id, (agreement_id, signed) in list(self._settling.items()):
                await self._finish(channel_id, agreement_id, signed)
            for agreement_id, payer in list(self._payers.items()):
                async with payer.lock:
                    await self._observe(payer)
                row = await self._agreements.get(agreement_id)
                if row is not None and row.state == "approved":
                    continue
                now = trio.current_time()
                payer.ended_seen = payer.ended_seen or now
                # Paid: settle once the provider holds the last voucher (or it did not come for it in time).
                if (payer.invoice_paid and payer.core.pending() is None) or now - payer.ended_seen >= self._settle_wait_s:
                    await self.settle(agreement_id)

    async def settle(self, agreement_id: str) -> None:
        """Our side of the end: what we signed is spent, the rest of the deposit is ours again."""
        payer = self._payers.pop(agreement_id, None)
        if payer is None:
            return
        payer.scope.cancel()  # its delivery task: what we signed counts as spent anyway
        payer.core.close()
        await self._finish(payer.core.terms.channel_id, agreement_id, payer.core.last_amount)

    async def _finish(self, channel_id: str, agreement_id: str, signed: int) -> None:
        """The driver's end of the channel; on a chain it waits (state ``closing``) for the provider's
        close or the expiry, retried from the loop and after a restart."""
        try:
            redemption = await self.driver.settle_payer(channel_id, signed)
        except (SettlementPending, ChainUnavailable) as exc:
            if channel_id not in self._settling:
                log.info("agreement %s: %s", agreement_id[:12], exc)
                await self._channels.set_state(channel_id, ChannelState.CLOSING, str(exc)[:200])
            self._settling[channel_id] = (agreement_id, signed)
            return
        self._settling.pop(channel_id, None)
        if await self._invoices.get(agreement_id) is None:
            await self._invoices.upsert(agreement_id, Role.PAYER, signed, InvoiceStatus.SETTLED)
        await self._channels.set_state(channel_id, ChannelState.CLOSED,
                                       f"spent {format_amount(signed)}, released {format_amount(redemption.released)}")
        log.info("agreement %s settled: spent %d, released %d", agreement_id[:12], signed, redemption.released)

    def live(self, agreement_id: str) -> dict[str, Any] | None:
        payer = self._payers.get(agreement_id)
        if payer is None:
            return None
        return {"signed": payer.core.last_amount, "acked_seq": payer.core.acked_seq, "notice": payer.notice,
                "asked": payer.due, "deposit": payer.core.terms.deposit}
