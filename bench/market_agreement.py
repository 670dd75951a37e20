"""Negotiation latency between two daemons, and a new demand against N offers already in the book.

**Part 1, first proposal -> approved agreement.** A provider daemon
(``--role provider --max-threads 2``) gets a preset ``bench`` (1 thread,
0.01 GiB memory and disk); a requestor daemon (``--role requestor``)
bootstraps to it and opens a demand that matches every offer. Then, per
iteration (default 100, after 5 warm-up iterations), from the client's
point of view (HTTP on loopback included, one keep-alive connection):

* ``POST /market/demands/{id}/proposals/{offer}/counter`` -> the provider's
  counter-proposal (one request/response over libp2p, the provider's policy
  and capacity checks, the requestor's provider record written);
* ``POST /market/agreements {demand_id, offer_id}`` -> 201, the co-signed
  agreement, approved (the requestor builds and signs it, the provider
  rebuilds, checks, signs, stores it durably and answers);
* ``POST /market/agreements/{id}/terminate`` (not part of the figure; it
  frees the capacity so the next iteration is not refused).

Baseline, same run, same daemon and connection: an authenticated
``GET /api/v1/id`` round trip (the HTTP + auth overhead in each call above),
one before each iteration.

**Part 2, new demand vs N stored offers -> first / all proposals.** A library
publisher (``bench/market_burst.py publisher``: 20 identities x 50 signed
offers) bootstraps to the requestor and publishes N=1,000 offers; once the
requestor's book holds them all, the driver (``--demand-runs`` times, default
10) posts a new demand matching every offer and long-polls its events until
all N+1 proposals are in. A new demand is matched against the book inside
``POST /market/demands``, so the first ``GET .../events`` returns every
proposal at once: "first" and "all" are reported from the client (POST start
-> first event in hand / all events in hand) and from the daemon (demand
``created_at_ms`` -> last proposal event ``at_ms``). Each demand is deleted
after its run.

Reference, Golem yagna 0.17.6: first proposal -> approved agreement 188 ms
(146-205); new demand vs 1,000 stored offers -> first proposal 203 ms, all
1,051 ms.

Run: ``python bench/market_agreement.py [--iterations 100] [--book-offers 1000]
[--demand-runs 10]``. Takes ~40 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import MATCH_ALL, SMALL_PRESET, ApiError, Daemon, child_env, report_logs, wait_for  # noqa: E402
from _util import SMOKE_HELP, apply_smoke, PYTHON, Lines, Procs, machine, summary, table, tail, time_budget  # noqa: E402

BURST = str(Path(__file__).resolve().parent / "market_burst.py")
WARMUP = 5


def negotiate_loop(req: Daemon, demand_id: str, offer_id: str, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"id": [], "counter": [], "agreement": [], "both": [], "terminate": []}
    failures: dict[str, int] = {}
    for i in range(WARMUP + n):
        keep = i >= WARMUP
        t = time.perf_counter()
        req.get("/id")
        t_id = time.perf_counter() - t
        t0 = time.perf_counter()
        try:
            req.post(f"/market/demands/{demand_id}/proposals/{offer_id}/counter", {})
            t1 = time.perf_counter()
            agreement = req.post("/market/agreements", {"demand_id": demand_id, "offer_id": offer_id})
            t2 = time.perf_counter()
        except ApiError as exc:
            code = exc.body[:120]
            failures[code] = failures.get(code, 0) + 1
            continue
        req.post(f"/market/agreements/{agreement['agreement_id']}/terminate", {"reason": "bench"})
        t3 = time.perf_counter()
        if agreement.get("state") != "approved":
            failures[f"state {agreement.get('state')}"] = failures.get(f"state {agreement.get('state')}", 0) + 1
            continue
        if keep:
            out["id"].append(t_id * 1000)
            out["counter"].append((t1 - t0) * 1000)
            out["agreement"].append((t2 - t1) * 1000)
            out["both"].append((t2 - t0) * 1000)
            out["terminate"].append((t3 - t2) * 1000)
    if failures:
        print(f"failed iterations: {failures}", file=sys.stderr)
    out["failures"] = [float(sum(failures.values()))]
    return out


def load_book(procs: Procs, tmp: Path, req: Daemon, n: int) -> tuple[float, int]:
    """Have a publisher child put ``n`` offers into ``req``'s book; return (seconds, offers known)."""
    log = tmp / "publisher.log"
    before = int(req.get("/market/status")["offers_known"])
    with open(log, "wb") as err:
        pub = procs.spawn([PYTHON, BURST, "publisher", "--offers", str(n), "--per-identity", "50",
                           "--bootstrap", req.p2p_addr], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=err, env=child_env(tmp))
    lines = Lines(pub)
    assert pub.stdin is not None
    try:
        lines.wait_for("ADDR", 60)
        pub.stdin.write(f"wait-peer {req.node_id} 20\n".encode())
        pub.stdin.flush()
        lines.wait_for("MESHED", 25)
        t = time.monotonic()
        pub.stdin.write(b"publish\n")
        pub.stdin.flush()
        json.loads(lines.wait_for("PUBLISHED", 120))
    except (TimeoutError, EOFError) as exc:
        raise SystemExit(f"publisher: {exc}\n{tail(log)}") from None
    try:
        wait_for(lambda: int(req.get("/market/status")["offers_known"]) >= before + n, 60,
                 f"requestor holds {before + n} offers", interval=0.1)
    finally:
        # The offers stay in the book after the publisher leaves (they are valid for 30 min).
        pub.stdin.write(b"stop\n")
        pub.stdin.flush()
        try:
            pub.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(pub)
    return time.monotonic() - t, int(req.get("/market/status")["offers_known"])


