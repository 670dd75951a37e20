"""Gossip publish-to-receive latency across 5 OS processes, ours against bare pubsub.

The driver (``python bench/gossip.py``) starts 5 nodes (this script with
``node``), each a :class:`yagna.net.Network` in its own process. Node 1 starts
first and prints its multiaddr; nodes 2-5 bootstrap to it and find each other
by peer exchange (``px_interval`` 1 s). Every node subscribes to two topics:

* **ours**: ``Network.gossip.subscribe`` / ``publish`` (:mod:`yagna.net.gossip`:
  a publish queue with one sender task, a drain task per topic, own messages
  filtered, bounded per-reader channels);
* **bare**: the same py-libp2p ``Pubsub`` used directly (``pubsub.subscribe`` /
  ``pubsub.publish``, read with ``sub.get()``), on a second topic of the same
  mesh: the baseline, measured in the same run over the same connections.

When every node lists the 4 others in ``gossip.topic_peers`` and in its
GossipSub mesh for both topics, it prints ``READY``. The driver then tells node
5 to publish N=200 messages on each topic, one message every 20 ms, in blocks
of 50 alternating ours / bare (so both see the same pacing and load drift; 8 s
in all), each carrying its ``time.time()`` stamp at the ``publish`` call.
Nodes 1-4 record ``time.time()`` when their reader gets the message; all
processes share the machine clock. Reported: delivered/expected, median and
p99 (nearest rank) per receiver and overall; "direct" says whether the
receiver had a connection to the publisher (else the message took 2+ hops).
Each node's CPU time over the measurement is printed too: 5 processes share
this machine's CPUs, and at 50 msg/s they use most of 2 CPUs, so the tails
are CPU queueing, not network.

Coordination is stdout lines (``ADDR``, ``READY``, ``GOT-ALL``, ``PUBLISHED``,
``RESULT <json>``) and stdin commands (``publish``, ``stop``).

Reference (lab report §4, this machine, bare py-libp2p, 5 processes, full
mesh): 5.4-6.2 ms median.

Run: ``python bench/gossip.py [--messages 200] [--interval 0.02]``. Takes ~15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import SMOKE_HELP, apply_smoke, PYTHON, Lines, Procs, machine, summary, table, tail, time_budget  # noqa: E402

TOPIC = "yagna-bench/ours"
BARE_TOPIC = "yagna-bench/bare"
START_TIMEOUT = 30.0
READY_TIMEOUT = 30.0
GRACE = 3.0


# -- one node (child process) ----------------------------------------------------------
async def run_node(index: int, bootstrap: str | None, nodes: int, messages: int) -> None:
    from yagna.net import NetConfig, Network

    net = Network(os.urandom(32), NetConfig(bootstrap=[bootstrap] if bootstrap else [], px_interval=1.0))
    me = net.host.get_id().to_bytes()
    got: dict[str, dict[int, float]] = {"ours": {}, "bare": {}}
    dups = {"ours": 0, "bare": 0}
    all_in = trio.Event()

    def record(kind: str, data: bytes) -> None:
        now = time.time()
        _, seq_s, stamp_s = data.decode().split("|")
        seq = int(seq_s)
        if seq in got[kind]:
            dups[kind] += 1
            return
        got[kind][seq] = (now - float(stamp_s)) * 1000
        if len(got["ours"]) >= messages and len(got["bare"]) >= messages and not all_in.is_set():
            all_in.set()
            print("GOT-ALL", flush=True)

    async def read_ours(rx) -> None:  # type: ignore[no-untyped-def]
        async for msg in rx:
            record("ours", msg.data)

    async def read_bare(sub) -> None:  # type: ignore[no-untyped-def]
        while True:
            msg = await sub.get()
            if msg.from_id != me:
                record("bare", msg.data)

    def status() -> dict[str, object]:
        return {
            "connected": net.peers.connected_peers(),
            "topic_peers": {t: len(net.gossip.topic_peers(t)) for t in (TOPIC, BARE_TOPIC)},
            "mesh": {t: len(net.gossip.router.mesh.get(t, ())) for t in (TOPIC, BARE_TOPIC)},
        }

    def ready() -> bool:
        s = status()
        return all(n >= nodes - 1 for n in [*s["topic_peers"].values(), *s["mesh"].values()])  # type: ignore[union-attr]

    async def publish(n: int, interval: float, block: int) -> None:
        # Blocks of `block` messages, alternating ours / bare, one message every
        # `interval` overall: each path sees the same pacing and the same drift.
        start = trio.current_time() + 0.05
        sent = {"ours": 0, "bare": 0}
        k = 0
        while sent["ours"] < n or sent["bare"] < n:
            kind = "ours" if (k // block) % 2 == 0 else "bare"
            if sent[kind] >= n:
                kind = "bare" if kind == "ours" else "ours"
            await trio.sleep_until(start + k * interval)
            data = f"{kind}|{sent[kind]}|{time.time()!r}".encode()
            if kind == "ours":
                await net.gossip.publish(TOPIC, data)
            else:
                await net.gossip.pubsub.publish(BARE_TOPIC, data)
            sent[kind] += 1
            k += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        print("ADDR", net.full_addrs()[0], "ID", net.node_id, flush=True)
        nursery.start_soon(read_ours, await net.gossip.subscribe(TOPIC))
        nursery.start_soon(read_bare, await net.gossip.pubsub.subscribe(BARE_TOPIC))
        t0 = time.time()
        while not ready():
            await trio.sleep(0.01)
        print("READY", json.dumps({"at": time.time(), "after_s": time.time() - t0, **status()}), flush=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            cmd = line.split()
            if not cmd or cmd[0] == "stop":
                break
            if cmd[0] == "publish":
                await publish(int(cmd[1]), float(cmd[2]), int(cmd[3]))
                print("PUBLISHED", flush=True)
        cpu = {"cpu_s": time.process_time() - cpu0, "wall_s": time.monotonic() - wall0}
        print("RESULT", json.dumps({"index": index, "got": got, "dups": dups, **cpu, **status()}), flush=True)
        nursery.cancel_scope.cancel()


# -- driver ------------------------------------------------------------------------------
def drive(args: argparse.Namespace) -> None:
    print(f"# gossip: {machine()}, load average {os.getloadavg()[0]:.2f}")
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="yagna-bench-gossip-"))
    node_args = ["--nodes", str(args.nodes), "--messages", str(args.messages)]
    nodes: dict[int, tuple[subprocess.Popen[bytes], Lines]] = {}

    def spawn(i: int, bootstrap: str | None) -> None:
        extra = ["--bootstrap", bootstrap] if bootstrap else []
        with open(tmp / f"node{i}.log", "wb") as err:
            proc = procs.spawn([PYTHON, __file__, "node", "--index", str(i), *node_args, *extra],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        nodes[i] = (proc, Lines(proc))

    def send(i: int, line: str) -> None:
        stdin = nodes[i][0].stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def failed(i: int, what: str) -> SystemExit:
        return SystemExit(f"node {i}: {what}\n{tail(tmp / f'node{i}.log')}")

    publisher = args.nodes
    time_budget(90)
    try:
        t_spawn = time.time()
        spawn(1, None)
        try:
            first = nodes[1][1].wait_for("ADDR", START_TIMEOUT).split()
        except (TimeoutError, EOFError) as exc:
            raise failed(1, str(exc)) from None
        ids = {1: first[2]}
        for i in range(2, args.nodes + 1):
            spawn(i, first[0])
        for i in range(2, args.nodes + 1):
            try:
                ids[i] = nodes[i][1].wait_for("ADDR", START_TIMEOUT).split()[2]
            except (TimeoutError, EOFError) as exc:
                raise failed(i, str(exc)) from None
        t_last_up = time.time()
        ready: dict[int, dict] = {}
        deadline = time.monotonic() + READY_TIMEOUT
        for i in nodes:
            try:
                ready[i] = json.loads(nodes[i][1].wait_for("READY", max(0.1, deadline - time.monotonic())))
            except (TimeoutError, EOFError) as exc:
                raise failed(i, f"not meshed: {exc}") from None
        t_ready = max(r["at"] for r in ready.values())

        send(publisher, f"publish {args.messages} {args.interval} {args.block}")
        try:
            nodes[publisher][1].wait_for("PUBLISHED", 2 * args.messages * args.interval + 10)
        except (TimeoutError, EOFError) as exc:
            raise failed(publisher, str(exc)) from None
        deadline = time.monotonic() + GRACE
        for i in nodes:
            if i != publisher:
                try:
                    nodes[i][1].wait_for("GOT-ALL", max(0.01, deadline - time.monotonic()))
                except (TimeoutError, EOFError):
                    pass  # counted as not delivered
        results: dict[int, dict] = {}
        for i in nodes:
            send(i, "stop")
        for i in nodes:
            try:
                results[i] = json.loads(nodes[i][1].wait_for("RESULT", 10))
            except (TimeoutError, EOFError) as exc:
                raise failed(i, str(exc)) from None
        for proc, _ in nodes.values():  # let them shut down cleanly; close() below kills stragglers
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        signal.alarm(0)
        procs.close()
        logs = {p.name: p.read_text(errors="replace") for p in tmp.glob("*.log")}
        shutil.rmtree(tmp, ignore_errors=True)
        for name, text in sorted(logs.items()):
            if "Traceback" in text or "ERROR" in text:
                print(f"{name} (stderr):\n{text[-2000:]}", file=sys.stderr)

    if args.json:
        Path(args.json).write_text(json.dumps({"ids": ids, "ready": ready, "results": results}))
    print(f"\nall {args.nodes} processes up (ADDR printed) {t_last_up - t_spawn:.2f} s after the first spawn; "
          f"all meshed {t_ready - t_last_up:.2f} s later")
    print(f"\n## Publish (node {publisher}) to receive latency, ms; {args.messages} messages per topic, "
          f"one every {args.interval * 1000:.0f} ms")
    rows = []
    overall: dict[str, list[float]] = {"ours": [], "bare": []}
    for i in sorted(results):
        if i == publisher:
            continue
        r = results[i]
        direct = "yes" if ids[publisher] in r["connected"] else "no"
        for kind, label in (("ours", "ours (yagna.net.gossip)"), ("bare", "bare py-libp2p pubsub")):
            lat = list(r["got"][kind].values())
            overall[kind] += lat
            s = summary(lat)
            rows.append([f"node {i}", label, direct, f"{len(lat)}/{args.messages}", r["dups"][kind],
                         s["median"], s["p99"], s["max"]])
    receivers = args.nodes - 1
    for kind, label in (("ours", "ours (yagna.net.gossip)"), ("bare", "bare py-libp2p pubsub")):
        s = summary(overall[kind])
        rows.append(["all", label, "", f"{len(overall[kind])}/{args.messages * receivers}", "",
                     s["median"], s["p99"], s["max"]])
    print(table(["receiver", "path", "direct", "delivered", "dups", "median", "p99", "max"], rows))
    cpu = sum(r["cpu_s"] for r in results.values())
    wall = max(r["wall_s"] for r in results.values())
    per = ", ".join(f"node {i} {100 * r['cpu_s'] / r['wall_s']:.0f}%" for i, r in sorted(results.items()))
    print(f"\nCPU while publishing and draining ({wall:.1f} s wall): {per}; "
          f"sum {cpu / wall:.2f} of {os.cpu_count()} CPUs (load average now {os.getloadavg()[0]:.2f})")
    rx = [r for i, r in results.items() if i != publisher]
    delivered = sum(len(r["got"]["ours"]) + len(r["got"]["bare"]) for r in rx)
    if delivered:
        per_msg = 1000 * sum(r["cpu_s"] for r in rx) / delivered
        print(f"receiver CPU per delivered message: {per_msg:.1f} ms (idle work included; in a full "
              f"mesh every receiver also gets {args.nodes - 2} forwarded copies and forwards it "
              f"{args.nodes - 2} times)")
    print("\nreference (lab report, this machine, bare py-libp2p, 5 processes, full mesh): 5.4-6.2 ms median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["node"], help="(internal) run one node")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between publishes")
    parser.add_argument("--block", type=int, default=50, help="messages per block (ours and bare alternate)")
    parser.add_argument("--json", metavar="PATH", help="also write every node's raw result here")
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, nodes=3, messages=20, block=10, interval=0.01)
    if args.mode == "node":
        trio.run(run_node, args.index, args.bootstrap, args.nodes, args.messages)
    else:
        drive(args)


if __name__ == "__main__":
    main()
