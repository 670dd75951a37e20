"""`make demo`: bring up a local network (1 requestor + 3 providers) and show it.

Starts the devnet under the default root (or --root), prints its nodes and
the requestor's peers, sends one gossip message from the requestor and shows
every provider receiving it, then leaves the network running for you to
explore (`yagna devnet down` or `make demo-down` stops it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

YAGNA = [sys.executable, "-m", "yagna"]


def yagna(*args: str, capture: bool = False) -> str:
    proc = subprocess.run([*YAGNA, *args], text=True, capture_output=capture)
    if proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    return proc.stdout if capture else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = ["--root", args.root] if args.root else []

    status = json.loads(yagna("devnet", "status", *root, "--json", capture=True))
    if any(n["running"] for n in status):
        print("A devnet is already running; showing it (stop it with: yagna devnet down).\n")
        nodes = status
    else:
        print(f"Starting a local network: 1 requestor + {args.providers} providers ...")
        t0 = time.monotonic()
        nodes = json.loads(yagna("devnet", "up", "--providers", str(args.providers), *root, "--json", capture=True))
        print(f"Every node connected to every other in {time.monotonic() - t0:.1f} s.\n")
    yagna("devnet", "status", *root)

    requestor = next(n for n in nodes if n["role"] == "requestor")
    providers = [n for n in nodes if n["role"] == "provider"]
    print(f"\nPeers of the requestor ({requestor['data_dir']}):")
    yagna("--data-dir", requestor["data_dir"], "net", "peers")

    topic = "user/demo"
    for n in nodes:
        yagna("--data-dir", n["data_dir"], "net", "subscribe", topic, capture=True)
    time.sleep(1.0)  # let the subscriptions reach the requestor
    text = f"hello providers, it is {time.strftime('%H:%M:%S')}"
    print(f"\nRequestor broadcasts on {topic}: {text!r}")
    yagna("--data-dir", requestor["data_dir"], "net", "publish", topic, text, capture=True)
    deadline = time.monotonic() + 10
    pending = {p["name"] for p in providers}
    while pending and time.monotonic() < deadline:
        for p in providers:
            if p["name"] in pending:
                msgs = json.loads(yagna("--data-dir", p["data_dir"], "net", "messages", topic, "--json", capture=True))
                if any(m["data"] == text for m in msgs):
                    print(f"  {p['name']} received it")
                    pending.discard(p["name"])
        time.sleep(0.2)
    if pending:
        print(f"  not received by: {', '.join(sorted(pending))}")
        sys.exit(1)
    print("\nThe network keeps running. Explore it with e.g.")
    print(f"  yagna --data-dir {providers[0]['data_dir']} net status")
    print("Stop it with: yagna devnet down   (or: make demo-down)")


if __name__ == "__main__":
    main()
