"""Bearer app-key authentication shared by every route module."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from yagna.store.repos import AppKeyInfo

PREFIX = "/api/v1"


async def require_key(request: Request) -> AppKeyInfo:
    """Bearer app-key check: 401 for a missing or unknown key."""
    checked = request.scope.get(_SCOPE_KEY)
    if checked is not None:  # RequestGuard did it before the body was read
        return checked  # type: ignore[no-any-return]
    info = await _check(request.app.state.node.app_keys, request.headers.get("authorization", ""))
    if isinstance(info, str):
        raise HTTPException(401, info, headers={"WWW-Authenticate": "Bearer"})
    return info


Auth = Annotated[AppKeyInfo, Depends(require_key)]


# -- the ASGI guard: key first, then a bounded body ------------------------------
PUBLIC_PATHS = frozenset({f"{PREFIX}/health", f"{PREFIX}/openapi.json", f"{PREFIX}/docs"})
"""Paths that answer without an app key (no body is read on any of them)."""

SELF_CHECKED = "/dashboard"
"""The dashboard's paths check the app key or their own session cookie (yagna/api/dashboard/routes.py)."""

MAX_BODY = 1 << 20
"""Default request body cap (1 MiB): every JSON body of the API is a few KiB."""

BODY_LIMITS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    # a gossip message (up to 1 MiB on the wire) travels base64 in JSON: 4/3 of it plus slack
    ("POST", re.compile(rf"^{PREFIX}/net/gossip/.+/messages$"), 2 << 20),
)
"""Larger caps for the routes that need them: (method, path pattern, bytes)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def body_limit(method: str, path: str) -> int:
    for m, pattern, limit in BODY_LIMITS:
        if m == method and pattern.match(path):
            return limit
    return MAX_BODY


class _TooLarge(Exception):
    """Raised inside the app's ``receive`` once the body passes its cap."""


async def _answer(send: Send, status: int, error: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Rejects a request before FastAPI reads its body.

    A missing or unknown app key is a 401 and a declared ``Content-Length`` over
    the route's cap a 413, with no body byte read; a chunked or lying body is cut
    with a 413 as soon as the stream passes the cap (nothing past it is kept).
    The checked key is left in ``scope`` for :func:`require_key`.
    """

    def __init__(self, app: ASGIApp, keys: Callable[[], Any]) -> None:
        self.app = app
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path not in PUBLIC_PATHS and path != SELF_CHECKED and not path.startswith(SELF_CHECKED + "/"):
            info = await _check(self._keys(), _header(scope, b"authorization"))
            if isinstance(info, str):
                await _answer(send, 401, "unauthorized", info, ((b"www-authenticate", b"Bearer"),))
                return
            scope[_SCOPE_KEY] = info
        limit = body_limit(scope["method"], path)
        declared = _header(scope, b"content-length")
        if declared:
            if not declared.isdigit():
                await _answer(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _answer(send, 413, "body_too_large", f"the body may be at most {limit} bytes on {path}")
                return
        seen = 0
        cut = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal seen, cut
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    cut = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if cut:
                return  # the app's own error answer to the cut body; ours goes out instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except _TooLarge:
            pass  # FastAPI may also turn it into a 400 for the body: either way ours is the answer
        if cut and not started:
            await _answer(send, 413, "body_too_large", f"the body may be at most {limit} bytes on {path}")


_SCOPE_KEY = "yagna.app_key"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()  # type: ignore[no-any-return]
    return ""


async def _check(keys: Any, header: str) -> AppKeyInfo | str:
    """The key's record, or why it is refused."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "missing bearer app key"
    info = await keys.check(token.strip())
    return "invalid app key" if info is None else info  # type: ignore[no-any-return]
