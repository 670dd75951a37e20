"""The SDK's service API against real daemons: ``examples/services/sdk_web.py`` as a user runs it.

Two providers and a funded requestor; the example deploys one replica of busybox's httpd, waits
until it is healthy, fetches its page through the local endpoint, prints it and leaves
``async with Services()``, which closes the deployment. Checked: its output and exit code, the
deployment closed on the daemon, and no container left on either provider.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from e2e.daemons import Daemon, containers_of, run_cli, wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_sdk_web_example_deploys_serves_and_closes(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    first = Daemon(tmp_path / "prov-1", ["--role", "provider", "--activity-keepalive", "10"]).start()
    second = Daemon(tmp_path / "prov-2", ["--role", "provider", "--activity-keepalive", "10",
                                          "--bootstrap", first.p2p_addr]).start()
    provs = [first, second]
    daemons.extend(provs)
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", first.p2p_addr]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == 2, timeout=30, what="the requestor sees both offers")
    run_cli("payment", "fund", "--amount", "10", data_dir=req.data_dir)

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "services" / "sdk_web.py"),
                           "--data-dir", str(req.data_dir)], capture_output=True, text=True, timeout=120)
    print(f"sdk_web.py: {time.monotonic() - t0:.2f} s\n{proc.stderr}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "hello from a yagna service", proc.stdout + proc.stderr
    assert "[web-0] web started" in proc.stderr and "reached at http://127.0.0.1:" in proc.stderr
    assert "closed; it cost " in proc.stderr

    (dep,) = req.api("GET", "/deployments")
    assert dep["source"] == "sdk_web" and dep["state"] == "closed"
    assert all(r["state"] == "closed" for r in dep["replicas"])
    wait_until(lambda: all(containers_of(p.node_id) == [] for p in provs), timeout=20, what="no container left")
