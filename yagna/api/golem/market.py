"""Golem's requestor market API (``/market-api/v1``) as a translation onto our market.

A Golem *subscription* is one of our demands (Golem's constraint text as given, whitespace
between clauses included); our signed offers that match it appear as ``ProposalEvent``s in
state ``Initial`` with Golem's property names (prices in tokens). A counter
(``POST /demands/{sub}/proposals/{id}``) is our counter to the provider; the provider's answer
comes back as a ``Draft`` proposal event. ``POST /agreements`` on a draft proposes our agreement,
which the provider co-signs at once, so ``confirm`` and ``wait`` only report it. Terminating an
agreement re-offers its provider to every subscription as a fresh ``Initial`` proposal (yapapi
retries a failed task that way). A dropped or expired subscription is a 404, which makes yapapi
subscribe again.

Proposal ids are random tokens mapped to (offer, kind, properties), at most
:data:`MAX_PROPOSALS` per subscription (the oldest forgotten first).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import trio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from market.errors import ConstraintSyntaxError, PropertyError
import re

from market.properties import NODE_DEBUG_SUBNET, RUNTIME_GOLEM_VM, RUNTIME_NAME
from yagna.api.auth import Auth
from yagna.api.golem.common import golem_error, golem_properties, iso, json_string
from yagna.market_service.requestor import DemandNotFound, NegotiationFailed

router = APIRouter(prefix="/market-api/v1", tags=["golem market"])

MAX_PROPOSALS = 4096
MAX_SUBSCRIPTIONS = 64
DEFAULT_EVENTS_TIMEOUT_S = 5.0
"""Golem's default long poll when ``timeout`` is absent (yapapi's loops often send none)."""
MAX_EVENTS_TIMEOUT_S = 60.0


@dataclass
class Proposal:
    offer_id: str
    kind: str
    """``Initial`` (an offer), ``Draft`` (the provider's counter), ``Ours`` (our counter)."""
    issuer: str
    properties: dict[str, Any]
    constraints: str
    at_ms: int
    prev: str | None = None


@dataclass
class Subscription:
    sub_id: str
    demand_id: str
    after: int = 0
    """Our demand's event cursor."""
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Golem events made here (drafts, re-offers), delivered before the demand's own."""
    proposals: OrderedDict[str, Proposal] = field(default_factory=OrderedDict)
    changed: trio.Event = field(default_factory=trio.Event)

    def add(self, proposal: Proposal) -> str:
        pid = secrets.token_hex(16)
        self.proposals[pid] = proposal
        while len(self.proposals) > MAX_PROPOSALS:
            self.proposals.popitem(last=False)
        return pid

    def push(self, event: dict[str, Any]) -> None:
        self.pending.append(event)
        del self.pending[:-MAX_PROPOSALS]
        self.changed.set()
        self.changed = trio.Event()


@dataclass
class GolemMarket:
    """Per node: Golem subscriptions over our demands, and agreements made through them."""

    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    agreement_subs: dict[str, str] = field(default_factory=dict)
    """agreement id -> the subscription it came from (for re-offers after termination)."""


def _state(request: Request) -> GolemMarket:
    state = getattr(request.app.state, "golem_market", None)
    if state is None:
        state = request.app.state.golem_market = GolemMarket()
    return state


def _market(request: Request) -> Any:
    market = request.app.state.node.market
    if market.requestor is None:
        return None
    return market


_VM_CLAUSE = re.compile(r"\(\s*golem\.runtime\.name\s*=\s*vm\s*\)")


def our_constraints(text: str) -> str:
    """Golem's ``(golem.runtime.name=vm)`` asks for a Golem VM: our providers that run Golem VM
    packages in their containers say so with ``yagna.runtime.golem-vm``."""
    return _VM_CLAUSE.sub(f"({RUNTIME_GOLEM_VM}=true)", text)


def golem_offer(properties: dict[str, Any]) -> dict[str, Any]:
    """An offer as Golem's clients read it: prices in tokens, a Golem-VM-capable provider as runtime ``vm``."""
    out = golem_properties(properties)
    if out.get(RUNTIME_GOLEM_VM) is True:
        out[RUNTIME_NAME] = "vm"
    return out


def _proposal_event(pid: str, p: Proposal) -> dict[str, Any]:
    shown = golem_offer(p.properties) if p.kind in ("Initial", "Draft") else p.properties
    proposal: dict[str, Any] = {"properties": shown, "constraints": p.constraints,
                                "proposalId": pid, "issuerId": p.issuer, "state": p.kind, "timestamp": iso(p.at_ms)}
    if p.prev is not None:
        proposal["prevProposalId"] = p.prev
    return {"eventType": "ProposalEvent", "eventDate": iso(p.at_ms), "proposal": proposal}


@router.post("/demands", status_code=201)
async def subscribe(body: dict[str, Any], request: Request, _: Auth) -> Response:
    market = _market(request)
    if market is None:
        return golem_error(400, "this node does not buy (it runs as a provider only)")
    state = _state(request)
    if len(state.subscriptions) >= MAX_SUBSCRIPTIONS:
        return golem_error(429, f"at most {MAX_SUBSCRIPTIONS} subscriptions at once; unsubscribe some first")
    properties = body.get("properties") or {}
    constraints = body.get("constraints") or ""
    if not isinstance(properties, dict) or not isinstance(constraints, str):
        return golem_error(400, "a demand is {properties: {...}, constraints: \"...\"}")
    subnet = properties.get(NODE_DEBUG_SUBNET, "public")
    try:
        demand = await market.requestor.create_demand(properties, our_constraints(constraints),
                                                      subnet=subnet if isinstance(subnet, str) else "public")
    except (ConstraintSyntaxError, PropertyError, NegotiationFailed) as exc:
        return golem_error(400, str(exc))
    sub = Subscription(secrets.token_hex(16), demand.demand_id)
    state.subscriptions[sub.sub_id] = sub
    return json_string(sub.sub_id, 201)


@router.delete("/demands/{sub_id}", status_code=204)
async def unsubscribe(sub_id: str, request: Request, _: Auth) -> Response:
    sub = _state(request).subscriptions.pop(sub_id, None)
    if sub is None:
        return golem_error(404, f"no subscription {sub_id}")
    try:
        request.app.state.node.market.requestor.delete_demand(sub.demand_id)
    except DemandNotFound:
        pass
    return Response(status_code=204)


@router.get("/demands/{sub_id}/events")
async def events(sub_id: str, request: Request, _: Auth,
                 timeout: float = Query(DEFAULT_EVENTS_TIMEOUT_S, ge=0),
                 maxEvents: int = Query(10, ge=1, le=1000)) -> Any:  # noqa: N803 - Golem's name
    state = _state(request)
    sub = state.subscriptions.get(sub_id)
    if sub is None:
        return golem_error(404, f"no subscription {sub_id} (unsubscribed or expired)")
    requestor = request.app.state.node.market.requestor
    out: list[dict[str, Any]] = []
    with trio.move_on_after(min(timeout, MAX_EVENTS_TIMEOUT_S)):
        while True:
            out += sub.pending[:maxEvents]
            del sub.pending[:maxEvents]
            try:
                ours = await requestor.events(sub.demand_id, sub.after, 0)
            except DemandNotFound:
                state.subscriptions.pop(sub_id, None)
                return golem_error(404, f"subscription {sub_id} expired")
            for ev in ours:
                if len(out) >= maxEvents:
                    break
                sub.after = int(ev["seq"])
                if ev["type"] == "proposal":
                    p = Proposal(str(ev["offer_id"]), "Initial", str(ev["provider_id"]), dict(ev["properties"]),
                                 str(ev["constraints"]), int(ev["at_ms"]))
                    out.append(_proposal_event(sub.add(p), p))
                elif ev["type"] in ("demand-expired", "demand-deleted"):
                    state.subscriptions.pop(sub_id, None)
                    if not out:
                        return golem_error(404, f"subscription {sub_id} ended")
            if out:
                return out
            waiter = sub.changed
            with trio.move_on_after(0.25):  # our demand's own events wake the next turn at the latest
                await waiter.wait()
    return out


def _find(request: Request, sub_id: str, pid: str) -> tuple[Subscription, Proposal] | Response:
    sub = _state(request).subscriptions.get(sub_id)
    if sub is None:
        return golem_error(404, f"no subscription {sub_id}")
    p = sub.proposals.get(pid)
    if p is None:
        return golem_error(404, f"no proposal {pid} in subscription {sub_id}")
    return sub, p


@router.get("/demands/{sub_id}/proposals/{pid}")
async def get_proposal(sub_id: str, pid: str, request: Request, _: Auth) -> Any:
    found = _find(request, sub_id, pid)
    if isinstance(found, Response):
        return found
    return _proposal_event(pid, found[1])["proposal"]


@router.post("/demands/{sub_id}/proposals/{pid}")
async def counter(sub_id: str, pid: str, body: dict[str, Any], request: Request, _: Auth) -> Response:
    """Our counter to the provider; its answer arrives as a ``Draft`` proposal event."""
    found = _find(request, sub_id, pid)
    if isinstance(found, Response):
        return found
    sub, p = found
    properties, constraints = body.get("properties"), body.get("constraints")
    if not isinstance(properties, dict) or not isinstance(constraints, str):
        return golem_error(400, "a counter-proposal is {properties: {...}, constraints: \"...\"}")
    now = _now_ms()
    ours = Proposal(p.offer_id, "Ours", request.app.state.node.node_id, properties, constraints, now, prev=pid)
    our_id = sub.add(ours)
    try:
        answer = await request.app.state.node.market.requestor.counter(
            sub.demand_id, p.offer_id, properties=properties, constraints=our_constraints(constraints))
    except NegotiationFailed as exc:
        sub.push({"eventType": "ProposalRejectedEvent", "eventDate": iso(), "proposalId": our_id,
                  "reason": {"message": str(exc), "golem.proposal.rejection.code": exc.code}})
        return json_string(our_id)
    except (ConstraintSyntaxError, PropertyError) as exc:
        return golem_error(400, str(exc))
    draft = Proposal(p.offer_id, "Draft", p.issuer, dict(answer["properties"]), str(answer["constraints"]),
                     _now_ms(), prev=our_id)
    sub.push(_proposal_event(sub.add(draft), draft))
    return json_string(our_id)


@router.post("/demands/{sub_id}/proposals/{pid}/reject", status_code=204)
async def reject(sub_id: str, pid: str, request: Request, _: Auth) -> Response:
    found = _find(request, sub_id, pid)
    if isinstance(found, Response):
        return found
    found[0].proposals.pop(pid, None)
    return Response(status_code=204)


@router.post("/agreements")
async def create_agreement(body: dict[str, Any], request: Request, _: Auth) -> Response:
    """Propose our agreement on a ``Draft`` proposal; the provider co-signs it before we answer."""
    pid = body.get("proposalId")
    state = _state(request)
    sub = next((s for s in state.subscriptions.values() if isinstance(pid, str) and pid in s.proposals), None)
    if sub is None:
        return golem_error(404, f"no proposal {pid!r} in any subscription")
    p = sub.proposals[pid]  # type: ignore[index]
    if p.kind != "Draft":
        return golem_error(400, f"proposal {pid} is {p.kind}: an agreement needs the provider's Draft proposal")
    try:
        agreement = await request.app.state.node.market.requestor.propose_agreement(sub.demand_id, p.offer_id)
    except NegotiationFailed as exc:
        return golem_error(409 if exc.code not in ("not-countered",) else 400, str(exc))
    agreement_id = str(agreement["agreement_id"])
    state.agreement_subs[agreement_id] = sub.sub_id
    payments = request.app.state.node.payments
    if payments is not None and payments.requestor is not None:  # paid by the client's accepts (payment-api)
        payments.requestor.client_accepts.add(agreement_id)
        allocations = getattr(request.app.state, "golem_allocations", {}) or {}
        if allocations:  # its deposit comes out of the client's budget: at most what an allocation has left
            payments.requestor.deposit_caps[agreement_id] = max(a.total - a.spent for a in allocations.values())
    return json_string(agreement_id, 201)


async def _agreement(request: Request, agreement_id: str) -> dict[str, Any] | Response:
    try:
        return await request.app.state.node.market.get_agreement(agreement_id)  # type: ignore[no-any-return]
    except NegotiationFailed:
        return golem_error(404, f"no agreement {agreement_id}")


_STATES = {"approved": "Approved", "terminated": "Terminated", "rejected": "Rejected", "expired": "Expired",
           "cancelled": "Cancelled", "pending": "Pending", "proposal": "Proposal"}


@router.get("/agreements/{agreement_id}")
async def get_agreement(agreement_id: str, request: Request, _: Auth) -> Any:
    a = await _agreement(request, agreement_id)
    if isinstance(a, Response):
        return a
    at = iso(int(a["valid_until_ms"]))
    return {
        "agreementId": agreement_id,
        "demand": {"properties": a["demand_properties"], "constraints": a["demand_constraints"],
                   "demandId": agreement_id, "requestorId": a["requestor_id"], "timestamp": at},
        "offer": {"properties": golem_offer(dict(a["offer_properties"])),
                  "constraints": a["offer_constraints"], "offerId": a["offer_id"],
                  "providerId": a["provider_id"], "timestamp": at},
        "validTo": at,
        "state": _STATES.get(str(a["state"]), str(a["state"]).capitalize()),
        "timestamp": at,
    }


@router.post("/agreements/{agreement_id}/confirm", status_code=204)
async def confirm(agreement_id: str, request: Request, _: Auth) -> Response:
    a = await _agreement(request, agreement_id)
    if isinstance(a, Response):
        return a
    return Response(status_code=204)  # proposed and co-signed already (create_agreement)


@router.post("/agreements/{agreement_id}/wait", status_code=204)
async def wait(agreement_id: str, request: Request, _: Auth, timeout: float = Query(5.0, ge=0)) -> Response:
    a = await _agreement(request, agreement_id)
    if isinstance(a, Response):
        return a
    if a["state"] == "approved":
        return Response(status_code=204)
    return golem_error(410, f"agreement {agreement_id} is {a['state']}: {a.get('reason') or ''}".strip())


@router.post("/agreements/{agreement_id}/terminate")
async def terminate(agreement_id: str, body: dict[str, Any], request: Request, _: Auth) -> Any:
    """Golem's flat reason ``{"message", "golem.requestor.code"}``; the provider is re-offered to the
    subscription as a fresh ``Initial`` proposal."""
    a = await _agreement(request, agreement_id)
    if isinstance(a, Response):
        return a
    message = body.get("message") if isinstance(body.get("message"), str) else ""
    code = body.get("golem.requestor.code") if isinstance(body.get("golem.requestor.code"), str) else ""
    reason = (f"{code}: {message}" if code else message or "terminated by the requestor")[:200]
    try:
        await request.app.state.node.market.terminate(agreement_id, reason)
    except NegotiationFailed as exc:
        return golem_error(409, str(exc))
    _reoffer(request, agreement_id, a)
    return None


def _reoffer(request: Request, agreement_id: str, a: dict[str, Any]) -> None:
    state = _state(request)
    sub = state.subscriptions.get(state.agreement_subs.pop(agreement_id, ""))
    if sub is None:
        return
    requestor = request.app.state.node.market.requestor
    try:
        live = requestor.get(sub.demand_id).proposals
    except DemandNotFound:
        return
    offer = live.get(str(a["offer_id"])) or next(
        (o for o in live.values() if o.provider_id == a["provider_id"]), None)
    if offer is None:
        return
    p = Proposal(offer.offer_id, "Initial", offer.provider_id, dict(offer.properties), offer.constraints, _now_ms())
    sub.push(_proposal_event(sub.add(p), p))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
