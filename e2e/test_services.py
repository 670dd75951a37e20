"""`yagna deploy` against real daemons and containers: a web service of 2 replicas, reached through the tunnel.

Three providers, a funded requestor. The manifest (Akash SDL shape) runs busybox's httpd serving a
page that names its replica's container; the requestor's daemon forwards one local port per
replica. Checked: both ports answer many concurrent requests; logs stream; vouchers accumulate on
both sides; a provider killed with ``kill -9`` loses its replica, which comes back on another
provider behind the same local port; ``deploy close`` stops the containers and settles the channels.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e.daemons import Daemon, containers_of, devnet, run_cli, wait_until

MANIFEST = """\
version: "2.0"
services:
  web:
    image: local/busybox:1
    command: ["sh", "-c"]
    args:
      - |
        date >> /data/starts
        echo "replica $(hostname) starts $(wc -l < /data/starts)" > /work/index.html
        mkdir -p /work/cgi-bin
        printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho bye\\nkillall httpd\\n' > /work/cgi-bin/restart
        chmod +x /work/cgi-bin/restart
        echo web started
        exec httpd -f -v -p 8080 -h /work
    expose:
      - port: 8080
        as: 80
        to:
          - global: true
    params:
      storage:
        data:
          mount: /data
    x-yagna-health: {http: 8080, path: /index.html}
profiles:
  compute:
    web:
      resources:
        cpu: {units: 0.5}
        memory: {size: 64Mi}
        storage:
          - size: 64Mi
          - name: data
            size: 16Mi
            attributes: {persistent: true}
  placement:
    dc:
      pricing:
        web: {denom: tglm, amount: 1}
deployment:
  web:
    dc:
      profile: web
      count: 2
"""


def _free_port_pair() -> int:
    """A port p with p and p+1 free right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no free pair of ports")


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:  # noqa: S310 - loopback
        assert resp.status == 200
        return resp.read().decode()


def _get_or_empty(port: int) -> str:
    try:
        return _get(port)
    except OSError:
        return ""


def _status(req: Daemon, deployment_id: str) -> dict:  # type: ignore[type-arg]
    return json.loads(run_cli("deploy", "status", deployment_id, "--json", data_dir=req.data_dir).stdout)


def _payments(d: Daemon) -> dict[str, dict]:  # type: ignore[type-arg]
    status = json.loads(run_cli("payment", "status", "--json", data_dir=d.data_dir).stdout)
    return {a["agreement_id"]: a for a in status["agreements"]}


