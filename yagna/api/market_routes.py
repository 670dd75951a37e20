"""REST routes of the market: offers, demands and their events, negotiation, agreements, presets.

Requestor flow for the SDK::

    POST /market/demands                         -> {demand_id, ...}
    GET  /market/demands/{id}/events?after=N&timeout=S   (long poll: proposals, withdrawals, ...)
    POST /market/demands/{id}/proposals/{offer_id}/counter   -> the provider's counter or 409 + reason
    POST /market/agreements {demand_id, offer_id}            -> the co-signed agreement (approved)
    POST /market/agreements/{id}/wait                        -> its state (approval is synchronous)
    POST /market/demands/{id}/negotiate {count, caps...}     -> the strategy does all of the above
    POST /market/agreements/{id}/terminate {reason}

A constraint that does not parse is a 400 naming the position and what was
expected there; a refusal by the provider is a 409 carrying its code and message.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from market.errors import ConstraintSyntaxError, PropertyError
from market.policy import PolicyConfig, PolicyError
from market.presets import Preset, PresetError
from market.strategy import StrategyConfig, StrategyError
from yagna.api.auth import PREFIX, Auth
from yagna.market_service.provider import PresetExists, PresetNotFound
from yagna.market_service.requestor import DemandNotFound, NegotiationFailed, proposal_view

router = APIRouter(prefix=f"{PREFIX}")


class DemandIn(BaseModel):
    properties: dict[str, Any] = Field(default_factory=dict)
    constraints: str = Field(default="", description="LDAP-filter constraints on offers, e.g. (golem.inf.cpu.threads>=2)")
    subnet: str = "public"
    expiration_s: int = Field(default=1800, ge=1, le=7 * 24 * 3600, description="agreement lifetime wanted (sets golem.srv.comp.expiration)")
    ttl_s: int = Field(default=3600, ge=1, le=3600, description="how long the demand stays open")


class CounterIn(BaseModel):
    properties: dict[str, Any] | None = None
    constraints: str | None = None


class AgreementIn(BaseModel):
    demand_id: str
    offer_id: str
    valid_for_s: float = Field(default=30, gt=0, le=600, description="how long the provider has to approve")


class NegotiateIn(BaseModel):
    count: int = Field(default=1, ge=1, le=100)
    timeout_s: float = Field(default=10, gt=0, le=300)
    strategy: dict[str, Any] = Field(default_factory=dict, description="market.strategy.StrategyConfig as JSON: price caps (decimal strings), deny list, weights")


class OutcomeIn(BaseModel):
    outcome: str = Field(description="success, failure, timeout or disagreement (a result that lost a vote)")
    latency_ms: float | None = Field(default=None, ge=0, description="time to the result")


class TerminateIn(BaseModel):
    reason: str = Field(default="requestor-done", min_length=1, max_length=200)


def _market(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.node.market


def _requestor(request: Request):  # type: ignore[no-untyped-def]
    market = _market(request)
    if market.requestor is None:
        raise HTTPException(409, "this node runs as a provider only; start it with --role requestor or both")
    return market.requestor


def _provider(request: Request):  # type: ignore[no-untyped-def]
    market = _market(request)
    if market.provider is None:
        raise HTTPException(409, "this node does not sell; start it with --role provider or both")
    return market.provider


# -- reputation ------------------------------------------------------------------------------
@router.get("/reputation", tags=["market"])
async def reputation(request: Request, _: Auth) -> list[dict[str, Any]]:
    """This node's own record of every provider it used, best first (what its strategy scores)."""
    return await _requestor(request).reputation()  # type: ignore[no-any-return]


@router.post("/reputation/{provider_id}", tags=["market"])
async def record_outcome(provider_id: str, body: OutcomeIn, request: Request, _: Auth) -> dict[str, Any]:
    """Record a task outcome for a provider (the SDK reports each verified or failed task)."""
    if body.outcome not in ("success", "failure", "timeout", "disagreement"):
        raise HTTPException(400, "outcome must be success, failure, timeout or disagreement")
    return await _requestor(request).record(provider_id, body.outcome, body.latency_ms)  # type: ignore[no-any-return]


