"""REST routes of deployments: long-running services from a manifest (docs/services.md)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from yagna.api.auth import PREFIX, Auth
from yagna.deploy_service.manager import DeployError

router = APIRouter(prefix=PREFIX)


class PortIn(BaseModel):
    service: str = Field(max_length=64)
    container_port: int = Field(ge=1, le=65535)
    local_port: int = Field(ge=1, le=65535, description="the first replica's; replica i gets local_port + i")


class DeploymentIn(BaseModel):
    manifest: str = Field(max_length=256 * 1024, description="the manifest's text (Akash SDL v2.0 subset)")
    source: str = Field(default="manifest", max_length=256, description="its file name, for error messages")
    rates: dict[str, str] = Field(default_factory=dict, description="tokens per unit of a foreign denomination")
    ports: list[PortIn] = Field(default_factory=list, max_length=256)
    payment_interval_s: int | None = Field(default=None, ge=1, le=3600,
                                           description="debit-note interval asked of providers (negotiable)")


def _deployments(request: Request):  # type: ignore[no-untyped-def]
    manager = getattr(request.app.state.node, "deployments", None)
    if manager is None:
        raise HTTPException(409, "this node runs as a provider only; start it with --role requestor or both")
    return manager


@router.post("/deployments", tags=["deploy"], status_code=201)
async def create_deployment(body: DeploymentIn, request: Request, _: Auth) -> dict[str, Any]:
    rates = {}
    for denom, rate in body.rates.items():
        try:
            rates[denom.lower()] = Decimal(rate)
        except InvalidOperation:
            raise DeployError("bad-rate", f"rate of {denom!r} is not a decimal number: {rate!r}") from None
    ports = {(p.service, p.container_port): p.local_port for p in body.ports}
    return await _deployments(request).create(body.manifest, source=body.source, rates=rates,  # type: ignore[no-any-return]
                                              ports=ports, payment_interval_s=body.payment_interval_s)


@router.get("/deployments", tags=["deploy"])
async def list_deployments(request: Request, _: Auth) -> list[dict[str, Any]]:
    return _deployments(request).list()  # type: ignore[no-any-return]


@router.get("/deployments/{deployment_id}", tags=["deploy"])
async def get_deployment(deployment_id: str, request: Request, _: Auth) -> dict[str, Any]:
    manager = _deployments(request)
    return manager.view(manager.get(deployment_id))  # type: ignore[no-any-return]


@router.delete("/deployments/{deployment_id}", tags=["deploy"])
async def close_deployment(deployment_id: str, request: Request, _: Auth) -> dict[str, Any]:
    return await _deployments(request).close(deployment_id)  # type: ignore[no-any-return]


class FundIn(BaseModel):
    hours: float = Field(default=1.0, gt=0, le=24 * 365, description="hours of each lease's worst case to add")


@router.post("/deployments/{deployment_id}/fund", tags=["deploy"])
async def fund_deployment(deployment_id: str, body: FundIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _deployments(request).fund(deployment_id, body.hours)  # type: ignore[no-any-return]


@router.get("/deployments/{deployment_id}/logs", tags=["deploy"])
async def deployment_logs(
    deployment_id: str, request: Request, _: Auth,
    after: int = Query(0, ge=0, description="the last line seq seen"),
    timeout: float = Query(0, ge=0, le=60, allow_inf_nan=False, description="seconds to wait for a new line"),
    tail: int | None = Query(None, ge=0, le=10000, description="only the last N lines (with after=0)"),
) -> dict[str, Any]:
    return await _deployments(request).logs(deployment_id, after=after, timeout=timeout,  # type: ignore[no-any-return]
                                            tail=tail)


def install(app: FastAPI) -> None:
    app.include_router(router)

    @app.exception_handler(DeployError)
    async def deploy_error(request: Request, exc: DeployError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=exc.status)
