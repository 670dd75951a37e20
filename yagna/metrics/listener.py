"""``yagna service run --metrics-listen HOST:PORT``: ``GET /metrics`` on its own socket, without an app key.

Meant for a Prometheus on another machine, which holds no app key of this
node: so this listener serves the metrics page and nothing else (every other
path is a 404; no API, no OpenAPI document). It is bound to exactly the address
given (an IP, no names) and started before the network, so a bad or busy address
stops the node at start-up with a :class:`~yagna.config.ConfigError`. The page
shows the node id, peer counts and earnings totals, never a peer's id or an
agreement: expose it to the scraper only (a firewall rule, a private network).
Scrapes cost at most one collection a second, however many arrive
(:class:`~yagna.metrics.registry.NodeMetrics`), and the server has the API's
bounds (headers, backlog, idle and read timeouts: :class:`~yagna.api.server.ApiServer`).
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import trio
from fastapi import FastAPI, Request
from fastapi.responses import Response

from yagna.api import metrics_routes
from yagna.api.server import ApiServer
from yagna.config import ConfigError
from yagna.metrics.address import parse_listen, show

log = logging.getLogger("yagna.metrics")


def create_metrics_app(node: Any) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.node = node

    @app.get(metrics_routes.PATH)
    async def metrics(request: Request) -> Response:
        return await metrics_routes.scrape(request)

    return app


def bind_metrics_socket(host: str, port: int) -> socket.socket:
    where = show(host, port)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if ":" in host:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # exactly the address given
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--metrics-listen {where}: the port is already in use; pick another one") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--metrics-listen {where}: no interface of this machine has that address "
                              "(0.0.0.0 means every interface)") from None
        raise ConfigError(f"--metrics-listen {where}: cannot listen there: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


async def serve_metrics(node: Any, address: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``/metrics`` on ``address`` (HOST:PORT) until cancelled; started once listening."""
    try:
        host, port = parse_listen(address)
    except ValueError as exc:
        raise ConfigError(f"--metrics-listen {exc}") from None
    server = ApiServer(create_metrics_app(node), bind_metrics_socket(host, port))
    log.info("metrics for Prometheus on %s%s (no app key: expose it to the scraper only)", server.url, metrics_routes.PATH)
    await server.run(task_status=task_status)
