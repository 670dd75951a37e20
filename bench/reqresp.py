"""Request/response round trip: our helper against bare py-libp2p streams, 2 OS processes.

The driver (``python bench/reqresp.py``) spawns a server (the same script with
``serve``), which prints its multiaddr; the driver is the client. Both are a
:class:`yagna.net.Network` (Noise + Yamux, one connection). The payload is 100
random bytes. Measured on the same connection, in the same run:

* **ours**: ``Network.rr.request`` (:mod:`yagna.net.reqresp`): a new stream per
  request, canonical CBOR, varint frame each way, reply ``{"ok": payload}``;
* **bare new stream**: ``host.new_stream`` + ``VarIntLengthMsgReadWriter``
  write/read one frame + ``close()`` (what ours does, without CBOR and limits);
* **bare long-lived stream**: one stream opened once, one varint frame each way
  per round trip (the floor: no stream open, no protocol negotiation).

Sequential: 50 warm-up round trips of each, then 5 rounds of 100 of each,
interleaved (ours, bare new, bare long-lived, ...) so load drift hits all
three alike; median and p99 (nearest rank) over the 500. Concurrent: batches
of 100 requests started at once (trio tasks), ours and bare new stream
alternating, 5 batches each after one warm-up batch each; throughput =
requests / wall time of their batches, plus per-request latency.

Reference (lab report §3, this machine, 2 processes): long-lived stream
0.62 ms, py-libp2p RequestResponse + JSON 2.5 ms.

Run: ``python bench/reqresp.py [--rounds 5] [--per-round 100]``. Takes ~15 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import SMOKE_HELP, apply_smoke, PYTHON, Lines, Procs, machine, summary, table, tail  # noqa: E402

ECHO = "/yagna-bench/echo/1.0.0"
BARE = "/yagna-bench/bare-echo/1.0.0"
PAYLOAD_SIZE = 100
MAX_MSG = 64 * 1024
TIME_BUDGET = 55.0


def _net(bootstrap: list[str]):  # type: ignore[no-untyped-def]
    from yagna.net import NetConfig, Network

    # px_interval: no periodic peer exchange traffic during the measurement.
    return Network(os.urandom(32), NetConfig(bootstrap=bootstrap, px_interval=3600.0))


# -- server ---------------------------------------------------------------------------
async def serve() -> None:
    from libp2p.custom_types import TProtocol
    from libp2p.io.msgio import VarIntLengthMsgReadWriter

    from yagna.net import ProtocolSpec, Request

    net = _net([])

    async def echo(req: Request) -> object:
        return req.payload

    async def bare_echo(stream) -> None:  # type: ignore[no-untyped-def]
        rw = VarIntLengthMsgReadWriter(stream, MAX_MSG)
        try:
            while True:
                await rw.write_msg(await rw.read_msg())
        except Exception:  # EOF when the client closes; anything escaping kills the host
            pass
        try:
            await stream.close()
        except Exception:
            pass

    net.rr.register(ProtocolSpec(ECHO), echo)
    net.host.set_stream_handler(TProtocol(BARE), bare_echo)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        print("ADDR", net.full_addrs()[0], flush=True)
        # Stop when the driver closes our stdin (or on SIGTERM: default action).
        await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()


# -- client ---------------------------------------------------------------------------
async def client(addr: str, rounds: int, per_round: int, warmup: int, conc: int, batches: int) -> dict:
    from libp2p.custom_types import TProtocol
    from libp2p.io.msgio import VarIntLengthMsgReadWriter
    from libp2p.peer.id import ID

    from yagna.net import ProtocolSpec

    spec = ProtocolSpec(ECHO)
    payload = os.urandom(PAYLOAD_SIZE)
    net = _net([addr])
    server = addr.rsplit("/p2p/", 1)[1]
    server_id = ID.from_base58(server)
    results: dict = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        t0 = time.perf_counter()
        with trio.fail_after(10):
            while server not in net.peers.connected_peers():
                await trio.sleep(0.005)
        results["connect_ms"] = (time.perf_counter() - t0) * 1000

        async def ours() -> None:
            reply = await net.rr.request(server, spec, payload)
            assert reply == payload

        async def bare_new() -> None:
            stream = await net.host.new_stream(server_id, [TProtocol(BARE)])
            rw = VarIntLengthMsgReadWriter(stream, MAX_MSG)
            await rw.write_msg(payload)
            reply = await rw.read_msg()
            await stream.close()
            assert reply == payload

        long_stream = await net.host.new_stream(server_id, [TProtocol(BARE)])
        long_rw = VarIntLengthMsgReadWriter(long_stream, MAX_MSG)

        async def bare_long() -> None:
            await long_rw.write_msg(payload)
            reply = await long_rw.read_msg()
            assert reply == payload

        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "ours (yagna.net.reqresp, pooled streams, CBOR)": ours,
            "bare libp2p, new stream per request": bare_new,
            "bare libp2p, one long-lived stream": bare_long,
        }
        seq: dict[str, list[float]] = {k: [] for k in kinds}
        for fn in kinds.values():
            for _ in range(warmup):
                await fn()
        t_seq = {k: 0.0 for k in kinds}
        for _ in range(rounds):
            for name, fn in kinds.items():
                t_round = time.perf_counter()
                for _ in range(per_round):
                    t = time.perf_counter()
                    await fn()
                    seq[name].append((time.perf_counter() - t) * 1000)
                t_seq[name] += time.perf_counter() - t_round
        results["seq"] = seq
        results["seq_rps"] = {k: len(seq[k]) / t_seq[k] for k in kinds}
        await long_stream.close()

        # Concurrency: `conc` requests in flight at once; batches alternate between kinds.
        conc_kinds = list(kinds.items())[:2]
        lat: dict[str, list[float]] = {name: [] for name, _ in conc_kinds}
        wall = {name: 0.0 for name, _ in conc_kinds}

        async def timed(name: str, fn: Callable[[], Awaitable[None]]) -> None:
            t = time.perf_counter()
            await fn()
            lat[name].append((time.perf_counter() - t) * 1000)

        for batch_no in range(batches + 1):  # batch 0 is warm-up
            for name, fn in conc_kinds:
                t_batch = time.perf_counter()
                async with trio.open_nursery() as batch:
                    for _ in range(conc):
                        batch.start_soon(timed, name, fn)
                if batch_no == 0:
                    lat[name].clear()
                else:
                    wall[name] += time.perf_counter() - t_batch
        results["conc"] = {
            name: {"lat": lat[name], "rps": len(lat[name]) / wall[name], "n": len(lat[name])}
            for name, _ in conc_kinds
        }
        nursery.cancel_scope.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["serve"], help="(internal) run the server side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, rounds=1, per_round=20, warmup=5, concurrency=10, batches=1)
    if args.mode == "serve":
        trio.run(serve)
        return

    print(f"# reqresp: {machine()}, load average {os.getloadavg()[0]:.2f}")
    procs = Procs()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"yagna-bench-reqresp-server-{os.getpid()}.log"
    try:
        with open(log, "wb") as err:
            server = procs.spawn([PYTHON, __file__, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=err)
        try:
            addr = Lines(server).wait_for("ADDR", 30)
        except (TimeoutError, EOFError):
            raise SystemExit(f"server did not start:\n{tail(log)}") from None

        async def bounded() -> dict:
            with trio.fail_after(TIME_BUDGET):
                return await client(addr, args.rounds, args.per_round, args.warmup, args.concurrency,
                                    args.batches)

        res = trio.run(bounded)
    finally:
        procs.close()
        if log.exists():
            server_log = log.read_text(errors="replace")
            log.unlink()
            if "Traceback" in server_log or "ERROR" in server_log:
                print("server log:\n" + server_log[-3000:], file=sys.stderr)

    print(f"\nconnected (bootstrap dial + Noise + Yamux) in {res['connect_ms']:.1f} ms")
    n = len(next(iter(res["seq"].values())))
    print(f"\n## Sequential round trip, {PAYLOAD_SIZE}-byte payload, 2 processes, ms ({n} round trips each)")
    base = summary(res["seq"]["bare libp2p, one long-lived stream"])["median"]
    rows = []
    for name, xs in res["seq"].items():
        s = summary(xs)
        rows.append([name, s["median"], s["p99"], s["min"], s["max"], res["seq_rps"][name],
                     f"{s['median'] / base:.1f}x"])
    print(table(["what", "median", "p99", "min", "max", "req/s", "vs long-lived"], rows))

    print(f"\n## {args.concurrency} requests in flight at once ({args.batches} batches), per-request latency in ms")
    rows = []
    for name, c in res["conc"].items():
        s = summary(c["lat"])
        rows.append([name, c["n"], s["median"], s["p99"], s["max"], round(c["rps"])])
    print(table(["what", "requests", "median", "p99", "max", "req/s"], rows))
    print("\nreference (lab report, this machine, 2 processes): long-lived stream 0.62 ms, "
          "py-libp2p RequestResponse+JSON 2.5 ms")


if __name__ == "__main__":
    main()
