"""The payee (provider) side: accept deposits, send debit notes, keep the best voucher, enforce, invoice, redeem.

Per open channel a :class:`_Payee` holds the channel core (:class:`payments.PayeeChannel`)
and the enforcement rules (:class:`payments.enforcement.Enforcement`). One loop
ticks every ``tick_s``: it sends the debit notes that are due (one at a time
per channel), applies the enforcement steps (pause the agreement's containers,
resume them, terminate the agreement with a coded reason), and invoices and
redeems the channels of ended agreements. Each channel's work runs in the
channel's own cancel scope, behind a boundary that keeps its failure inside
the channel.

Vouchers arrive one way only, as ``voucher`` messages; the reply acknowledges
a voucher only after ``save_best`` committed it durably. The answer to a debit
note names the voucher that pays it, and the invoice is redeemed once that
voucher arrived (or did not, within the protocol's timeout).
"""

from __future__ import annotations

import dataclasses

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from market.agreement import verify_agreement
from market.pricing import LinearPricing
from payments.channel import Outcome, PayeeChannel
from payments.channel_open import ChannelOpenRejected, open_channel_open
from payments.evm import binding
from payments.messages import (
    ChannelOpenMsg,
    HelloAnswer,
    HelloMsg,
    DebitNoteMsg,
    TopUpMsg,
    NoticeKind,
    NoticeMsg,
    VoucherAck,
    VoucherMsg,
    decode_answer,
    encode_request,
)
from payments.debit_note import Usage, sign_debit_note
from payments.driver import SettlementDriver
from payments.enforcement import Action, Enforcement, EnforcementState
from payments.errors import ChainUnavailable, DriverError, MessageRejected, VoucherRejected
from payments.states import ChannelState, InvoiceStatus, NoteStatus, Role
from payments.voucher import ChannelTerms
from yagna.core import wire
from yagna.core.identity import NodeKey
from yagna.core.money import format_amount
from yagna.market_service.requestor import NegotiationFailed
from yagna.metrics.histogram import Histogram
from yagna.net.errors import RemoteError, RequestError, RequestRejected
from yagna.payment_service.protocol import (
    MIN_CHANNEL_LIFE_S,
    PAYMENT,
    SettlementInfo,
    close_margin,
    payment_terms,
    pricing_of,
    terms_bytes,
    terms_from_bytes,
    threads_of,
)
from yagna.store.market_repos import Agreements
from yagna.store.payment_repos import DebitNotes, Invoices, PayChannels

log = logging.getLogger("yagna.payment.provider")

UsageSource = Callable[[str], Awaitable[tuple[int, int, int, int]]]
"""agreement id -> (duration_ms, cpu_ms, peak_memory_bytes, activities)."""
Pauser = Callable[[str, str], Awaitable[Any]]
Resumer = Callable[[str], Awaitable[Any]]
Terminator = Callable[[str, str], Awaitable[Any]]


@dataclass
class _Payee:
    terms: ChannelTerms
    core: PayeeChannel
    pricing: LinearPricing
    threads: int
    enforcement: Enforcement
    note_seq: int
    sending: bool = False
    closing: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    """Around the channel's own nursery (debit notes, closing): cancelled when the channel is closed."""
    nursery: trio.Nursery | None = None
    close_by: float = 0.0
    """Wall clock (unix s) by which the channel is closed on chain, whatever the requestor does
    (its expiry minus a margin; 0: no expiry, the ledger)."""
    expiring: bool = False
    voucher_in: trio.Event = field(default_factory=trio.Event)
    """Set (and replaced) each time a voucher is durably stored."""
    failures: int = 0
    """Unexpected errors caught at the channel's boundary."""
    taking: trio.Lock = field(default_factory=trio.Lock)
    """Held from checking a voucher to its durable commit: a copy arriving meanwhile (the
    answer's and the message's) waits, so a duplicate is never acknowledged before the commit."""


