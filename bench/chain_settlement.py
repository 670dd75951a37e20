"""Settlement on a local EVM chain (anvil): gas per call, time per call, voucher signing rate.

The client is the daemon's own: :class:`yagna.chain.rpc.TxSender` (trio, httpx, locally signed
type-2 transactions, receipts polled every 2 ms) and :class:`yagna.chain.channels.ChannelsClient`,
on a fresh anvil (automine: one transaction per block) with the channel contract deployed with a
2 % fee, as the devnet will. ``--channels`` times: open (payer) -> redeem (payee, a voucher) ->
close (payee, a higher voucher), each awaited; then one channel left to expire and ``timeout``.
Baseline in the same run: a plain ETH transfer (21,000 gas) through the same client, the floor of
a transaction round trip.

Printed: gas per call (receipts) and its cost at ``--gwei`` and ``--eth-usd``; ms per call
(median, p90); EIP-712 vouchers signed per second (what a payer pays per interval) and verified
(recovered) per second.

Run: ``python bench/chain_settlement.py [--channels 30] [--gwei 30] [--eth-usd 3000]`` (~10 s);
``--smoke`` (3 channels) in a few seconds. Needs anvil (``make setup``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import SMOKE_HELP, apply_smoke, machine, pct, table  # noqa: E402

TOKEN = 10**18


async def run(channels: int, signs: int) -> dict[str, list[float]]:
    from payments.evm import load_eth

    load_eth()
    from eth_account import Account

    from payments.evm import voucher
    from payments.evm.voucher import VoucherDomain
    from yagna.chain.anvil import DEV_MNEMONIC, Anvil
    from yagna.chain.channels import ChannelsClient, all_errors, deploy_local
    from yagna.chain.rpc import Rpc, TxSender

    Account.enable_unaudited_hdwallet_features()
    keys = [bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key) for i in range(4)]
    gas: dict[str, list[float]] = {}
    ms: dict[str, list[float]] = {}

    def note(name: str, started: float, sent: object) -> None:
        ms.setdefault(name, []).append((time.perf_counter() - started) * 1e3)
        gas.setdefault(name, []).append(float(sent.gas_used))  # type: ignore[attr-defined]

    with Anvil() as chain:
        rpc = Rpc(chain.rpc_url)
        errors = all_errors()
        deployer = TxSender(rpc, keys[0], errors=errors, poll=0.002)
        fee = TxSender(rpc, keys[3]).address
        token, contract = await deploy_local(deployer, fee_recipient=fee, fee_bps=200)
        payer = ChannelsClient(TxSender(rpc, keys[1], errors=errors, poll=0.002), token, contract)
        payee = ChannelsClient(TxSender(rpc, keys[2], errors=errors, poll=0.002), token, contract)
        await payer.mint(1_000 * TOKEN)
        t = time.perf_counter()
        note("approve (once per payer)", t, await payer.ensure_allowance(2**255))
        domain = VoucherDomain(await rpc.chain_id(), contract)
        for i in range(channels):
            now = await rpc.block_timestamp()
            t = time.perf_counter()
            cid, sent = await payer.open(payee.sender.address, 10 * TOKEN, now + 3600)
            note("open" if i else "open (payer's first)", t, sent)
            t = time.perf_counter()
            note("redeem" if i else "redeem (payee's first)", t,
                 await payee.redeem(cid, TOKEN, voucher.sign(keys[1], domain, cid, TOKEN)))
            t = time.perf_counter()
            note("close", t, await payee.close(cid, 2 * TOKEN, voucher.sign(keys[1], domain, cid, 2 * TOKEN)))
            t = time.perf_counter()
            note("ETH transfer (baseline)", t, await deployer.send(fee, b"", gas=21_000))
        now = await rpc.block_timestamp()
        cid, _ = await payer.open(payee.sender.address, TOKEN, now + 60)
        await rpc.call("evm_increaseTime", 120)
        await rpc.call("evm_mine")
        t = time.perf_counter()
        note("timeout (payer reclaims)", t, await payer.timeout(cid))
        await rpc.aclose()
    cid = b"\x07" * 32
    t = time.perf_counter()
    sigs = [voucher.sign(keys[1], domain, cid, i) for i in range(1, signs + 1)]
    sign_rate = signs / (time.perf_counter() - t)
    t = time.perf_counter()
    for i, sig in enumerate(sigs, 1):
        voucher.signer(domain, cid, i, sig)
    verify_rate = signs / (time.perf_counter() - t)
    return {"gas": gas, "ms": ms, "rates": {"sign": [sign_rate], "verify": [verify_rate]}}  # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=30)
    ap.add_argument("--signs", type=int, default=2000)
    ap.add_argument("--gwei", type=float, default=30.0, help="gas price for the cost column")
    ap.add_argument("--eth-usd", type=float, default=3000.0)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    apply_smoke(args, channels=3, signs=50)
    from yagna.chain.anvil import AnvilError, find_anvil

    try:
        find_anvil()
    except AnvilError as exc:
        raise SystemExit(f"bench/chain_settlement.py: {exc}") from None
    res = trio.run(run, args.channels, args.signs)
    gas, ms = res["gas"], res["ms"]
    rows = []
    for name in gas:
        g = statistics.median(gas[name])
        usd = g * args.gwei * 1e-9 * args.eth_usd
        rows.append([name, len(gas[name]), int(g), f"{usd:.2f}", statistics.median(ms[name]), pct(ms[name], 90)])
    print(f"# settlement on anvil, our client ({machine()})\n")
    print(table(["call", "n", "gas (median)", f"USD at {args.gwei:g} gwei, {args.eth_usd:g} USD/ETH",
                 "ms median", "ms p90"], rows))
    rates = res["rates"]
    print(f"\nEIP-712 vouchers: {rates['sign'][0]:,.0f} signed/s, {rates['verify'][0]:,.0f} recovered/s (coincurve)")


if __name__ == "__main__":
    main()
