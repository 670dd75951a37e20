"""Offer propagation on a simulated network of 1,000 or 10,000 nodes (discrete events, trio's virtual clock).

Builds a random mesh (``--degree`` neighbours per node, one-way latency
uniform in ``--latency-ms``), loses each gossip copy and each request or reply
with probability ``--loss``, takes ``--churn`` of the non-provider nodes down
during publishing and back ``--rejoin-at`` s later, and has ``--providers``
nodes publish one signed offer each. ``--real`` nodes run the daemon's
``OfferDirectory`` unchanged over the simulated ports; the rest are a light
model (see ``bench/netsim/scenario.py`` and bench/README.md for what is real
and what is modelled).

Prints, per (node, offer) pair: time from publish to the node knowing the
offer (p50/p99/max) beside the ideal, the shortest-path latency over the same
mesh (Dijkstra, every node up, no loss); what is missing once gossip settles
and at the end (``--duration`` s of virtual time); gossip copies and bytes,
requests and memory per node; wall-clock time.

Run: ``python bench/netsim.py --nodes 1000 --degree 8 --loss 0.1 --seed 1``.
1,000 nodes take ~10 s, 10,000 nodes ~80 s (100 offers; CPU grows with nodes x offers x degree).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import SMOKE_HELP, apply_smoke, machine, pct, table  # noqa: E402
from netsim.lone_peer import run_lone_peer  # noqa: E402
from netsim.scenario import HIST_BIN_S, Config, Result, run  # noqa: E402


def hist_pct(hist: "array[int]", p: float) -> float:  # type: ignore[name-defined]  # noqa: F821
    """Nearest-rank percentile of the histogram (seconds, bin upper edge)."""
    total = sum(hist)
    if not total:
        return math.nan
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for b, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return (b + 1) * HIST_BIN_S
    return math.nan


def hist_max(hist: "array[int]") -> float:  # type: ignore[name-defined]  # noqa: F821
    for b in range(len(hist) - 1, -1, -1):
        if hist[b]:
            return (b + 1) * HIST_BIN_S
    return math.nan


def report(r: Result) -> None:
    c = r.config
    ms = 1000.0
    print("\n## Parameters")
    print(table(["nodes", "degree", "providers (offers)", "real nodes", "latency ms (one way)", "loss", "churn",
                 "seed", "virtual s", "light repair s"],
                [[c.nodes, c.degree, c.providers, r.real_count, f"{c.latency_ms[0]:g}-{c.latency_ms[1]:g}", c.loss,
                  c.churn, c.seed, c.duration, c.repair_interval or "off"]]))
    print(f"\n## Offer propagation: publish -> known, per (node, offer) pair, ms "
          f"(ideal: shortest-path latency over the same mesh, {min(c.ideal_sample, c.providers)} sampled offers)")
    rows = [
        ["p50", hist_pct(r.hist, 50) * ms, pct(r.ideal, 50) * ms],
        ["p99", hist_pct(r.hist, 99) * ms, pct(r.ideal, 99) * ms],
        ["max", hist_max(r.hist) * ms, max(r.ideal, default=math.nan) * ms],
        ["every live node knows every offer (s after start)",
         r.all_known_at if r.all_known_at == r.all_known_at else "never",
         r.ideal_all_known_s + c.publish_window],
    ]
    print(table(["what", "measured", "ideal"], rows))
    print("\n## Loss and repair ((node, offer) pairs missing, nodes up or down)")
    pe, pr = r.pairs_expected, r.pairs_expected_real
    print(table(["when", "all nodes", "of pairs", "real sample", "of pairs"], [
        [f"gossip settled (last copy delivered, t={r.settled_at:.2f} s)", r.missing_settled, pe,
         r.missing_settled_real, pr],
        [f"end of run (t={c.duration:g} s)", r.missing_end, pe, r.missing_end_real, pr],
        ["repair: settled -> nothing missing (s)", r.repair_s if r.repair_s == r.repair_s else
         ("-" if not r.missing_settled else "not repaired"), "", "", ""],
        [f"light nodes only: missing at end (t={c.duration:g} s)", r.light_missing_end, "", "", ""],
        ["light nodes only: settled -> none missing (s)", r.light_repair_s if r.light_repair_s == r.light_repair_s
         else ("-" if not r.missing_settled else "not repaired"), "", "", ""],
    ]))
    n = max(1, c.nodes)
    print(f"\n## Traffic per node (whole run; {c.providers} offers of {r.offer_size} bytes; "
          f"gossip copy = offer + ~120 bytes)")
    rows = []
    for label, values in (("gossip copies sent", r.gossip_sent), ("gossip KiB sent", [b / 1024 for b in r.gossip_bytes]),
                          ("requests + replies sent", r.rr_sent), ("request/reply KiB sent", [b / 1024 for b in r.rr_bytes])):
        rows.append([label, statistics.median(values), pct(values, 99), max(values), sum(values) / n])
    print(table(["what", "median", "p99", "max", "mean"], rows))
    copies = sum(r.gossip_sent)
    print(f"copies lost: {r.lost}; duplicates dropped by the seen cache: {r.duplicates} "
          f"({r.duplicates / max(1, copies - r.lost):.0%} of copies that arrived); "
          f"copies per (node, offer): {copies / max(1, n * c.providers):.2f} (ideal tree: 1); "
          f"offers the real sample took in by catch-up: {r.synced_real}")
    print("\n## Memory and time")
    light = (r.rss_net - r.rss_base) / n
    print(table(["what", "value"], [
        ["RSS growth, whole run, bytes per node", (r.rss_end - r.rss_base) / n],
        ["RSS growth, mesh + per-node state before the run, bytes per node", light],
        ["light node state (mesh links, seen cache, offer bits, counters), bytes", r.light_node_bytes],
        [f"real node: OfferDirectory with {c.providers} offers (deep size), bytes", r.real_node_bytes],
        ["real node, bytes per offer held", r.real_node_bytes / max(1, c.providers)],
        ["set-up wall s (mesh, keys, offers, Dijkstra)", r.setup_wall_s],
        ["simulation wall s", r.wall_s],
        ["events (copies delivered + timers)", r.events],
        ["wall us per event", r.wall_s / max(1, r.events) * 1e6],
    ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--degree", type=int, default=8, help="mesh neighbours per node")
    parser.add_argument("--providers", type=int, default=100, help="nodes publishing one offer each")
    parser.add_argument("--real", type=int, default=100, help="nodes running the real OfferDirectory (the rest: light model)")
    parser.add_argument("--loss", type=float, default=0.0, help="probability each gossip copy / request / reply is lost")
    parser.add_argument("--churn", type=float, default=0.0, help="fraction of non-provider nodes down while offers are published")
    parser.add_argument("--rejoin-at", type=float, default=20.0, help="churned nodes come back after this many s (+0-5 s)")
    parser.add_argument("--latency-ms", default="5,80", help="one-way link latency range, uniform: LOW,HIGH")
    parser.add_argument("--publish-window", type=float, default=1.0, help="providers publish at random within this many s")
    parser.add_argument("--duration", type=float, default=60.0, help="virtual seconds simulated")
    parser.add_argument("--repair-interval", type=float, default=0.0,
                        help="light nodes' modelled anti-entropy period in s (0: off, like a daemon without it)")
    parser.add_argument("--lone-peer-offers", type=int, default=0,
                        help="also: a node whose only peer holds this many offers joins (catch-up through one peer)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, nodes=50, providers=20, real=10, duration=30.0,
                lone_peer_offers=min(args.lone_peer_offers, 100) or 50)
    try:
        low, high = (float(x) for x in args.latency_ms.split(","))
    except ValueError:
        parser.error("--latency-ms must be LOW,HIGH")
    if not 0 <= low <= high or not 0 <= args.loss < 1 or not 0 <= args.churn < 1 or args.nodes < 2 or args.degree < 1:
        parser.error("need 0 <= LOW <= HIGH, 0 <= loss < 1, 0 <= churn < 1, nodes >= 2, degree >= 1")
    if not 0 < args.duration <= 120:
        parser.error("--duration must be in (0, 120] s")
    if not 1 <= args.providers <= args.nodes or not 0 <= args.real <= args.nodes:
        parser.error("need 1 <= providers <= nodes and 0 <= real <= nodes")
    print(f"# netsim: {machine()}, load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    cfg = Config(nodes=args.nodes, degree=args.degree, providers=args.providers, real=args.real, loss=args.loss,
                 churn=args.churn, seed=args.seed, latency_ms=(low, high), publish_window=args.publish_window,
                 rejoin_at=args.rejoin_at, duration=args.duration,
                 repair_interval=args.repair_interval)
    report(run(cfg))
    if args.lone_peer_offers:
        lone = run_lone_peer(args.lone_peer_offers, seed=args.seed)
        print(f"\n## A new node whose only peer holds {lone.offers} offers (real OfferDirectory both ends)")
        print(table(["offers held by the peer", "taken by catch-up", "refused", "peer banned",
                     "join -> last offer taken, s"],
                    [[lone.offers, lone.taken, lone.refused, "yes" if lone.peer_banned else "no", lone.took_s]]))
    print(f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
