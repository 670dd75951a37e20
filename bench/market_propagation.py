"""Offer propagation across 10 daemons: a new offer's publish time to when every other node knows it.

The driver starts 10 real daemons (``python -m yagna ... service run``), each a
separate process with its own data dir: node 0 is ``--role provider``, nodes
1-9 ``--role requestor`` (``--all-both`` makes every node ``both``). Topology
``star`` (default): nodes 1-9 bootstrap to node 0; ``chain``: node i
bootstraps to node i-1. Peer exchange (``--px-interval 2``) finds the rest.

Readiness: every node subscribes to the user topic ``user/bench`` (REST) and
the driver waits until each lists all 9 others as subscribed peers (so the
nodes are fully connected), then 2 s more for the GossipSub meshes (1 s
heartbeat), and until every requestor lists node 0's ``default`` offer.

Each requestor then opens a demand that matches every offer
(``(golem.inf.cpu.threads>=1)``) and the driver reads its events
(``GET /market/demands/{id}/events?after=N`` every 0.25 s, one thread per
node). A proposal event's ``at_ms`` is stamped by the receiving daemon when
the offer enters its book (gossip validator -> demand match), so it is when
that node learned of the offer, however often the driver polls.

Node 0 then creates N presets (``POST /provider/presets``, default 30), one
every 0.2 s; each becomes one offer, published on the offers gossip topic.
Per (offer, receiver) pair: latency = event ``at_ms`` - the offer's
``created_at_ms`` (stamped by node 0 just before it signs and publishes; one
machine clock). Also reported from the client's ``POST`` start, which adds
the HTTP request and the preset's database write.

**Baseline, same run, same processes and connections:** between two preset
creations node 0 publishes a message on the user gossip topic ``user/bench``
(``POST /net/gossip/user/bench/messages``, carrying the client's
``time.time()``); receivers stamp ``received_at`` on delivery. That is the
bare gossip path of the daemon (no signing, validation or book), measured from
the client's POST start like the second offer figure.

Reference, Golem yagna 0.17.6: offer published -> first proposal at another
node 5,014 ms (5 s batching; 12-57 ms with batching off).

Run: ``python bench/market_propagation.py [--nodes 10] [--offers 30] [--interval 0.2]
[--topology star|chain] [--all-both]``. Takes ~35 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import MATCH_ALL, SMALL_PRESET, Daemon, cpu_seconds, report_logs, wait_for  # noqa: E402
from _util import SMOKE_HELP, apply_smoke, Procs, machine, summary, table, time_budget  # noqa: E402

USER_TOPIC = "user/bench"
POLL_S = 0.25  # the daemons stamp arrival times themselves; polling less often steals less of their CPU
GOLEM = "5,014 ms (5 s batching; 12-57 ms with batching off)"


def poll_events(d: Daemon, demand_id: str, stop: threading.Event, out: list[dict]) -> None:
    """Long-poll the demand's events into ``out`` until ``stop`` (its own HTTP client)."""
    import httpx

    assert d.client is not None
    with httpx.Client(base_url=str(d.client.base_url), headers=dict(d.client.headers), timeout=30) as c:
        after = 0
        while not stop.is_set():
            try:
                resp = c.get(f"/market/demands/{demand_id}/events", params={"after": after})
                resp.raise_for_status()
            except httpx.HTTPError as exc:
                out.append({"type": "poll-error", "error": repr(exc)})
                time.sleep(0.1)
                continue
            for ev in resp.json():
                out.append(ev)
                after = max(after, int(ev["seq"]))
            stop.wait(POLL_S)


