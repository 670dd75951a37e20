"""REST routes of payments: balances, funding (test networks), channels, invoices.

Amounts are decimal strings of tokens (``"0.25"``), never floats; the JSON
also carries them in base units (``*_units``, integers) for programs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from payments.errors import AmountInvalid, DriverError, PaymentError
from yagna.api.auth import PREFIX, Auth
from yagna.core.money import MoneyError, parse_amount

router = APIRouter(prefix=PREFIX)


class FundIn(BaseModel):
    amount: str = Field(max_length=100, description="tokens to credit, a positive decimal string, e.g. \"10\" (test networks only)")


def _positive(text: str) -> int:
    """Base units of a positive amount within 2**255 - 1 (a MoneyError, i.e. a 400, otherwise)."""
    units = parse_amount(text)
    if units <= 0:
        raise MoneyError(f"amount must be positive, got {text!r}")
    return units


def _payments(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.node.payments


@router.get("/payment/status", tags=["payment"])
async def payment_status(request: Request, _: Auth) -> dict[str, Any]:
    return await _payments(request).status()  # type: ignore[no-any-return]


@router.post("/payment/fund", tags=["payment"])
async def payment_fund(body: FundIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _payments(request).fund(_positive(body.amount))  # type: ignore[no-any-return]


@router.get("/payment/channels", tags=["payment"])
async def payment_channels(request: Request, _: Auth) -> list[dict[str, Any]]:
    return await _payments(request).channels()  # type: ignore[no-any-return]


@router.get("/payment/invoices", tags=["payment"])
async def payment_invoices(request: Request, _: Auth) -> list[dict[str, Any]]:
    return await _payments(request).invoices()  # type: ignore[no-any-return]


class BonusIn(BaseModel):
    agreement_id: str
    amount: str = Field(max_length=100, description="tokens to pay on top of the metered usage, a decimal string")


@router.post("/payment/bonus", tags=["payment"])
async def payment_bonus(body: BonusIn, request: Request, _: Auth) -> dict[str, Any]:
    """Requestor: pay a provider more than its metered usage now (a verified task's bonus share)."""
    requestor = _payments(request).requestor
    if requestor is None:
        raise HTTPException(409, "this node does not buy")
    return await requestor.pay_bonus(body.agreement_id, _positive(body.amount))  # type: ignore[no-any-return]


@router.get("/payment/stats", tags=["payment"])
async def payment_stats(request: Request, _: Auth) -> dict[str, Any]:
    """Provider: debit note -> voucher stored -> acknowledged, ms, for the last 1,000 notes."""
    provider = _payments(request).provider
    return {"round_trips": list(provider.round_trips) if provider is not None else []}


def install(app: FastAPI) -> None:
    app.include_router(router)

    @app.exception_handler(MoneyError)
    async def money_error(request: Request, exc: MoneyError) -> JSONResponse:
        return JSONResponse({"error": "invalid_amount", "message": str(exc)}, status_code=400)

    @app.exception_handler(AmountInvalid)
    async def amount_invalid(request: Request, exc: AmountInvalid) -> JSONResponse:
        return JSONResponse({"error": "invalid_amount", "message": str(exc)}, status_code=400)

    @app.exception_handler(DriverError)
    async def driver_error(request: Request, exc: DriverError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=409)

    @app.exception_handler(PaymentError)
    async def payment_error(request: Request, exc: PaymentError) -> JSONResponse:
        return JSONResponse({"error": getattr(exc, "code", "payment-error"), "message": str(exc)}, status_code=409)
