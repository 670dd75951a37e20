"""Payments settled on a real local chain (anvil), daemons in their own processes, real containers.

- A batch on ``yagna devnet up`` (its chain by default): the requestor's tokens fall by exactly
  what it spent, each provider's rise by what it earned minus the 2 % fee, the fee address gets
  the fee, and ``payment status`` on every side agrees with the chain.
- ``kill -9`` of the provider right after a voucher ack, and again right after it sent its
  closing redeem (before the receipt): after a restart the best voucher is redeemed exactly once.
- The provider vanishes for good: the requestor's end waits for the chain, and after the expiry
  (anvil time travel) it takes its whole deposit back.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from e2e.daemons import Daemon, containers_of, run_cli, wait_until
from yagna.chain.anvil import Anvil

TERMS = ["--property", "golem.com.scheme.payu.debit-note.interval-sec?=1",
         "--property", "golem.com.scheme.payu.payment-timeout-sec?=2"]
FEE_BPS = 200
JOB = """\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "echo {n} > /work/out/r.txt; sleep 1"]
timeout = "30s"
redundancy = 1
budget = "1"
max_providers = 2
outputs = ["r.txt"]

[[task]]
params = { n = "1" }

[[task]]
params = { n = "2" }

[[task]]
params = { n = "3" }

