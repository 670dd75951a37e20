"""Golem's requestor payment API (``/payment-api/v1``) as views of our payment channels.

An **allocation** is a budget the client reserves on one payment platform; the platforms a node
serves are the ones its offers name (``golem.com.payment.platform.<platform>.address``: Golem's
default test platform ``erc20-holesky-tglm`` on a test network, the devnet's chain or the
ledger). ``demandDecorations`` adds that address and the payment protocol version to the
client's demand. Agreements signed through Golem's market API are paid by the client's accepts:
a debit note or invoice the provider sends appears as a ``DebitNoteReceivedEvent`` /
``InvoiceReceivedEvent``; ``POST /debitNotes/{id}/accept`` signs our voucher for the accepted
cumulative amount (never above what our own meter of the activities allows, nor the deposit),
charged to the allocation. A note left unaccepted past the agreed payment timeout falls to the
provider's enforcement, as for any requestor. Allocations live in memory (at most
:data:`MAX_ALLOCATIONS`); a restarted node pays by its own meter again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import trio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from yagna.api.auth import Auth
from yagna.api.golem.common import golem_error, iso, parse_iso_ms, tokens, units

router = APIRouter(prefix="/payment-api/v1", tags=["golem payment"])

MAX_ALLOCATIONS = 1024
DEFAULT_EVENTS_TIMEOUT_S = 5.0
MAX_EVENTS_TIMEOUT_S = 5.0
"""A longer wait asked for ends after this with no events (clients poll again): a long poll holds a
connection and a task, and Golem's clients ask 5 s anyway."""
PROTOCOL_VERSION = "3"


@dataclass
class Allocation:
    allocation_id: str
    address: str
    platform: str
    total: int
    spent: int
    timestamp_ms: int
    timeout: str | None

    def view(self) -> dict[str, Any]:
        return {"allocationId": self.allocation_id, "address": self.address, "paymentPlatform": self.platform,
                "totalAmount": tokens(self.total), "spentAmount": tokens(self.spent),
                "remainingAmount": tokens(self.total - self.spent), "timestamp": iso(self.timestamp_ms),
                "timeout": self.timeout, "makeDeposit": False}


def _allocations(request: Request) -> dict[str, Allocation]:
    state = getattr(request.app.state, "golem_allocations", None)
    if state is None:
        state = request.app.state.golem_allocations = {}
    return state  # type: ignore[no-any-return]


def _platforms(request: Request) -> dict[str, str]:
    return dict(request.app.state.node.market.config.payment_platforms)


def _payments(request: Request) -> Any:
    return request.app.state.node.payments.requestor


@router.post("/allocations", status_code=201)
async def create_allocation(body: dict[str, Any], request: Request, _: Auth) -> Any:
    if _payments(request) is None:
        return golem_error(400, "this node does not buy (it runs as a provider only)")
    platforms = _platforms(request)
    platform = body.get("paymentPlatform") or next(iter(platforms), "")
    if isinstance(platform, dict):  # newer clients: {driver, network, token}
        platform = "-".join(str(platform.get(k, "")) for k in ("driver", "network", "token"))
    if platform not in platforms:
        return golem_error(400, f"this node settles on {', '.join(platforms) or 'no Golem platform'}; it cannot "
                                f"serve payment platform {str(platform)[:80]!r}")
    try:
        total = units(body.get("totalAmount"))
    except ValueError as exc:
        return golem_error(400, f"totalAmount: {exc}")
    allocations = _allocations(request)
    if len(allocations) >= MAX_ALLOCATIONS:
        return golem_error(400, f"at most {MAX_ALLOCATIONS} allocations; release some first")
    timeout = body.get("timeout") if isinstance(body.get("timeout"), str) else None
    a = Allocation(secrets.token_hex(16), platforms[platform], str(platform), total, 0, int(time.time() * 1000), timeout)
    allocations[a.allocation_id] = a
    return a.view()


@router.get("/allocations")
async def list_allocations(request: Request, _: Auth) -> list[dict[str, Any]]:
    return [a.view() for a in _allocations(request).values()]


@router.get("/allocations/{allocation_id}")
async def get_allocation(allocation_id: str, request: Request, _: Auth) -> Any:
    a = _allocations(request).get(allocation_id)
    return a.view() if a is not None else golem_error(404, f"no allocation {allocation_id}")


@router.delete("/allocations/{allocation_id}")
async def release_allocation(allocation_id: str, request: Request, _: Auth) -> Any:
    if _allocations(request).pop(allocation_id, None) is None:
        return golem_error(404, f"no allocation {allocation_id}")
    return None


@router.get("/demandDecorations")
async def demand_decorations(request: Request, _: Auth, allocationIds: list[str] = Query(default=[])) -> Any:  # noqa: N803
    allocations = _allocations(request)
    chosen = []
    for ids in allocationIds:
        for allocation_id in ids.split(","):
            a = allocations.get(allocation_id)
            if a is None:
                return golem_error(404, f"no allocation {allocation_id}")
            chosen.append(a)
    properties: list[dict[str, Any]] = []
    constraints: list[str] = []
    for a in chosen:
        key = f"golem.com.payment.platform.{a.platform}.address"
        properties.append({"key": key, "value": a.address})
        constraints.append(f"({key}=*)")
    if chosen:
        properties.append({"key": "golem.com.payment.protocol.version", "value": PROTOCOL_VERSION})
        constraints.append("(golem.com.payment.protocol.version>1)")
    return {"properties": properties, "constraints": constraints}