# -- offers ------------------------------------------------------------------------------
@router.get("/market/offers", tags=["market"])
async def list_offers(request: Request, _: Auth, subnet: str | None = None) -> list[dict[str, Any]]:
    return _market(request).offers(subnet=subnet)  # type: ignore[no-any-return]


@router.get("/market/status", tags=["market"])
async def market_status(request: Request, _: Auth) -> dict[str, Any]:
    return _market(request).status()  # type: ignore[no-any-return]


# -- demands -------------------------------------------------------------------------------
@router.post("/market/demands", tags=["market"], status_code=201)
async def create_demand(body: DemandIn, request: Request, _: Auth) -> dict[str, Any]:
    state = await _requestor(request).create_demand(
        body.properties, body.constraints, subnet=body.subnet, expiration_s=body.expiration_s, ttl_s=body.ttl_s
    )
    return state.view()  # type: ignore[no-any-return]


@router.get("/market/demands", tags=["market"])
async def list_demands(request: Request, _: Auth) -> list[dict[str, Any]]:
    return [d.view() for d in _requestor(request).demands.values()]


@router.get("/market/demands/{demand_id}", tags=["market"])
async def get_demand(demand_id: str, request: Request, _: Auth) -> dict[str, Any]:
    return _requestor(request).get(demand_id).view()  # type: ignore[no-any-return]


@router.delete("/market/demands/{demand_id}", tags=["market"], status_code=204)
async def delete_demand(demand_id: str, request: Request, _: Auth) -> None:
    _requestor(request).delete_demand(demand_id)


@router.get("/market/demands/{demand_id}/events", tags=["market"])
async def demand_events(
    demand_id: str, request: Request, _: Auth,
    after: int = Query(0, ge=0, description="the last event seq seen"),
    timeout: float = Query(0, ge=0, le=60, allow_inf_nan=False, description="seconds to wait for an event"),
) -> list[dict[str, Any]]:
    return await _requestor(request).events(demand_id, after, timeout)  # type: ignore[no-any-return]


@router.get("/market/demands/{demand_id}/proposals", tags=["market"])
async def demand_proposals(demand_id: str, request: Request, _: Auth) -> list[dict[str, Any]]:
    state = _requestor(request).get(demand_id)
    return [proposal_view(o) for o in state.proposals.values()]


