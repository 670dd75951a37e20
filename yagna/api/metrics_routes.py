"""``GET /metrics``: the node's Prometheus metrics (docs/metrics.md).

On the API port it needs the app key like every route (the request guard checks
it before anything runs). The same page is served without a key by the optional
``--metrics-listen`` listener (:mod:`yagna.metrics.listener`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from yagna.api.auth import Auth
from yagna.metrics.exposition import CONTENT_TYPE
from yagna.metrics.registry import NodeMetrics

PATH = "/metrics"
DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition format 0.0.4", "content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
}


def node_metrics(app: FastAPI, node: Any) -> NodeMetrics:
    """The node's own (``Node.metrics``), else one made for this app (a node facade without it)."""
    metrics = getattr(node, "metrics", None)
    if isinstance(metrics, NodeMetrics):
        return metrics
    if not isinstance(getattr(app.state, "metrics", None), NodeMetrics):
        app.state.metrics = NodeMetrics()
    return app.state.metrics  # type: ignore[no-any-return]


async def scrape(request: Request) -> Response:
    node = request.app.state.node
    page = await node_metrics(request.app, node).scrape(node)
    return Response(page, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


router = APIRouter()


@router.get(PATH, tags=["node"], response_class=Response, responses=DOC)
async def metrics(request: Request, _: Auth) -> Response:
    """The node's metrics for Prometheus: peers, offers, agreements, activities, containers, earnings and spend,
    voucher round trips, warnings and errors, the process (docs/metrics.md)."""
    return await scrape(request)


def install(app: FastAPI) -> None:
    app.include_router(router)
