"""Composition of payments: the settlement driver, the provider (payee) and requestor (payer) sides.

The daemon's first driver is the test-network ledger in the node's own SQLite
file (:class:`yagna.store.payment_repos.SqliteLedger`): ``yagna payment fund``
credits test tokens; it says plainly that they have no value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from payments.driver import SettlementDriver
from payments.errors import DriverError, MessageRejected
from payments.messages import (
    ChannelOpenMsg,
    DebitNoteMsg,
    HelloMsg,
    TopUpMsg,
    VoucherMsg,
    decode_request,
    encode_answer,
    encode_hello_answer,
    encode_voucher_ack,
)
from payments.states import Role
from yagna.core.identity import NodeKey
from yagna.core.money import format_amount
from yagna.net.errors import RequestRejected
from yagna.net.reqresp import Request
from yagna.payment_service.protocol import PAYMENT, SettlementInfo
from yagna.payment_service.provider import ProviderPayments
from yagna.payment_service.requestor import RequestorPayments
from yagna.store.market_repos import Agreements
from yagna.store.payment_repos import DebitNotes, Invoices, PayChannels

log = logging.getLogger("yagna.payment")

RECLAIM_EVERY_S = 600.0


@dataclass
class PaymentConfig:
    network_id: str = "testnet"
    provider: bool = True
    requestor: bool = True
    currency: str = "tGLM"
    tick_s: float = 0.25
    """Provider: how often due debit notes and enforcement deadlines are looked at."""
    resend_s: float = 2.0
    """Requestor: how often an unacknowledged voucher is re-sent (and ended agreements settled)."""
    settle_wait_s: float = 10.0
    """Requestor: how long after an agreement ends to wait for the provider's invoice before settling."""
    withhold_payments: bool = False
    """Test-only fault: a requestor that answers debit notes but never pays."""


