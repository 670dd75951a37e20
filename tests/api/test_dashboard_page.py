"""The dashboard's page and routes: hostile values escaped, who may see what, the recent-errors ring."""

from __future__ import annotations

import logging
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from yagna.api.app import create_app
from yagna.api.dashboard import collect, render
from yagna.api.dashboard.log_ring import RecentLogs
from yagna.api.dashboard.routes import require_viewer, router
from yagna.api.dashboard.sessions import SessionStore
from yagna.core.money import UNIT

EVIL = """<script>alert(1)</script>"'><img src=x onerror=alert(2)><!--"""
ME = "12D3KooWMe"
PEER = "12D3KooW" + EVIL  # ids are checked before they get here; the page must not rely on it


class _Keys:
    async def check(self, token: str) -> object:
        return object() if token == "k" else None


class _ProviderMarket:
    def status(self) -> dict[str, Any]:
        return {"capacity": {"threads": 4, "mem_gib": 8.0, "storage_gib": 20.0},
                "committed": {"threads": 1, "mem_gib": 1.0, "storage_gib": 2.0},
                "presets": [{"name": EVIL, "runtime": EVIL, "threads": 1, "mem_gib": 1.0, "storage_gib": 2.0,
                             "pricing": {"start_fee": "0", "per_cpu_sec": EVIL, "per_duration_sec": "0.000001"},
                             "subnet": EVIL, "offer_id": EVIL}],
                "active_agreements": 1}


class _RequestorMarket:
    async def reputation(self) -> list[dict[str, Any]]:
        return [{"provider_id": PEER, "reputation": 0.8, "successes": 3, "failures": EVIL, "timeouts": 0,
                 "disagreements": 0, "rejections": 0, "latency_ms": 12.5}]


class _Agreements:
    async def count_by_state(self) -> dict[str, int]:
        return {"approved": 1, EVIL: 2}


class _Market:
    provider = _ProviderMarket()
    requestor = _RequestorMarket()
    agreements = _Agreements()

    def offers(self) -> list[dict[str, Any]]:
        return [{"offer_id": EVIL, "provider_id": ME, "subnet": EVIL, "properties": {"yagna.preset": EVIL},
                 "expires_at_ms": 1_700_000_000_000},
                {"offer_id": "theirs", "provider_id": PEER, "subnet": "public", "properties": {"x": EVIL}}]

    async def list_agreements(self, *, limit: int) -> list[dict[str, Any]]:
        assert limit == collect.AGREEMENTS_SHOWN
        return [{"agreement_id": EVIL, "role": "provider", "state": EVIL, "reason": EVIL, "requestor_id": PEER,
                 "provider_id": ME, "created_at": 1_700_000_000, "updated_at": 1_700_000_100}]


class _SoldActivities:
    async def list(self) -> list[dict[str, Any]]:
        return [{"activity_id": EVIL, "agreement_id": EVIL, "requestor_id": PEER, "state": "running",
                 "reason": EVIL, "usage": {"golem.usage.cpu_sec": 1.5, "golem.usage.gib": 0.25,
                                           "golem.usage.duration_sec": 30.0}}]


class _BoughtActivities:
    def list(self) -> list[dict[str, Any]]:
        return [{"activity_id": "a2", "agreement_id": "g2", "provider_id": PEER, "state": EVIL, "reason": EVIL,
                 "usage": {"golem.usage.cpu_sec": EVIL}}]


class _Payments:
    async def status(self) -> dict[str, Any]:
        rows = [{"agreement_id": EVIL, "role": "provider", "peer_id": PEER, "state": "closed", "best_seq": 3,
                 "paid_units": 2 * UNIT, "due_units": 2 * UNIT, "enforcement": None, "reason": EVIL,
                 "updated_at": 1_700_000_000},
                {"agreement_id": "g2", "role": "requestor", "peer_id": PEER, "state": "open", "best_seq": 1,
                 "paid_units": UNIT // 2, "due_units": UNIT, "enforcement": EVIL, "reason": None,
                 "updated_at": 1_700_000_050}]
        return {"driver": EVIL, "test_network": True, "balance": {"earned": "2", "total": "9", "free": "8",
                                                                  "locked": "1"}, "agreements": rows}


def _node() -> SimpleNamespace:
    logs = RecentLogs()
    logs.handle(logging.LogRecord("yagna.net", logging.WARNING, __file__, 1, "peer said %s", (EVIL,), None))
    return SimpleNamespace(
        node_id=ME, role="both", app_keys=_Keys(), user_topics=None, market=_Market(),
        activity=SimpleNamespace(provider=_SoldActivities(), requestor=_BoughtActivities()), payments=_Payments(),
        recent_logs=logs, net_peers=lambda: [],
        net_status=lambda: {"reachability": EVIL, "connected": 1, "known": 2, "advertised_addrs": [EVIL]})


