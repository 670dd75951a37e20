"""The API's request guard: key before body, bounded bodies, amounts and bugs answered typed (issue 11 rows 7, 8)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio
from fastapi import FastAPI

from payments.errors import AmountInvalid
from yagna.api.app import create_app
from yagna.api.auth import MAX_BODY, PREFIX
from yagna.api.server import ApiServer, bind_api_socket
from yagna.core.money import MAX_UNITS, UNIT


class _Keys:
    async def check(self, token: str) -> object:
        return object() if token == "k" else None


class _Payments:
    requestor = None
    provider = None

    def __init__(self) -> None:
        self.funded: list[int] = []

    async def fund(self, amount: int) -> dict[str, Any]:
        self.funded.append(amount)
        return {"funded_units": amount}

    async def status(self) -> dict[str, Any]:
        raise RuntimeError("a bug in a service core")


def _app() -> tuple[FastAPI, _Payments]:
    payments = _Payments()
    node = SimpleNamespace(node_id="n", role="requestor", app_keys=_Keys(), user_topics=None, payments=payments,
                           net_status=lambda: {}, net_peers=lambda: [])
    return create_app(node), payments  # type: ignore[arg-type]


class _Stream(httpx.AsyncByteStream):
    """A 200 MB body whose chunks are counted as the server pulls them."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += self.chunk
            yield b"x" * self.chunk


def _client(app: FastAPI, key: str | None = "k") -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://t", headers=headers)


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_no_key_is_401_before_any_body_byte_is_read(key: str | None) -> None:
    app, _ = _app()
    body = _Stream(200 * 1000 * 1000)
    async with _client(app, key) as client:
        resp = await client.post(f"{PREFIX}/payment/fund", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"
    assert body.pulled == 0


async def test_declared_length_over_the_cap_is_413_unread() -> None:
    app, payments = _app()
    body = _Stream(MAX_BODY + 1)
    async with _client(app) as client:
        resp = await client.post(f"{PREFIX}/payment/fund", content=body,
                                 headers={"content-length": str(MAX_BODY + 1), "content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "body_too_large"
    assert body.pulled == 0 and payments.funded == []


async def test_streamed_body_is_cut_at_the_cap() -> None:
    app, payments = _app()
    body = _Stream(200 * 1000 * 1000)
    async with _client(app) as client:  # chunked: no Content-Length to go by
        resp = await client.post(f"{PREFIX}/payment/fund", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "body_too_large"
    assert body.pulled <= MAX_BODY + body.chunk and payments.funded == []


async def test_a_body_under_the_cap_goes_through_and_health_needs_no_key() -> None:
    app, payments = _app()
    async with _client(app) as client:
        assert (await client.post(f"{PREFIX}/payment/fund", json={"amount": "1.5"})).status_code == 200
    async with _client(app, None) as client:
        assert (await client.get(f"{PREFIX}/health")).status_code == 200
        assert (await client.get(f"{PREFIX}/openapi.json")).status_code == 200
    assert payments.funded == [3 * UNIT // 2]


@pytest.mark.parametrize("amount", ["0", "0.0", "-1", str(MAX_UNITS // UNIT + 1), "nan", "1e99999", "", "x" * 101])
async def test_fund_refuses_zero_and_out_of_range_with_a_400(amount: str) -> None:
    app, payments = _app()
    async with _client(app) as client:
        resp = await client.post(f"{PREFIX}/payment/fund", json={"amount": amount})
    assert resp.status_code in (400, 422), resp.text
    assert resp.json().get("message") or resp.json().get("detail")
    assert payments.funded == []


async def test_a_bug_is_a_typed_500_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = _app()
    async with _client(app) as client:
        resp = await client.get(f"{PREFIX}/payment/status")
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal", "message": "internal error; see the node's log"}
    assert [r for r in caplog.records if r.name == "yagna.api" and "internal error" in r.getMessage()]


@pytest.mark.parametrize("query", [{"timeout": "nan"}, {"timeout": "inf"}, {"timeout": "-1"}, {"timeout": "61"},
                                   {"after": "-1"}])
async def test_demand_events_bounds_its_query(query: dict[str, str]) -> None:
    app, _ = _app()
    calls: list[tuple[Any, ...]] = []

    async def events(*args: Any) -> list[dict[str, Any]]:
        calls.append(args)  # a NaN got this far and blew up trio.move_on_after: a 500
        return []

    app.state.node.market = SimpleNamespace(requestor=SimpleNamespace(events=events))
    async with _client(app) as client:
        resp = await client.get(f"{PREFIX}/market/demands/d/events", params=query)
        assert resp.status_code == 422 and calls == []
        assert (await client.get(f"{PREFIX}/market/demands/d/events", params={"timeout": "0.5"})).status_code == 200
    assert calls == [("d", 0, 0.5)]


@pytest.mark.parametrize("auth, status", [("", 401), ("authorization: Bearer k\r\n", 413)])
async def test_hypercorn_stops_a_200_mb_body_early(auth: str, status: int) -> None:
    """Over a real socket: the answer comes while the client is still sending, and the server stops taking bytes."""
    app, payments = _app()
    server = ApiServer(app, bind_api_socket("127.0.0.1", 0))
    total = 200 * 1000 * 1000

    def post() -> tuple[int, bytes]:
        host, port = server.url.rsplit("/", 1)[1].rsplit(":", 1)
        with socket.create_connection((host, int(port))) as s:
            s.settimeout(10)
            s.sendall(f"POST {PREFIX}/payment/fund HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
                      f"content-length: {total}\r\n{auth}\r\n".encode())
            sent, chunk = 0, b"x" * 65536
            try:
                while sent < total:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the server closed: what it already answered is in our receive buffer
                pass
            return sent, s.recv(64)

    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        sent, answer = await trio.to_thread.run_sync(post)
        server.stop()
    assert answer.startswith(f"HTTP/1.1 {status}".encode())
    assert sent < total // 4 and payments.funded == []  # socket buffers, a few MB at most


async def test_a_core_amount_refusal_is_a_400_not_a_conflict() -> None:
    """Funding past 2**255 - 1 in total is refused by the ledger (AmountInvalid): the caller's input, so a 400."""
    app, payments = _app()

    async def fund(amount: int) -> dict[str, Any]:
        raise AmountInvalid("funding would put the account over the largest amount (2**255 - 1 base units)")

    payments.fund = fund  # type: ignore[method-assign]
    async with _client(app) as client:
        resp = await client.post(f"{PREFIX}/payment/fund", json={"amount": "1"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_amount"
