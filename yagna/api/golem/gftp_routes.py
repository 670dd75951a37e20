"""The daemon's side of ``gftp`` (yagna/gftp.py): URLs for files the requestor publishes or receives.

``publish`` names a local file by its sha256 (``gftp://<node id>/<sha256>``); ``receive`` mints a
URL a ``transfer`` writes to (``gftp://<node id>/<token>``), the bytes to land in the given path.
Golem exe-scripts carry these URLs in ``transfer`` commands. At most :data:`MAX_URLS` URLs are
known at once (the oldest forgotten first); a published file must be a regular file.
"""

from __future__ import annotations

import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import trio
from fastapi import APIRouter, Request

from yagna.api.auth import PREFIX, Auth
from yagna.api.golem.common import golem_error

router = APIRouter(prefix=f"{PREFIX}/gftp", tags=["golem gftp"])

MAX_URLS = 4096


@dataclass(frozen=True)
class GftpUrl:
    kind: str
    """``publish`` (a file to send) or ``receive`` (where to write)."""
    path: str
    sha256: str | None = None


def urls(request: Request) -> OrderedDict[str, GftpUrl]:
    table = getattr(request.app.state, "gftp_urls", None)
    if table is None:
        table = request.app.state.gftp_urls = OrderedDict()
    return table  # type: ignore[no-any-return]


def _remember(request: Request, url: str, entry: GftpUrl) -> None:
    table = urls(request)
    table[url] = entry
    while len(table) > MAX_URLS:
        table.popitem(last=False)


def _path(body: dict[str, Any]) -> str | None:
    path = body.get("path")
    return path if isinstance(path, str) and os.path.isabs(path) and len(path) < 4096 else None


@router.post("/publish")
async def publish(body: dict[str, Any], request: Request, _: Auth) -> Any:
    path = _path(body)
    if path is None:
        return golem_error(400, "publish takes {path: <absolute path of a file>}")
    from exeunit.transfer import sha256_file

    try:
        digest, _size = await trio.to_thread.run_sync(sha256_file, path)
    except OSError as exc:
        return golem_error(400, f"cannot read {path}: {exc.strerror}")
    url = f"gftp://{request.app.state.node.node_id}/{digest}"
    _remember(request, url, GftpUrl("publish", path, digest))
    return {"url": url}


@router.post("/receive")
async def receive(body: dict[str, Any], request: Request, _: Auth) -> Any:
    path = _path(body)
    if path is None or not os.path.isdir(os.path.dirname(path)):
        return golem_error(400, "receive takes {path: <absolute path in an existing directory>}")
    url = f"gftp://{request.app.state.node.node_id}/{secrets.token_hex(16)}"
    _remember(request, url, GftpUrl("receive", path))
    return {"url": url}


@router.post("/close")
async def close(body: dict[str, Any], request: Request, _: Auth) -> Any:
    given = body.get("urls")
    if not isinstance(given, list) or not all(isinstance(u, str) for u in given):
        return golem_error(400, "close takes {urls: [url, ...]}")
    table = urls(request)
    return {"closed": [table.pop(u, None) is not None for u in given[:MAX_URLS]]}
