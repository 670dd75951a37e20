"""Reachability for real: three public nodes and one behind a NAT router, in network namespaces.

Linux and root only (skipped otherwise). Everything it creates carries the prefix
``h1r<pid>`` and is removed in ``finally``; deleting a namespace removes its veths
and iptables rules with it. Addresses: 198.18.0.0/24 plays the internet (a
benchmark range, public to yagna), 10.77.0.0/24 the home network behind the NAT.

Expected: the public nodes find each other reachable (each dialed back by two
others): ``public``, advertising their 198.18 address; the node behind the NAT
(MASQUERADE, no forwarded port) is dialed back at the NAT's address by two
public peers and fails: ``private``, and it never advertises its 10.77 address.
Once the router forwards the port, the restarted home node is ``public`` and
advertises the router's address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.daemons import wait_until

PREFIX = f"h1r{os.getpid() % 10000}"
PORT = 7464

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None
    or shutil.which("iptables") is None,
    reason="needs Linux, root, ip and iptables",
)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def in_ns(ns: str, *args: str) -> None:
    sh("ip", "netns", "exec", ns, *args)


@pytest.fixture
def topology() -> Iterator[dict[str, str]]:
    """{name: namespace}: inet (the switch), pub1..pub3, nat, home."""
    ns = {name: f"{PREFIX}{name}" for name in ("inet", "pub1", "pub2", "pub3", "nat", "home")}
    try:
        for name in ns.values():
            sh("ip", "netns", "add", name)
            in_ns(name, "ip", "link", "set", "lo", "up")
        in_ns(ns["inet"], "ip", "link", "add", "br0", "type", "bridge")
        in_ns(ns["inet"], "ip", "link", "set", "br0", "up")
        uplinks = {"pub1": "198.18.0.1", "pub2": "198.18.0.2", "pub3": "198.18.0.3", "nat": "198.18.0.10"}
        for i, (name, ip) in enumerate(uplinks.items()):
            inner, outer = f"{PREFIX}u{i}", f"{PREFIX}v{i}"
            sh("ip", "link", "add", inner, "netns", ns[name], "type", "veth", "peer", "name", outer, "netns", ns["inet"])
            in_ns(ns["inet"], "ip", "link", "set", outer, "master", "br0")
            in_ns(ns["inet"], "ip", "link", "set", outer, "up")
            in_ns(ns[name], "ip", "addr", "add", f"{ip}/24", "dev", inner)
            in_ns(ns[name], "ip", "link", "set", inner, "up")
        wan = f"{PREFIX}u3"
        lan_in, lan_out = f"{PREFIX}h0", f"{PREFIX}h1"
        sh("ip", "link", "add", lan_in, "netns", ns["home"], "type", "veth", "peer", "name", lan_out, "netns", ns["nat"])
        in_ns(ns["nat"], "ip", "addr", "add", "10.77.0.1/24", "dev", lan_out)
        in_ns(ns["nat"], "ip", "link", "set", lan_out, "up")
        in_ns(ns["home"], "ip", "addr", "add", "10.77.0.2/24", "dev", lan_in)
        in_ns(ns["home"], "ip", "link", "set", lan_in, "up")
        in_ns(ns["home"], "ip", "route", "add", "default", "via", "10.77.0.1")
        in_ns(ns["nat"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(ns["nat"], "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE")
        yield ns
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


class NsDaemon:
    def __init__(self, ns: str, data_dir: Path, args: list[str]) -> None:
        self.ns = ns
        self.data_dir = data_dir
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / f"{data_dir.name}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "yagna", "--data-dir", str(data_dir),
                 "service", "run", "--role", "requestor", "--api-port", "0", "--px-interval", "1",
                 "--listen", f"/ip4/0.0.0.0/tcp/{PORT}", *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        wait_until(lambda: self._started(), timeout=30, what=f"daemon in {ns} started")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon in {self.ns} exited:\n{self.log.read_text()}")
        try:
            return json.loads((self.data_dir / "node.json").read_text()).get("pid") is not None
        except (OSError, ValueError):
            return False

    def cli(self, *args: str) -> str:
        out = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-m", "yagna", "--data-dir",
                              str(self.data_dir), *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def status(self) -> dict[str, object]:
        return dict(json.loads(self.cli("net", "status", "--json")))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_public_nodes_and_a_node_behind_nat_find_their_reachability(tmp_path: Path, topology: dict[str, str]) -> None:
    started: list[NsDaemon] = []
    try:
        first = NsDaemon(topology["pub1"], tmp_path / "pub1", [])
        started.append(first)
        node_id = str(first.status()["node_id"])
        boot = f"/ip4/198.18.0.1/tcp/{PORT}/p2p/{node_id}"
        for name in ("pub2", "pub3", "home"):
            started.append(NsDaemon(topology[name], tmp_path / name, ["--bootstrap", boot]))
        *public, home = started
        t0 = time.monotonic()
        for d in public:
            wait_until(lambda d=d: d.status()["reachability"] == "public", timeout=60, interval=0.5,
                       what=f"{d.ns} public")
        wait_until(lambda: home.status()["reachability"] == "private", timeout=60, interval=0.5, what="home private")
        took = time.monotonic() - t0
        for i, d in enumerate(public, start=1):
            status = d.status()
            assert f"/ip4/198.18.0.{i}/tcp/{PORT}/p2p/{status['node_id']}" in status["advertised_addrs"]
            assert not any("/127." in a for a in status["advertised_addrs"])  # type: ignore[attr-defined]
        status = home.status()
        assert f"/ip4/10.77.0.2/tcp/{PORT}/p2p/{status['node_id']}" in status["listen_addrs"]
        assert not any("/10.77." in a or "/127." in a for a in status["advertised_addrs"])  # type: ignore[attr-defined]
        # the public nodes were not taught the home node's private or loopback address
        for d in public:
            peers = json.loads(d.cli("net", "peers", "--json", "--all"))
            for p in peers:
                if p["node_id"] == status["node_id"]:
                    assert not any("/10.77." in a or "/127." in a for a in p["addrs"]), p
        print(f"reachability settled in {took:.1f} s")

        # The user forwards the port on the router: restarted, the home node is dialed back at
        # the NAT's address with its listen port (the observed IP x listen port candidate) and is public.
        home.stop()
        in_ns(topology["nat"], "iptables", "-t", "nat", "-A", "PREROUTING", "-d", "198.18.0.10", "-p", "tcp",
              "--dport", str(PORT), "-j", "DNAT", "--to-destination", f"10.77.0.2:{PORT}")
        home = NsDaemon(topology["home"], tmp_path / "home", ["--bootstrap", boot])
        started.append(home)
        wait_until(lambda: home.status()["reachability"] == "public", timeout=60, interval=0.5,
                   what="home public through its forwarded port")
        status = home.status()
        assert f"/ip4/198.18.0.10/tcp/{PORT}/p2p/{status['node_id']}" in status["advertised_addrs"]
        assert not any("/10.77." in a for a in status["advertised_addrs"])  # type: ignore[attr-defined]
    finally:
        for d in started:
            d.stop()
