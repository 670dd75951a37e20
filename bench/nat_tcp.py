"""Raw TCP across the NAT testbed: round trip and bulk throughput per path; testbed build/teardown time.

NEEDS_ROOT: the testbed is made of network namespaces (Linux, root). Not root: the bench says
so and exits 0 without figures; e2e/test_bench_smoke.py skips it there.

The testbed (``yagna.netlab``, docs/testbed.md) without daemons: public-1, public-2 on the
"internet" bridge; requestor (easy NAT), provider-1 (easy NAT). One process, sockets created
inside the namespaces (``socket_in_netns``), one thread per side. Paths:

* **loopback**: both ends in the requestor's namespace on 127.0.0.1 (the floor);
* **public - public**: public-1 to public-2 over the bridge (two veths, no NAT);
* **NAT - public**: requestor (through its NAT router) to public-1: the path of every private
  node's connection to a bootstrap or relay;
* **NAT - NAT**: requestor to provider-1 through both routers, the connection opened by a TCP
  simultaneous open from port 4001 on both sides: the path a hole-punched connection takes.

Round trip: 1-byte ping-pong with TCP_NODELAY (``--pings``, p50/p99 in µs). Throughput:
``--mib`` MiB in 1 MiB ``sendall`` writes, received into a 256 KiB buffer (median of
``--runs``). Build/teardown: ``--sizes`` providers (sites = providers + 3; namespaces =
2 per NAT site + 1 per public site + the internet).

Run: ``python bench/nat_tcp.py [--mib 64] [--runs 3] [--pings 2000] [--sizes 2,24]`` (~15 s);
``--smoke`` (4 MiB, 1 run, 100 pings, 2 providers) a few seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import SMOKE_HELP, apply_smoke, machine, pct, table  # noqa: E402

NEEDS_ROOT = True
PORT = 4001
CHUNK = 1 << 20


def _sock(ns: str, port: int | None = None) -> socket.socket:
    from yagna.netlab.netns import socket_in_netns

    s = socket_in_netns(ns)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if port is not None:
        s.bind(("0.0.0.0", port))
    s.settimeout(30)
    return s


def _pair_listen(ns_a: str, ns_b: str, ip_b: str, port: int) -> tuple[socket.socket, socket.socket]:
    server = _sock(ns_b, port)
    server.listen(1)
    client = _sock(ns_a)
    client.connect((ip_b, port))
    conn, _ = server.accept()
    server.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, conn


def _pair_punched(ns_a: str, wan_a: str, ns_b: str, wan_b: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Both sides connect from ``port`` to the other's public address at once (simultaneous open)."""
    out: dict[str, socket.socket] = {}
    errors: list[BaseException] = []

    def side(key: str, ns: str, target: str) -> None:
        for _ in range(5):
            s = _sock(ns, port)
            s.settimeout(1.0)
            try:
                s.connect((target, port))
                s.settimeout(30)
                out[key] = s
                return
            except OSError as exc:
                s.close()
                errors.append(exc)

    threads = [threading.Thread(target=side, args=("a", ns_a, wan_b)),
               threading.Thread(target=side, args=("b", ns_b, wan_a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(out) != 2:
        raise SystemExit(f"simultaneous open through two easy NATs failed: {errors[-2:]}")
    return out["a"], out["b"]


def _rtt(a: socket.socket, b: socket.socket, pings: int) -> list[float]:
    def echo() -> None:
        for _ in range(pings):
            b.sendall(b.recv(1))

    t = threading.Thread(target=echo)
    t.start()
    samples = []
    for _ in range(pings):
        start = time.perf_counter()
        a.sendall(b"x")
        a.recv(1)
        samples.append((time.perf_counter() - start) * 1e6)
    t.join()
    return samples


def _throughput(a: socket.socket, b: socket.socket, mib: int) -> float:
    total = mib * CHUNK
    got = [0]

    def sink() -> None:
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        while got[0] < total:
            n = b.recv_into(view)
            if not n:
                break
            got[0] += n

    t = threading.Thread(target=sink)
    block = b"\0" * CHUNK
    start = time.perf_counter()
    t.start()
    for _ in range(mib):
        a.sendall(block)
    t.join()
    took = time.perf_counter() - start
    if got[0] != total:
        raise SystemExit(f"received {got[0]} of {total} bytes")
    return mib / took


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--sizes", default="2,24", help="providers per testbed for the build/teardown timing")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay per link of the delayed paths (0: none)")
    ap.add_argument("--delayed-pings", type=int, default=50)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, mib=4, runs=1, pings=100, sizes="2", delayed_pings=5)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print("bench/nat_tcp.py needs Linux and root (network namespaces); nothing measured")
        return

    from yagna.netlab.testbed import Testbed
    from yagna.netlab.topology import Impairment, devnet_topology, new_tag

    print(f"# raw TCP across the NAT testbed ({machine()})\n")
    with tempfile.TemporaryDirectory() as tmp:
        build_rows = []
        for providers in [int(x) for x in args.sizes.split(",")]:
            bed = Testbed(Path(tmp) / f"b{providers}")
            topo = devnet_topology(new_tag(), providers)
            try:
                built = bed.up(topo)
            finally:
                down = _timed(bed.down)
            build_rows.append([len(topo.sites), len(topo.namespaces()), built.seconds * 1e3, down * 1e3])

        bed = Testbed(Path(tmp) / "paths")
        topo = devnet_topology(new_tag(), 1)
        rows = []
        try:
            bed.up(topo)
            req, p1, pub1, pub2 = (topo.site(n) for n in ("requestor", "provider-1", "public-1", "public-2"))
            paths = {
                "loopback (one namespace)": lambda p: _pair_listen(req.node_ns, req.node_ns, "127.0.0.1", p),
                "public - public (bridge)": lambda p: _pair_listen(pub1.node_ns, pub2.node_ns, pub2.node_ip, p),
                "NAT - public (1 router)": lambda p: _pair_listen(req.node_ns, pub1.node_ns, pub1.node_ip, p),
                "NAT - NAT (punched, 2 routers)": lambda p: _pair_punched(req.node_ns, req.wan_ip, p1.node_ns,
                                                                          p1.wan_ip, PORT),
            }
            delayed = {
                f"NAT - public, {args.delay_ms:g} ms/link": lambda p: _pair_listen(req.node_ns, pub1.node_ns,
                                                                                 pub1.node_ip, p),
                f"NAT - NAT (punched), {args.delay_ms:g} ms/link": lambda p: _pair_punched(
                    req.node_ns, req.wan_ip, p1.node_ns, p1.wan_ip, PORT + 1),
            }
            port = 5100
            for group in (paths, delayed):
                if group is delayed:
                    if args.delay_ms <= 0:
                        break
                    for a in topo.addresses():
                        bed.set_link(a.site.name, Impairment(delay_ms=args.delay_ms))
                    rec = bed.load()
                    delay_how = rec.delay if rec is not None else None
                    if delay_how is None:
                        break
                for name, make in group.items():
                    port += 1
                    a, b = make(port)
                    try:
                        rtt = _rtt(a, b, args.pings if group is paths else args.delayed_pings)
                        rates = [_throughput(a, b, args.mib) for _ in range(args.runs)]
                    finally:
                        a.close()
                        b.close()
                    if group is delayed:
                        name += f" ({delay_how})"
                    rows.append([name, pct(rtt, 50), pct(rtt, 99), statistics.median(rates)])
        finally:
            bed.down()

    print(table(["sites", "namespaces", "build ms", "teardown ms"], build_rows))
    print()
    print(table(["path", "RTT p50 µs", "RTT p99 µs", f"{args.mib} MiB MiB/s (median of {args.runs})"], rows))


if __name__ == "__main__":
    main()
