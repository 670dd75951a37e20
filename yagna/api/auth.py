"""Bearer app-key authentication shared by every route module."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from yagna.store.repos import AppKeyInfo

PREFIX = "/api/v1"


async def require_key(request: Request) -> AppKeyInfo:
    """Bearer app-key check: 401 for a missing or unknown key."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer app key", headers={"WWW-Authenticate": "Bearer"})
    info = await request.app.state.node.app_keys.check(token.strip())
    if info is None:
        raise HTTPException(401, "invalid app key", headers={"WWW-Authenticate": "Bearer"})
    return info  # type: ignore[no-any-return]


Auth = Annotated[AppKeyInfo, Depends(require_key)]
