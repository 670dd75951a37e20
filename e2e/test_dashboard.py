"""The dashboard in a real browser: headless Chromium (Debian's package) on a devnet that ran a batch.

Two providers and a requestor run a small batch job; then Chromium opens each
dashboard through the one-time link of ``yagna dashboard --print`` (the login
sets the session cookie and redirects, within the same browser run), and the
rendered DOM must show the activities, the agreements, the earnings (provider)
or the spend and providers used (requestor) and the chart. A screenshot of the
provider's page is saved in the test's tmp dir (its path is printed). Then the
security model, over plain HTTP: a link works once, garbage is refused, and the
session cookie opens the dashboard but no other route of the API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from e2e.daemons import Daemon, devnet, run_cli, wait_until

JOB = '''\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "sleep 1; md5sum /work/in/{f}"]
timeout = "30s"
redundancy = 1
budget = "1"
max_providers = 2
inputs = ["data/{f}"]
'''


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; scripts/setup-machine.sh installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _browser(chromium: str, tmp_path: Path, *args: str) -> str:
    """One headless Chromium run with a fresh profile (so the session is the one the link buys)."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    proc = subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
                           "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                           "--disable-background-networking", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _link(node: Daemon) -> str:
    url = run_cli("dashboard", "--print", data_dir=node.data_dir).stdout.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard/login\?token=[A-Za-z0-9_-]{43}", url), url
    return url


def _section(dom: str, anchor: str) -> str:
    start = dom.index(f'<section id="{anchor}">')
    return dom[start:dom.index("</section>", start)]


def _settled(node: Daemon) -> bool:
    channels = node.api("GET", "/payment/status")["agreements"]
    return bool(channels) and all(c["state"] == "closed" for c in channels)


def test_dashboard_in_headless_chromium(tmp_path: Path, daemons: list[Daemon], test_image: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    chromium = _chromium()
    req, provs = devnet(tmp_path, daemons, providers=2, fund="5")
    data = tmp_path / "data"
    data.mkdir()
    text = JOB
    for i in range(4):
        (data / f"in{i}.txt").write_text(f"input {i}\n" * 50)
        text += f'\n[[task]]\nparams = {{ f = "in{i}.txt" }}\n'
    (tmp_path / "job.toml").write_text(text)
    proc = run_cli("batch", "run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "out"), "--json",
                   data_dir=req.data_dir, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["succeeded"] == 4

    # The provider that earned (a closed channel with a redeemed voucher).
    earners = [p for p in provs if any(c["paid_units"] for c in p.api("GET", "/payment/status")["agreements"])]
    assert earners, "no provider was paid"
    prov = earners[0]
    wait_until(lambda: _settled(prov), timeout=30, what="the provider's channels redeemed and closed")

    # -- the provider's dashboard, through the one-time link ---------------------------------------
    # (virtual time: the page's script refreshes the live part once before the DOM is dumped)
    dom = _browser(chromium, tmp_path, "--virtual-time-budget=6000", "--dump-dom", _link(prov))
    assert prov.node_id in dom and "provider" in dom
    assert re.search(r'<span id="updated">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</span>', dom), dom[-600:]
    activities = _section(dom, "activities")
    assert "no activity yet" not in activities and "sold" in activities and "terminated" in activities
    agreements = _section(dom, "agreements")
    assert "terminated" in agreements and "no agreement yet" not in agreements
    earnings = _section(dom, "earnings")
    assert "<svg" in earnings and 'class="bar"' in earnings, earnings[:3000]
    redeemed = re.search(r"<dt>redeemed</dt><dd>([0-9.]+)</dd>", earnings)
    assert redeemed and float(redeemed.group(1)) > 0, earnings[:2000]
    assert "no payment channel yet" not in _section(dom, "vouchers")
    assert req.node_id[:15] in _section(dom, "by-requestor")  # the payer, by its (shortened) id
    assert "Presets" in _section(dom, "offers") and "not offered" not in _section(dom, "offers")
    assert "<section" in dom and 'id="errors"' in dom
    assert 'id="spend"' not in dom and 'id="reputation"' not in dom  # a provider buys nothing

    shot = tmp_path / "dashboard-provider.png"
    _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2600", _link(prov))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    with capsys.disabled():
        print(f"\ndashboard screenshot: {shot}")

    # -- the requestor's: spend, providers used, reputation ----------------------------------------------
    dom = _browser(chromium, tmp_path, "--dump-dom", _link(req))
    assert req.node_id in dom and 'id="earnings"' not in dom and 'id="offers"' not in dom
    spend = _section(dom, "spend")
    assert "<svg" in spend and 'class="bar"' in spend
    assert prov.node_id[:15] in _section(dom, "by-provider")
    assert prov.node_id[:15] in _section(dom, "reputation")
    assert "bought" in _section(dom, "activities") or "no activity yet" in _section(dom, "activities")
    shot = tmp_path / "dashboard-requestor.png"
    _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2600", _link(req))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with capsys.disabled():
        print(f"dashboard screenshot: {shot}")

    # -- the security model, over plain HTTP -------------------------------------------------------------
    link = _link(prov)
    base = prov.info["api_url"]
    first = httpx.get(link, follow_redirects=False, timeout=5)
    assert first.status_code == 303 and first.headers["location"] == "/dashboard"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    name, value = cookie.split(";")[0].split("=", 1)
    again = httpx.get(link, follow_redirects=False, timeout=5)
    assert again.status_code == 403 and "used already" in again.text and "set-cookie" not in again.headers
    assert httpx.get(f"{base}/dashboard/login?token=forged", timeout=5).status_code == 401
    assert httpx.get(f"{base}/dashboard", timeout=5).status_code == 401
    with httpx.Client(base_url=base, cookies={name: value}, timeout=5) as browser:
        assert browser.get("/dashboard").status_code == 200
        assert browser.get("/dashboard/data").json()["node"]["node_id"] == prov.node_id
        assert browser.get("/api/v1/id").status_code == 401  # the cookie is no key for the API
        assert browser.post("/api/v1/dashboard/login-token").status_code == 401