def test_deploy_two_replicas_fetch_fail_over_and_close(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    req, provs = devnet(tmp_path, daemons)
    app = tmp_path / "app.yaml"
    app.write_text(MANIFEST)
    base = _free_port_pair()

    t0 = time.monotonic()
    out = run_cli("deploy", "create", str(app), "--port", f"web:8080={base}", "--payment-interval", "1", "--json",
                  data_dir=req.data_dir, timeout=150)
    dep = json.loads(out.stdout)
    deployment_id = dep["deployment_id"]
    replicas = dep["replicas"]
    assert [r["state"] for r in replicas] == ["running", "running"], dep
    assert [r["ports"][0]["local_port"] for r in replicas] == [base, base + 1]
    assert all(r["ports"][0]["container_port"] == 8080 for r in replicas)
    assert len({r["provider_id"] for r in replicas}) == 2, "the replicas went to different providers"
    wait_until(lambda: all(r["healthy"] is True for r in _status(req, dep["deployment_id"])["replicas"]), timeout=20,
               what="the HTTP health checks pass")
    first_page = _get(base)
    print(f"deploy create -> first successful request: {time.monotonic() - t0:.2f} s")

    # Both ports, many requests at once; each replica answers with its own container's page.
    with ThreadPoolExecutor(32) as pool:
        pages = list(pool.map(_get, [base, base + 1] * 100))
    assert all(p.startswith("replica ") and p.endswith(" starts 1\n") for p in pages), pages[:2]
    assert {pages[0], pages[1]} == {_get(base), _get(base + 1)} and pages[0] != pages[1]
    assert first_page == pages[0]

    # Logs: the services' own output and the node's notes.
    logs = run_cli("deploy", "logs", deployment_id, data_dir=req.data_dir).stdout
    assert "[web-0]  web started" in logs and "[web-1]  web started" in logs, logs
    assert "serving: 127.0.0.1:" in logs

    # The process exits (a CGI script kills httpd): the provider restarts it, counted, and the persistent
    # volume kept what the first run wrote.
    urllib.request.urlopen(f"http://127.0.0.1:{base + 1}/cgi-bin/restart", timeout=10).read()  # noqa: S310
    wait_until(lambda: _status(req, deployment_id)["replicas"][1]["restarts"] == 1, timeout=30,
               what="the restart is counted")
    wait_until(lambda: _get_or_empty(base + 1).endswith(" starts 2\n"), timeout=30, what="the service serves again")
    logs = run_cli("deploy", "logs", deployment_id, data_dir=req.data_dir).stdout
    assert "[web-1]! [yagna] service exited with code" in logs and "restart 1 in 1 s" in logs, logs

    # Paid by the interval: vouchers accumulate on the requestor's and the providers' side.
    by_provider = {p.node_id: p for p in provs}
    wait_until(lambda: all(r["paid_units"] > 0 for r in _status(req, deployment_id)["replicas"]), timeout=30,
               what="the requestor signs vouchers for both replicas")
    for r in _status(req, deployment_id)["replicas"]:
        prov = by_provider[r["provider_id"]]
        wait_until(lambda: float(_payments(prov).get(r["agreement_id"], {}).get("paid", "0") or 0) > 0, timeout=30,
                   what="the provider holds a voucher")

    # The lease runs on: `deploy fund` tops up both leases' deposits, and each provider holds the new one.
    funded = json.loads(run_cli("deploy", "fund", deployment_id, "--hours", "0.5", "--json", data_dir=req.data_dir).stdout)
    assert len(funded["funded"]) == 2 and all(f["provider_told"] for f in funded["funded"]), funded
    for f, r in zip(funded["funded"], _status(req, deployment_id)["replicas"]):
        assert r["top_ups"] == 1
        assert _payments(by_provider[r["provider_id"]])[f["agreement_id"]]["deposit_units"] == f["deposit_units"]
        assert _payments(req)[f["agreement_id"]]["deposit_units"] == f["deposit_units"]

    # kill -9 the provider of replica 0: it comes back elsewhere, behind the same local port.
    victim_id = replicas[0]["provider_id"]
    victim = by_provider[victim_id]
    victim.kill()
    t_kill = time.monotonic()

    def moved() -> bool:
        r0 = _status(req, deployment_id)["replicas"][0]
        return r0["state"] == "running" and r0["provider_id"] not in (None, victim_id)

    wait_until(moved, timeout=60, interval=0.2, what="replica 0 runs on another provider")
    page = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            page = _get(base)
            break
        except OSError:
            time.sleep(0.1)
    print(f"failover: kill -9 -> serving again on the same port: {time.monotonic() - t_kill:.2f} s")
    assert page.startswith("replica ") and page != first_page  # a new container answers on the old port
    after = _status(req, deployment_id)["replicas"]
    assert after[0]["failovers"] == 1 and after[0]["ports"][0]["local_port"] == base
    assert after[1]["provider_id"] == replicas[1]["provider_id"] and after[1]["failovers"] == 0
    logs = run_cli("deploy", "logs", deployment_id, data_dir=req.data_dir).stdout
    assert f"replica lost on {victim_id}" in logs and "empty volumes" in logs

    # Close: containers gone, agreements ended, channels settled.
    closed = json.loads(run_cli("deploy", "close", deployment_id, "--json", data_dir=req.data_dir, timeout=90).stdout)
    assert closed["state"] == "closed" and all(r["state"] == "closed" for r in closed["replicas"])
    alive = [p for p in provs if p is not victim]
    wait_until(lambda: all(containers_of(p.node_id) == [] for p in alive), timeout=30, what="containers removed")
    live_agreements = {r["agreement_id"] for r in after}
    wait_until(lambda: all(_payments(req)[a]["state"] == "closed" for a in live_agreements), timeout=60,
               what="the requestor's channels are settled")
    for r in after:
        prov = by_provider[r["provider_id"]]
        wait_until(lambda: _payments(prov)[r["agreement_id"]]["state"] == "closed", timeout=60,
                   what="the provider's channel is settled")
    try:
        _get(base)
        raise AssertionError("the local port still answers after the close")
    except OSError:
        pass

    victim.start()  # a provider that comes back removes what it left behind
    wait_until(lambda: containers_of(victim_id) == [], timeout=30, what="the victim cleans up")
