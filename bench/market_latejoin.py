"""A late-joining requestor: from its start to when it lists every live offer.

The driver starts 3 provider daemons (``--role provider``; each publishes its
``default`` preset's offer): provider 1 first, providers 2 and 3 bootstrapped
to it. Provider 1 then creates ``--extra`` more presets (default 50, so the
book holds 53 offers). The driver waits until all three providers list the
same 53 offers: that set is "every live offer".

Then, ``--runs`` times (default 5), it spawns a requestor daemon with a fresh
data dir (a new identity, empty store), ``--role requestor --bootstrap
<provider 1>``, and measures:

* spawn -> ``node.json`` written (API ready; polled every 5 ms);
* API ready -> the first HTTP answer (``GET /net/peers``; a fresh process's
  first request is slow) and -> the bootstrap connection shows there;
* spawn and API ready -> ``GET /market/offers`` lists every live offer
  (polled back to back, alternating with ``/net/peers`` until connected).

A node that connects asks the peer for its live offers
(``/yagna/market/offers/1.0.0``, paged) instead of waiting for the next
re-announcement, so this is the catch-up round trip. The requestor is stopped
(SIGTERM by PID) before the next run.

Baseline (same run): the same requestor's start-up (spawn -> API ready) and
its bootstrap connection, which any node pays before it can learn anything.

Reference, Golem yagna 0.17.6: 343 s (a new node waits for the providers'
re-broadcast, every 2-6 min).

Run: ``python bench/market_latejoin.py [--runs 5] [--extra 50]``. Takes ~30 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import SMALL_PRESET, Daemon, report_logs, wait_for  # noqa: E402
from _util import SMOKE_HELP, apply_smoke, Procs, machine, summary, table, time_budget  # noqa: E402

GOLEM_S = 343


def run(args: argparse.Namespace) -> None:
    print(f"# market_latejoin: {machine()}, load average {os.getloadavg()[0]:.2f}")
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-mlate-")
    tmp = Path(tmpdir.name)
    runs: list[dict[str, float]] = []
    time_budget(args.budget)
    try:
        base = ["--role", "provider", "--px-interval", "2"]
        p1 = Daemon(procs, tmp, "provider1", base).start()
        others = [Daemon(procs, tmp, f"provider{i}", [*base, "--bootstrap", p1.p2p_addr]).spawn() for i in (2, 3)]
        for d in others:
            d.wait_ready()
        providers = [p1, *others]
        t = time.monotonic()
        for i in range(args.extra):
            p1.post("/provider/presets", {"name": f"extra-{i:03d}", **SMALL_PRESET})
        create_s = time.monotonic() - t
        expected = args.extra + len(providers)

        def same_book() -> bool:
            books = [d.offer_ids() for d in providers]
            return all(len(b) == expected for b in books) and books[0] == books[1] == books[2]

        took = wait_for(same_book, 30, f"all providers list the same {expected} offers", interval=0.1)
        live = providers[0].offer_ids()
        print(f"\n3 providers up; {args.extra} presets created on provider 1 in {create_s:.2f} s; all 3 list the same "
              f"{len(live)} offers {took:.2f} s later")

        for r in range(args.runs):
            req = Daemon(procs, tmp, f"requestor{r}", ["--role", "requestor", "--px-interval", "2",
                                                        "--bootstrap", p1.p2p_addr]).spawn()
            req.wait_ready(poll=0.005)
            t_conn = t_all = t_first = None
            polls = 0
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and t_all is None:
                if t_conn is None:
                    peers = req.connected()
                    t_first = t_first or time.time()
                    if p1.node_id in peers:
                        t_conn = time.time()
                ids = req.offer_ids()
                polls += 1
                if live <= ids:
                    t_all = time.time()
                    t_conn = t_conn or t_all
            status = req.get("/market/status")
            runs.append({
                "ready": req.t_ready - req.t_spawn,
                "first": (t_first - req.t_ready) if t_first else float("nan"),
                "conn": (t_conn - req.t_ready) if t_conn else float("nan"),
                "all_ready": (t_all - req.t_ready) if t_all else float("nan"),
                "all_spawn": (t_all - req.t_spawn) if t_all else float("nan"),
                "synced": float(status["synced"]),
                "polls": float(polls),
            })
            req.stop()
    finally:
        signal.alarm(0)
        procs.close()
        report_logs(tmp)
        tmpdir.cleanup()

    ms = 1000.0
    print(f"\n## Late-joining requestor -> lists all {len(live)} live offers, ms ({len(runs)} runs, fresh data dir each)")
    rows = []
    for label, key in (("baseline: spawn -> API ready (node.json)", "ready"),
                       ("baseline: API ready -> first HTTP answer (GET /net/peers)", "first"),
                       ("baseline: API ready -> bootstrap peer seen connected", "conn"),
                       ("API ready -> GET /market/offers lists all", "all_ready"),
                       ("spawn -> GET /market/offers lists all", "all_spawn")):
        vals = [r[key] * ms for r in runs if r[key] == r[key]]
        s = summary(vals)
        rows.append([label, f"{len(vals)}/{len(runs)}", s["median"], s["min"], s["max"]])
    rows.append(["reference: Golem yagna 0.17.6, late joiner sees the offers", "", GOLEM_S * ms, "", ""])
    print(table(["what", "runs", "median", "min", "max"], rows))
    print(f"offers taken in by catch-up (status 'synced') per run: {[int(r['synced']) for r in runs]}; "
          f"load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="late joiners, one after the other")
    parser.add_argument("--extra", type=int, default=50, help="extra presets (offers) on provider 1 (max 63)")
    parser.add_argument("--timeout", type=float, default=20.0, help="give up on a run after this many seconds")
    parser.add_argument("--budget", type=int, default=150, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, runs=1, extra=5)
    if not 0 <= args.extra <= 63:
        parser.error("--extra must be 0-63 (a provider may hold 64 offers in others' books)")
    run(args)


if __name__ == "__main__":
    main()
