"""`make demo`: bring up a local network (1 requestor + 3 providers) and trade on it.

Starts the devnet under the default root (or --root), prints its nodes and
the requestor's peers, sends one gossip message from the requestor and shows
every provider receiving it. Then the market: each provider prices its
preset differently, the requestor lists the signed offers it knows, asks for
one provider under a price cap, and both sides show the co-signed agreement;
it runs a command in a hardened container on that provider (output streamed
back line by line) and then terminates the agreement. Last, the main job:
`yagna batch run examples/render/job.toml` renders 24 frames of a Mandelbrot
zoom across the providers, each frame on two providers whose results must
agree, pays them, and assembles the frames into an animated GIF; it prints
where the GIF is and what it cost. The network keeps running for you to
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


def fail_no_engine(what: str, detail: str = "") -> None:
    """The demo's main job needs a Docker engine: without one it fails, never ends "successfully"."""
    last = detail.strip().splitlines()[-1] if detail.strip() else ""
    sys.stderr.write(f"\ndemo FAILED: {what} cannot run: no Docker engine is reachable or the image cannot be built"
                     f"{': ' + last if last else ''}.\n"
                     "`make demo` sets one up (as root); otherwise start one: "
                     "sudo dockerd --bridge=none --iptables=false --ip-masq=false &\n")
    sys.exit(1)


def engine_reachable() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = ["--root", args.root] if args.root else []

    if not engine_reachable():
        fail_no_engine("the main job")
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
    market_demo(requestor, providers)
    render_demo(requestor, root)
    print("\nThe network keeps running. Explore it with e.g.")
    print(f"  yagna --data-dir {providers[0]['data_dir']} net status")
    print("Stop it with: yagna devnet down   (or: make demo-down)")


PRICES = ["0.05", "0.02", "0.03", "0.04", "0.06"]


