"""Agreement start and the end of a job: the test-network ledger vs the on-chain channel, same run.

Two daemon pairs on this machine (a provider and a requestor each): one on the test-network
ledger, one on ``--payment-driver erc20`` against a fresh anvil (automine, the channel contract
deployed with the devnet's 2 % fee). For each pair, ``--agreements`` times:

* **agreement start**: ``POST /market/demands/{id}/proposals/{offer}/counter`` and ``POST
  /market/agreements`` (co-signed agreement), then ``POST /activity``: the first activity of an
  agreement opens its payment channel (ledger: lock in the requestor's file, a signed
  channel-open the provider records; chain: ``hello`` for the provider's bound address, ``open``
  on chain (+ a one-off ``approve``), the channel-open, the provider's read of the contract).
  Printed: ms for the agreement, for ``POST /activity`` (the channel), and both.
* **end of job to funds**: ``POST /market/agreements/{id}/terminate`` (after a voucher was
  acknowledged), then until the provider's funds show it: ledger, its ``earned``; chain, its
  token balance read from the chain (``eth_call`` every 5 ms).

And in this process, **vouchers per second** with and without the EIP-712 proof in each voucher:
the payer signs (``PayerChannel.next_voucher``), the payee checks (``PayeeChannel.receive``).

Reference: Golem yagna 0.17.6 pays by ERC-20 transfers batched for up to 24 h (a provider sees
its money that late; one transfer ~52 k gas, a batch through its multi-transfer contract less
per payment), its agreement start does no chain work.

Run: ``python bench/chain_agreement.py [--agreements 10]`` (~40 s); ``--smoke`` (2) in ~15 s.
Needs Docker is NOT needed (no container runs); needs anvil (``make setup``).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _daemon import MATCH_ALL, ApiError, Daemon, wait_for  # noqa: E402
from _util import SMOKE_HELP, Procs, apply_smoke, machine, pct, table  # noqa: E402

TERMS = {"golem.com.scheme.payu.debit-note.interval-sec?": 1, "golem.com.scheme.payu.payment-timeout-sec?": 30}


def deploy(rpc_url: str) -> tuple[str, str]:
    from tests.chain.evm import dev_keys
    from yagna.chain.channels import all_errors, deploy_local
    from yagna.chain.rpc import Rpc, TxSender

    async def go() -> tuple[str, str]:
        rpc = Rpc(rpc_url)
        try:
            return await deploy_local(TxSender(rpc, dev_keys(1)[0], errors=all_errors()),
                                      fee_recipient="0x" + secrets.token_hex(20), fee_bps=200)
        finally:
            await rpc.aclose()

    return trio.run(go)


def token_balance(rpc_url: str, token: str, address: str, client: httpx.Client) -> int:
    data = "0x70a08231" + address[2:].lower().rjust(64, "0")
    out = client.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_call",
                                     "params": [{"to": token, "data": data}, "latest"]}).json()
    return int(out["result"], 16)


def pair(procs: Procs, tmp: Path, name: str, extra: list[str]) -> tuple[Daemon, Daemon]:
    prov = Daemon(procs, tmp, f"{name}-prov", ["--role", "provider", "--activity-keepalive", "60", *extra]).start()
    req = Daemon(procs, tmp, f"{name}-req", ["--role", "requestor", "--bootstrap", prov.p2p_addr, *extra]).start()
    wait_for(lambda: len(req.get("/market/offers")) >= 1, 30, "the requestor sees the offer")
    req.post("/payment/fund", {"amount": "100"})
    if extra:
        prov.post("/payment/fund", {"amount": "1"})  # gas for the provider's close
    return prov, req


def measure(prov: Daemon, req: Daemon, n: int, chain: dict[str, Any] | None) -> dict[str, list[float]]:
    demand = req.post("/market/demands", {"properties": TERMS, "constraints": MATCH_ALL, "subnet": "public"})
    out: dict[str, list[float]] = {"agreement": [], "channel": [], "start": [], "funds": []}
    rpc = httpx.Client(timeout=10)
    address = prov.get("/payment/status").get("chain", {}).get("account") if chain else None
    for _ in range(n):
        for attempt in range(5):  # the provider may have just re-published its offer (a new id)
            offer_id = next(o["offer_id"] for o in req.get("/market/offers") if o["provider_id"] == prov.node_id)
            t0 = time.perf_counter()
            try:
                req.post(f"/market/demands/{demand['demand_id']}/proposals/{offer_id}/counter", {})
                agreement = req.post("/market/agreements", {"demand_id": demand["demand_id"], "offer_id": offer_id})
                break
            except ApiError as exc:
                if exc.status != 404 or attempt == 4:
                    raise
                time.sleep(0.2)
        t1 = time.perf_counter()
        act = req.post("/activity", {"agreement_id": agreement["agreement_id"]})
        t2 = time.perf_counter()
        out["agreement"].append((t1 - t0) * 1000)
        out["channel"].append((t2 - t1) * 1000)
        out["start"].append((t2 - t0) * 1000)
        aid = agreement["agreement_id"]

        def paid() -> bool:
            return any(r["agreement_id"] == aid and r["paid_units"] > 0 for r in prov.get("/payment/status")["agreements"])

        req.post("/payment/bonus", {"agreement_id": aid, "amount": "0.000000001"})  # a voucher the provider holds
        wait_for(paid, 30, "a voucher held by the provider")
        before = (token_balance(chain["rpc_url"], chain["token"], address, rpc) if chain
                  else prov.get("/payment/status")["balance"]["earned_units"])
        t3 = time.perf_counter()
        req.post(f"/market/agreements/{aid}/terminate", {"reason": "bench"})

        def funds() -> bool:
            now = (token_balance(chain["rpc_url"], chain["token"], address, rpc) if chain
                   else prov.get("/payment/status")["balance"]["earned_units"])
            return now > before

        wait_for(funds, 60, "the provider's funds", interval=0.005)
        out["funds"].append((time.perf_counter() - t3) * 1000)
        req.api("DELETE", f"/activity/{act['activity_id']}", ok=(200, 204, 404, 409))
    rpc.close()
    return out


def vouchers_per_second(n: int) -> dict[str, float]:
    from payments.channel import PayeeChannel, PayerChannel
    from payments.evm import voucher as evm_voucher
    from payments.evm.voucher import VoucherDomain
    from payments.voucher import ChannelTerms
    from yagna.chain.account import SettlementAccount
    from yagna.core.identity import NodeKey

    payer_key, payee_key = NodeKey.generate(), NodeKey.generate()
    account = SettlementAccount.from_key(secrets.token_bytes(31).rjust(32, b"\1"))
    domain = VoucherDomain(31337, "0x" + "11" * 20)
    cid = "0x" + "22" * 32
    out = {}
    for name, chain in (("ledger", False), ("chain (EIP-712 proof)", True)):
        terms = ChannelTerms("net", "erc20" if chain else "testnet-ledger", cid, "a" * 64, payer_key.node_id,
                             payee_key.node_id, "tGLM", 10**30)
        proof = (lambda amount: evm_voucher.sign(account.private_key, domain, bytes.fromhex(cid[2:]), amount)) if chain else None

        def check(amount: int, sig: bytes) -> None:
            if evm_voucher.signer(domain, bytes.fromhex(cid[2:]), amount, sig) != account.address:
                raise AssertionError("bad proof")

        payer, payee = PayerChannel(terms, payer_key, proof), PayeeChannel(terms, check if chain else None)
        t = time.perf_counter()
        for i in range(1, n + 1):
            _, raw = payer.next_voucher(i * 1000)
            payee.receive(raw)
        out[name] = n / (time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agreements", type=int, default=10)
    parser.add_argument("--vouchers", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    apply_smoke(args, agreements=2, vouchers=100)
    from yagna.chain.anvil import Anvil

    procs = Procs()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as d, Anvil() as anvil:
        tmp = Path(d)
        try:
            token, contract = deploy(anvil.rpc_url)
            chain = {"rpc_url": anvil.rpc_url, "token": token, "contract": contract}
            ledger_pair = pair(procs, tmp, "ledger", [])
            chain_pair = pair(procs, tmp, "chain", ["--payment-driver", "erc20", "--rpc-url", anvil.rpc_url,
                                                    "--token", token, "--contract", contract])
            results["test-network ledger"] = measure(*ledger_pair, args.agreements, None)
            results["erc20 on anvil"] = measure(*chain_pair, args.agreements, chain)
        finally:
            procs.close()
    print(f"\n{machine()}; {args.agreements} agreements per driver\n")
    rows = []
    for name, r in results.items():
        for what, label in (("agreement", "co-signed agreement"), ("channel", "first activity (opens the channel)"),
                            ("start", "agreement start, both"), ("funds", "terminate -> provider's funds")):
            v = r[what]
            rows.append([name, label, f"{statistics.median(v):.1f}", f"{pct(v, 90):.1f}"])
    print(table(["driver", "step", "median ms", "p90 ms"], rows))
    vps = vouchers_per_second(args.vouchers)
    print()
    print(table(["vouchers", "signed + checked per s"], [[k, f"{v:,.0f}"] for k, v in vps.items()]))
    ledger, onchain = results["test-network ledger"], results["erc20 on anvil"]
    print(f"\nagreement start on chain: {statistics.median(onchain['start']) / statistics.median(ledger['start']):.1f}x "
          f"the ledger's; funds on chain {statistics.median(onchain['funds']):.0f} ms after the end "
          "(Golem: batched, up to 24 h)")


if __name__ == "__main__":
    main()
