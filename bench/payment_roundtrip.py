"""Debit-note round trip between two real daemons: note signed -> voucher stored -> acknowledgement delivered.

A provider daemon (``--role provider --activity-keepalive 60``) and a requestor
daemon bootstrapped to it, set up as in ``e2e/test_payments.py``: ``yagna
payment fund --amount 10`` on the requestor, then ``yagna market negotiate
--property golem.com.scheme.payu.debit-note.interval-sec?=1 --property
golem.com.scheme.payu.payment-timeout-sec?=2 --json``, one activity
(``deploy``, ``start``, then ``run ["sleep", "600"]`` left running) through
the requestor's REST API. The provider sends a debit note every second; it
records each one's round trip (``ProviderPayments._send_note``), which this
script reads from ``GET /api/v1/payment/stats`` on the provider:

* ``voucher_stored_ms``: from the start of ``_send_note`` (usage read, note
  signed and stored) to the answering voucher being verified and durably
  stored at the provider;
* ``acked_ms``: to the acknowledgement delivered to the requestor (its reply
  received, after the requestor stored ``acked_seq``).

Only notes sent while the ``sleep`` runs are counted (``--notes``, default 40).

Baselines in the same run:

* ``GET /api/v1/net/peers`` on the provider (local HTTP + auth, one keep-alive
  connection), sampled every 0.2 s while the notes flow;
* a bare libp2p request/response round trip: ``bench/reqresp.py --rounds 1
  --per-round 50 --batches 1`` run after the daemons stopped (its own two
  processes, the same ``yagna.net`` stack the daemons use); its sequential
  medians are parsed and printed here.

Where the time goes: after the notes are collected, each step of the path is
timed in this process (same machine, same disk, the daemons still running):
``DockerRuntime.usage`` on the activity's container, signing and opening a
debit note, signing a voucher, ``PayeeChannel.receive``, and a durable
``Store`` commit (a 1-row UPDATE with ``durable=True`` on a file in the same
temporary directory). The path to "voucher stored", read from the code: 3
durable commits (provider: the note with its channel's due; requestor:
``save_signed`` with its meter; provider: ``save_best`` of the voucher the
answer carried) and 1 libp2p request (``debit_note``) on a pooled stream; the
acknowledgement (the ``voucher`` message, then ``set_acked``) follows off that
path. The sum of the parts is printed beside the measured figures.

Reference, Golem yagna 0.17.6 measured here: sending a debit note 40 ms,
accepting it 41 ms, payment batched on chain up to 24 h later. Aim: under
10 ms for the whole round trip.

Run: ``python bench/payment_roundtrip.py [--notes 40]``. Takes ~75 s. Needs
Docker and ``local/busybox:1`` (built by ``scripts/build-test-image.sh`` when
missing). Both daemons are stopped by PID and the provider's containers removed
(by their ``network.yagna.node`` label) in a ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import Daemon, child_env, report_logs, wait_for  # noqa: E402
from _util import PYTHON, REPO, SMOKE_HELP, Procs, apply_smoke, machine, summary, table, time_budget  # noqa: E402
from exeunit_activity import LABEL_NODE, Session, cleanup_docker, deploy_script, ensure_image  # noqa: E402

TERMS = ["--property", "golem.com.scheme.payu.debit-note.interval-sec?=1",
         "--property", "golem.com.scheme.payu.payment-timeout-sec?=2"]


def cli(d: Daemon, *args: str, timeout: float = 60.0) -> str:
    """``yagna --data-dir <d> ...`` (waited for, killed by subprocess on timeout)."""
    out = subprocess.run([PYTHON, "-m", "yagna", "--data-dir", str(d.data_dir), *args], cwd=str(REPO),
                         capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                         env=child_env(d.tmp))
    if out.returncode != 0:
        raise SystemExit(f"yagna {' '.join(args[:2])} failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-1500:]}")
    return out.stdout


def ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1000


# -- the parts, timed in-process -------------------------------------------------------------------
def time_parts(tmp: Path, container_id: str | None, n: int = 200) -> dict[str, list[float]]:
    import trio

    from payments.channel import PayeeChannel, PayerChannel
    from payments.debit_note import Usage, open_debit_note, sign_debit_note
    from payments.voucher import ChannelTerms, peek_channel_id
    from yagna.core.identity import NodeKey
    from yagna.store import Store
    from yagna.store.payment_repos import PayChannels

    payer, payee = NodeKey.generate(), NodeKey.generate()
    terms = ChannelTerms("testnet", "testnet-ledger", secrets.token_hex(16), secrets.token_hex(32), payer.node_id,
                         payee.node_id, "tGLM", 5 * 10**18)
    out: dict[str, list[float]] = {k: [] for k in ("usage", "sign_note", "open_note", "sign_voucher", "receive",
                                                   "commit")}
    pc, pe = PayerChannel(terms, payer), PayeeChannel(terms)
    for seq in range(1, n + 1):
        t = time.perf_counter()
        note = sign_debit_note(payee, terms, seq=seq, amount_due=seq * 10**13, usage=Usage(seq * 1000, seq * 900, 2**24),
                               issued_at_ms=int(time.time() * 1000))
        out["sign_note"].append(ms_since(t))
        t = time.perf_counter()
        open_debit_note(note, terms=terms)
        out["open_note"].append(ms_since(t))
        t = time.perf_counter()
        _, voucher = pc.next_voucher(seq * 10**13)
        out["sign_voucher"].append(ms_since(t))
        t = time.perf_counter()
        if peek_channel_id(voucher) == terms.channel_id:
            pe.receive(voucher)
        out["receive"].append(ms_since(t))

    async def io() -> None:
        async with Store.open_ctx(tmp / "parts.db") as store:
            channels = PayChannels(store)
            await channels.insert(terms.channel_id, terms.agreement_id, "payee", payer.node_id, b"terms", terms.deposit)
            for i in range(n):
                t = time.perf_counter()
                await store.execute("UPDATE pay_channels SET due = ? WHERE channel_id = ?",
                                    (str(i), terms.channel_id), durable=True)
                out["commit"].append(ms_since(t))
        if container_id is not None:
            from exeunit.docker_runtime import DockerRuntime

            rt = DockerRuntime()
            for _ in range(min(n, 50)):
                t = time.perf_counter()
                await rt.usage(container_id)
                out["usage"].append(ms_since(t))

    trio.run(io)
    return out


def reqresp_baseline(procs: Procs) -> tuple[dict[str, tuple[float, float]], str]:
    """Run ``bench/reqresp.py`` briefly; its sequential (median, p99) per kind, and its first line."""
    proc = procs.spawn([PYTHON, "bench/reqresp.py", "--rounds", "1", "--per-round", "50", "--batches", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        text = proc.communicate(timeout=120)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        procs.stop(proc)
        return {}, "reqresp.py timed out"
    found: dict[str, tuple[float, float]] = {}
    section = text.split("## Sequential", 1)[-1].split("## ", 1)[0]
    for label, key in (("ours (yagna.net.reqresp", "ours"), ("bare libp2p, new stream", "new"),
                       ("bare libp2p, one long-lived", "long")):
        m = re.search(r"^\| " + re.escape(label) + r"[^|]*\|\s*([\d.]+)\s*\|\s*([\d.]+)", section, re.M)
        if m:
            found[key] = (float(m.group(1)), float(m.group(2)))
    head = text.strip().splitlines()[0] if text.strip() else "(no output)"
    if proc.returncode != 0 or not found:
        print(f"reqresp.py exited {proc.returncode}:\n{text[-2000:]}", file=sys.stderr)
    return found, head


def run(args: argparse.Namespace) -> None:
    print(f"# payment_roundtrip: {machine()}, load average {os.getloadavg()[0]:.2f}")
    ensure_image()
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-payrt-")
    tmp = Path(tmpdir.name)
    time_budget(args.budget)
    prov: Daemon | None = None
    req: Daemon | None = None
    sess: Session | None = None
    trips: list[dict[str, float]] = []
    http: list[float] = []
    parts: dict[str, list[float]] = {}
    rr: dict[str, tuple[float, float]] = {}
    rr_head = ""
    setup_s = 0.0
    container_id: str | None = None
    try:
        t_setup = time.monotonic()
        prov = Daemon(procs, tmp, "provider", ["--role", "provider", "--activity-keepalive", "60",
                                               "--px-interval", "2"]).start()
        req = Daemon(procs, tmp, "requestor", ["--role", "requestor", "--px-interval", "2",
                                               "--bootstrap", prov.p2p_addr]).start()
        wait_for(lambda: any(o["provider_id"] == prov.node_id for o in req.get("/market/offers")), 30,
                 "requestor lists the provider's offer")
        cli(req, "payment", "fund", "--amount", "10")
        agreement_id = json.loads(cli(req, "market", "negotiate", *TERMS, "--json"))["agreements"][0]["agreement_id"]
        assert req.client is not None
        sess = Session(req.client.base_url, dict(req.client.headers))
        act = sess.create(agreement_id)
        sess.run(act, deploy_script())
        sess.exec(act, [{"run": {"argv": ["sleep", "600"], "timeout": 600}}])
        setup_s = time.monotonic() - t_setup
        import docker

        client = docker.from_env()
        found = client.containers.list(filters={"label": f"network.yagna.activity={act}"}, ignore_removed=True)
        container_id = found[0].id if found else None
        client.close()

        skip = len(prov.get("/payment/stats")["round_trips"])
        deadline = time.monotonic() + args.notes * 1.5 + 30
        while time.monotonic() < deadline:
            t = time.perf_counter()
            prov.get("/net/peers")
            http.append(ms_since(t))
            trips = prov.get("/payment/stats")["round_trips"][skip:]
            if len(trips) >= args.notes:
                break
            time.sleep(0.2)
        trips = trips[: args.notes]
        row = next(r for r in json.loads(cli(prov, "payment", "status", "--json"))["agreements"]
                   if r["agreement_id"] == agreement_id)
        print(f"provider's channel after the run: state {row['state']}, best_seq {row.get('best_seq')}, "
              f"paid_units {row.get('paid_units')}")
        parts = time_parts(tmp, container_id)
    finally:
        signal.alarm(0)
        if sess is not None:
            sess.close()
        node = prov.node_id if prov is not None and prov.info else None
        procs.close()
        n_removed = cleanup_docker(*([f"{LABEL_NODE}={node}"] if node else []))
        report_logs(tmp)
    try:
        rr, rr_head = reqresp_baseline(procs)
    finally:
        procs.close()
        tmpdir.cleanup()
    if n_removed:
        print(f"(removed {n_removed} containers/volumes of the provider)")

    print(f"\nprovider + requestor up, funded, agreement negotiated, activity running in {setup_s:.1f} s")
    stored = [t["voucher_stored_ms"] for t in trips]
    acked = [t["acked_ms"] for t in trips]
    ack_leg = [t["acked_ms"] - t["voucher_stored_ms"] for t in trips]

    def r(label: str, values: list[float]) -> list[object]:
        s = summary(values)
        return [label, s["n"], s["median"], s["p99"], s["min"], s["max"]]

    print(f"\n## Debit-note round trip, 1 s interval, {len(trips)} notes while the activity runs, ms")
    rows = [
        r("ours: note signed -> voucher durably stored at the provider", stored),
        r("ours: note signed -> acknowledgement delivered to the requestor", acked),
        r("  of which the ack leg (libp2p request + requestor's durable commit)", ack_leg),
    ]
    for key, label in (("usage_ms", "  split: usage read"), ("sent_ms", "  split: + note signed and stored"),
                       ("answered_ms", "  split: + debit note answered (the voucher follows)")):
        if all(key in t for t in trips):
            rows.append(r(label, [t[key] for t in trips]))
    rows += [
        r("baseline: GET /api/v1/net/peers on the provider (local HTTP)", http),
    ]
    for key, label in (("ours", "baseline: libp2p request, yagna.net.reqresp (reqresp.py)"),
                       ("new", "baseline: bare libp2p, new stream per request (reqresp.py)"),
                       ("long", "baseline: bare libp2p, one long-lived stream (reqresp.py)")):
        if key in rr:
            rows.append([label, 50, rr[key][0], rr[key][1], "", ""])
    rows.append(["reference: Golem yagna 0.17.6, send a debit note / accept it", "", "40 / 41", "", "", ""])
    print(table(["what", "n", "p50", "p99", "min", "max"], rows))
    print(f"({rr_head})")

    if parts:
        med = {k: summary(v)["median"] for k, v in parts.items()}
        p99 = {k: summary(v)["p99"] for k, v in parts.items()}
        rq = rr.get("ours", (float("nan"), float("nan")))[0]
        print("\n## Where the time goes: each step timed in-process (median / p99 ms, n=200; usage n=50)")
        steps = [
            ("provider: usage() = DockerRuntime.usage (cgroup files once the start is known)", "usage", 1),
            ("provider: sign_debit_note", "sign_note", 1),
            ("durable commit (Store, 1-row UPDATE, synchronous=FULL) x 1 (note + due)", "commit", 1),
            ("libp2p request debit_note (reqresp.py 'ours' median)", None, 1),
            ("requestor: open_debit_note", "open_note", 1),
            ("requestor: sign_voucher (PayerChannel.next_voucher)", "sign_voucher", 1),
            ("durable commit x 1 (requestor save_signed + meter)", "commit", 1),
            ("provider: peek_channel_id + PayeeChannel.receive (the answer's voucher)", "receive", 1),
            ("durable commit x 1 (provider save_best)", "commit", 1),
        ]
        rows2: list[list[object]] = []
        total = 0.0
        for label, key, times in steps:
            m = rq if key is None else med[key] * times
            total += m
            rows2.append([label, m, "" if key is None else p99[key] * times])
        rows2.append(["= sum to 'voucher stored'", total, ""])
        ack = rq + med["commit"]
        rows2.append(["libp2p request ack + durable commit (requestor set_acked)", ack, ""])
        rows2.append(["= sum to 'acknowledged'", total + ack, ""])
        print(table(["step", "p50", "p99"], rows2))
        print(f"measured p50: voucher stored {summary(stored)['median']:.2f} ms, acknowledged "
              f"{summary(acked)['median']:.2f} ms; 3 durable commits = {3 * med['commit']:.2f} ms, "
              f"1 libp2p request = {rq:.2f} ms on the path")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=40, help="debit-note round trips to collect")
    parser.add_argument("--budget", type=int, default=300, help="seconds before the run gives up")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, notes=3)
    run(args)


if __name__ == "__main__":
    main()