class ProviderPayments:
    def __init__(self, *, key: NodeKey, network_id: str, rr, driver: SettlementDriver,  # type: ignore[no-untyped-def]
                 channels: PayChannels, notes: DebitNotes, invoices: Invoices, agreements: Agreements,
                 tick_s: float = 0.25, debt_intervals: float = 2.0,
                 settlement: SettlementInfo | None = None) -> None:
        self._key = key
        self.settlement = settlement
        """On a chain: our binding, chain id and contract (None on the ledger)."""
        self._network_id = network_id
        self._rr = rr
        self.driver = driver
        self._channels = channels
        self._notes = notes
        self._invoices = invoices
        self._agreements = agreements
        self._tick_s = tick_s
        self._debt_intervals = debt_intervals
        self._payees: dict[str, _Payee] = {}  # by agreement id
        self.round_trips: deque[dict[str, float]] = deque(maxlen=1000)
        """Per debit note, ms from signing it: voucher durably stored, acknowledgement delivered."""
        self.voucher_round_trips = Histogram()
        """Seconds from signing a debit note to holding the voucher that pays it, all notes (metrics)."""
        self.notes_unanswered = 0
        """Debit notes the requestor did not answer (unreachable, timed out, refused), since start."""
        self.usage: UsageSource | None = None
        self.pause: Pauser | None = None
        self.resume: Resumer | None = None
        self.terminate: Terminator | None = None
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for row in await self._channels.list(role=Role.PAYEE, state=ChannelState.OPEN):
            agreement_row = await self._agreements.get(row.agreement_id)
            if agreement_row is None:
                continue
            terms = terms_from_bytes(row.terms)
            core = self._core(terms)
            if row.best_voucher is not None:
                core.receive(row.best_voucher)  # re-verified: a stored voucher is still checked
            payee = self._new_payee(terms, core, agreement_row.raw, note_seq=await self._last_note_seq(row.agreement_id))
            now = trio.current_time()
            payee.enforcement.note_sent(now, row.due)  # what was claimed before the restart stays claimed
            payee.enforcement.voucher_accepted(now, core.paid)
            self._payees[row.agreement_id] = payee
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for payee in self._payees.values():
                await nursery.start(self._run_channel, payee)
            nursery.start_soon(self._loop)
            task_status.started()
            await trio.sleep_forever()

    async def _last_note_seq(self, agreement_id: str) -> int:
        latest = await self._notes.latest(agreement_id)
        return latest.seq if latest else 0

    def _new_payee(self, terms: ChannelTerms, core: PayeeChannel, agreement_raw: bytes, *, note_seq: int = 0) -> _Payee:
        agreement = verify_agreement(agreement_raw, network_id=self._network_id)
        interval, timeout = payment_terms(agreement)
        pricing, threads = pricing_of(agreement), threads_of(agreement)
        # The agreed unpaid bound: what full use costs over ``debt_intervals`` debit-note intervals.
        max_unpaid = pricing.estimate(threads, max(1, int(interval * self._debt_intervals))) - pricing.start_fee
        enforcement = Enforcement(approved_at=trio.current_time(), debit_note_interval_s=interval,
                                  payment_timeout_s=timeout, max_unpaid=max(max_unpaid, pricing.start_fee, 1))
        payee = _Payee(terms, core, pricing, threads, enforcement, note_seq)
        if terms.expiry:
            payee.close_by = terms.expiry - close_margin(max(0, terms.expiry - int(time.time())))
        return payee

    def _core(self, terms: ChannelTerms) -> PayeeChannel:
        """The channel's voucher checks, with the driver's check of the settlement proof."""
        payer_account = terms.payer_account or terms.payer

        def check(amount: int, proof: bytes) -> None:
            self.driver.check_voucher_proof(terms.channel_id, payer_account, amount, proof)

        return PayeeChannel(terms, check)

    async def on_hello(self, peer: str, msg: HelloMsg) -> HelloAnswer:
        """Where this provider settles: its bound account, chain and contract (asked before a chain deposit)."""
        row = await self._agreements.get(msg.agreement_id)
        if row is None or row.role != "provider" or row.peer_id != peer:
            raise RequestRejected("unknown-agreement", "no agreement between us")
        s = self.settlement
        return HelloAnswer(self.driver.name, s.binding if s else b"", s.chain_id if s else 0, s.contract if s else "")

    # -- requests from the requestor --------------------------------------------------
    async def on_open(self, peer: str, msg: ChannelOpenMsg) -> None:
        raw = msg.channel_open
        row = await self._agreements.get(msg.agreement_id)
        if row is None or row.role != "provider" or row.peer_id != peer:
            raise RequestRejected("unknown-agreement", "no agreement between us for this channel")
        if row.state != "approved":
            raise RequestRejected("not-approved", f"the agreement is {row.state}")
        try:
            opened = open_channel_open(raw, network_id=self._network_id, payer=peer, payee=self._key.node_id,
                                       agreement_id=row.agreement_id)
        except ChannelOpenRejected as exc:
            raise RequestRejected(exc.code, str(exc)) from None
        if opened.driver != self.driver.name:
            raise RequestRejected("wrong-driver", f"this provider settles with {self.driver.name}, not {opened.driver}")
        existing = await self._channels.by_agreement(row.agreement_id)
        if existing is not None:
            if existing.channel_id != opened.channel_id:
                raise RequestRejected("channel-exists", "this agreement already has a payment channel")
            return
        payer_account, payee_account, min_expiry = opened.payer, opened.payee, 0
        if self.settlement is not None:
            try:
                payer_account = binding.verify(msg.binding, peer).address
            except binding.BindingError as exc:
                raise RequestRejected("bad-binding", str(exc)) from None
            payee_account = self.driver.account_of(self._key.node_id)
            min_expiry = int(time.time()) + MIN_CHANNEL_LIFE_S
        try:
            info = await self.driver.accept_deposit(opened.channel_id, payer_account, payee_account, opened.deposit,
                                                    min_expiry=min_expiry)
        except DriverError as exc:
            raise RequestRejected(exc.code, str(exc)) from None
        chain = self.settlement is not None
        terms = ChannelTerms(opened.network_id, opened.driver, opened.channel_id, opened.agreement_id,
                             opened.payer, opened.payee, opened.currency, opened.deposit,
                             payer_account=payer_account if chain else "", payee_account=payee_account if chain else "",
                             expiry=info.expiry if chain else 0)
        await self._channels.insert(opened.channel_id, row.agreement_id, Role.PAYEE, peer, terms_bytes(terms), opened.deposit)
        payee = self._new_payee(terms, self._core(terms), row.raw)
        assert self._nursery is not None, "run() starts before any channel opens"
        await self._nursery.start(self._run_channel, payee)
        self._payees[row.agreement_id] = payee
        log.info("channel %s open for agreement %s: deposit %d", opened.channel_id[:12], row.agreement_id[:12], opened.deposit)

    async def on_top_up(self, peer: str, msg: TopUpMsg) -> None:
        """The payer raised a channel's deposit (a lease that runs on): checked through the driver,
        stored, then it counts (vouchers up to it are worth their amount). Idempotent."""
        payee = next((p for p in self._payees.values()
                      if p.terms.payer == peer and p.terms.channel_id == msg.channel_id), None)
        if payee is None:
            raise RequestRejected("unknown-channel", "no open channel of yours with this id")
        async with payee.taking:
            if msg.deposit == payee.terms.deposit:
                return
            if msg.deposit < payee.terms.deposit:
                raise RequestRejected("bad-deposit", f"the deposit is {payee.terms.deposit}; a top-up cannot lower it")
            try:
                await self.driver.accept_top_up(msg.channel_id, msg.deposit)
            except DriverError as exc:
                raise RequestRejected("deposit-mismatch", str(exc)) from None
            terms = dataclasses.replace(payee.terms, deposit=msg.deposit)
            await self._channels.set_deposit(msg.channel_id, msg.deposit, terms_bytes(terms))
            payee.terms = payee.core.terms = terms
        log.info("channel %s topped up to %d", msg.channel_id[:12], msg.deposit)

    async def on_voucher(self, peer: str, msg: VoucherMsg) -> VoucherAck:
        """The one way a voucher comes in; the reply (the acknowledgement) follows the durable commit."""
        payee = next((p for p in self._payees.values()
                      if p.terms.payer == peer and p.terms.channel_id == msg.channel_id), None)
        if payee is not None:
            return VoucherAck(await self._take_voucher(payee, msg.raw))
        # Closed already: the last voucher rode in the invoice's answer and was redeemed. The copy
        # that follows is acknowledged if it is exactly the voucher we stored (so the requestor
        # settles now, not after its settle timeout).
        row = await self._channels.get(msg.channel_id)
        if (row is not None and row.role == Role.PAYEE and row.peer_id == peer
                and row.best_voucher is not None and row.best_voucher == msg.raw):
            return VoucherAck(row.best_seq)
        raise RequestRejected("unknown-channel", "no open channel of yours with this id")

    async def _take_voucher(self, payee: _Payee, raw: bytes) -> int:
        """Checks 1-6, durable commit, then the seq to acknowledge. A rejection that ends the agreement ends it."""
        async with payee.taking:
            return await self._take_voucher_locked(payee, raw)

    async def _take_voucher_locked(self, payee: _Payee, raw: bytes) -> int:
        previous = payee.core.best
        try:
            receipt = payee.core.receive(raw)
        except VoucherRejected as exc:
            if exc.terminate:
                await self._channels.set_evidence(payee.terms.channel_id, _evidence(payee.core))
                log.warning("agreement %s: %s; terminating", payee.terms.agreement_id[:12], exc)
                await self._terminate(payee, exc.code)
            raise RequestRejected(exc.code, str(exc)) from None
        if receipt.outcome is Outcome.ACCEPTED:
            assert receipt.commit is not None and payee.core.best is not None
            try:
                await self._channels.save_best(payee.terms.channel_id, receipt.seq, payee.core.best.amount,
                                               receipt.commit, receipt.paid)
            except Exception:
                # Not stored, so not held: the payer's resend must be stored, not acknowledged as a duplicate.
                payee.core.best = previous
                raise
            payee.voucher_in.set()
            payee.voucher_in = trio.Event()
            await self._step(payee, payee.enforcement.voucher_accepted(trio.current_time(), receipt.paid))
        return receipt.ack_seq

    # -- the loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await trio.sleep(self._tick_s)
            now = trio.current_time()
            for agreement_id, payee in list(self._payees.items()):
                if payee.closing or payee.sending:
                    continue
                row = await self._agreements.get(agreement_id)
                if row is None or row.state != "approved":
                    payee.closing = True
                    self._spawn(payee, self._close, payee)
                elif payee.close_by and not payee.expiring and time.time() >= payee.close_by:
                    payee.expiring = True  # close on chain before the payer may take the deposit back
                    log.warning("agreement %s: the deposit expires at %d; ending it to redeem in time",
                                agreement_id[:12], payee.terms.expiry)
                    self._spawn(payee, self._terminate, payee, "deposit-expiring")
                elif now >= payee.enforcement.next_note_at:
                    payee.sending = True
                    self._spawn(payee, self._send_note, payee, False)
                else:
                    await self._guarded(payee, self._step, payee, payee.enforcement.tick(now))

    async def _run_channel(self, payee: _Payee, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The channel's own nursery, in its own cancel scope: closing the channel cancels only its tasks."""
        with payee.scope:
            async with trio.open_nursery() as nursery:
                payee.nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def _spawn(self, payee: _Payee, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        assert payee.nursery is not None
        payee.nursery.start_soon(self._guarded, payee, fn, *args)

    async def _guarded(self, payee: _Payee, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn`` for one channel; an unexpected error stays inside the channel."""
        try:
            await fn(*args)
        except Exception:  # the channel's boundary: logged and counted, never the node's root
            payee.failures += 1
            log.exception("payment channel %s: %s failed (%d)", payee.terms.channel_id[:12],
                          getattr(fn, "__name__", fn), payee.failures)

    async def _send_note(self, payee: _Payee, final: bool) -> None:
        """Sign and send the next debit note (the invoice when ``final``); take the voucher that answers it."""
        t0 = time.perf_counter()
        try:
            duration_ms, cpu_ms, peak, activities = await self.usage(payee.terms.agreement_id) if self.usage else (0, 0, 0, 0)
            t_usage = time.perf_counter()
            due = payee.pricing.cost(cpu_ms, duration_ms) if activities else 0
            due = min(max(due, payee.enforcement.due), 2**63 - 1)  # cumulative: never below what was claimed
            payee.note_seq += 1
            raw = sign_debit_note(self._key, payee.terms, seq=payee.note_seq, amount_due=due,
                                  usage=Usage(duration_ms, cpu_ms, peak), issued_at_ms=int(time.time() * 1000), final=final)
            await self._notes.insert(payee.terms.agreement_id, payee.note_seq, raw, due,
                                     channel_id=payee.terms.channel_id)
            await self._step(payee, payee.enforcement.note_sent(trio.current_time(), due))
            if final:
                await self._invoices.upsert(payee.terms.agreement_id, Role.PAYEE, due, InvoiceStatus.ISSUED, raw)
            seq, held = payee.note_seq, payee.core.best_seq
            t_sent = time.perf_counter()
            try:
                reply = await self._rr.request(payee.terms.payer, PAYMENT,
                                               encode_request(DebitNoteMsg(payee.terms.channel_id, raw)))
                answer = decode_answer(reply)
                t_answered = time.perf_counter()
            except (RequestError, MessageRejected) as exc:
                self.notes_unanswered += 1
                log.info("debit note %d of %s not answered: %s", seq, payee.terms.agreement_id[:12], exc)
                if isinstance(exc, RemoteError) and exc.code == "unknown-channel" and not final:
                    # The requestor has ended its side (it settled, e.g. while we were down): end ours,
                    # so the best voucher is redeemed now, not when the deposit is about to expire.
                    await self._terminate(payee, "requestor-ended")
                return
            if answer.voucher is not None:
                # The voucher that pays for the note, in the answer: stored now (checked like any other).
                try:
                    await self._take_voucher(payee, answer.voucher)
                except RequestRejected as exc:
                    log.warning("voucher in the answer to note %d of %s refused: %s", seq,
                                payee.terms.agreement_id[:12], exc)
            # Else (or if that one was refused) it comes as its own message: wait for it (an invoice is
            # redeemed right after this returns).
            if (answer.voucher_seq is not None and answer.voucher_seq > held
                    and await self._voucher_arrived(payee, answer.voucher_seq)):
                stored = (time.perf_counter() - t0) * 1000
                self.voucher_round_trips.observe(stored / 1000)
                # The acknowledgement is the reply to the voucher message, sent after the commit.
                self.round_trips.append({"voucher_stored_ms": stored, "acked_ms": stored,
                                         "usage_ms": (t_usage - t0) * 1000, "sent_ms": (t_sent - t0) * 1000,
                                         "answered_ms": (t_answered - t0) * 1000})
            status = NoteStatus.ACCEPTED if answer.accepted else NoteStatus.REJECTED
            await self._notes.set_status(payee.terms.agreement_id, seq, status,
                                         reason=None if answer.accepted else answer.reason[:200])
        finally:
            payee.sending = False

    async def _voucher_arrived(self, payee: _Payee, seq: int) -> bool:
        """Wait (bounded by the protocol's timeout) until we hold a voucher of ``seq`` or later."""
        with trio.move_on_after(PAYMENT.timeout):
            while payee.core.best is None or payee.core.best.seq < seq:
                await payee.voucher_in.wait()
            return True
        log.info("voucher %d of %s did not come within %.0f s", seq, payee.terms.agreement_id[:12], PAYMENT.timeout)
        return False

    async def _step(self, payee: _Payee, step: Any) -> None:
        agreement_id = payee.terms.agreement_id
        if step.action is Action.PAUSE:
            log.warning("agreement %s paused: %s (unpaid %d)", agreement_id[:12], step.reason, payee.enforcement.unpaid)
            if self.pause is not None:
                await self.pause(agreement_id, step.reason)
            await self._notice(payee, NoticeKind.PAUSED, step.reason)
        elif step.action is Action.RESUME:
            log.info("agreement %s resumed: paid up", agreement_id[:12])
            if self.resume is not None:
                await self.resume(agreement_id)
            await self._notice(payee, NoticeKind.RESUMED, "paid up")
        elif step.action is Action.TERMINATE:
            await self._terminate(payee, step.reason or "not-paid")

    async def _notice(self, payee: _Payee, kind: NoticeKind, reason: str) -> None:
        with trio.move_on_after(2.0):
            try:
                await self._rr.request(payee.terms.payer, PAYMENT,
                                       encode_request(NoticeMsg(payee.terms.agreement_id, kind, reason)))
            except RequestError:
                pass  # it will see the effect; the reason is also in `yagna payment status`
        await self._channels.set_state(payee.terms.channel_id, ChannelState.OPEN, f"{kind.value}: {reason}")

    async def _terminate(self, payee: _Payee, code: str) -> None:
        log.warning("terminating agreement %s: %s", payee.terms.agreement_id[:12], code)
        if self.terminate is not None:
            try:
                await self.terminate(payee.terms.agreement_id, code)
            except NegotiationFailed as exc:  # it ended already (e.g. the requestor terminated it first)
                log.info("terminate %s: %s", payee.terms.agreement_id[:12], exc)

    async def _close(self, payee: _Payee) -> None:
        """The agreement ended: invoice (a final debit note), take the last voucher, redeem the best, close."""
        try:
            await self._send_note(payee, True)
        finally:
            paid = payee.core.paid
            redemption = await self._redeem_closing(payee)
            invoice = await self._invoices.get(payee.terms.agreement_id)
            due = invoice.amount if invoice else payee.enforcement.due
            await self._invoices.upsert(payee.terms.agreement_id, Role.PAYEE, due, InvoiceStatus.PAID if paid >= due else InvoiceStatus.SETTLED,
                                        invoice.raw if invoice else None)
            await self._channels.set_state(payee.terms.channel_id, ChannelState.CLOSED,
                                           f"redeemed {format_amount(paid)} of {format_amount(due)} due"
                                           if paid < due else "paid in full")
            self._payees.pop(payee.terms.agreement_id, None)
            payee.scope.cancel()  # the channel's tasks end with it (this one at its next checkpoint)
            log.info("agreement %s settled: earned %d (%d now), due %d", payee.terms.agreement_id[:12], paid,
                     redemption.paid, due)

    async def _redeem_closing(self, payee: _Payee) -> Any:
        """Redeem the best voucher and close; a chain that is down is retried (the driver's journal
        keeps an attempt whose outcome is unknown, and finishes it first)."""
        best = payee.core.best
        backoff = 1.0
        while True:
            try:
                return await self.driver.redeem(payee.terms.channel_id, best.amount if best else 0, close=True,
                                                proof=best.proof if best else b"")
            except ChainUnavailable as exc:
                log.warning("closing channel %s: %s; retrying in %.0f s", payee.terms.channel_id[:12], exc, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    # -- for the work guard and status -------------------------------------------------------
    async def work_allowed(self, agreement_id: str) -> str | None:
        payee = self._payees.get(agreement_id)
        if payee is None:
            return "no payment channel for this agreement yet (the requestor opens one with its deposit)"
        if payee.enforcement.state is EnforcementState.PAUSED:
            return f"payments are late: {payee.enforcement.reason}"
        return None

    def live(self, agreement_id: str) -> dict[str, Any] | None:
        payee = self._payees.get(agreement_id)
        if payee is None:
            return None
        e = payee.enforcement
        return {"enforcement": e.state.value, "unpaid": e.unpaid, "due": e.due, "paid": payee.core.paid,
                "reason": e.reason}


def _evidence(core: PayeeChannel) -> bytes:
    return wire.encode(core.to_record()["evidence"])