def market_demo(requestor: dict, providers: list[dict]) -> None:  # type: ignore[type-arg]
    print("\nMarket: each provider prices its 'default' preset (tokens per CPU-hour):")
    for p, price in zip(providers, PRICES * 4, strict=False):
        yagna("--data-dir", p["data_dir"], "provider", "preset", "update", "default", "--price-cpu-hour", price, capture=True)
        print(f"  {p['name']}: {price}")
    req = ["--data-dir", requestor["data_dir"]]
    from yagna.core.money import parse_amount

    wanted = {p["node_id"]: parse_amount(price) // 3600 for p, price in zip(providers, PRICES * 4, strict=False)}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until every re-priced offer reached the requestor
        offers = json.loads(yagna(*req, "market", "offers", "--json", capture=True))
        seen = {o["provider_id"]: o["properties"]["golem.com.pricing.model.linear.coeffs"][0] for o in offers}
        if seen == wanted:
            break
        time.sleep(0.2)
    print("\nSigned offers the requestor knows:")
    yagna(*req, "market", "offers")
    print("\nThe requestor asks for 1 provider at most 0.04 per CPU-hour (best score wins: the cheapest):")
    out = json.loads(yagna(*req, "market", "negotiate", "--max-cpu-hour", "0.04", "--json",
                           "--property", "golem.com.scheme.payu.debit-note.interval-sec?=1", capture=True))
    agreement = out["agreements"][0]
    print(f"  agreement {agreement['agreement_id'][:12]} with {agreement['provider_id']}")
    provider = next(p for p in providers if p["node_id"] == agreement["provider_id"])
    print(f"\nBoth sides hold the same co-signed agreement ({provider['name']} is the provider):")
    yagna(*req, "market", "agreements")
    yagna("--data-dir", provider["data_dir"], "market", "agreements")
    before = chain_balance(provider)
    exeunit_demo(req, provider, agreement["agreement_id"])
    yagna(*req, "market", "terminate", agreement["agreement_id"])
    settled_payments(req, provider, agreement["agreement_id"])
    after = chain_balance(provider)
    if before is not None and after is not None:
        from yagna.core.money import format_amount

        print(f"\nOn chain, {provider['name']}'s address holds {format_amount(after)} test tokens "
              f"(was {format_amount(before)}: +{format_amount(after - before)}, what it redeemed minus the 2 % fee).")


def chain_balance(node: dict) -> int | None:  # type: ignore[type-arg]
    """The node's token balance on the devnet's chain (None on the test-network ledger)."""
    status = json.loads(yagna("--data-dir", node["data_dir"], "payment", "status", "--json", capture=True))
    chain = status.get("chain")
    return None if not chain else chain["token_balance"]


def settled_payments(req: list[str], provider: dict, agreement_id: str) -> None:  # type: ignore[type-arg]
    """After the end: the provider invoices, the requestor pays the last voucher, both settle."""
    deadline = time.monotonic() + 20
    rows: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        rows = [next((r for r in json.loads(yagna(*side, "payment", "status", "--json", capture=True))["agreements"]
                      if r["agreement_id"] == agreement_id), {}) for side in (req, ["--data-dir", provider["data_dir"]])]
        if all(r.get("state") == "closed" for r in rows):
            break
        time.sleep(0.5)
    print("\nSettled (debit note every second, one voucher each; the provider redeemed the best one):")
    print("  requestor:")
    yagna(*req, "payment", "status")
    print(f"  {provider['name']}:")
    yagna("--data-dir", provider["data_dir"], "payment", "status")


def exeunit_demo(req: list[str], provider: dict, agreement_id: str) -> None:  # type: ignore[type-arg]
    """Run a command in a hardened container on the provider, output streamed back line by line."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    build = subprocess.run(["bash", str(root / "scripts" / "build-test-image.sh")], text=True, capture_output=True)
    if build.returncode != 0:
        fail_no_engine("the exe-unit part", build.stderr)
    script = ("echo \"running as uid $(id -u) in $(pwd)\"; "
              "for i in 1 2 3 4 5 6; do echo \"frame $i: $(echo $i | md5sum | cut -c1-8)\"; sleep 0.5; done; "
              "ls /sys/class/net")
    print(f"\nExe-unit: the requestor runs a command in a container on {provider['name']} "
          "(no network, no root, read-only image; output streams back):")
    print("  (the requestor funds its account first: yagna payment fund --amount 10; on the devnet's chain it mints test tokens)")
    yagna(*req, "payment", "fund", "--amount", "10", capture=True)
    print(f"  $ yagna activity run {agreement_id[:12]}... -- sh -c '{script}'")
    yagna(*req, "activity", "run", agreement_id, "--", "sh", "-c", script)
    print(f"\nWhat {provider['name']} ran, with its usage:")
    yagna("--data-dir", provider["data_dir"], "provider", "activities")



def render_demo(requestor: dict, root: list[str]) -> None:  # type: ignore[type-arg]
    """The main job: a Mandelbrot zoom rendered frame by frame across the providers, verified, paid, assembled."""
    import pathlib

    repo = pathlib.Path(__file__).resolve().parent.parent
    build = subprocess.run(["bash", str(repo / "scripts" / "build-render-image.sh")], text=True, capture_output=True)
    if build.returncode != 0:
        fail_no_engine("the main job (the render)", build.stderr)
    out = pathlib.Path(requestor["data_dir"]).parent / "render-results"
    gif = out / "mandelbrot.gif"
    job = repo / "examples" / "render" / "job.toml"
    print(f"\nThe main job: {job.relative_to(repo)} renders 24 frames of a Mandelbrot zoom; each frame runs on")
    print("2 different providers (redundancy 2), the results are compared by digest and the providers paid:")
    print(f"  $ yagna batch run {job.relative_to(repo)} --out {out} --fund")
    t0 = time.monotonic()
    proc = subprocess.run([*YAGNA, "--data-dir", requestor["data_dir"], "batch", "run", str(job), "--out", str(out),
                           "--fund", "--json", "--quiet"], text=True, capture_output=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    summary = json.loads(proc.stdout)
    if summary["succeeded"] != summary["tasks"]:
        sys.stderr.write(f"\ndemo FAILED: the main job rendered {summary['succeeded']} of {summary['tasks']} frames\n")
        sys.exit(1)
    sys.path.insert(0, str(repo / "examples" / "render"))
    from assemble import assemble  # type: ignore[import-not-found]

    frames = assemble(out, gif)
    manifest = json.loads((out / "manifest.json").read_text())
    verified = sum(1 for t in manifest["tasks"] if t["status"] == "ok" and len(t["providers"]) >= 2)
    print(f"  {summary['succeeded']}/{summary['tasks']} frames in {time.monotonic() - t0:.1f} s on "
          f"{summary['providers']} providers; {verified} verified by 2 providers agreeing")
    print(f"  cost: {summary['cost']} test tokens (budget {summary['budget']})")
    print(f"\nResult: {gif}  ({frames} frames; open it in a browser)")
    print(f"Per-task results, digests, providers and costs: {out / 'manifest.json'}")


if __name__ == "__main__":
    main()