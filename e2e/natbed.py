"""The NAT testbed for e2e tests: ``yagna devnet up --topology nat`` in a test's tmp dir.

::

    from e2e.natbed import nat_devnet

    def test_something(tmp_path):
        with nat_devnet(tmp_path, providers=2) as net:
            out = net["requestor"].cli_json("net", "peers")
            net.link("provider-1", "--cut")

Needs Linux and root (CI runs as root); skips with the reason otherwise. Everything is
torn down at the end, also when the test fails: ``devnet down``, and if that fails, the
testbed's record is used directly, so no namespace outlives the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.daemons import YAGNA, run_cli


_namespaces_work: bool | None = None


def require_root() -> None:
    """Skip the test unless this machine can run the testbed: Linux, root, the tools, and a
    network namespace can be created (a container without CAP_SYS_ADMIN cannot). In CI (which
    runs as root and installs the tools) a missing piece fails the test instead."""
    global _namespaces_work
    why = None
    if not sys.platform.startswith("linux"):
        why = "the NAT testbed needs Linux network namespaces"
    elif os.geteuid() != 0:
        why = "the NAT testbed needs root (network namespaces, iptables); CI runs as root"
    elif missing := [t for t in ("ip", "iptables-restore", "sysctl") if shutil.which(t) is None]:
        why = f"the NAT testbed needs {', '.join(missing)} (scripts/setup-machine.sh installs them)"
    else:
        if _namespaces_work is None:
            probe = f"yn-probe{os.getpid()}"
            made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
            _namespaces_work = made.returncode == 0
        if not _namespaces_work:
            why = "no network namespace can be created here (ip netns add failed)"
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the NAT testbed tests for real")
    pytest.skip(why)


@dataclass
class NatNode:
    name: str
    role: str
    netns: str
    ip: str
    nat: str | None
    node_id: str
    data_dir: Path
    pid: int

    def cli(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``yagna --data-dir <its dir> ARGS`` run inside the node's namespace."""
        cmd = ["ip", "netns", "exec", self.netns, *YAGNA, "--data-dir", str(self.data_dir), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def cli_json(self, *args: str, timeout: float = 30.0) -> Any:
        return json.loads(self.cli(*args, "--json", timeout=timeout).stdout)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST call to the node's API, made from a thread inside its namespace."""
        from yagna.netlab.netns import run_in_netns

        info = json.loads((self.data_dir / "node.json").read_text())
        key = (self.data_dir / "app-key").read_text().strip()

        def call() -> Any:
            resp = httpx.request(method, f"{info['api_url']}/api/v1{path}",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=10.0, **kwargs)
            resp.raise_for_status()
            return resp.json() if resp.content else None

        return run_in_netns(self.netns, call, timeout=30.0)


@dataclass
class NatNet:
    root: Path
    prefix: str
    nodes: dict[str, NatNode]

    def __getitem__(self, name: str) -> NatNode:
        return self.nodes[name]

    def devnet(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``yagna devnet ARGS --root <this testbed>`` from the host."""
        return run_cli("devnet", *args, "--root", str(self.root), timeout=timeout, check=check)

    def link(self, site: str, *args: str) -> None:
        """``yagna devnet link SITE ARGS``: e.g. ``--cut``, ``--heal``, ``--loss 0.1``."""
        self.devnet("link", site, *args)


@contextmanager
def nat_devnet(tmp_path: Path, providers: int = 2, *args: str, timeout: float = 120.0) -> Iterator[NatNet]:
    """A running NAT devnet (``args`` go to ``devnet up``, e.g. ``--nat``, ``--loss``); always removed."""
    require_root()
    root = tmp_path / "natnet"
    try:
        out = run_cli("devnet", "up", "--topology", "nat", "--providers", str(providers), "--root", str(root),
                      "--json", *args, timeout=timeout)
        raw = json.loads(out.stdout)
        nodes = {
            n["name"]: NatNode(n["name"], n["role"], n["netns"], n["ip"], n["nat"], n["node_id"],
                               Path(n["data_dir"]), n["pid"])
            for n in raw
        }
        from yagna.netlab.testbed import Testbed

        recorded = Testbed(root).load()
        assert recorded is not None, "devnet up --topology nat left no testbed record"
        yield NatNet(root, recorded.topology.prefix, nodes)
    finally:
        teardown(root)


def teardown(root: Path) -> None:
    """``devnet down``; if that fails, stop the daemons and delete the namespaces directly.
    Fails the test if a namespace of the testbed is left (the clean-up is part of what is tested)."""
    from yagna.devnet import Devnet
    from yagna.netlab.testbed import Testbed, leftovers

    recorded = Testbed(root).load()
    down = run_cli("devnet", "down", "--root", str(root), timeout=60, check=False)
    if down.returncode != 0:
        try:
            Devnet(root).down(grace=5.0)
        finally:
            Testbed(root).down()
    left = leftovers(recorded.topology.tag) if recorded is not None else []
    assert down.returncode == 0 and not left, f"devnet down: {down.returncode} {down.stderr}; left: {left}"


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def host_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
