"""Golem's requestor REST API beside ours, on the same port and app keys: a thin translation
onto our services (docs/golem.md), so Golem's SDK (yapapi, golem-js) runs its scripts unmodified.

``GET /me``, ``/market-api/v1``, ``/activity-api/v1``, ``/payment-api/v1``; shapes as measured
against Golem's yagna 0.17.6 (``reference/golem-rest-compat.md``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from yagna.api.auth import Auth


def install(app: FastAPI) -> None:
    from yagna.api.golem import activity, gftp_routes, market, payment

    @app.get("/me", tags=["golem"])
    async def me(request: Request, _: Auth) -> dict[str, Any]:
        node = request.app.state.node
        return {"identity": node.node_id, "name": node.node_id[-8:], "role": "manager"}

    app.include_router(market.router)
    app.include_router(activity.router)
    app.include_router(payment.router)
    app.include_router(gftp_routes.router)
