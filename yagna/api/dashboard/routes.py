"""The dashboard's routes and who may see them.

::

    POST /api/v1/dashboard/login-token   (app key) -> a one-time token and the login path
    GET  /dashboard/login?token=T        trades T for a session cookie, redirects to /dashboard
    GET  /dashboard                      the page                (app key or session cookie)
    GET  /dashboard/data                 its live part as JSON   (app key or session cookie)
    GET  /dashboard/static/{name}        its script and style    (app key or session cookie)

The session cookie is HttpOnly, SameSite=Strict and scoped to ``/dashboard``,
and only these GET routes accept it: every other route of the API wants the
app key in the ``Authorization`` header, which a browser never adds by itself,
so no other site can make a logged-in browser act on the node (CSRF). The
request guard (:mod:`yagna.api.auth`) leaves ``/dashboard`` paths to
:func:`require_viewer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from yagna.api.auth import PREFIX, Auth, require_key
from yagna.api.dashboard import collect, render
from yagna.api.dashboard.sessions import SessionStore, TokenRefused

DASHBOARD = "/dashboard"
COOKIE = "yagna_dashboard"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
"""On every dashboard answer: nothing but our own script and style runs, nothing is cached or framed."""
STATIC_TYPES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}

REFUSALS = {
    "unknown": (401, "This login link is not valid", "The link's token is unknown to this node (mistyped, or "
                                                     "issued before the node restarted)."),
    "expired": (403, "This login link has expired", "A login link works for a short while only."),
    "used": (403, "This login link was used already", "A login link works once; the browser that used it "
                                                     "keeps the session."),
}


class LoginRequired(Exception):
    """A dashboard GET without the app key or a live session cookie."""


class LoginLink(BaseModel):
    token: str = Field(description="one-time login token")
    path: str = Field(description="the login path on this API: open <api url><path> in a browser")
    expires_in_s: float


def _sessions(request: Request) -> SessionStore:
    return request.app.state.dashboard_sessions  # type: ignore[no-any-return]


def cookie_name(request: Request) -> str:
    """Per port: browsers share cookies across the ports of 127.0.0.1, and a devnet runs several nodes."""
    server = request.scope.get("server")
    return f"{COOKIE}_{server[1]}" if server and server[1] else COOKIE


async def require_viewer(request: Request) -> None:
    """The app key as a bearer header (a bad one is a 401), else a live session cookie."""
    if request.headers.get("authorization"):
        await require_key(request)
        return
    if _sessions(request).check(request.cookies.get(cookie_name(request), "")):
        return
    raise LoginRequired()


Viewer = Annotated[None, Depends(require_viewer)]

router = APIRouter()


@router.post(f"{PREFIX}/dashboard/login-token", tags=["dashboard"], status_code=201)
async def login_token(request: Request, _: Auth) -> LoginLink:
    """A one-time login link for a browser (what ``yagna dashboard`` opens)."""
    sessions = _sessions(request)
    token = sessions.issue_token()
    return LoginLink(token=token, path=f"{DASHBOARD}/login?token={token}", expires_in_s=sessions.token_ttl_s)


@router.get(f"{DASHBOARD}/login", include_in_schema=False)
async def login(request: Request, token: str = "") -> Response:
    sessions = _sessions(request)
    try:
        session = sessions.redeem(token)
    except TokenRefused as exc:
        status, title, text = REFUSALS[exc.reason]
        return HTMLResponse(render.message_page(title, text), status_code=status, headers=HEADERS)
    answer = RedirectResponse(DASHBOARD, status_code=303, headers=HEADERS)
    answer.set_cookie(cookie_name(request), session, max_age=int(sessions.session_ttl_s), path=DASHBOARD,
                      httponly=True, samesite="strict")
    return answer


@router.get(DASHBOARD, include_in_schema=False)
async def page(request: Request, _: Viewer) -> Response:
    snapshot = await collect.snapshot(request.app.state.node)
    return HTMLResponse(render.page(snapshot), headers=HEADERS)


@router.get(f"{DASHBOARD}/data", tags=["dashboard"])
async def data(request: Request, _: Viewer) -> JSONResponse:
    """The dashboard's live part: the node and its activities with their usage."""
    return JSONResponse(await collect.live(request.app.state.node), headers=HEADERS)


@router.get(f"{DASHBOARD}/static/{{name}}", include_in_schema=False)
async def static(name: str, request: Request, _: Viewer) -> Response:
    body = request.app.state.dashboard_static.get(name)
    if body is None:
        return Response("not found", status_code=404, media_type="text/plain", headers=HEADERS)
    return Response(body, media_type=STATIC_TYPES[name], headers=HEADERS)


def _static_files() -> dict[str, bytes]:
    folder = resources.files("yagna.api.dashboard") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_TYPES}


def install(app: FastAPI, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Mount the dashboard on the node's API app, with its own session store."""
    app.state.dashboard_sessions = SessionStore(clock=clock)
    app.state.dashboard_static = _static_files()
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        headers = {**HEADERS, "WWW-Authenticate": "Bearer"}
        if request.url.path == f"{DASHBOARD}/data":
            body: Any = {"error": "unauthorized", "message": "log in with the link of `yagna dashboard`, "
                                                            "or send the app key as a bearer token"}
            return JSONResponse(body, status_code=401, headers=headers)
        return HTMLResponse(render.message_page("Log in to this node's dashboard",
                                                "This page needs the node's app key or a session from a login link."),
                            status_code=401, headers=headers)