def run(args: argparse.Namespace) -> None:
    print(f"# market_propagation: {machine()}, load average {os.getloadavg()[0]:.2f}")
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-mprop-")
    tmp = Path(tmpdir.name)
    nodes: list[Daemon] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    time_budget(args.budget)
    try:
        base = ["--px-interval", str(args.px_interval)]
        provider_role = "both" if args.all_both else "provider"
        requestor_role = "both" if args.all_both else "requestor"
        t0 = time.time()
        p = Daemon(procs, tmp, "node0", ["--role", provider_role, *base]).start()
        nodes.append(p)
        for i in range(1, args.nodes):
            boot = nodes[0] if args.topology == "star" else nodes[i - 1]
            d = Daemon(procs, tmp, f"node{i}", ["--role", requestor_role, "--bootstrap", boot.p2p_addr, *base])
            if args.topology == "star":
                d.spawn()  # all at once; node 0 is up already
            else:
                d.start()  # node i needs node i-1's address
            nodes.append(d)
        for d in nodes:
            if not d.info:
                d.wait_ready()
        t_up = time.time()
        for d in nodes:
            d.api("PUT", f"/net/gossip/{USER_TOPIC}/subscription")
        others = args.nodes - 1
        took_mesh = wait_for(lambda: all(len(d.get(f"/net/gossip/{USER_TOPIC}/peers")) >= others for d in nodes),
                             30, f"every node sees the {others} others on {USER_TOPIC}", interval=0.2)
        time.sleep(2.0)  # two GossipSub heartbeats: meshes grafted
        receivers = nodes[1:]
        if args.all_both:
            p.post("/provider/presets", {"name": "default", **SMALL_PRESET})
        first = p.offer_ids()
        wait_for(lambda: all(first <= d.offer_ids() for d in receivers), 20, "every receiver lists node 0's first offer",
                 interval=0.2)
        direct = {d.name: p.node_id in d.connected() for d in receivers}
        print(f"\n{args.nodes} daemons up {t_up - t0:.1f} s after the first spawn ({args.topology}); fully connected "
              f"{took_mesh:.1f} s later; provider offer already everywhere")

        demands = {d.name: d.post("/market/demands", {"properties": {}, "constraints": MATCH_ALL, "subnet": "public"})
                   ["demand_id"] for d in receivers}
        events: dict[str, list[dict]] = {d.name: [] for d in receivers}
        for d in receivers:
            th = threading.Thread(target=poll_events, args=(d, demands[d.name], stop, events[d.name]), daemon=True)
            th.start()
            threads.append(th)
        time.sleep(0.5)  # the auction answers for node 0's first offer arrive now, not during the run

        pids = [d.proc.pid for d in nodes if d.proc is not None]
        cpu0, wall0, load0 = sum(map(cpu_seconds, pids)), time.monotonic(), os.getloadavg()[0]
        post_start: dict[str, float] = {}  # preset name -> client time before POST
        post_ms: list[float] = []
        user_sent: dict[int, float] = {}
        start = time.monotonic()
        for i in range(args.offers):
            name = f"bench-{i:03d}"
            due = start + i * args.interval
            time.sleep(max(0.0, due - time.monotonic()))
            post_start[name] = time.time()
            p.post("/provider/presets", {"name": name, **SMALL_PRESET})
            post_ms.append((time.time() - post_start[name]) * 1000)
            time.sleep(max(0.0, due + args.interval / 2 - time.monotonic()))
            user_sent[i] = time.time()
            p.post(f"/net/gossip/{USER_TOPIC}/messages", {"data": f"{i}|{user_sent[i]!r}"})

        # Offers of node 0, with created_at_ms, from its own book.
        mine = {o["offer_id"]: o for o in p.get("/market/offers") if o["provider_id"] == p.node_id}
        wanted = {oid: o for oid, o in mine.items() if o["properties"].get("yagna.preset", "").startswith("bench-")}
        if len(wanted) != args.offers:
            print(f"warning: node 0 lists {len(wanted)} of its {args.offers} bench offers", file=sys.stderr)

        def delivered() -> int:
            return sum(1 for d in receivers for e in list(events[d.name]) if e.get("offer_id") in wanted
                       and e.get("type") == "proposal")

        try:
            wait_for(lambda: delivered() >= len(wanted) * len(receivers), args.grace, "all offers everywhere", 0.1)
        except SystemExit:
            pass  # counted below
        cpu_share = (sum(map(cpu_seconds, pids)) - cpu0) / (time.monotonic() - wall0)
        user_msgs = {d.name: d.get(f"/net/gossip/{USER_TOPIC}/messages") for d in receivers}
        status = {d.name: d.get("/market/status") for d in receivers}
    finally:
        signal.alarm(0)
        stop.set()
        for th in threads:
            th.join(timeout=3)
        for d in nodes:
            if d.client is not None:
                d.client.close()
        procs.close()
        report_logs(tmp)
        tmpdir.cleanup()

    rows = []
    all_created: list[float] = []
    all_post: list[float] = []
    all_user: list[float] = []
    sources: Counter[str] = Counter()
    for d in receivers:
        created, from_post = [], []
        seen: set[str] = set()
        for e in events[d.name]:
            oid = e.get("offer_id")
            if e.get("type") != "proposal" or oid not in wanted or oid in seen:
                continue
            seen.add(oid)
            sources[str(e.get("source"))] += 1
            created.append(e["at_ms"] - wanted[oid]["created_at_ms"])
            preset = wanted[oid]["properties"]["yagna.preset"]
            from_post.append(e["at_ms"] - post_start[preset] * 1000)
        user = []
        for m in user_msgs[d.name]:
            i, stamp = m["data"].split("|")
            if int(i) in user_sent:
                user.append((m["received_at"] - float(stamp)) * 1000)
        all_created += created
        all_post += from_post
        all_user += user
        sc, sp, su = summary(created), summary(from_post), summary(user)
        rows.append([d.name, "yes" if direct[d.name] else "no", f"{len(created)}/{len(wanted)}",
                     sc["median"], sc["p99"], sc["max"], sp["median"], f"{len(user)}/{args.offers}", su["median"],
                     su["max"]])
    sc, sp, su = summary(all_created), summary(all_post), summary(all_user)
    rows.append(["all", "", f"{len(all_created)}/{len(wanted) * len(receivers)}", sc["median"], sc["p99"], sc["max"],
                 sp["median"], f"{len(all_user)}/{args.offers * len(receivers)}", su["median"], su["max"]])
    print(f"\n## New offer -> known at each other node, ms ({len(wanted)} offers from node 0, one every "
          f"{args.interval * 1000:.0f} ms; user-topic message halfway between)")
    print(table(["receiver", "direct", "offers", "created->known p50", "p99", "max", "POST->known p50",
                 "user msgs", "user POST->recv p50", "max"], rows))
    print("\n## Summary over all (offer, receiver) pairs, ms")
    print(table(["what", "pairs", "p50", "p99", "max"], [
        ["offer: created_at_ms -> proposal event at_ms", sc["n"], sc["median"], sc["p99"], sc["max"]],
        ["offer: client POST start -> proposal event", sp["n"], sp["median"], sp["p99"], sp["max"]],
        ["baseline: user gossip, client POST start -> received", su["n"], su["median"], su["p99"], su["max"]],
        ["POST /provider/presets round trip (node 0)", len(post_ms), summary(post_ms)["median"],
         summary(post_ms)["p99"], summary(post_ms)["max"]],
    ]))
    by_offer: dict[str, list[float]] = {}
    for d in receivers:
        for e in events[d.name]:
            if e.get("type") == "proposal" and e.get("offer_id") in wanted:
                by_offer.setdefault(wanted[e["offer_id"]]["properties"]["yagna.preset"], []).append(
                    e["at_ms"] - wanted[e["offer_id"]]["created_at_ms"])
    order = sorted(by_offer)
    k = max(1, len(order) // 6)
    head = [v for name in order[:k] for v in by_offer[name]]
    tail_ = [v for name in order[-k:] for v in by_offer[name]]
    print(f"\nfirst {k} offers: p50 {summary(head)['median']:.0f} ms; last {k} offers: p50 {summary(tail_)['median']:.0f} ms "
          f"(a growing figure means the nodes fall behind the publishing rate)")
    print(f"CPU of the {len(pids)} daemons while publishing and draining: {cpu_share:.2f} of {os.cpu_count()} CPUs; "
          f"load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after (other jobs included)")
    refused = sum(int(s["refused"]) for s in status.values())
    print(f"\nevent sources: {dict(sources)}; offers refused by receivers' validators: {refused}; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(f"reference, Golem yagna 0.17.6: offer published -> first proposal at another node {GOLEM}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10, help="daemons in all (node 0 publishes)")
    parser.add_argument("--offers", type=int, default=30, help="presets node 0 creates (each one offer; max 63)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between preset creations")
    parser.add_argument("--topology", choices=["star", "chain"], default="star")
    parser.add_argument("--all-both", action="store_true", help="every node --role both (default: provider + requestors)")
    parser.add_argument("--px-interval", type=float, default=2.0)
    parser.add_argument("--grace", type=float, default=5.0, help="seconds to wait for stragglers after the last offer")
    parser.add_argument("--budget", type=int, default=120, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, nodes=3, offers=3, interval=0.1, grace=2.0)
    if not 1 <= args.offers <= 63:
        parser.error("--offers must be 1-63 (a provider may hold 64 offers in others' books)")
    run(args)


if __name__ == "__main__":
    main()
