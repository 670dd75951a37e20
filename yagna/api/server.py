"""Serving the API with hypercorn's trio worker on a socket we bind ourselves.

Binding first lets a busy port fail with a clear message before anything else
starts, and gives us the real port when 0 (OS-chosen) was asked for.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from fastapi import FastAPI
from hypercorn.config import Config
from hypercorn.trio import serve

from yagna.config import ConfigError

log = logging.getLogger("yagna.api")


def bind_api_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"API port {host}:{port} is already in use (another yagna?); "
                "stop it or pick another port with --api-port (0 = any free port)"
            ) from None
        raise ConfigError(f"cannot bind the API to {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _logged_once(app: FastAPI) -> Callable[..., Awaitable[None]]:
    """The app, with its re-raised bugs dropped: the app's handler logged them and answered a typed 500."""

    async def serve_app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception:  # noqa: BLE001 - already logged by create_app's internal_error
            pass

    return serve_app


class ApiServer:
    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        self.app = app
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = Config()
        config.bind = [f"fd://{self._sock.detach()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("yagna.api.server")
        config.graceful_timeout = 2.0
        config.keep_alive_timeout = 5
        # bounds: a local control API serves a few programs, not the internet
        config.h11_max_incomplete_size = 16 * 1024  # request line + headers
        config.h2_max_inbound_frame_size = 16 * 1024
        config.h2_max_concurrent_streams = 16
        config.backlog = 64
        config.read_timeout = 30  # a client silent this long mid-request is dropped
        config.h2_max_header_list_size = 16 * 1024
        config.keep_alive_max_requests = 1000
        await serve(_logged_once(self.app), config, shutdown_trigger=self._stop.wait, task_status=task_status)  # type: ignore[arg-type]

    def stop(self) -> None:
        self._stop.set()
