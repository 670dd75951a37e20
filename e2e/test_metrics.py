"""``/metrics`` of real daemons, read by a real Prometheus text parser (prometheus_client's).

A provider (with ``--metrics-listen``) and a requestor make one agreement; then
each node's page must parse and show it: node info, peers, offers, agreements,
the process. On the API port the page needs the app key; the listener serves it
without one, and nothing else. A bad or busy listen address stops the daemon at
start with a one-line error.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx

from e2e.daemons import YAGNA, Daemon, paid_sleeper, run_cli, wait_until
from tests.metrics.families import families as _parse, value as _value

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _text(node: Daemon) -> str:
    key = (node.data_dir / "app-key").read_text().strip()
    resp = httpx.get(f"{node.info['api_url']}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    assert resp.status_code == 200 and resp.headers["content-type"] == CONTENT_TYPE, resp.text
    return resp.text


def _scrape(node: Daemon) -> dict[str, Any]:
    return _parse(_text(node))




def _healthy(fams: dict[str, Any], node: Daemon, role: str) -> None:
    info = fams["yagna_node_info"].samples[0].labels
    assert (info["node_id"], info["role"], info["network"]) == (node.node_id, role, "testnet")
    assert _value(fams, "yagna_peers_connected") >= 1 and _value(fams, "yagna_peers_known") >= 1
    assert _value(fams, "yagna_agreements", state="approved") == 1
    assert 0 < _value(fams, "yagna_uptime_seconds") < 600
    assert _value(fams, "yagna_process_cpu_seconds_total") > 0
    assert _value(fams, "yagna_process_resident_memory_bytes") > 10 * 2**20
    assert fams["yagna_errors"].type == "counter"
    errors = fams["yagna_metrics_collector_errors"].samples
    assert {s.labels["collector"] for s in errors} >= {"node", "net", "market", "agreements", "activities", "payments"}
    assert all(s.value == 0 for s in errors), errors


def test_metrics_of_a_provider_and_a_requestor(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = _free_port()
    prov = Daemon(tmp_path / "prov", ["--role", "provider", "--metrics-listen", f"127.0.0.1:{port}"]).start()
    daemons.append(prov)
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", prov.p2p_addr]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == 1, timeout=20, what="the requestor sees the offer")
    before = _scrape(prov)
    assert _value(before, "yagna_provider_presets") == 1 and _value(before, "yagna_provider_offers_live") == 1
    assert _value(before, "yagna_market_offers_seen", subnet="public") == 1  # its own
    assert _value(_scrape(req), "yagna_market_offers_seen", subnet="public") == 1
    out = json.loads(run_cli("market", "negotiate", "--json", data_dir=req.data_dir, timeout=60).stdout)
    assert [a["provider_id"] for a in out["agreements"]] == [prov.node_id]

    # On the API port: the app key or nothing.
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        resp = httpx.get(f"{prov.info['api_url']}/metrics", headers=headers, timeout=5)
        assert resp.status_code == 401 and "yagna_" not in resp.text

    # A page is reused for a second: wait for the one that shows the agreement.
    wait_until(lambda: "state=\"approved\"" in _text(prov), timeout=5, what="a page with the agreement")
    p = _scrape(prov)
    _healthy(p, prov, "provider")
    assert _value(p, "yagna_provider_offers_live") == 0  # its one slot is taken: the offer is withdrawn
    assert _value(p, "yagna_provider_capacity_threads", kind="committed") >= 1
    assert _value(p, "yagna_provider_earnings_tokens", status="due") == 0
    assert _value(p, "yagna_containers", state="running") == 0
    assert _value(p, "yagna_payment_voucher_round_trip_seconds_count") == 0
    assert "yagna_requestor_spend_tokens" not in p

    wait_until(lambda: "state=\"approved\"" in _text(req), timeout=5, what="a page with the agreement")
    r = _scrape(req)
    _healthy(r, req, "requestor")
    assert _value(r, "yagna_requestor_spend_tokens", status="paid") == 0
    assert "yagna_provider_earnings_tokens" not in r and "yagna_containers" not in r

    # The listener: the same page without a key, and nothing but it.
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert resp.status_code == 200 and resp.headers["content-type"] == CONTENT_TYPE
    listened = _parse(resp.text)
    assert listened["yagna_node_info"].samples[0].labels["node_id"] == prov.node_id
    assert _value(listened, "yagna_agreements", state="approved") == 1
    key = (prov.data_dir / "app-key").read_text().strip()
    for path in ("/api/v1/id", "/api/v1/openapi.json", "/dashboard"):
        assert httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"},
                         timeout=5).status_code == 404


def test_a_bad_or_busy_listen_address_stops_the_daemon_at_start(tmp_path: Path) -> None:
    def start(address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*YAGNA, "--data-dir", str(tmp_path / "node"), "service", "run", "--api-port", "0",
                               "--metrics-listen", address], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    bad = start("localhost:9464")
    assert bad.returncode == 1 and "--metrics-listen" in bad.stderr and "HOST:PORT" in bad.stderr, bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = start(f"127.0.0.1:{port}")
    assert taken.returncode == 1, taken.stderr
    assert f"error: --metrics-listen 127.0.0.1:{port}: the port is already in use" in taken.stderr
    assert not (tmp_path / "node" / "node.json").exists()


TERMS = ["--property", "golem.com.scheme.payu.debit-note.interval-sec?=1",
         "--property", "golem.com.scheme.payu.payment-timeout-sec?=5"]


def test_earnings_spend_containers_and_voucher_round_trips_of_a_paid_run(tmp_path: Path, daemons: list[Daemon],
                                                                       test_image: str) -> None:
    prov, req, agreement_id, _ = paid_sleeper(tmp_path, daemons, TERMS)

    def paid(fams: dict[str, Any]) -> bool:
        return _value(fams, "yagna_payment_voucher_round_trip_seconds_count") >= 2

    wait_until(lambda: paid(_scrape(prov)), timeout=30, interval=0.5, what="two vouchers held")
    p = _scrape(prov)
    assert _value(p, "yagna_containers", state="running") == 1
    assert _value(p, "yagna_activities", role="provider", state=_live_state(p)) == 1
    assert _value(p, "yagna_payment_channels", role="provider", state="open") == 1
    assert 0 < _value(p, "yagna_provider_earnings_tokens", status="paid") <= _value(
        p, "yagna_provider_earnings_tokens", status="due")
    assert _value(p, "yagna_provider_earnings_tokens", status="redeemed") == 0
    assert 0 < _value(p, "yagna_payment_voucher_round_trip_seconds_sum") < 10
    r = _scrape(req)
    assert _value(r, "yagna_requestor_spend_tokens", status="paid") > 0
    assert _value(r, "yagna_requestor_spend_tokens", status="deposited") > 0
    assert _value(r, "yagna_activities", role="requestor", state=_live_state(r, "requestor")) == 1

    run_cli("market", "terminate", agreement_id, data_dir=req.data_dir)

    def redeemed() -> bool:
        return _value(_scrape(prov), "yagna_provider_earnings_tokens", status="redeemed") > 0

    wait_until(redeemed, timeout=30, interval=0.5, what="the provider redeems")
    p = _scrape(prov)
    assert _value(p, "yagna_payment_channels", role="provider", state="closed") == 1
    assert _value(p, "yagna_provider_earnings_tokens", status="redeemed") == _value(
        p, "yagna_provider_earnings_tokens", status="paid")
    wait_until(lambda: _value(_scrape(prov), "yagna_containers", state="running") == 0, timeout=30,
               interval=0.5, what="the container removed")


def _live_state(fams: dict[str, Any], role: str = "provider") -> str:
    """The one state of the role's activity (its name is the exe-unit's business: any but an ended one)."""
    states = [s.labels["state"] for s in fams["yagna_activities"].samples if s.labels["role"] == role]
    assert len(states) == 1 and states[0] not in ("terminated", "failed"), states
    return states[0]