async def _events(request: Request, final: bool, after: str | None, timeout: float, max_events: int) -> list[Any]:
    requestor = _payments(request)
    if requestor is None:
        return []
    after_ms = parse_iso_ms(after)
    with trio.move_on_after(min(timeout, MAX_EVENTS_TIMEOUT_S)):
        while True:
            got = sorted((r for r in requestor.received.values() if r.final == final and r.received_ms > after_ms),
                         key=lambda r: r.received_ms)[:max_events]
            if got:
                kind, field = ("InvoiceReceivedEvent", "invoiceId") if final else ("DebitNoteReceivedEvent", "debitNoteId")
                return [{"eventType": kind, "eventDate": iso(r.received_ms), field: r.note_id} for r in got]
            await requestor.received_changed.wait()
    return []


@router.get("/debitNoteEvents")
async def debit_note_events(request: Request, _: Auth, afterTimestamp: str | None = None,  # noqa: N803
                            timeout: float = Query(DEFAULT_EVENTS_TIMEOUT_S, ge=0),
                            maxEvents: int = Query(100, ge=1, le=1000)) -> list[Any]:  # noqa: N803
    return await _events(request, False, afterTimestamp, timeout, maxEvents)


@router.get("/invoiceEvents")
async def invoice_events(request: Request, _: Auth, afterTimestamp: str | None = None,  # noqa: N803
                         timeout: float = Query(DEFAULT_EVENTS_TIMEOUT_S, ge=0),
                         maxEvents: int = Query(100, ge=1, le=1000)) -> list[Any]:  # noqa: N803
    return await _events(request, True, afterTimestamp, timeout, maxEvents)


def _note(request: Request, note_id: str, final: bool) -> Any:
    requestor = _payments(request)
    rec = requestor.received.get(note_id) if requestor is not None else None
    if rec is None or rec.final != final:
        return None
    payer_addr, payee_addr = requestor.account_of_channel(rec.agreement_id)
    platform = next(iter(_platforms(request)), "")
    activity = request.app.state.node.activity.requestor
    activities = [a["activity_id"] for a in activity.list() if a["agreement_id"] == rec.agreement_id] if activity else []
    common = {"issuerId": rec.provider, "recipientId": request.app.state.node.node_id,
              "payeeAddr": payee_addr or rec.provider, "payerAddr": payer_addr or request.app.state.node.node_id,
              "paymentPlatform": platform, "timestamp": iso(rec.received_ms), "agreementId": rec.agreement_id,
              "status": rec.status}
    if final:
        return {"invoiceId": rec.note_id, **common, "activityIds": activities, "amount": tokens(rec.amount_due),
                "paymentDueDate": iso(rec.received_ms + 3600_000)}
    return {"debitNoteId": rec.note_id, **common, "activityId": activities[-1] if activities else "",
            "totalAmountDue": tokens(rec.amount_due)}


@router.get("/debitNotes/{note_id}")
async def get_debit_note(note_id: str, request: Request, _: Auth) -> Any:
    return _note(request, note_id, False) or golem_error(404, f"no debit note {note_id}")


@router.get("/invoices/{note_id}")
async def get_invoice(note_id: str, request: Request, _: Auth) -> Any:
    return _note(request, note_id, True) or golem_error(404, f"no invoice {note_id}")


async def _accept(request: Request, note_id: str, final: bool, body: dict[str, Any]) -> Response | None:
    requestor = _payments(request)
    rec = requestor.received.get(note_id) if requestor is not None else None
    if rec is None or rec.final != final:
        return golem_error(404, f"no {'invoice' if final else 'debit note'} {note_id}")
    a = _allocations(request).get(str(body.get("allocationId", "")))
    if a is None:
        return golem_error(400, f"no allocation {str(body.get('allocationId'))[:80]!r}")
    try:
        amount = units(body.get("totalAmountAccepted"))
    except ValueError as exc:
        return golem_error(400, f"totalAmountAccepted: {exc}")
    signed_before = _signed(requestor, rec.agreement_id)
    increment = max(0, min(amount, rec.acceptable) - signed_before)
    if increment > a.total - a.spent:
        return golem_error(400, f"allocation {a.allocation_id} has {tokens(a.total - a.spent)} left, the note needs "
                                f"{tokens(increment)} more")
    try:
        await requestor.accept_note(note_id, amount)
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code is None:
            raise
        return golem_error(409, str(exc))
    a.spent += max(0, _signed(requestor, rec.agreement_id) - signed_before)
    return None


def _signed(requestor: Any, agreement_id: str) -> int:
    live = requestor.live(agreement_id)
    return int(live["signed"]) if live else 0


@router.post("/debitNotes/{note_id}/accept")
async def accept_debit_note(note_id: str, body: dict[str, Any], request: Request, _: Auth) -> Any:
    return await _accept(request, note_id, False, body)


@router.post("/invoices/{note_id}/accept")
async def accept_invoice(note_id: str, body: dict[str, Any], request: Request, _: Auth) -> Any:
    return await _accept(request, note_id, True, body)


@router.post("/debitNotes/{note_id}/reject")
async def reject_debit_note(note_id: str, request: Request, _: Auth) -> Any:
    return golem_error(409, "rejecting is not needed here: a note nobody accepts is not paid")


@router.post("/invoices/{note_id}/reject")
async def reject_invoice(note_id: str, request: Request, _: Auth) -> Any:
    return golem_error(409, "rejecting is not needed here: an invoice nobody accepts is not paid")