[[task]]
params = { n = "4" }
"""

@pytest.fixture(scope="module")
def chain() -> Iterator[dict[str, Any]]:
    from tests.chain.evm import dev_keys
    from yagna.chain.channels import all_errors, deploy_local
    from yagna.chain.rpc import Rpc, TxSender

    with Anvil() as anvil:
        fee_to = "0x" + secrets.token_hex(20)

        async def deploy() -> tuple[str, str]:
            rpc = Rpc(anvil.rpc_url)
            try:
                return await deploy_local(TxSender(rpc, dev_keys(1)[0], errors=all_errors()),
                                          fee_recipient=fee_to, fee_bps=FEE_BPS)
            finally:
                await rpc.aclose()

        token, contract = trio.run(deploy)
        yield {"anvil": anvil, "rpc_url": anvil.rpc_url, "token": token, "contract": contract, "fee_to": fee_to}


def _rpc(url: str, method: str, *params: Any) -> Any:
    import httpx

    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                      timeout=10).json()["result"]


def _token_balance(url: str, token: str, address: str) -> int:
    data = "0x70a08231" + address[2:].lower().rjust(64, "0")  # balanceOf(address)
    return int(_rpc(url, "eth_call", {"to": token, "data": data}, "latest"), 16)


def _args(chain: dict[str, Any]) -> list[str]:
    return ["--payment-driver", "erc20", "--rpc-url", chain["rpc_url"], "--token", chain["token"],
            "--contract", chain["contract"]]


def _status(d: Daemon | Path) -> dict[str, Any]:
    data_dir = d.data_dir if isinstance(d, Daemon) else d
    return json.loads(run_cli("payment", "status", "--json", data_dir=data_dir).stdout)  # type: ignore[no-any-return]


def _row(d: Daemon, agreement_id: str) -> dict[str, Any]:
    return next(r for r in _status(d)["agreements"] if r["agreement_id"] == agreement_id)


def _setup(tmp_path: Path, daemons: list[Daemon], chain: dict[str, Any], *,
           prov_args: list[str] = ()) -> tuple[Daemon, Daemon, str]:  # type: ignore[assignment]
    prov = Daemon(tmp_path / "prov", ["--role", "provider", "--activity-keepalive", "60", *_args(chain),
                                      *prov_args]).start()
    daemons.append(prov)
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", prov.p2p_addr, *_args(chain)]).start()
    daemons.append(req)
    wait_until(lambda: len(req.api("GET", "/market/offers")) == 1, timeout=15, what="requestor sees the offer")
    run_cli("payment", "fund", "--amount", "10", data_dir=req.data_dir)
    run_cli("payment", "fund", "--amount", "1", data_dir=prov.data_dir)  # gas (and a token) for the provider
    out = run_cli("market", "negotiate", *TERMS, "--json", data_dir=req.data_dir, timeout=60)
    agreement_id = json.loads(out.stdout)["agreements"][0]["agreement_id"]
    act = req.api("POST", "/activity", json={"agreement_id": agreement_id})
    req.api("POST", f"/activity/{act['activity_id']}/exec", json={"script": [
        {"deploy": {"image": "local/busybox:1"}}, {"start": {}}, {"run": {"argv": ["sleep", "600"], "timeout": 600}}]})
    return prov, req, agreement_id


def _channel_on_chain(d: Daemon, agreement_id: str) -> dict[str, Any]:
    return next(c for c in _status(d)["chain"]["channels"] if c.get("agreement_id") == agreement_id)


def test_a_batch_on_the_devnet_chain_moves_exactly_the_tokens_it_says(tmp_path: Path, test_image: str) -> None:
    root = tmp_path / "devnet"
    try:
        nodes = json.loads(run_cli("devnet", "up", "--providers", "2", "--root", str(root), "--json",
                                   timeout=120).stdout)
        dev = json.loads(run_cli("devnet", "chain", "--root", str(root), "--json").stdout)
        assert dev["running"] and dev["fee_bps"] == 200
        url, token, fee_to = dev["rpc_url"], dev["token"], dev["fee_recipient"]
        dirs = {n["name"]: Path(n["data_dir"]) for n in nodes}
        accounts = {name: _status(d)["chain"]["account"] for name, d in dirs.items()}
        before = {name: _token_balance(url, token, a) for name, a in accounts.items()}
        fee_before = _token_balance(url, token, fee_to)
        job = tmp_path / "job.toml"
        job.write_text(JOB)
        proc = run_cli("batch", "run", str(job), "--out", str(tmp_path / "out"), "--json", "--quiet",
                       data_dir=dirs["requestor"], timeout=180)
        summary = json.loads(proc.stdout)
        assert summary["succeeded"] == summary["tasks"] == 4, summary

        def settled() -> bool:
            return all(r["state"] == "closed" for d in dirs.values() for r in _status(d)["agreements"])

        wait_until(settled, timeout=60, what="every channel closed on both sides")
        after = {name: _token_balance(url, token, a) for name, a in accounts.items()}
        req = _status(dirs["requestor"])
        spent = req["balance"]["spent_units"]
        assert spent > 0 and before["requestor"] - after["requestor"] == spent
        assert req["chain"]["token_balance"] == after["requestor"]
        fees = 0
        for name in ("provider-1", "provider-2"):
            prov = _status(dirs[name])
            earned = prov["balance"]["earned_units"]
            fee = earned * FEE_BPS // 10_000
            assert after[name] - before[name] == earned - fee, name
            assert prov["chain"]["token_balance"] == after[name]
            for c in prov["chain"]["channels"]:  # each closed on chain by the provider, as its status says
                assert c["state"] == "closed" and [op for op, _ in c["transactions"]] == ["close"]
            fees += fee
        assert sum(_status(dirs[n])["balance"]["earned_units"] for n in ("provider-1", "provider-2")) == spent
        assert _token_balance(url, token, fee_to) - fee_before == fees
    finally:
        run_cli("devnet", "down", "--root", str(root), timeout=60, check=False)
    assert not json.loads(run_cli("devnet", "status", "--root", str(root), "--json").stdout)
    assert run_cli("devnet", "chain", "--root", str(root), check=False).returncode != 0  # the chain is gone too


def test_provider_killed_after_an_ack_then_after_sending_its_redeem_is_paid_exactly_once(
        tmp_path: Path, daemons: list[Daemon], test_image: str, chain: dict[str, Any]) -> None:
    prov, req, agreement_id = _setup(tmp_path, daemons, chain, prov_args=["--test-fault", "kill-after-redeem-sent"])
    wait_until(lambda: _row(req, agreement_id)["acked_seq"] >= 2, timeout=30, what="two vouchers acknowledged")
    prov.kill()  # kill -9 right after an ack
    acked = _row(req, agreement_id)["acked_seq"]
    prov.start()
    row = _row(prov, agreement_id)
    assert row["best_seq"] >= acked and row["paid_units"] > 0, row
    address = _status(prov)["chain"]["account"]
    before = _token_balance(chain["rpc_url"], chain["token"], address)
    run_cli("market", "terminate", agreement_id, data_dir=req.data_dir)
    # the provider invoices, takes the last voucher, sends its close ... and dies (the test fault)
    assert prov.proc is not None
    prov.proc.wait(timeout=60)
    assert prov.proc.returncode == -9
    prov.args = [a for a in prov.args if a not in ("--test-fault", "kill-after-redeem-sent")]
    prov.start()  # the journal names the close in flight: its receipt is looked up, nothing sent twice
    wait_until(lambda: _row(prov, agreement_id)["state"] == "closed", timeout=30, what="provider settles")
    paid = _row(prov, agreement_id)["paid_units"]
    on_chain = _channel_on_chain(prov, agreement_id)
    assert on_chain["state"] == "closed" and on_chain["redeemed_units"] == paid > 0
    assert [op for op, _ in on_chain["transactions"]] == ["close"]  # one transaction, mined once
    gained = _token_balance(chain["rpc_url"], chain["token"], address) - before
    assert gained == paid - paid * FEE_BPS // 10_000
    assert "finished 1 redeem(s) a crash had cut" in prov.log.read_text()
    wait_until(lambda: _row(req, agreement_id)["state"] == "closed", timeout=30, what="requestor settles")
    assert _status(req)["balance"]["spent_units"] == paid


def test_provider_gone_for_good_the_requestor_takes_its_deposit_back_after_the_expiry(
        tmp_path: Path, daemons: list[Daemon], test_image: str, chain: dict[str, Any]) -> None:
    prov, req, agreement_id = _setup(tmp_path, daemons, chain)
    wait_until(lambda: _row(req, agreement_id)["acked_seq"] >= 1, timeout=30, what="a voucher acknowledged")
    prov.kill()  # gone: it never closes the channel
    address = _status(req)["chain"]["account"]
    run_cli("market", "terminate", agreement_id, data_dir=req.data_dir, check=False)
    wait_until(lambda: _row(req, agreement_id)["state"] == "closing", timeout=30, what="requestor waits for the chain")
    assert "expires" in (_row(req, agreement_id)["reason"] or "")
    held = _token_balance(chain["rpc_url"], chain["token"], address)
    deposit = _row(req, agreement_id)["deposit_units"]
    _rpc(chain["rpc_url"], "evm_increaseTime", 10 * 24 * 3600)  # past any expiry the requestor set
    _rpc(chain["rpc_url"], "evm_mine")
    wait_until(lambda: _row(req, agreement_id)["state"] == "closed", timeout=30, what="requestor reclaims")
    assert _token_balance(chain["rpc_url"], chain["token"], address) - held == deposit  # nothing was redeemed
    txs = [op for op, _ in _channel_on_chain(req, agreement_id)["transactions"]]
    assert txs == ["open", "timeout"]
    # The provider comes back: it removes the container its killed run left, finds the channel gone
    # from the contract (taken back) and settles its side for nothing more.
    prov.start()
    wait_until(lambda: _row(prov, agreement_id)["state"] == "closed", timeout=60, what="provider settles")
    assert _channel_on_chain(prov, agreement_id)["state"] == "closed"
    assert _status(prov)["balance"]["earned_units"] == 0
    wait_until(lambda: not containers_of(prov.node_id), timeout=30, what="the provider removed its old container")
