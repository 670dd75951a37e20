"""Matching 10,000 offers against a demand: :class:`market.Matcher` vs a naive scan.

Builds 10,000 varied offers (providers of different runtimes, sizes, subnets,
versions, prices and a few dozen distinct offer constraints) and a handful of
demands, then, in the same run and interleaved, times per demand:

* **matcher**: ``Matcher.match(demand)`` (constraints compiled once and cached
  by text, offers grouped by constraint text, equality index);
* **naive**: for each offer, ``parse`` + ``evaluate`` both constraint texts
  (what a straightforward implementation does per query).

Reports median and p99 (nearest rank) in ms over the repeats, and the number
of matches (both must agree). The target is well under 50 ms for the matcher.

Two scenarios: offers sharing a few dozen constraint texts (providers run
presets), and every offer with its own constraint text (worst case for grouping).

Run: ``python bench/matching.py [--offers 10000] [--repeats 30]``. Takes ~30 s
(the naive scan is the slow part).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import SMOKE_HELP, apply_smoke, machine, summary, table  # noqa: E402

from market import Demand, Matcher, Offer, Tri, evaluate, parse  # noqa: E402
from market import properties as P  # noqa: E402

RUNTIMES = ["vm", "docker", "wasmtime", "vm-nvidia"]
SUBNETS = ["public", "devnet-beta", "lab", "public"]


def make_offers(n: int, rng: random.Random, distinct: bool) -> list[Offer]:
    offers = []
    for i in range(n):
        threads = rng.choice([1, 2, 4, 8, 16, 32])
        subnet = rng.choice(SUBNETS)
        props = {
            P.INF_CPU_THREADS: threads,
            P.INF_CPU_CORES: max(1, threads // 2),
            P.INF_MEM_GIB: rng.choice([0.5, 1.0, 2.0, 4.0, 7.5, 16.0, 64.0]),
            P.INF_STORAGE_GIB: rng.choice([10.0, 50.0, 100.0, 500.0]),
            P.RUNTIME_NAME: rng.choice(RUNTIMES),
            P.RUNTIME_VERSION: f"0.{rng.randint(1, 5)}.{rng.randint(0, 9)}",
            P.RUNTIME_CAPABILITIES: rng.sample(["vpn", "gpu", "inet", "manifest-support"], k=rng.randint(0, 3)),
            P.NODE_ID_NAME: f"provider-{i}",
            P.NODE_DEBUG_SUBNET: subnet,
            P.COM_SCHEME: "payu",
            P.COM_PRICING_MODEL: "linear",
            P.COM_PRICING_MODEL_LINEAR_COEFFS: ["0.0001", "0.00002", "0"],
            P.COM_USAGE_VECTOR: [P.USAGE_CPU_SEC, P.USAGE_DURATION_SEC],
            P.SRV_COMP_EXPIRATION: 1_800_000_000_000 + i,
            P.payment_platform_address("erc20-polygon-glm"): f"0x{i:040x}",
        }
        # a few dozen distinct offer constraints, as real providers run few presets,
        # or (worst case for the grouping) a different one per offer
        bound = 1_700_000_000_000 + (i if distinct else rng.randint(0, 5) * 1000)
        constraint = f"(&(golem.srv.comp.expiration>{bound})(golem.node.debug.subnet={subnet}))"
        offers.append(Offer(issuer=f"node-{i % 9000}", properties=props, constraints=constraint))
    return offers


def make_demands() -> list[tuple[str, Demand]]:
    props = {P.SRV_COMP_EXPIRATION: 1_750_000_000_000, P.NODE_DEBUG_SUBNET: "public"}
    texts = {
        "golem docs example": "(&(golem.inf.mem.gib>=0.5)(golem.inf.cpu.threads>=1)(golem.runtime.name=vm))",
        "subnet+vm+4 threads": "(&(golem.node.debug.subnet=public)(golem.runtime.name=vm)(golem.inf.cpu.threads>=4))",
        "or/not/version": "(&(|(golem.runtime.name=vm)(golem.runtime.name=docker))(!(golem.inf.mem.gib<2))"
        "(golem.runtime.version$v>=0.3.0))",
        "caps membership": "(&(golem.runtime.capabilities=vpn)(golem.inf.storage.gib>=50))",
        "address present": "(golem.com.payment.platform.erc20-polygon-glm.address=*)",
        "wildcard name": "(golem.node.id.name=provider-1*)",
    }
    return [(label, Demand(issuer="requestor", properties=props, constraints=t)) for label, t in texts.items()]


def naive(offers: list[Offer], demand: Demand) -> int:
    n = 0
    for offer in offers:
        if offer.issuer == demand.issuer:
            continue
        if evaluate(parse(demand.constraints), offer.properties) is Tri.YES and (
            evaluate(parse(offer.constraints), demand.properties) is Tri.YES
        ):
            n += 1
    return n


def run(args: argparse.Namespace, distinct: bool) -> None:
    rng = random.Random(42)
    offers = make_offers(args.offers, rng, distinct)
    t0 = time.perf_counter()
    matcher = Matcher()
    for i, offer in enumerate(offers):
        matcher.add(i, offer)
    build_ms = (time.perf_counter() - t0) * 1000
    rows = []
    for label, demand in make_demands():
        fast: list[float] = []
        slow: list[float] = []
        n_fast = n_slow = len(matcher.match(demand))  # warm-up: compiles, builds indexes
        for r in range(args.repeats):
            t = time.perf_counter()
            n_fast = len(matcher.match(demand))
            fast.append((time.perf_counter() - t) * 1000)
            if r < args.naive_repeats:
                t = time.perf_counter()
                n_slow = naive(offers, demand)
                slow.append((time.perf_counter() - t) * 1000)
        f, s = summary(fast), summary(slow)
        if n_fast != n_slow:  # a correctness guard, not a figure
            raise SystemExit(f"{label}: matcher found {n_fast}, naive {n_slow}")
        rows.append([label, n_fast, f["median"], f["p99"], s["median"], s["p99"], s["median"] / f["median"]])
    print(f"\n## {args.offers} offers, {len(matcher._groups)} distinct offer constraints")
    print(f"Matcher.add of all offers: {build_ms:.1f} ms; repeats: matcher {args.repeats}, naive {args.naive_repeats}\n")
    print(table(["demand", "matches", "matcher median ms", "matcher p99 ms", "naive median ms", "naive p99 ms", "speed-up"], rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offers", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--naive-repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, offers=300, repeats=2, naive_repeats=1)
    print(f"# matching benchmark; {machine()}")
    run(args, distinct=False)
    run(args, distinct=True)


if __name__ == "__main__":
    main()