def demand_runs(req: Daemon, expected: int, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"post": [], "first": [], "all": [], "server": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        demand = req.post("/market/demands", {"properties": {}, "constraints": MATCH_ALL, "subnet": "public"})
        out["post"].append((time.perf_counter() - t0) * 1000)
        after, got, first, events = 0, 0, None, []
        while got < expected and time.perf_counter() - t0 < 30:
            batch = req.get(f"/market/demands/{demand['demand_id']}/events", params={"after": after, "timeout": 5})
            now = time.perf_counter()
            for ev in batch:
                after = max(after, int(ev["seq"]))
                if ev["type"] == "proposal":
                    events.append(ev)
                    got += 1
                    if first is None:
                        first = now
        t_all = time.perf_counter()
        if first is not None:
            out["first"].append((first - t0) * 1000)
        if got >= expected:
            out["all"].append((t_all - t0) * 1000)
            out["server"].append(float(max(e["at_ms"] for e in events) - demand["created_at_ms"]))
        else:
            print(f"demand got {got} of {expected} proposals", file=sys.stderr)
        req.api("DELETE", f"/market/demands/{demand['demand_id']}")
    return out


def run(args: argparse.Namespace) -> None:
    print(f"# market_agreement: {machine()}, load average {os.getloadavg()[0]:.2f}")
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-magree-")
    tmp = Path(tmpdir.name)
    time_budget(args.budget)
    neg: dict[str, list[float]] = {}
    dem: dict[str, list[float]] = {}
    book_s, known = 0.0, 0
    try:
        prov = Daemon(procs, tmp, "provider", ["--role", "provider", "--max-threads", "2", "--px-interval", "2"]).start()
        req = Daemon(procs, tmp, "requestor", ["--role", "requestor", "--px-interval", "2",
                                                "--bootstrap", prov.p2p_addr]).start()
        prov.post("/provider/presets", {"name": "bench", **SMALL_PRESET})

        def bench_offer() -> str | None:
            for o in req.get("/market/offers"):
                if o["provider_id"] == prov.node_id and o["properties"].get("yagna.preset") == "bench":
                    return str(o["offer_id"])
            return None

        wait_for(lambda: bench_offer() is not None, 20, "requestor lists the bench offer")
        offer_id = bench_offer()
        assert offer_id is not None
        demand = req.post("/market/demands", {"properties": {}, "constraints": MATCH_ALL, "subnet": "public"})
        neg = negotiate_loop(req, demand["demand_id"], offer_id, args.iterations)
        status = prov.get("/provider/status")
        print(f"\nprovider after the loop: {status['active_agreements']} active agreements, "
              f"committed {status['committed']}")
        req.api("DELETE", f"/market/demands/{demand['demand_id']}")

        if args.book_offers > 0:
            book_s, known = load_book(procs, tmp, req, args.book_offers)
            dem = demand_runs(req, known, args.demand_runs)
    finally:
        signal.alarm(0)
        procs.close()
        report_logs(tmp)
        tmpdir.cleanup()

    n = len(neg.get("both", []))
    print(f"\n## First proposal (counter) -> approved agreement, ms, client side ({n} iterations after {WARMUP} "
          f"warm-up, each agreement terminated after)")
    rows = []
    for label, key in (("baseline: GET /api/v1/id (HTTP + auth)", "id"),
                       ("POST .../counter -> provider's counter", "counter"),
                       ("POST /market/agreements -> approved (201)", "agreement"),
                       ("counter -> approved agreement (both steps)", "both"),
                       ("(POST .../terminate, not in the figure)", "terminate")):
        s = summary(neg.get(key, []))
        rows.append([label, s["n"], s["median"], s["p99"], s["min"], s["max"]])
    rows.append(["reference: Golem yagna 0.17.6, counter -> approved", "", 188.0, "", 146.0, 205.0])
    print(table(["what", "n", "p50", "p99", "min", "max"], rows))
    if neg.get("failures", [0])[0]:
        print(f"failed iterations (not counted): {int(neg['failures'][0])}")

    if dem:
        print(f"\n## New demand vs {known} offers in the requestor's book -> proposals, ms ({len(dem['post'])} demands; "
              f"{args.book_offers} offers loaded by gossip in {book_s:.1f} s)")
        rows = []
        for label, key in (("POST /market/demands round trip (matching included)", "post"),
                           ("client: POST start -> first proposal in hand", "first"),
                           ("client: POST start -> all proposals in hand", "all"),
                           ("daemon: demand created_at_ms -> last proposal event", "server")):
            s = summary(dem[key])
            rows.append([label, s["n"], s["median"], s["p99"], s["min"], s["max"]])
        rows.append(["reference: Golem yagna 0.17.6, 1,000 offers: first / all", "", "203 / 1,051", "", "", ""])
        print(table(["what", "n", "p50", "p99", "min", "max"], rows))
    print(f"load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100, help="counter + agreement rounds (part 1)")
    parser.add_argument("--book-offers", type=int, default=1000, help="offers loaded for part 2 (0 skips it)")
    parser.add_argument("--demand-runs", type=int, default=10, help="new demands against the loaded book (part 2)")
    parser.add_argument("--budget", type=int, default=180, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, iterations=3, book_offers=50, demand_runs=2)
    run(args)


if __name__ == "__main__":
    main()