@router.post("/market/demands/{demand_id}/proposals/{offer_id}/counter", tags=["market"])
async def counter(demand_id: str, offer_id: str, body: CounterIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _requestor(request).counter(  # type: ignore[no-any-return]
        demand_id, offer_id, properties=body.properties, constraints=body.constraints
    )


@router.post("/market/demands/{demand_id}/negotiate", tags=["market"])
async def negotiate(demand_id: str, body: NegotiateIn, request: Request, _: Auth) -> dict[str, Any]:
    config = StrategyConfig.from_json(body.strategy) if body.strategy else StrategyConfig()
    return await _requestor(request).negotiate(demand_id, count=body.count, config=config, timeout=body.timeout_s)  # type: ignore[no-any-return]


# -- agreements -----------------------------------------------------------------------------
@router.post("/market/agreements", tags=["market"], status_code=201)
async def propose_agreement(body: AgreementIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _requestor(request).propose_agreement(  # type: ignore[no-any-return]
        body.demand_id, body.offer_id, valid_for_ms=int(body.valid_for_s * 1000)
    )


@router.get("/market/agreements", tags=["market"])
async def list_agreements(request: Request, _: Auth, role: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
    return await _market(request).list_agreements(role=role, state=state)  # type: ignore[no-any-return]


@router.get("/market/agreements/{agreement_id}", tags=["market"])
async def get_agreement(agreement_id: str, request: Request, _: Auth) -> dict[str, Any]:
    return await _market(request).get_agreement(agreement_id)  # type: ignore[no-any-return]


@router.post("/market/agreements/{agreement_id}/wait", tags=["market"])
async def wait_agreement(agreement_id: str, request: Request, _: Auth) -> dict[str, Any]:
    """The provider answers a proposal in the same exchange, so an agreement is already decided when it exists."""
    return await _market(request).get_agreement(agreement_id)  # type: ignore[no-any-return]


@router.post("/market/agreements/{agreement_id}/terminate", tags=["market"])
async def terminate_agreement(agreement_id: str, body: TerminateIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _market(request).terminate(agreement_id, body.reason)  # type: ignore[no-any-return]


# -- provider ------------------------------------------------------------------------------------
@router.get("/provider/status", tags=["provider"])
async def provider_status(request: Request, _: Auth) -> dict[str, Any]:
    return _provider(request).status()  # type: ignore[no-any-return]


@router.get("/provider/policy", tags=["provider"])
async def get_policy(request: Request, _: Auth) -> dict[str, Any]:
    return _provider(request).policy.config.to_json()  # type: ignore[no-any-return]


@router.patch("/provider/policy", tags=["provider"])
async def update_policy(body: dict[str, Any], request: Request, _: Auth) -> dict[str, Any]:
    """Change some fields of the acceptance policy (the others keep their values)."""
    provider = _provider(request)
    config = PolicyConfig.from_json({**provider.policy.config.to_json(), **body})
    await provider.set_policy(config)
    return config.to_json()


@router.get("/provider/presets", tags=["provider"])
async def list_presets(request: Request, _: Auth) -> list[dict[str, Any]]:
    return [p.to_json() for _, p in sorted(_provider(request).presets.items())]


@router.post("/provider/presets", tags=["provider"], status_code=201)
async def create_preset(body: dict[str, Any], request: Request, _: Auth) -> dict[str, Any]:
    preset = await _provider(request).create_preset(Preset.from_json(body))
    return preset.to_json()  # type: ignore[no-any-return]


@router.patch("/provider/presets/{name}", tags=["provider"])
async def update_preset(name: str, body: dict[str, Any], request: Request, _: Auth) -> dict[str, Any]:
    provider = _provider(request)
    current = provider.presets.get(name)
    if current is None:
        raise HTTPException(404, f"no preset named {name!r}")
    merged = {**current.to_json(), **body, "name": name}
    if isinstance(body.get("pricing"), dict):
        merged["pricing"] = {**current.to_json()["pricing"], **body["pricing"]}
    preset = await provider.update_preset(name, Preset.from_json(merged))
    return preset.to_json()  # type: ignore[no-any-return]


@router.delete("/provider/presets/{name}", tags=["provider"], status_code=204)
async def delete_preset(name: str, request: Request, _: Auth) -> None:
    await _provider(request).delete_preset(name)


def install(app) -> None:  # type: ignore[no-untyped-def]
    """Mount the routes and map the market's errors to HTTP answers."""
    app.include_router(router)

    @app.exception_handler(ConstraintSyntaxError)
    async def syntax_error(request: Request, exc: ConstraintSyntaxError) -> JSONResponse:
        return JSONResponse({"error": "constraint_syntax", "message": str(exc), "position": exc.position,
                             "expected": exc.expected}, status_code=400)

    @app.exception_handler(PresetError)
    async def preset_error(request: Request, exc: PresetError) -> JSONResponse:
        return JSONResponse({"error": "invalid_preset", "message": str(exc), "field": exc.field}, status_code=400)

    for exc_type, status, code in _PLAIN_ERRORS:
        app.add_exception_handler(exc_type, _plain_handler(status, code))

    @app.exception_handler(NegotiationFailed)
    async def negotiation_failed(request: Request, exc: NegotiationFailed) -> JSONResponse:
        status = 404 if exc.code in ("unknown-agreement", "offer-unknown") else 409
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=status)


_PLAIN_ERRORS = (
    (PropertyError, 400, "invalid_properties"),
    (PolicyError, 400, "invalid_policy"),
    (StrategyError, 400, "invalid_strategy"),
    (DemandNotFound, 404, "not_found"),
    (PresetNotFound, 404, "not_found"),
    (PresetExists, 409, "conflict"),
)
"""Market errors answered as ``{"error": code, "message": str(exc)}`` with this status."""


def _plain_handler(status: int, code: str):  # type: ignore[no-untyped-def]
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": code, "message": str(exc)}, status_code=status)

    return handle
