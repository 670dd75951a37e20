"""NodeMetrics: a failing collector is skipped and counted, scrapes are cached; the routes and the listener."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio

from yagna.api.app import create_app
from yagna.config import ConfigError, NodeConfig
from yagna.core.money import UNIT
from yagna.metrics import collectors
from yagna.metrics.exposition import CONTENT_TYPE, Family
from yagna.metrics.histogram import Histogram
from yagna.metrics.listener import bind_metrics_socket, create_metrics_app, serve_metrics
from yagna.metrics.registry import CACHE_S, COLLECTOR_TIMEOUT_S, NodeMetrics
from tests.metrics.families import families as _families, value as _value




async def _good(node: Any) -> list[Family]:
    return [Family("t_good", "gauge", "Good.").add(1)]


async def _broken(node: Any) -> list[Family]:
    raise KeyError("a service changed its shape")


async def _bad_family(node: Any) -> list[Family]:
    return [Family("t_good", "gauge", "The same name again.").add(2)]


async def _slow(node: Any) -> list[Family]:
    await trio.sleep(COLLECTOR_TIMEOUT_S + 1)
    return []


async def test_a_failing_collector_is_skipped_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    metrics = NodeMetrics((("good", _good), ("broken", _broken), ("dup", _bad_family)), clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, "yagna.metrics")
    for _ in range(3):
        fams = _families(await metrics.scrape(None))
        now[0] += CACHE_S
    assert _value(fams, "t_good") == 1  # the first collector's family, not the duplicate
    assert _value(fams, "yagna_metrics_collector_errors_total", collector="broken") == 3
    assert _value(fams, "yagna_metrics_collector_errors_total", collector="dup") == 3
    assert _value(fams, "yagna_metrics_collector_errors_total", collector="good") == 0
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "collector broken" in r.getMessage()]
    assert len(warned) == 1 and warned[0].exc_info is not None
    assert "yagna_uptime_seconds" in fams and "yagna_process_cpu_seconds" in fams


async def test_a_slow_collector_times_out(autojump_clock: trio.abc.Clock) -> None:
    metrics = NodeMetrics((("slow", _slow), ("good", _good)))
    start = trio.current_time()
    fams = _families(await metrics.scrape(None))
    assert trio.current_time() - start == pytest.approx(COLLECTOR_TIMEOUT_S)
    assert _value(fams, "yagna_metrics_collector_errors_total", collector="slow") == 1
    assert _value(fams, "t_good") == 1


async def test_scrapes_within_a_second_share_one_collection() -> None:
    calls = []
    now = [100.0]

    async def counting(node: Any) -> list[Family]:
        calls.append(1)
        return []

    metrics = NodeMetrics((("c", counting),), clock=lambda: now[0])
    first = await metrics.scrape(None)
    now[0] += CACHE_S / 2
    assert await metrics.scrape(None) is first and len(calls) == 1
    now[0] += CACHE_S
    await metrics.scrape(None)
    assert len(calls) == 2


# -- the collectors on services' shapes ------------------------------------------------------------------


def _fake_node() -> SimpleNamespace:
    round_trips = Histogram()
    round_trips.observe(0.02)

    async def totals() -> dict[tuple[str, str], dict[str, int]]:
        z = dict.fromkeys(("deposit", "due", "paid", "best_amount"), 0)
        return {
            ("provider", "open"): {**z, "channels": 1, "due": 3 * UNIT, "paid": 2 * UNIT},
            ("provider", "closed"): {**z, "channels": 2, "due": 5 * UNIT, "paid": 5 * UNIT},
            ("requestor", "open"): {**z, "channels": 1, "deposit": 10 * UNIT, "best_amount": UNIT // 4},
            ("requestor", "closed"): {**z, "channels": 1, "deposit": 4 * UNIT, "best_amount": UNIT},
        }

    async def agreement_counts() -> dict[str, int]:
        return {"approved": 2, "terminated": 5}

    async def activity_counts() -> dict[tuple[str, str], int]:
        return {("provider", "ready"): 1, ("requestor", "terminated"): 3}

    market = SimpleNamespace(
        offers=lambda: [{"subnet": "public"}, {"subnet": "public"}, {"subnet": "lab"}],
        status=lambda: {"accepted": 4, "replaced": 1, "withdrawn": 0, "refused": 2, "synced": 3, "demands": 1},
        requestor=object(),
        provider=SimpleNamespace(status=lambda: {
            "presets": [{"name": "a", "offer_id": "o1"}, {"name": "b", "offer_id": None}],
            "capacity": {"threads": 4, "mem_gib": 2.0, "storage_gib": 10.0},
            "committed": {"threads": 1, "mem_gib": 0.5, "storage_gib": 1.0}}),
        agreements=SimpleNamespace(count_by_state=agreement_counts),
    )
    return SimpleNamespace(
        node_id="12D3KooWnode", role="both", config=SimpleNamespace(network_id="testnet"),
        net_status=lambda: {"connected": 2, "known": 5, "reachability": "private", "relay": {"reservations": ["r1"]},
                            "hole_punching": {"enabled": True, "succeeded": 1, "failed": 2, "refused": 0}},
        market=market,
        activity=SimpleNamespace(count_by_state=activity_counts,
                                 provider=SimpleNamespace(containers=lambda: {"running": 1, "paused": 0})),
        payments=SimpleNamespace(channel_totals=totals, requestor=object(),
                                 provider=SimpleNamespace(voucher_round_trips=round_trips, notes_unanswered=1)),
    )


async def test_collectors_read_the_services() -> None:
    metrics = NodeMetrics()
    fams = _families(await metrics.scrape(_fake_node()))
    assert _value(fams, "yagna_metrics_collector_errors_total", collector="payments") == 0, metrics.collector_errors
    assert all(n == 0 for n in metrics.collector_errors.values())
    assert _value(fams, "yagna_node_info", node_id="12D3KooWnode", role="both", network="testnet") == 1
    assert _value(fams, "yagna_peers_connected") == 2 and _value(fams, "yagna_peers_known") == 5
    assert _value(fams, "yagna_reachability", status="private") == 1
    assert _value(fams, "yagna_hole_punches_total", result="failed") == 2
    assert _value(fams, "yagna_market_offers_seen", subnet="public") == 2
    assert _value(fams, "yagna_market_offer_events_total", event="refused") == 2
    assert _value(fams, "yagna_provider_offers_live") == 1 and _value(fams, "yagna_provider_presets") == 2
    assert _value(fams, "yagna_provider_capacity_memory_bytes", kind="committed") == 2**29
    assert _value(fams, "yagna_agreements", state="terminated") == 5
    assert _value(fams, "yagna_activities", role="requestor", state="terminated") == 3
    assert _value(fams, "yagna_containers", state="running") == 1
    assert _value(fams, "yagna_payment_channels", role="provider", state="closed") == 2
    assert _value(fams, "yagna_provider_earnings_tokens", status="due") == 8
    assert _value(fams, "yagna_provider_earnings_tokens", status="paid") == 7
    assert _value(fams, "yagna_provider_earnings_tokens", status="redeemed") == 5
    assert _value(fams, "yagna_requestor_spend_tokens", status="paid") == 1.25
    assert _value(fams, "yagna_requestor_spend_tokens", status="deposited") == 10
    assert _value(fams, "yagna_payment_voucher_round_trip_seconds_count") == 1
    assert _value(fams, "yagna_payment_voucher_round_trip_seconds_bucket", le="0.025") == 1
    assert _value(fams, "yagna_payment_debit_notes_unanswered_total") == 1


def test_collector_names_are_unique() -> None:
    names = [n for n, _ in collectors.COLLECTORS]
    assert len(names) == len(set(names)) and "self" not in names


# -- served: the API route (app key) and the listener (none) ---------------------------------------------


class _Keys:
    async def check(self, token: str) -> object:
        return object() if token == "k" else None


def _api_node() -> SimpleNamespace:
    node = _fake_node()
    node.app_keys, node.user_topics, node.metrics = _Keys(), None, NodeMetrics()
    return node


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic k"])
async def test_metrics_on_the_api_needs_the_app_key(auth: str | None) -> None:
    app = create_app(_api_node())  # type: ignore[arg-type]
    headers = {"authorization": auth} if auth else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/metrics", headers=headers)
    assert resp.status_code == 401 and "yagna_" not in resp.text


async def test_metrics_on_the_api_with_the_key() -> None:
    node = _api_node()
    del node.payments  # a service that breaks: skipped and counted, never a 500
    app = create_app(node)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/metrics", headers={"authorization": "Bearer k"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == CONTENT_TYPE
    fams = _families(resp.text)
    assert _value(fams, "yagna_metrics_collector_errors_total", collector="payments") == 1
    assert _value(fams, "yagna_peers_known") == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_listener_serves_metrics_only_without_a_key() -> None:
    port = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_metrics, _api_node(), f"127.0.0.1:{port}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            resp = await client.get("/metrics")
            assert resp.status_code == 200 and resp.headers["content-type"] == CONTENT_TYPE
            assert _value(_families(resp.text), "yagna_peers_connected") == 2
            for path in ("/api/v1/id", "/api/v1/openapi.json", "/docs", "/dashboard", "/"):
                assert (await client.get(path)).status_code == 404, path
            assert (await client.post("/metrics")).status_code == 405
        nursery.cancel_scope.cancel()


async def test_the_listener_app_has_one_route() -> None:
    app = create_metrics_app(_api_node())
    assert sorted(getattr(r, "path", "") for r in app.routes) == ["/metrics"]


def test_a_busy_or_foreign_address_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--metrics-listen 127.0.0.1:{port}: the port is already in use"):
            bind_metrics_socket("127.0.0.1", port)
    with pytest.raises(ConfigError, match="no interface of this machine has that address"):
        bind_metrics_socket("192.0.2.1", 9464)  # TEST-NET-1: never an address of ours


@pytest.mark.parametrize("bad", ["localhost:9464", "9464", "127.0.0.1:0", "[::1]"])
def test_node_config_refuses_a_bad_address(bad: str, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="--metrics-listen"):
        NodeConfig(tmp_path, metrics_listen=bad)
    assert NodeConfig(tmp_path, metrics_listen="0.0.0.0:9464").metrics_listen == "0.0.0.0:9464"
    assert NodeConfig(tmp_path).metrics_listen is None


def test_the_setting_from_flag_env_and_file(tmp_path: Any) -> None:
    from yagna import settings

    file = settings.parse_text('[node]\nmetrics_listen = "10.0.0.5:9464"\n', tmp_path / "config.toml")
    resolved = settings.resolve({}, {}, file)
    assert settings.node_config(resolved, tmp_path).metrics_listen == "10.0.0.5:9464"
    assert resolved.origins["node.metrics_listen"] == "file"
    resolved = settings.resolve({}, {"YAGNA_METRICS_LISTEN": "[::1]:9100"}, file)
    assert settings.node_config(resolved, tmp_path).metrics_listen == "[::1]:9100"
    resolved = settings.resolve({"node.metrics_listen": "127.0.0.1:9101"}, {}, file)
    assert resolved["node.metrics_listen"] == "127.0.0.1:9101"
    assert settings.node_config(settings.resolve({}, {}, settings.FileValues()), tmp_path).metrics_listen is None
    with pytest.raises(settings.SettingError, match="line 3: node.metrics_listen must be HOST:PORT"):
        settings.parse_text('[node]\nrole = "both"\nmetrics_listen = "my-host:9464"\n', tmp_path / "config.toml")
