"""Helpers to run real ``yagna`` daemons in separate processes for e2e tests.

Every process started here is tracked by PID and killed at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

YAGNA = [sys.executable, "-m", "yagna"]


def run_cli(*args: str, data_dir: Path | None = None, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = list(YAGNA)
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Daemon:
    data_dir: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 30.0) -> Daemon:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*YAGNA, "--data-dir", str(self.data_dir), "service", "run", "--api-port", "0", *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        node_file = self.data_dir / "node.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                info = json.loads(node_file.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"daemon did not start within {timeout}s:\n{self.log.read_text()}")

    @property
    def node_id(self) -> str:
        return str(self.info["node_id"])

    @property
    def p2p_addr(self) -> str:
        return str(self.info["p2p_addrs"][0])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        key = (self.data_dir / "app-key").read_text().strip()
        resp = httpx.request(method, f"{self.info['api_url']}/api/v1{path}",
                             headers={"Authorization": f"Bearer {key}"}, timeout=5.0, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def connected_peers(self) -> set[str]:
        try:
            return {p["node_id"] for p in self.api("GET", "/net/peers") if p["connected"]}
        except httpx.HTTPError:
            return set()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_until(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> float:
    """Poll ``predicate`` until true; return the seconds it took."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def containers_of(node_id: str) -> list[str]:
    """Ids of the containers (running or not) a node's exe-unit made (its ``network.yagna.node`` label)."""
    import docker

    client = docker.from_env()
    try:
        return [c.id for c in client.containers.list(all=True, filters={"label": f"network.yagna.node={node_id}"},
                                                     ignore_removed=True)]  # one removed meanwhile is gone
    finally:
        client.close()


def devnet(tmp_path: Path, daemons: list[Daemon], *, providers: int = 3, fund: str = "100") -> tuple[Daemon, list[Daemon]]:
    """``providers`` providers (a 10 s activity keep-alive) and a funded requestor that sees every offer."""
    first = Daemon(tmp_path / "prov-1", ["--role", "provider", "--activity-keepalive", "10"]).start()
    provs = [first] + [Daemon(tmp_path / f"prov-{i}", ["--role", "provider", "--activity-keepalive", "10",
                                                       "--bootstrap", first.p2p_addr]).start()
                       for i in range(2, providers + 1)]
    daemons.extend(provs)
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", first.p2p_addr]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == providers, timeout=30,
               what="the requestor sees every offer")
    run_cli("payment", "fund", "--amount", fund, data_dir=req.data_dir)
    return req, provs


def paid_sleeper(tmp_path: Path, daemons: list[Daemon], terms: list[str]) -> tuple[Daemon, Daemon, str, str]:
    """A provider and a funded requestor with one agreement under ``terms`` (``market negotiate`` flags) and one
    activity running ``sleep 600`` in ``local/busybox:1``: (provider, requestor, agreement id, activity id)."""
    prov = Daemon(tmp_path / "prov", ["--role", "provider", "--activity-keepalive", "60"]).start()
    daemons.append(prov)
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", prov.p2p_addr]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == 1, timeout=20, what="the requestor sees the offer")
    run_cli("payment", "fund", "--amount", "10", data_dir=req.data_dir)
    out = run_cli("market", "negotiate", *terms, "--json", data_dir=req.data_dir, timeout=60)
    agreement_id = json.loads(out.stdout)["agreements"][0]["agreement_id"]
    act = req.api("POST", "/activity", json={"agreement_id": agreement_id})
    req.api("POST", f"/activity/{act['activity_id']}/exec", json={"script": [
        {"deploy": {"image": "local/busybox:1"}}, {"start": {}}, {"run": {"argv": ["sleep", "600"], "timeout": 600}}]})
    return prov, req, agreement_id, act["activity_id"]
