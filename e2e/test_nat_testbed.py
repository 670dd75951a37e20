"""The NAT testbed (issue 13): its NATs behave as docs/testbed.md says, `devnet up --topology nat`
brings nodes up behind them, and `devnet down` leaves nothing behind, also after a crash.

Root and Linux only (CI runs as root); skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.daemons import YAGNA, run_cli, wait_until
from e2e.natbed import host_links, namespaces, nat_devnet, require_root
from yagna.netlab.netns import socket_in_netns
from yagna.netlab.testbed import Testbed
from yagna.netlab.topology import Impairment, Topology, devnet_topology, new_tag

PORT = 4001


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[tuple[Testbed, Topology]]:
    """The testbed alone (no daemons): public-1, public-2, requestor (easy), provider-1 (easy), provider-2 (hard)."""
    require_root()
    bed = Testbed(tmp_path / "bed")
    topo = devnet_topology(new_tag(), 2)
    try:
        yield bed, bed.up(topo).topology
    finally:
        bed.down()
    assert not [ns for ns in namespaces() if ns.startswith(topo.prefix)]


def _sock(ns: str, port: int | None = None, timeout: float = 2.0) -> socket.socket:
    s = socket_in_netns(ns)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if port is not None:
        s.bind(("0.0.0.0", port))
    s.settimeout(timeout)
    return s


def _observed_from(topo: Topology, site: str) -> tuple[str, int]:
    """The address public-1 sees for a connection from ``site``'s port 4001."""
    server = _sock(topo.site("public-1").node_ns, 5000)
    server.listen(1)
    client = _sock(topo.site(site).node_ns, PORT)
    try:
        client.connect((topo.site("public-1").node_ip, 5000))
        conn, addr = server.accept()
        conn.close()
        return addr[0], addr[1]
    finally:
        client.close()
        server.close()


