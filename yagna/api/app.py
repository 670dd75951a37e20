"""The REST API: FastAPI routes under ``/api/v1`` with bearer app-key auth.

Golem's API prefixes (``/market-api/v1``, ``/activity-api/v1``,
``/payment-api/v1``, ``/me``) serve Golem's own API (:mod:`yagna.api.golem`).
Only the OpenAPI document and the health probe answer without a key.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Literal, Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, Field

from yagna import __version__
from yagna.api import activity_routes, dashboard, deploy_routes, golem, market_routes, metrics_routes, payment_routes
from yagna.api.auth import PREFIX, Auth, RequestGuard
from yagna.core.errors import YagnaError
from yagna.net.errors import GossipError
from yagna.store.repos import AppKeyInfo, AppKeys
from yagna.store.errors import AppKeyExists
from yagna.user_topics import TopicNameError, UserTopics

log = logging.getLogger("yagna.api")



class NodeFacade(Protocol):
    """What the API needs from the running node."""

    node_id: str
    role: str
    app_keys: AppKeys
    user_topics: UserTopics

    def net_status(self) -> dict: ...  # type: ignore[type-arg]
    def net_peers(self) -> list[dict]: ...  # type: ignore[type-arg]


# -- models (they make the OpenAPI document useful) ----------------------------
class Identity(BaseModel):
    node_id: str
    role: str
    version: str


class NetStatus(BaseModel):
    node_id: str
    listen_addrs: list[str] = Field(description="multiaddrs with /p2p/<node id>, for --bootstrap (0.0.0.0 expanded per interface)")
    reachability: Literal["public", "private", "unknown"] = Field(
        description="whether peers on other networks can dial us, as found by dial-backs of peers"
    )
    advertised_addrs: list[str] = Field(
        description="what a peer on the internet is told of us: public and confirmed observed addresses, "
        "relay addresses while not public; never loopback or private ones"
    )
    connected: int
    known: int
    gossip_topics: list[str]
    relay: dict[str, Any] | None = Field(
        default=None, description="circuit relay v2: serving (bool) and our reservations (relay node ids)"
    )
    hole_punching: dict[str, Any] | None = Field(
        default=None, description="DCUtR: enabled, sessions active, attempts, succeeded, failed, refused, last_error"
    )


class Peer(BaseModel):
    node_id: str
    connected: bool
    addrs: list[str] = Field(description="advertised listen addresses")
    remote_addrs: list[str] = Field(description="transport addresses of the live connection")
    direction: str | None
    bootstrap: bool
    connected_since: float | None
    failures: int
    connection: str | None = Field(default=None, description="direct or relayed (None: not connected)")
    relay: str | None = Field(default=None, description="the relay's node id when relayed")


class AppKeyOut(BaseModel):
    id: str
    name: str
    created_at: int
    last_used_at: int | None


class AppKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class AppKeyCreated(AppKeyOut):
    key: str = Field(description="the bearer token; shown only once")


class PublishIn(BaseModel):
    data: str = Field(description="the message (UTF-8 text, or base64 with encoding=base64)")
    encoding: str = Field(default="utf-8", pattern="^(utf-8|base64)$")


class GossipOut(BaseModel):
    seq: int
    origin: str
    data: str
    encoding: str
    received_at: float


class Error(BaseModel):
    error: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": what}
    for code, what in {
        400: "bad input (the message says which)",
        401: "missing or invalid app key",
        404: "no such object",
        409: "not in this node's role or the object's state",
        413: "request body over the route's cap",
        502: "a peer answered garbage",
        503: "a peer or service is unreachable",
    }.items()
}
"""The typed error answers any route may give (422 is FastAPI's own, documented per route)."""


def _key_out(info: AppKeyInfo) -> AppKeyOut:
    return AppKeyOut(id=info.id, name=info.name, created_at=info.created_at, last_used_at=info.last_used_at)




def create_app(node: NodeFacade) -> FastAPI:
    app = FastAPI(
        title="yagna node API",
        version=__version__,
        description="Local control API of a yagna node. Authenticate with `Authorization: Bearer <app key>`.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        responses=ERRORS,
    )
    app.state.node = node
    app.add_middleware(RequestGuard, keys=lambda: node.app_keys)

    unauthorized: dict[int | str, dict[str, Any]] = {401: {"model": Error, "description": "missing or invalid app key"}}

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and the router's own (404, 405)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 409: "conflict"}.get(exc.status_code, "error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get(f"{PREFIX}/health", tags=["node"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(f"{PREFIX}/id", tags=["node"], responses=unauthorized)
    async def identity(_: Auth) -> Identity:
        return Identity(node_id=node.node_id, role=node.role, version=__version__)

    @app.get(f"{PREFIX}/net/status", tags=["net"], responses=unauthorized)
    async def net_status(_: Auth) -> NetStatus:
        return NetStatus(**node.net_status())

    @app.get(f"{PREFIX}/net/peers", tags=["net"], responses=unauthorized)
    async def net_peers(_: Auth, all: bool = False) -> list[Peer]:
        peers = [Peer(**p) for p in node.net_peers()]
        return peers if all else [p for p in peers if p.connected]

    @app.put(f"{PREFIX}/net/gossip/{{topic:path}}/subscription", tags=["net"], responses=unauthorized)
    async def gossip_subscribe(topic: str, _: Auth) -> dict[str, str]:
        try:
            await node.user_topics.subscribe(topic)
        except TopicNameError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"topic": topic, "status": "subscribed"}

    @app.post(f"{PREFIX}/net/gossip/{{topic:path}}/messages", tags=["net"], responses=unauthorized, status_code=202)
    async def gossip_publish(topic: str, body: PublishIn, _: Auth) -> dict[str, str]:
        try:
            data = base64.b64decode(body.data, validate=True) if body.encoding == "base64" else body.data.encode()
            await node.user_topics.publish(topic, data)
        except (binascii.Error, ValueError):  # non-ASCII text is a ValueError, not a binascii.Error
            raise HTTPException(400, "data is not valid base64") from None
        except (TopicNameError, GossipError) as exc:
            raise HTTPException(400, str(exc)) from None
        return {"topic": topic, "status": "queued"}

    @app.get(f"{PREFIX}/net/gossip/{{topic:path}}/messages", tags=["net"], responses=unauthorized)
    async def gossip_messages(topic: str, _: Auth, after: int = 0) -> list[GossipOut]:
        try:
            msgs = node.user_topics.messages(topic, after)
        except TopicNameError as exc:
            raise HTTPException(400, str(exc)) from None
        out = []
        for m in msgs:
            try:
                text, enc = m.data.decode(), "utf-8"
            except UnicodeDecodeError:
                text, enc = base64.b64encode(m.data).decode(), "base64"
            out.append(GossipOut(seq=m.seq, origin=m.origin, data=text, encoding=enc, received_at=m.received_at))
        return out

    @app.get(f"{PREFIX}/net/gossip/{{topic:path}}/peers", tags=["net"], responses=unauthorized)
    async def gossip_peers(topic: str, _: Auth) -> list[str]:
        try:
            return node.user_topics.peers(topic)
        except TopicNameError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get(f"{PREFIX}/app-keys", tags=["app-keys"], responses=unauthorized)
    async def list_keys(_: Auth) -> list[AppKeyOut]:
        return [_key_out(k) for k in await node.app_keys.list()]

    @app.post(f"{PREFIX}/app-keys", tags=["app-keys"], responses=unauthorized, status_code=201)
    async def create_key(body: AppKeyCreate, _: Auth) -> AppKeyCreated:
        try:
            info, token = await node.app_keys.create(body.name)
        except AppKeyExists:
            raise HTTPException(409, f"an app key named {body.name!r} exists; drop it first or pick another name") from None
        return AppKeyCreated(**_key_out(info).model_dump(), key=token)

    @app.delete(f"{PREFIX}/app-keys/{{name}}", tags=["app-keys"], responses=unauthorized, status_code=204)
    async def drop_key(name: str, _: Auth) -> None:
        if not await node.app_keys.drop(name):
            raise HTTPException(404, f"no app key named {name!r}")

    market_routes.install(app)
    activity_routes.install(app)
    payment_routes.install(app)
    deploy_routes.install(app)
    golem.install(app)
    dashboard.install(app)
    metrics_routes.install(app)

    @app.exception_handler(YagnaError)
    async def yagna_error(request: Request, exc: YagnaError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        """A bug: logged once with its traceback, answered with a typed error and no trace."""
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal", "message": "internal error; see the node's log"}, status_code=500)

    return app
