"""A burst of 1,000 signed offers from one node: how many reach a requestor daemon, and how fast.

A provider daemon cannot publish 1,000 offers: each preset is one offer and
receivers hold at most 64 offers per provider. So the publisher here is a
small library node: ``python bench/market_burst.py publisher`` runs a
:class:`yagna.net.Network` (the daemon's own network stack) in a child
process, subscribes to the offers topic ``yagna/market/1/testnet/public/offers``
and signs N=1,000 distinct offers with :func:`market.offers.make_offer`
(properties from :func:`market.presets.offer_properties`, one preset name per
offer). A real requestor daemon (``--role requestor``) bootstraps to it; the
driver opens a demand on it that matches every offer and reads its events every 0.25 s
(``at_ms``: when the offer entered the requestor's book).

Once the publisher's GossipSub mesh holds the requestor, it publishes all N
offers as fast as ``Gossip.publish`` takes them (the daemon's publish path: a
256-message queue and one sender task that yields 1 ms between messages).
Reported per scenario:

* publish rate: N / (first publish call -> the sender handed the last one to pubsub);
* delivered: offers in the requestor's ``GET /market/offers`` at the end (and
  proposal events), time from the first publish to the last arrival, arrival
  rate, per-offer latency (enqueue -> in the requestor's book);
* the requestor's ``/market/status``: accepted / refused, the penalty it charged
  the publisher and whether it is still connected (a ban hangs up).

Scenarios, each with a fresh publisher and a fresh requestor:

1. **20 identities x 50 offers** (a fresh ``NodeKey`` per 50 offers, offers
   interleaved): the per-provider cap (64 offers) and token bucket (burst 100,
   20/s) do not bind, so this measures the gossip + validation path.
2. **1 identity x 1,000 offers**: the per-provider protections at work: the
   first 64 fit, the rest are refused (``over_cap`` / ``rate_limited``), each
   refusal charges the forwarder 1 point, and at 100 points it is banned.

Baseline (same run): the time to sign the N offers in the publisher (the CPU
cost per offer that any receiver pays again to verify it).

Reference, Golem yagna 0.17.6: 200 of 1,000 offers reach a requestor; 710
offers/s published on one node.

Run: ``python bench/market_burst.py [--offers 1000] [--per-identity 50]``. Takes ~30 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _daemon import MATCH_ALL, OFFERS_TOPIC, Daemon, child_env, cpu_seconds, report_logs, wait_for  # noqa: E402
from _util import PYTHON, Lines, Procs, machine, summary, table, tail, time_budget  # noqa: E402

USER_TOPIC = "user/bench"
POLL_S = 0.25  # the daemons stamp arrival times themselves; polling less often steals less of their CPU
GOLEM = "200 of 1,000 offers reach a requestor; 710 offers/s published on one node"


# -- the publisher (child process) ------------------------------------------------------
def build_offers(n: int, per_identity: int, ttl_s: int, index: int = 0) -> tuple[list[bytes], list[str]]:
    """N sealed offers from ceil(N / per_identity) fresh identities, interleaved round-robin."""
    from market.offers import make_offer
    from market.presets import OFFER_CONSTRAINTS, Preset, offer_properties
    from yagna.core.identity import NodeKey

    keys = [NodeKey.generate() for _ in range(math.ceil(n / per_identity))]
    now = int(time.time() * 1000)
    sealed: list[bytes] = []
    for i in range(n):
        k = i % len(keys)
        props = offer_properties(Preset(name=f"burst-{index}-{i:05d}", threads=1 + i % 8, mem_gib=0.5, storage_gib=1.0),
                                 node_name=f"burst-{index}-{k}")
        sealed.append(make_offer(keys[k], network_id="testnet", subnet="public", properties=props,
                                 constraints=OFFER_CONSTRAINTS, created_at_ms=now, expires_at_ms=now + ttl_s * 1000))
    return sealed, [key.node_id for key in keys]


def raw_frames(net, topic: str, sealed: list[bytes], per_rpc: int) -> list[tuple[bytes, int]]:  # type: ignore[no-untyped-def]
    """Varint-framed gossipsub RPCs of ``per_rpc`` signed pubsub messages each (no sender record)."""
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
    from libp2p.utils.varint import encode_uvarint

    pubsub = net.gossip.pubsub
    key = pubsub.host.get_public_key().serialize()
    msgs = []
    for data in sealed:
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=pubsub.my_id.to_bytes(), seqno=pubsub._next_seqno())
        msg.signature = pubsub.sign_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = key
        msgs.append(msg)
    frames = []
    for i in range(0, len(msgs), per_rpc):
        body = rpc_pb2.RPC(publish=msgs[i:i + per_rpc]).SerializeToString()
        frames.append((encode_uvarint(len(body)) + body, len(msgs[i:i + per_rpc])))
    return frames


async def run_publisher(args: argparse.Namespace) -> None:
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

    from yagna.core.envelope import content_id
    from yagna.net import NetConfig, Network

    t = time.perf_counter()
    topic = args.topic
    if args.raw_size:  # the baseline: plain messages of the offers' size, on a user topic
        sealed = [f"{i:06d}|".encode().ljust(args.raw_size, b"x") for i in range(args.offers)]
        provider_ids: list[str] = []
    else:
        sealed, provider_ids = build_offers(args.offers, args.per_identity, args.ttl, args.index)
    sign_s = time.perf_counter() - t
    print("BUILT", json.dumps({"offers": len(sealed), "sign_s": sign_s, "providers": provider_ids,
                               "bytes": sum(map(len, sealed))}), flush=True)
    net = Network(os.urandom(32), NetConfig(bootstrap=[args.bootstrap] if args.bootstrap else [], px_interval=1.0))

    received = 0

    async def drain(rx) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        async for _ in rx:
            received += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        if not args.no_subscribe:
            nursery.start_soon(drain, await net.gossip.subscribe(topic))
        print("ADDR", net.full_addrs()[0], "ID", net.node_id, flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            cmd = line.split()
            if not cmd or cmd[0] == "stop":
                break
            if cmd[0] == "count":
                # the publisher's own refusals (per-forwarder admission) and slow-reader drops of what it was sent
                print("COUNT", received, net.gossip.rejected, net.gossip.dropped, flush=True)
                continue
            if cmd[0] == "wait-peer":
                peer, timeout = cmd[1], float(cmd[2])
                with trio.move_on_after(timeout):
                    while not (peer in net.gossip.topic_peers(topic) and any(
                            p.to_base58() == peer for p in net.gossip.router.mesh.get(topic, ()))):
                        await trio.sleep(0.01)
                    print("MESHED", flush=True)
                    continue
                print("NOT-MESHED", json.dumps({"topic_peers": net.gossip.topic_peers(topic)}), flush=True)
            elif cmd[0] == "publish-raw":
                # Many providers' offers as another libp2p implementation sends them: pubsub
                # messages signed by this node (like any origin), `per_rpc` to an RPC, written
                # on one gossipsub stream. Frames are built before the clock starts.
                peer = cmd[1]
                frames = raw_frames(net, topic, sealed, args.per_rpc)
                stream = await net.host.new_stream(ID.from_base58(peer), [PROTOCOL_ID_V11])
                enq = []
                t0 = time.time()
                for frame, count in frames:
                    now = time.time()
                    enq += [now] * count
                    await stream.write(frame)
                t_sent = time.time()
                print("PUBLISHED", json.dumps({"t0": t0, "t_queued": t_sent, "t_sent": t_sent, "enq": enq,
                                               "ids": [content_id(s) for s in sealed]}), flush=True)
                await trio.sleep(0.5)  # let the last frames leave before a stop closes the stream
            elif cmd[0] == "publish":
                base = net.gossip.published
                enq: list[float] = []
                t0 = time.time()
                for data in sealed:
                    enq.append(time.time())
                    await net.gossip.publish(topic, data)
                t_queued = time.time()
                while net.gossip.published < base + len(sealed):
                    await trio.sleep(0.001)
                t_sent = time.time()
                print("PUBLISHED", json.dumps({"t0": t0, "t_queued": t_queued, "t_sent": t_sent, "enq": enq,
                                               "ids": [content_id(s) if not args.raw_size else s[:6].decode()
                                                       for s in sealed]}), flush=True)
        nursery.cancel_scope.cancel()


# -- driver -------------------------------------------------------------------------------
def poll_events(d: Daemon, demand_id: str, stop: threading.Event, out: list[dict]) -> None:
    import httpx

    assert d.client is not None
    with httpx.Client(base_url=str(d.client.base_url), headers=dict(d.client.headers), timeout=60) as c:
        after = 0
        while not stop.is_set():
            try:
                resp = c.get(f"/market/demands/{demand_id}/events", params={"after": after})
                resp.raise_for_status()
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            for ev in resp.json():
                out.append(ev)
                after = max(after, int(ev["seq"]))
            stop.wait(POLL_S)


def scenario(procs: Procs, tmp: Path, label: str, offers: int, per_identity: int, grace: float,
             raw_size: int = 0) -> dict:
    """One publisher child + one requestor daemon; returns the figures.

    ``raw_size`` > 0: the baseline, plain messages of that size on the user
    topic ``user/bench`` (the requestor subscribes through REST and stamps
    ``received_at`` on delivery) instead of signed offers.
    """
    tag = "baseline" if raw_size else f"{per_identity}"
    log = tmp / f"publisher-{tag}.log"
    extra = ["--topic", USER_TOPIC, "--raw-size", str(raw_size)] if raw_size else []
    with open(log, "wb") as err:
        pub = procs.spawn([PYTHON, __file__, "publisher", "--offers", str(offers), "--per-identity", str(per_identity),
                           *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=child_env(tmp))
    lines = Lines(pub)

    def send(cmd: str) -> None:
        assert pub.stdin is not None
        pub.stdin.write(cmd.encode() + b"\n")
        pub.stdin.flush()

    stop = threading.Event()
    poller: threading.Thread | None = None
    req: Daemon | None = None
    events: list[dict] = []
    messages: list[dict] = []
    try:
        try:
            built = json.loads(lines.wait_for("BUILT", 60))
            addr = lines.wait_for("ADDR", 30).split()[0]
        except (TimeoutError, EOFError) as exc:
            raise SystemExit(f"publisher: {exc}\n{tail(log)}") from None
        pub_peer = addr.rsplit("/p2p/", 1)[1]
        req = Daemon(procs, tmp, f"requestor-{tag}", ["--role", "requestor", "--bootstrap", addr,
                                                       "--px-interval", "2"]).start()
        if raw_size:
            req.api("PUT", f"/net/gossip/{USER_TOPIC}/subscription")
        else:
            demand = req.post("/market/demands", {"properties": {}, "constraints": MATCH_ALL, "subnet": "public"})
            poller = threading.Thread(target=poll_events, args=(req, demand["demand_id"], stop, events), daemon=True)
            poller.start()
        send(f"wait-peer {req.node_id} 20")
        try:
            lines.wait_for("MESHED", 25)
        except (TimeoutError, EOFError) as exc:
            raise SystemExit(f"publisher never meshed with the requestor: {exc}\n{tail(log)}") from None
        status0 = req.get("/market/status")
        send("publish")
        try:
            pub_res = json.loads(lines.wait_for("PUBLISHED", 120))
        except (TimeoutError, EOFError) as exc:
            raise SystemExit(f"publisher: {exc}\n{tail(log)}") from None
        ids = set(pub_res["ids"])
        enq = dict(zip(pub_res["ids"], pub_res["enq"]))

        # Wait until everything arrived, or nothing new arrived for `grace` seconds.
        last_change, last_count, after = time.monotonic(), -1, 0
        while True:
            if raw_size:
                new = req.get(f"/net/gossip/{USER_TOPIC}/messages", params={"after": after})
                messages += new
                after = max([after, *(m["seq"] for m in new)])
                count = len(messages)
            else:
                count = sum(1 for e in list(events) if e.get("type") == "proposal" and e.get("offer_id") in ids)
            if count != last_count:
                last_change, last_count = time.monotonic(), count
            if count >= len(ids) or time.monotonic() - last_change > grace:
                break
            time.sleep(POLL_S)
        listed = len(req.offer_ids() & ids) if not raw_size else len({m["data"][:6] for m in messages} & ids)
        status = req.get("/market/status")
        connected = pub_peer in req.connected()
    finally:
        stop.set()
        if poller is not None:
            poller.join(timeout=3)
        try:
            send("stop")
        except (OSError, ValueError):
            pass
        try:
            pub.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(pub)
        if req is not None:
            req.stop()

    arrivals: dict[str, float] = {}
    if raw_size:
        for m in messages:
            arrivals.setdefault(m["data"][:6], m["received_at"])
    for e in events:
        if e.get("type") == "proposal" and e.get("offer_id") in ids and e["offer_id"] not in arrivals:
            arrivals[e["offer_id"]] = e["at_ms"] / 1000
    arrivals = {k: v for k, v in arrivals.items() if k in enq}
    lat = [(arrivals[oid] - enq[oid]) * 1000 for oid in arrivals]
    first = min(arrivals.values()) if arrivals else math.nan
    last = max(arrivals.values()) if arrivals else math.nan
    return {
        "label": label, "raw": bool(raw_size), "offers": offers, "providers": len(built["providers"]),
        "sign_s": built["sign_s"], "bytes": built["bytes"], "t0": pub_res["t0"], "t_queued": pub_res["t_queued"],
        "t_sent": pub_res["t_sent"], "delivered_events": len(arrivals), "listed": listed, "first": first,
        "last": last, "lat": lat,
        "accepted": int(status["accepted"]) - int(status0["accepted"]),
        "refused": int(status["refused"]) - int(status0["refused"]),
        "penalty": status["penalties"].get(pub_peer), "connected": connected,
    }


def scenario_many(procs: Procs, tmp: Path, offers: int, publishers: int, per_identity: int, per_rpc: int,
                  grace: float) -> dict:
    """Many providers: ``publishers`` child nodes write pre-signed pubsub RPCs to one requestor daemon.

    The requestor starts first; each publisher bootstraps to it. Publisher 0 also
    subscribes to the offers topic, so the requestor forwards the other publishers'
    offers to it (relaying is part of the work measured); the others only write.
    """
    per_pub = offers // publishers
    req = Daemon(procs, tmp, "requestor-many", ["--role", "requestor", "--px-interval", "3600"]).start()
    demand = req.post("/market/demands", {"properties": {}, "constraints": MATCH_ALL, "subnet": "public"})
    stop = threading.Event()
    events: list[dict] = []
    poller = threading.Thread(target=poll_events, args=(req, demand["demand_id"], stop, events), daemon=True)
    poller.start()
    pubs: list[tuple[subprocess.Popen[bytes], Lines]] = []

    def send(i: int, cmd: str) -> None:
        stdin = pubs[i][0].stdin
        assert stdin is not None
        stdin.write(cmd.encode() + b"\n")
        stdin.flush()

    try:
        for i in range(publishers):
            with open(tmp / f"publisher-many-{i}.log", "wb") as err:
                proc = procs.spawn([PYTHON, __file__, "publisher", "--offers", str(per_pub), "--per-identity",
                                    str(per_identity), "--index", str(i), "--bootstrap", req.p2p_addr,
                                    *([] if i == 0 else ["--no-subscribe"])],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=child_env(tmp))
            pubs.append((proc, Lines(proc)))
        built, peers = [], []
        for i, (_, lines) in enumerate(pubs):
            try:
                built.append(json.loads(lines.wait_for("BUILT", 90)))
                peers.append(lines.wait_for("ADDR", 30).split()[2])
            except (TimeoutError, EOFError) as exc:
                raise SystemExit(f"publisher {i}: {exc}\n{tail(tmp / f'publisher-many-{i}.log')}") from None
        wait_for(lambda: set(peers) <= req.connected(), 20, "requestor connected to every publisher")
        send(0, f"wait-peer {req.node_id} 20")
        if pubs[0][1].wait_for("MESHED", 25) is None:
            raise SystemExit("publisher 0 never meshed with the requestor")
        status0 = req.get("/market/status")
        cpu0 = cpu_seconds(req.proc.pid)  # type: ignore[union-attr]
        for i in range(publishers):
            send(i, f"publish-raw {req.node_id}")
        results = [json.loads(lines.wait_for("PUBLISHED", 120)) for _, lines in pubs]
        enq: dict[str, float] = {}
        for r in results:
            enq.update(zip(r["ids"], r["enq"]))
        ids = set(enq)
        last_change, last_count = time.monotonic(), -1
        while True:
            count = sum(1 for e in list(events) if e.get("type") == "proposal" and e.get("offer_id") in ids)
            if count != last_count:
                last_change, last_count = time.monotonic(), count
            if count >= len(ids) or time.monotonic() - last_change > grace:
                break
            time.sleep(POLL_S)
        cpu1 = cpu_seconds(req.proc.pid)  # type: ignore[union-attr]
        listed = len(req.offer_ids() & ids)
        status = req.get("/market/status")
        send(0, "count")
        forwarded, fwd_refused, fwd_dropped = (int(x) for x in pubs[0][1].wait_for("COUNT", 10).split())
        connected = set(peers) <= req.connected()
    finally:
        stop.set()
        poller.join(timeout=3)
        for i, (proc, _) in enumerate(pubs):
            try:
                send(i, "stop")
            except (OSError, ValueError):
                pass
        for proc, _ in pubs:
            procs.stop(proc)
        req.stop()
    arrivals: dict[str, float] = {}
    for e in events:
        if e.get("type") == "proposal" and e.get("offer_id") in ids and e["offer_id"] not in arrivals:
            arrivals[e["offer_id"]] = e["at_ms"] / 1000
    lat = [(arrivals[oid] - enq[oid]) * 1000 for oid in arrivals]
    t0 = min(r["t0"] for r in results)
    return {
        "label": f"{sum(len(b['providers']) for b in built)} identities x {per_identity}, {publishers} publishers, "
                 f"{per_rpc}/RPC",
        "offers": per_pub * publishers, "t0": t0, "t_sent": max(r["t_sent"] for r in results),
        "delivered": len(arrivals), "listed": listed, "lat": lat,
        "first": min(arrivals.values()) if arrivals else math.nan,
        "last": max(arrivals.values()) if arrivals else math.nan,
        "cpu_s": cpu1 - cpu0, "forwarded": forwarded, "fwd_refused": fwd_refused, "fwd_dropped": fwd_dropped, "forwardable": per_pub * (publishers - 1),
        "accepted": int(status["accepted"]) - int(status0["accepted"]),
        "refused": int(status["refused"]) - int(status0["refused"]), "connected": connected,
        "sign_s": sum(b["sign_s"] for b in built),
    }


def print_many(r: dict) -> None:
    span = r["last"] - r["first"]
    rows = [[r["label"], f"{r['offers'] / max(r['t_sent'] - r['t0'], 1e-9):.0f}", f"{r['listed']}/{r['offers']}",
             (r["last"] - r["t0"]) * 1000 if r["lat"] else math.nan,
             f"{r['delivered'] / (r['last'] - r['t0']):.0f}" if r["lat"] else "-",
             f"{r['delivered'] / span:.0f}" if r["lat"] and span > 0 else "-",
             summary(r["lat"])["median"], summary(r["lat"])["p99"],
             f"{r['cpu_s'] / max(r['delivered'], 1) * 1e6:.0f}", f"{r['forwarded']}/{r['forwardable']} (it refused {r['fwd_refused']}, dropped {r['fwd_dropped']})",
             r["accepted"], r["refused"], "yes" if r["connected"] else "no"]]
    print(table(["scenario", "written/s", "in the book", "first write -> last arrival ms", "ingest/s (end to end)",
                 "arrivals/s (first -> last)", "write->arrival p50 ms", "p99 ms", "requestor CPU us/offer",
                 "relayed to the subscribed publisher", "accepted", "refused", "all connected"], rows))


def run(args: argparse.Namespace) -> None:
    print(f"# market_burst: {machine()}, load average {os.getloadavg()[0]:.2f}")
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-mburst-")
    tmp = Path(tmpdir.name)
    results = []
    time_budget(args.budget)
    many = None
    try:
        if args.publishers:
            many = scenario_many(procs, tmp, args.many_offers, args.publishers, args.many_per_identity, args.per_rpc,
                                 args.grace)
        n_ids = math.ceil(args.offers / args.per_identity)
        if not args.skip_one_publisher:
            results.append(scenario(procs, tmp, f"{n_ids} identities x {args.per_identity}", args.offers,
                                args.per_identity, args.grace))
        if not args.skip_baseline and results:
            size = round(results[0]["bytes"] / results[0]["offers"])
            results.append(scenario(procs, tmp, f"baseline: {args.offers} x {size} B on user/bench", args.offers,
                                    args.per_identity, args.grace, raw_size=size))
        if not args.skip_single:
            results.append(scenario(procs, tmp, f"1 identity x {args.offers}", args.offers, args.offers, args.grace))
    finally:
        signal.alarm(0)
        procs.close()
        report_logs(tmp)
        tmpdir.cleanup()

    if many is not None:
        print(f"\n## Many providers: {many['offers']} offers from {args.publishers} publisher nodes to one requestor daemon")
        print_many(many)
        print("ingest/s: offers in the requestor's book / (first write -> last arrival); requestor CPU: its CPU time "
              "(user+sys) from the first write to the last arrival, per offer (all its work: noise, pubsub, checks, "
              "book, matching the open demand, relaying)")
    if not results:
        print(f"load average now {os.getloadavg()[0]:.2f}")
        return
    print(f"\n## Burst of {args.offers} offers from one publisher node to one requestor daemon")
    rows = []
    for r in results:
        pub_s = r["t_sent"] - r["t0"]
        span = r["last"] - r["first"]
        raw = r["raw"]
        rows.append([
            r["label"], f"{r['offers'] / pub_s:.0f}", f"{r['listed']}/{r['offers']}",
            "-" if raw else r["delivered_events"],
            (r["last"] - r["t0"]) * 1000 if r["lat"] else math.nan,
            f"{r['delivered_events'] / span:.0f}" if r["lat"] and span > 0 else "-",
            summary(r["lat"])["median"], summary(r["lat"])["p99"], "-" if raw else r["accepted"],
            "-" if raw else r["refused"], "-" if r["penalty"] is None else r["penalty"],
            "yes" if r["connected"] else "no (banned)",
        ])
    print(table(["scenario", "published/s", "delivered (book / user topic)", "proposal events",
                 "first publish -> last arrival ms", "arrivals/s", "enqueue->arrival p50 ms", "p99 ms", "accepted",
                 "refused", "penalty", "publisher connected"], rows))
    for r in results:
        what = "building" if r["raw"] else "signing"
        print(f"{r['label']}: {what} {r['offers']} messages took {r['sign_s'] * 1000:.0f} ms "
              f"({r['sign_s'] / r['offers'] * 1e6:.0f} us each, {r['bytes'] / r['offers']:.0f} bytes each); "
              f"publish calls returned after {(r['t_queued'] - r['t0']) * 1000:.0f} ms, "
              f"sender done after {(r['t_sent'] - r['t0']) * 1000:.0f} ms")
    print("penalty: the requestor's score for the publisher (a ban at 100 points resets it, so '-' after a ban)")
    print(f"load average now {os.getloadavg()[0]:.2f}")
    print(f"reference, Golem yagna 0.17.6: {GOLEM}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["publisher"], help="(internal) run the publisher node")
    parser.add_argument("--offers", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=50, help="offers per provider identity (scenario 1)")
    parser.add_argument("--skip-single", action="store_true", help="skip scenario 2 (one identity)")
    parser.add_argument("--grace", type=float, default=5.0, help="stop waiting after this many seconds without arrivals")
    parser.add_argument("--budget", type=int, default=150, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--ttl", type=int, default=1800, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", default=OFFERS_TOPIC, help=argparse.SUPPRESS)
    parser.add_argument("--raw-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--skip-baseline", action="store_true", help="skip the bare user-topic gossip baseline")
    parser.add_argument("--skip-one-publisher", action="store_true", help="run only the many-providers scenario")
    parser.add_argument("--publishers", type=int, default=3, help="many-providers scenario: publisher nodes (0 skips it)")
    parser.add_argument("--many-offers", type=int, default=6000, help="many-providers scenario: offers in all")
    parser.add_argument("--many-per-identity", type=int, default=40, help="many-providers scenario: offers per identity")
    parser.add_argument("--per-rpc", type=int, default=1, help="many-providers scenario: pubsub messages per RPC")
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-subscribe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round (CI)")
    args = parser.parse_args()
    if args.smoke and args.mode != "publisher":
        args.offers, args.many_offers, args.publishers, args.per_identity = 60, 120, 2, 20
        args.grace, args.skip_single, args.skip_baseline = 2.0, True, True
    if args.mode == "publisher":
        trio.run(run_publisher, args)
    else:
        run(args)


if __name__ == "__main__":
    main()