def _punch(topo: Topology, a: str, b: str, tries: int = 4) -> dict[str, str]:
    """Both sides dial each other's public address from port 4001 at once (TCP simultaneous open)."""
    result: dict[str, str] = {}

    def side(me: str, peer: str) -> None:
        for _ in range(tries):
            s = _sock(topo.site(me).node_ns, PORT, timeout=1.0)
            try:
                s.connect((topo.site(peer).wan_ip, PORT))
                result[me] = "connected"
                return
            except OSError as exc:
                result[me] = type(exc).__name__
            finally:
                s.close()

    threads = [threading.Thread(target=side, args=(a, b)), threading.Thread(target=side, args=(b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def test_nats_behave_as_documented(bare: tuple[Testbed, Topology]) -> None:
    bed, topo = bare
    # every site reaches the internet; a NAT shows its router's public address
    assert _observed_from(topo, "public-2") == (topo.site("public-2").wan_ip, PORT)
    assert _observed_from(topo, "provider-1") == (topo.site("provider-1").wan_ip, PORT)  # easy: port kept
    hard_ip, hard_port = _observed_from(topo, "provider-2")
    assert hard_ip == topo.site("provider-2").wan_ip and hard_port != PORT  # hard: random port

    # nothing unsolicited gets in: dropped (a timeout), not refused
    probe = _sock(topo.site("public-1").node_ns, timeout=1.0)
    with pytest.raises(TimeoutError):
        probe.connect((topo.site("requestor").wan_ip, PORT))
    probe.close()
    # another site's private address is not routed anywhere
    probe = _sock(topo.site("requestor").node_ns)
    with pytest.raises(OSError):
        probe.connect((topo.site("provider-1").node_ip, PORT))
    probe.close()

    # hole punching: two easy NATs let a simultaneous open through, an easy and a hard one do not
    assert _punch(topo, "requestor", "provider-1") == {"requestor": "connected", "provider-1": "connected"}
    assert "connected" not in _punch(topo, "requestor", "provider-2", tries=2).values()


def test_link_cut_heal_and_loss(bare: tuple[Testbed, Topology]) -> None:
    bed, topo = bare
    public = topo.site("public-1")
    bed.set_link("requestor", Impairment(cut=True))
    client = _sock(topo.site("requestor").node_ns, timeout=1.0)
    with pytest.raises(TimeoutError):
        client.connect((public.node_ip, 5001))
    client.close()
    bed.set_link("requestor", Impairment())
    server = _sock(public.node_ns, 5001)
    server.listen(1)
    client = _sock(topo.site("requestor").node_ns)
    client.connect((public.node_ip, 5001))
    client.close()
    server.close()

    # random loss: 400 datagrams at 50 % per direction arrive in part (never none, never all)
    bed.set_link("requestor", Impairment(loss=0.5))
    rx = socket_in_netns(public.node_ns, socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("0.0.0.0", 5002))
    rx.settimeout(0.5)
    tx = socket_in_netns(topo.site("requestor").node_ns, socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(400):
        tx.sendto(b"x", (public.node_ip, 5002))
    got = 0
    try:
        while True:
            rx.recv(16)
            got += 1
    except TimeoutError:
        pass
    tx.close()
    rx.close()
    assert 0 < got < 400
    rec = bed.load()
    assert rec is not None and rec.topology.site("requestor").site.link.loss == 0.5


def test_delay_between_sites(tmp_path: Path) -> None:
    """20 ms one way per link (netem, or user space where the kernel has no netem): a round trip
    between two sites crosses two links each way, so it takes at least 40 ms (a lower bound only)."""
    require_root()
    bed = Testbed(tmp_path / "bed")
    topo = devnet_topology(new_tag(), 1, public_nodes=1, delay_ms=20)
    pids: list[int] = []
    try:
        built = bed.up(topo, require_delay=True)
        assert built.delay in ("netem", "nfqueue")
        rec = bed.load()
        assert rec is not None
        pids = list(rec.delayers.values())
        if built.delay == "nfqueue":
            assert len(pids) == len(topo.sites) and all(_alive(pid) for pid in pids)
        public = topo.site("public-1")
        server = _sock(public.node_ns, 5003)
        server.listen(1)
        client = _sock(topo.site("requestor").node_ns)
        start = time.monotonic()
        client.connect((public.node_ip, 5003))  # SYN out through two delayed links, SYN-ACK back
        assert time.monotonic() - start >= 0.040
        conn, _ = server.accept()
        start = time.monotonic()
        client.sendall(b"x")
        conn.recv(1)
        conn.sendall(b"y")
        client.recv(1)
        assert time.monotonic() - start >= 0.040
        bulk = b"z" * (4 << 20)  # many packets at once: all delayed, none lost, order kept
        sender = threading.Thread(target=client.sendall, args=(bulk,))
        sender.start()
        got = bytearray()
        while len(got) < len(bulk):
            got += conn.recv(1 << 16)
        sender.join()
        assert bytes(got) == bulk
        for s in (client, conn, server):
            s.close()
        if built.delay == "nfqueue":  # no delay: that link's process ends
            bed.set_link("requestor", Impairment())
            rec = bed.load()
            assert rec is not None and topo.site("requestor").edge_ns not in rec.delayers
    finally:
        bed.down()
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_devnet_nat_up_status_link_down(tmp_path: Path) -> None:
    with nat_devnet(tmp_path, 2) as net:
        names = ["public-1", "public-2", "requestor", "provider-1", "provider-2"]
        assert list(net.nodes) == names
        assert [net[n].nat for n in names] == [None, None, "easy", "easy", "hard"]
        boot = net["public-1"]
        assert boot.ip.startswith("198.18.")
        for node in net.nodes.values():
            assert node.netns == net.prefix + node.name and node.netns in namespaces()
            assert node.data_dir.parent == net.root
        # each private node reached the bootstrap through its NAT: public-1 sees the router's address
        seen = {p["node_id"]: p for p in boot.cli_json("net", "peers")}
        for name in ("requestor", "provider-1", "provider-2"):
            node = net[name]
            assert not node.ip.startswith("198.18.")
            peers = node.cli_json("net", "peers")
            assert any(p["node_id"] == boot.node_id and p["connected"] for p in peers), peers
            remote = seen[node.node_id]["remote_addrs"][0]
            wan_ip = Testbed(net.root).load().topology.site(name).wan_ip  # type: ignore[union-attr]
            assert remote.startswith(f"/ip4/{wan_ip}/tcp/"), remote

        again = run_cli("devnet", "up", "--topology", "nat", "--root", str(net.root), check=False)
        assert again.returncode != 0 and "already running" in again.stderr

        status = json.loads(net.devnet("status", "--json").stdout)
        assert [s["name"] for s in status] == names
        for s in status:
            assert s["running"] and s["netns"] == net[str(s["name"])].netns and "reachability" in s
        # the nodes find out by dial-backs (two public nodes on distinct IPs answer) what their NATs make them
        expected = {"public-1": "public", "public-2": "public", "requestor": "private", "provider-1": "private",
                    "provider-2": "private"}
        wait_until(lambda: {s["name"]: s["reachability"] for s in json.loads(net.devnet("status", "--json").stdout)}
                   == expected, timeout=60, interval=0.5, what="reachability public/private as the topology says")
        text = net.devnet("status").stdout
        assert net["provider-2"].netns in text and "reachability private" in text

        net.link("provider-1", "--loss", "0.05")
        status = json.loads(net.devnet("status", "--json").stdout)
        assert {s["name"]: s["link"]["loss"] for s in status}["provider-1"] == 0.05
        net.link("provider-2", "--cut")
        links = {s["name"]: s["link"] for s in json.loads(net.devnet("status", "--json").stdout)}
        assert links["provider-2"]["cut"] and not links["provider-1"]["cut"]
        rec = Testbed(net.root).load()
        delay = rec is not None and rec.delay is not None  # netem or the user-space delay: 20 ms by default
        assert links["provider-1"] == {"loss": 0.05, "delay_ms": 20.0 if delay else 0.0, "cut": False}
        net.link("provider-2", "--heal", *(["--delay-ms", "5"] if delay else []))
        links = {s["name"]: s["link"] for s in json.loads(net.devnet("status", "--json").stdout)}
        assert links["provider-2"] == {"loss": 0.0, "delay_ms": 5.0 if delay else 0.0, "cut": False}

        pids = [n.pid for n in net.nodes.values()]
        prefix = net.prefix
        net.devnet("down")
        assert not any(_alive(pid) for pid in pids)
        assert not [ns for ns in namespaces() if ns.startswith(prefix)]
        assert not [link for link in host_links() if prefix.rstrip("-") in link]
        assert json.loads(net.devnet("status", "--json").stdout) == []
        assert not (net.root / "netlab.json").exists()


def test_devnet_down_after_up_was_killed(tmp_path: Path) -> None:
    """`devnet up` killed while nodes start: `devnet down` stops them and removes every namespace."""
    require_root()
    root = tmp_path / "crashed"
    up = subprocess.Popen([*YAGNA, "devnet", "up", "--topology", "nat", "--providers", "1", "--root", str(root)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    pids: list[int] = []
    prefix = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and up.poll() is None:
            try:
                nodes = json.loads((root / "devnet.json").read_text())["nodes"]
            except (OSError, ValueError, KeyError):
                nodes = []
            if len(nodes) >= 2:  # the bootstrap runs and the next node was started
                break
            time.sleep(0.05)
        assert up.poll() is None, "devnet up finished before it could be killed"
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
        recorded = Testbed(root).load()
        assert recorded is not None
        prefix = recorded.topology.prefix
        assert [ns for ns in namespaces() if ns.startswith(prefix)]
        pids = [n["pid"] for n in json.loads((root / "devnet.json").read_text())["nodes"]]
        assert any(_alive(pid) for pid in pids)
    finally:
        run_cli("devnet", "down", "--root", str(root), timeout=60)
    assert not any(_alive(pid) for pid in pids)
    assert prefix is not None and not [ns for ns in namespaces() if ns.startswith(prefix)]