class _Tree(HTMLParser):
    """Every element and attribute the browser would build."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


async def test_hostile_values_stay_text() -> None:
    page = render.page(await collect.snapshot(_node()))
    tree = _Tree()
    tree.feed(page)
    assert "<script>alert" not in page and "<img" not in page and "<!--" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10  # shown, as text, in every section
    assert [a for _, a in tree.tags if "src" in a] == [{"src": "/dashboard/static/dashboard.js", "defer": None}]
    assert not [(t, k) for t, a in tree.tags for k in a if k.startswith("on")]
    assert not tree.comments
    assert {"img"} & {t for t, _ in tree.tags} == set()
    for anchor in ("offers", "activities", "earnings", "spend", "vouchers", "by-requestor", "by-provider",
                   "agreements", "reputation", "errors"):
        assert f'<section id="{anchor}">' in page  # role both: every section


async def test_sections_follow_the_role() -> None:
    node = _node()
    node.role = "provider"
    node.market = type("_ProviderOnly", (_Market,), {"requestor": None})()
    node.activity.requestor = None
    page = render.page(await collect.snapshot(node))
    assert 'id="earnings"' in page and 'id="spend"' not in page and 'id="reputation"' not in page


def _app() -> FastAPI:
    return create_app(_node())  # type: ignore[arg-type]


def _client(app: FastAPI, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:7465",
                             headers=headers)


def test_every_dashboard_route_but_login_needs_a_viewer() -> None:
    routes = [r for r in router.routes if isinstance(r, APIRoute) and r.path.startswith("/dashboard")]
    assert {r.path for r in routes} == {"/dashboard", "/dashboard/login", "/dashboard/data", "/dashboard/static/{name}"}
    for r in routes:
        assert r.methods == {"GET"}, r.path  # cookies are good for reading only
        guarded = any(d.call is require_viewer for d in r.dependant.dependencies)
        assert guarded == (r.path != "/dashboard/login"), r.path


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/data", "/dashboard/static/dashboard.js",
                                  "/dashboard/static/nope", "/dashboard/login"])
async def test_no_credentials_no_dashboard(path: str) -> None:
    async with _client(_app()) as client:
        resp = await client.get(path)
    assert resp.status_code == 401
    assert resp.headers["cache-control"] == "no-store" and "default-src 'none'" in resp.headers["content-security-policy"]
    if path == "/dashboard/data":
        assert resp.json()["error"] == "unauthorized"
    else:
        assert "yagna dashboard" in resp.text


async def test_login_link_cookie_and_its_limits() -> None:
    app = _app()
    async with _client(app, authorization="Bearer k") as cli:
        link = (await cli.post("/api/v1/dashboard/login-token")).json()
    assert link["expires_in_s"] == 60 and link["path"] == f"/dashboard/login?token={link['token']}"
    async with _client(app) as browser:
        resp = await browser.get(link["path"])
        assert resp.status_code == 303 and resp.headers["location"] == "/dashboard"
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith("yagna_dashboard_7465=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
        page = await browser.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert ME in page.text and "script-src 'self'" in page.headers["content-security-policy"]
        data = (await browser.get("/dashboard/data")).json()
        assert data["node"]["node_id"] == ME and data["activities"][0]["running"] and data["errors"] == 1
        js = await browser.get("/dashboard/static/dashboard.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert (await browser.get("/dashboard/static/dashboard.css")).status_code == 200
        assert (await browser.get("/dashboard/static/..%2F__init__.py")).status_code == 404
        # the cookie is good for the dashboard's GETs only: the API wants the key
        assert (await browser.get("/api/v1/id")).status_code == 401
        assert (await browser.post("/api/v1/dashboard/login-token")).status_code == 401
        assert (await browser.post("/dashboard")).status_code == 405
        # a wrong key is refused even with a good cookie
        assert (await browser.get("/dashboard", headers={"authorization": "Bearer nope"})).status_code == 401
        again = await browser.get(link["path"])
        assert again.status_code == 403 and "used already" in again.text and "set-cookie" not in again.headers
        forged = await browser.get("/dashboard/login?token=" + EVIL)
        assert forged.status_code == 401 and "not valid" in forged.text and "<script>alert" not in forged.text


async def test_expired_link_and_bearer_access() -> None:
    app = _app()
    now = [0.0]
    app.state.dashboard_sessions = SessionStore(clock=lambda: now[0])
    async with _client(app, authorization="Bearer k") as cli:
        path = (await cli.post("/api/v1/dashboard/login-token")).json()["path"]
        assert (await cli.get("/dashboard")).status_code == 200  # the key itself, as a header
    now[0] = 60.0
    async with _client(app) as browser:
        resp = await browser.get(path)
    assert resp.status_code == 403 and "expired" in resp.text


def test_recent_logs_ring() -> None:
    ring = RecentLogs(keep=3)
    logger = logging.getLogger("test.dashboard.ring")
    logger.addHandler(ring)
    logger.propagate = False
    try:
        logger.info("not kept")
        for i in range(5):
            logger.warning("w%d %s", i, "x" * 1000)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(ring)
    lines = ring.lines()
    assert [line.message[:2] for line in lines] == ["fa", "w4", "w3"]
    assert lines[0].level == "ERROR" and lines[0].message == "failed (ValueError)"
    assert len(lines[1].message) == 500