class PaymentService:
    def __init__(self, *, key: NodeKey, config: PaymentConfig, rr, store, driver: SettlementDriver,  # type: ignore[no-untyped-def]
                 settlement: SettlementInfo | None = None) -> None:
        self.config = config
        self.settlement = settlement
        self.node_id = key.node_id
        self.driver = driver
        self._channels = PayChannels(store)
        self._invoices = Invoices(store)
        agreements = Agreements(store)
        self.provider: ProviderPayments | None = None
        self.requestor: RequestorPayments | None = None
        if config.provider:
            self.provider = ProviderPayments(key=key, network_id=config.network_id, rr=rr, driver=driver,
                                             channels=self._channels, notes=DebitNotes(store), invoices=self._invoices,
                                             agreements=agreements, tick_s=config.tick_s, settlement=settlement)
        if config.requestor:
            self.requestor = RequestorPayments(key=key, network_id=config.network_id, rr=rr, driver=driver,
                                               channels=self._channels, invoices=self._invoices, agreements=agreements,
                                               currency=config.currency, resend_s=config.resend_s,
                                               settle_wait_s=config.settle_wait_s, withhold=config.withhold_payments,
                                               settlement=settlement)
        rr.register(PAYMENT, self._handle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.provider is not None:
                await nursery.start(self.provider.run)
            if self.requestor is not None:
                await nursery.start(self.requestor.run)
                reclaim = getattr(self.driver, "reclaim_expired", None)
                if reclaim is not None:
                    nursery.start_soon(self._reclaim_loop, reclaim)
            task_status.started()

    async def _reclaim_loop(self, reclaim: Any) -> None:
        """On a chain: every 10 minutes, take back our deposits past their expiry that nobody ended."""
        while True:
            try:
                done = await reclaim()
                if done:
                    log.info("took back %d expired deposit(s)", done)
            except Exception:  # a chain hiccup must not end the payment service
                log.exception("reclaiming expired deposits failed; retrying in 10 minutes")
            await trio.sleep(RECLAIM_EVERY_S)

    async def _handle(self, request: Request) -> object:
        """Decode (:mod:`payments.messages`), hand to the side it is for, encode the reply."""
        try:
            msg = decode_request(request.payload)
        except MessageRejected as exc:
            raise RequestRejected(exc.code, str(exc)) from None
        if isinstance(msg, (ChannelOpenMsg, VoucherMsg, HelloMsg, TopUpMsg)):
            if self.provider is None:
                raise RequestRejected("not-a-provider", "this node does not sell")
            if isinstance(msg, HelloMsg):
                return encode_hello_answer(await self.provider.on_hello(request.peer, msg))
            if isinstance(msg, TopUpMsg):
                await self.provider.on_top_up(request.peer, msg)
                return {}
            if isinstance(msg, ChannelOpenMsg):
                await self.provider.on_open(request.peer, msg)
                return {}
            return encode_voucher_ack(await self.provider.on_voucher(request.peer, msg))
        if self.requestor is None:
            raise RequestRejected("not-a-requestor", "this node does not buy")
        if isinstance(msg, DebitNoteMsg):
            return encode_answer(await self.requestor.on_debit_note(request.peer, msg))
        await self.requestor.on_notice(request.peer, msg)
        return {}

    # -- what users see ------------------------------------------------------------------------
    async def fund(self, amount: int) -> dict[str, Any]:
        return _balance_view(await self.driver.fund(self.driver.account_of(self.node_id), amount))

    async def status(self) -> dict[str, Any]:
        balance = await self.driver.balance(self.driver.account_of(self.node_id))
        rows = []
        for c in await self._channels.list():
            live = (self.provider.live(c.agreement_id) if self.provider and c.role == Role.PAYEE else None) or \
                   (self.requestor.live(c.agreement_id) if self.requestor and c.role == Role.PAYER else None) or {}
            rows.append({
                "agreement_id": c.agreement_id, "channel_id": c.channel_id,
                "role": "provider" if c.role == Role.PAYEE else "requestor", "peer_id": c.peer_id, "state": c.state,
                "deposit": format_amount(c.deposit), "amount_due": format_amount(live.get("due", c.due)),
                "paid": format_amount(c.paid if c.role == Role.PAYEE else c.best_amount),
                "best_seq": c.best_seq, "best_amount": format_amount(c.best_amount),
                "acked_seq": c.acked_seq, "enforcement": live.get("enforcement"), "reason": c.reason,
                "deposit_units": c.deposit, "paid_units": c.paid if c.role == Role.PAYEE else c.best_amount,
                "due_units": live.get("due", c.due),
                "created_at": c.created_at, "updated_at": c.updated_at,
            })
        out: dict[str, Any] = {"driver": self.driver.name, "test_network": self.driver.test_network, "account": self.node_id,
               "balance": _balance_view(balance), "agreements": rows}
        describe = getattr(self.driver, "describe", None)
        if describe is not None:  # on a chain: where, which account, and each channel as the chain has it
            chain: dict[str, Any] = await describe()
            chain["channels"] = await self._chain_channels(rows)
            out["chain"] = chain
        return out

    async def _chain_channels(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per channel, its on-chain state and transactions (the open ones and the last 20 closed:
        every one is a chain read)."""
        open_rows = [r for r in rows if r["state"] != "closed"]
        closed = [r for r in rows if r["state"] == "closed"][-20:]
        out = []
        for r in open_rows + closed:
            try:
                info = await self.driver.channel(r["channel_id"])
            except DriverError as exc:
                out.append({"channel_id": r["channel_id"], "error": str(exc)[:200]})
                continue
            out.append({"channel_id": r["channel_id"], "agreement_id": r["agreement_id"], "state": info.state,
                        "payer": info.payer, "payee": info.payee, "deposit": format_amount(info.deposit),
                        "redeemed": format_amount(info.redeemed), "deposit_units": info.deposit,
                        "redeemed_units": info.redeemed, "expiry": info.expiry,
                        "transactions": await self.driver.transactions(r["channel_id"])})  # type: ignore[attr-defined]
        return out

    async def channel_totals(self) -> dict[tuple[str, str], dict[str, int]]:
        """Channels and their amounts (base units) summed per ``(role, state)``, roles ``provider``/``requestor``:
        from the store alone, no driver or chain read (metrics)."""
        return {("provider" if role == Role.PAYEE else "requestor", state): sums
                for (role, state), sums in (await self._channels.totals()).items()}

    async def channels(self) -> list[dict[str, Any]]:
        return [{"channel_id": c.channel_id, "agreement_id": c.agreement_id, "role": c.role, "peer_id": c.peer_id,
                 "state": c.state, "deposit": format_amount(c.deposit), "best_seq": c.best_seq,
                 "best_amount": format_amount(c.best_amount), "acked_seq": c.acked_seq, "reason": c.reason,
                 "deposit_units": c.deposit, "best_amount_units": c.best_amount}
                for c in await self._channels.list()]

    async def invoices(self) -> list[dict[str, Any]]:
        return [{"agreement_id": i.agreement_id, "role": "provider" if i.role == Role.PAYEE else "requestor",
                 "amount": format_amount(i.amount),
                 "amount_units": i.amount, "status": i.status}
                for i in await self._invoices.list()]


def _balance_view(b: Any) -> dict[str, Any]:
    out: dict[str, Any] = {name: format_amount(getattr(b, name)) for name in ("total", "locked", "spent", "earned")}
    out["free"] = format_amount(b.free)
    out.update({f"{name}_units": getattr(b, name) for name in ("total", "locked", "spent", "earned")})
    return out
