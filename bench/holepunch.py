"""Across two NATs: raw TCP vs our direct vs hole-punched vs relayed connection (issue 13).

NEEDS_ROOT: the testbed is made of network namespaces (Linux, root). Not root: the bench says
so and exits 0 without figures; e2e/test_bench_smoke.py skips it there.

The testbed (``yagna.netlab``, docs/testbed.md): public-1 (the relay) on the "internet" bridge,
the requestor behind an easy NAT, provider-1 behind another easy NAT. Every connection below
crosses both NAT routers; each libp2p end is a real :class:`yagna.net.Network` (Noise, Yamux,
our fast I/O, relay service, hole punching) in its own process inside its namespace:

* **raw TCP**: a TCP simultaneous open from port 4002 on both sides (bench/nat_tcp.py's path),
  no encryption, no muxer: the floor;
* **direct**: our connection to provider-1 through a port forward on its NAT router (DNAT
  4001 -> the node), the dial a public node gets: our own direct connection over these links;
* **punched**: both ends meet through the relay, DCUtR (yagna/net/holepunch.py) upgrades the
  connection, and the measurement runs on the direct connection it made;
* **relayed**: hole punching off on both ends: every byte goes through public-1's circuit relay.

Round trip: a 100-byte request/response (``--pings``, p50/p99 µs, our pooled request streams).
Throughput: ``--mib`` MiB on one new stream in 1 MiB writes, acknowledged by the receiver
(median of ``--runs``). Also the time from the relayed connection to the verified direct one.
Goal: punched within 1.2x of direct; relayed >= 10x Golem's reported 1-2 MB/s.

Run: ``python bench/holepunch.py [--mib 64] [--runs 3] [--pings 500]`` (~1 min);
``--smoke`` (4 MiB, one run, 50 pings) in about half a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import SMOKE_HELP, PYTHON, Lines, Procs, apply_smoke, machine, pct, table  # noqa: E402

NEEDS_ROOT = True
PORT = 4001
RAW_PORT = 4002
ECHO = "/yagna-bench/echo/1.0.0"
SINK = "/yagna-bench/sink/1.0.0"
CHUNK = 1 << 20


def _net(bootstrap: list[str], *, relay: str = "off", punch: bool = False) -> Any:
    from yagna.net import NetConfig, Network

    return Network(os.urandom(32), NetConfig(listen=[f"/ip4/0.0.0.0/tcp/{PORT}"], bootstrap=bootstrap,
                                             px_interval=3600.0, relay_service=relay, hole_punching=punch))


async def _stdin_closed() -> None:
    await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


# -- workers (run inside a namespace) --------------------------------------------------
async def serve_relay(ip: str) -> None:
    net = _net([], relay="on")
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await net.relay.ready.wait()
        print("ADDR", f"/ip4/{ip}/tcp/{PORT}/p2p/{net.node_id}", flush=True)
        await _stdin_closed()
        nursery.cancel_scope.cancel()


async def serve_peer(bootstrap: str, punch: bool) -> None:
    from libp2p.custom_types import TProtocol

    from yagna.net import ProtocolSpec, Request

    net = _net([bootstrap], punch=punch)

    async def echo(req: Request) -> object:
        return req.payload

    async def sink(stream: Any) -> None:
        from libp2p.network.stream.exceptions import StreamEOF

        got = 0
        while True:
            try:
                data = await stream.read(1 << 18)
            except StreamEOF:
                break
            if not data:
                break
            got += len(data)
        await stream.write(got.to_bytes(8, "big"))
        await stream.close()

    net.rr.register(ProtocolSpec(ECHO), echo)
    net.host.set_stream_handler(TProtocol(SINK), sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        with trio.fail_after(60):
            while not any("/p2p-circuit" in a for a in net.addresses.advertised()):
                net.relay.waker.set()
                await trio.sleep(0.1)
        circuit = next(a for a in net.addresses.advertised() if "/p2p-circuit" in a)
        print("PEER", net.node_id, circuit, flush=True)
        await _stdin_closed()
        nursery.cancel_scope.cancel()


async def measure(bootstrap: str, target: str, circuit: str, direct: str, punch: bool,
                  pings: int, mib: int, runs: int) -> dict[str, Any]:
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    from yagna.net import ProtocolSpec
    from yagna.net.holepunch import connection_kind
    from yagna.net.host import peer_info

    net = _net([bootstrap], punch=punch)
    relay_id = bootstrap.rsplit("/p2p/", 1)[1]
    peer_id = ID.from_base58(target)
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        with trio.fail_after(30):
            while relay_id not in net.peers.connected_peers():
                await trio.sleep(0.05)
        with trio.fail_after(30):
            if direct:
                await net.host.connect(peer_info(target, [direct]))
            else:
                await net.relay.dial(target, [circuit])
        t0 = time.perf_counter()
        if punch:
            with trio.fail_after(30):
                while not connection_kind(net.host, peer_id)[1]:
                    await trio.sleep(0.02)
            out["punch_ms"] = (time.perf_counter() - t0) * 1e3
            await net.rr.retire_streams(target)
        spec = ProtocolSpec(ECHO)
        payload = os.urandom(100)
        for _ in range(20):
            await net.rr.request(target, spec, payload)
        samples = []
        for _ in range(pings):
            start = time.perf_counter()
            await net.rr.request(target, spec, payload)
            samples.append((time.perf_counter() - start) * 1e6)
        out["rtt_p50"], out["rtt_p99"] = pct(samples, 50), pct(samples, 99)
        block = b"\0" * CHUNK
        rates = []
        for _ in range(runs):
            stream = await net.host.new_stream(peer_id, [TProtocol(SINK)])
            out["path"] = [str(a) for a in stream.muxed_conn.get_transport_addresses()] if hasattr(
                stream.muxed_conn, "get_transport_addresses") else []
            start = time.perf_counter()
            for _ in range(mib):
                await stream.write(block)
            await stream.close()
            ack = await stream.read(8)
            took = time.perf_counter() - start
            if int.from_bytes(ack, "big") != mib * CHUNK:
                raise SystemExit(f"sink got {int.from_bytes(ack, 'big')} of {mib * CHUNK} bytes")
            rates.append(mib / took)
        out["mib_s"] = statistics.median(rates)
        relayed, is_direct = connection_kind(net.host, peer_id)
        out["conn"] = "direct" if is_direct else "relayed"
        nursery.cancel_scope.cancel()
    return out


# -- driver (the host namespace) ------------------------------------------------------
def _in(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, PYTHON, __file__, *args]


def _forward(router_ns: str, node_ip: str, on: bool) -> None:
    """A port forward on the NAT router (what a provider sets up to be public): DNAT plus the
    filter rule that lets new inbound connections to it through (the router drops them otherwise)."""
    dnat = ["PREROUTING", "-i", "wan0", "-p", "tcp", "--dport", str(PORT), "-j", "DNAT",
            "--to-destination", f"{node_ip}:{PORT}"]
    accept = ["FORWARD", "-i", "wan0", "-d", node_ip, "-p", "tcp", "--dport", str(PORT), "-j", "ACCEPT"]
    for table_, rule in (("nat", dnat), ("filter", accept)):
        flag = ("-I" if table_ == "filter" else "-A") if on else "-D"
        subprocess.run(["ip", "netns", "exec", router_ns, "iptables", "-t", table_, flag, *rule],
                       check=on, capture_output=True)


def _mode(procs: Procs, req: Any, p1: Any, relay_addr: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    punch = name == "punched"
    peer = procs.spawn(_in(p1.node_ns, "serve-peer", relay_addr, "1" if punch else "0"),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        target, circuit = Lines(peer).wait_for("PEER", 60).split()
        direct = f"/ip4/{p1.wan_ip}/tcp/{PORT}" if name == "direct" else ""
        res = subprocess.run(_in(req.node_ns, "measure", relay_addr, target, circuit, direct or "-",
                                 "1" if punch else "0", str(args.pings), str(args.mib), str(args.runs)),
                             capture_output=True, text=True, timeout=240)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{name}: no result\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
        return json.loads(line[7:])
    finally:
        procs.stop(peer)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("serve-relay", "serve-peer", "measure"):
        cmd, rest = sys.argv[1], sys.argv[2:]
        if cmd == "serve-relay":
            trio.run(serve_relay, rest[0])
        elif cmd == "serve-peer":
            trio.run(serve_peer, rest[0], rest[1] == "1")
        else:
            boot, target, circuit, direct, punch, pings, mib, runs = rest
            res = trio.run(measure, boot, target, circuit, "" if direct == "-" else direct, punch == "1",
                           int(pings), int(mib), int(runs))
            print("RESULT " + json.dumps(res), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pings", type=int, default=500)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, mib=4, runs=1, pings=50)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print("bench/holepunch.py needs Linux and root (network namespaces); nothing measured")
        return

    from nat_tcp import _pair_punched, _rtt, _throughput  # type: ignore[import-not-found]

    from yagna.netlab.testbed import Testbed
    from yagna.netlab.topology import devnet_topology, new_tag

    print(f"# across two NATs: raw TCP vs direct vs hole-punched vs relayed ({machine()})\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bed = Testbed(Path(tmp) / "bed")
        topo = devnet_topology(new_tag(), 1)
        procs = Procs()
        try:
            bed.up(topo)
            req, p1, pub1 = (topo.site(n) for n in ("requestor", "provider-1", "public-1"))
            router = p1.router_ns
            assert router is not None, "provider-1 sits behind a NAT router"
            a, b = _pair_punched(req.node_ns, req.wan_ip, p1.node_ns, p1.wan_ip, RAW_PORT)
            try:
                rtt = _rtt(a, b, args.pings)
                rate = statistics.median(_throughput(a, b, args.mib) for _ in range(args.runs))
            finally:
                a.close()
                b.close()
            rows.append(["raw TCP (simultaneous open)", pct(rtt, 50), pct(rtt, 99), rate, "-", "direct"])
            relay = procs.spawn(_in(pub1.node_ns, "serve-relay", pub1.node_ip), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            relay_addr = Lines(relay).wait_for("ADDR", 30)
            results = {}
            for name in ("direct", "punched", "relayed"):
                if name == "direct":
                    _forward(router, p1.node_ip, True)
                try:
                    results[name] = r = _mode(procs, req, p1, relay_addr, name, args)
                finally:
                    if name == "direct":
                        _forward(router, p1.node_ip, False)
                rows.append([f"ours, {name}", r["rtt_p50"], r["rtt_p99"], r["mib_s"],
                             f"{r['punch_ms']:.0f}" if "punch_ms" in r else "-", r["conn"]])
            procs.stop(relay)
        finally:
            procs.close()
            bed.down()
    print(table(["connection", "RTT p50 µs", "RTT p99 µs", f"{args.mib} MiB MiB/s (median of {args.runs})",
                 "relayed -> direct ms", "at the end"], rows))
    d, p, r = (results[k]["mib_s"] for k in ("direct", "punched", "relayed"))
    print(f"\npunched / direct throughput: {p / d:.2f}x (goal >= 1/1.2 = 0.83x); "
          f"round trip {results['punched']['rtt_p50'] / results['direct']['rtt_p50']:.2f}x of direct (goal <= 1.2x)")
    print(f"relayed: {r * 1.048576:.0f} MB/s = {r * 1.048576 / 2:.0f}x Golem's reported 1-2 MB/s (goal >= 10x of 2 MB/s)")


if __name__ == "__main__":
    main()
