"""The EVM settlement driver on anvil: the shared driver conformance suite, then what only a chain
has (proofs checked by the contract's rules, deposits checked on chain, the payer's settlement
waiting for the payee's close or the expiry, crash recovery of a redeem)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from payments.errors import ChainUnavailable, DepositMismatch, NotOnThisChain, SettlementPending, VoucherRejected
from tests.payments.driver_conformance import DriverConformance, Parties, Party
from yagna.chain.account import SettlementAccount
from yagna.chain.anvil import Anvil
from yagna.chain.channels import all_errors, deploy_local
from yagna.chain.driver import EvmDriver
from yagna.chain.rpc import Rpc, TxSender
from yagna.store import Store

from .evm import dev_keys


async def deploy(anvil: Anvil, fee_bps: int = 0) -> tuple[str, str, str]:
    rpc = Rpc(anvil.rpc_url)
    deployer = TxSender(rpc, dev_keys(1)[0], errors=all_errors())
    fee_to = SettlementAccount.from_key(secrets.token_bytes(31).rjust(32, b"\1")).address
    token, contract = await deploy_local(deployer, fee_recipient=fee_to, fee_bps=fee_bps)
    await rpc.aclose()
    return token, contract, fee_to


async def new_driver(stack: AsyncExitStack, anvil: Anvil, path: Path, token: str, contract: str,
                     key: bytes | None = None) -> EvmDriver:
    store = await stack.enter_async_context(Store.open_ctx(path))
    account = SettlementAccount.from_key(key or secrets.token_bytes(31).rjust(32, b"\1"))
    driver = await EvmDriver.connect(rpc_url=anvil.rpc_url, account=account, token=token, contract=contract,
                                     store=store)
    stack.push_async_callback(driver.aclose)
    await driver.ensure_gas(driver.address)
    return driver


class TestEvmDriver(DriverConformance):
    @pytest.fixture
    async def parties(self, anvil: Anvil, tmp_path: Path) -> AsyncIterator[Parties]:
        token, contract, _ = await deploy(anvil)
        async with AsyncExitStack() as stack:
            drivers = [await new_driver(stack, anvil, tmp_path / f"{n}.db", token, contract) for n in "abc"]
            ids = itertools.count(1)

            async def expiry() -> int:
                return await drivers[0].rpc.block_timestamp() + 3600

            yield Parties(*(Party(d, d.address) for d in drivers), new_id=lambda: f"ch-{next(ids)}", expiry=expiry)


async def _time_travel(anvil: Anvil, seconds: int) -> None:
    rpc = Rpc(anvil.rpc_url)
    await rpc.call("evm_increaseTime", seconds)
    await rpc.call("evm_mine")
    await rpc.aclose()


async def test_proofs_deposits_and_the_payers_end(anvil: Anvil, tmp_path: Path) -> None:
    token, contract, fee_to = await deploy(anvil, fee_bps=200)
    async with AsyncExitStack() as stack:
        payer, payee, other = [await new_driver(stack, anvil, tmp_path / f"{n}.db", token, contract) for n in "abc"]
        await payer.fund(payer.address, 10**21)  # 1,000 tokens: far past 64 bits
        now = await payer.rpc.block_timestamp()
        info = await payer.lock_deposit("x", payer.address, payee.address, 4 * 10**20, expiry=now + 3600)
        cid = info.channel_id
        # the deposit is checked on chain, term by term
        with pytest.raises(DepositMismatch, match="expires"):
            await payee.accept_deposit(cid, payer.address, payee.address, 4 * 10**20, min_expiry=now + 7200)
        with pytest.raises(DepositMismatch, match="payee"):
            await other.accept_deposit(cid, payer.address, other.address, 4 * 10**20)
        with pytest.raises(DepositMismatch, match="no channel"):
            await payee.accept_deposit("0x" + "00" * 32, payer.address, payee.address, 1)
        await payee.accept_deposit(cid, payer.address, payee.address, 4 * 10**20, min_expiry=now + 1800)
        # proofs: the payer's key, this amount, this channel
        proof = payer.voucher_proof(cid, 10**20)
        payee.check_voucher_proof(cid, payer.address, 10**20, proof)
        for bad in ((cid, payer.address, 10**20 + 1, proof), (cid, payer.address, 10**20, other.voucher_proof(cid, 10**20)),
                    (cid, payer.address, 10**20, b""), (cid, payer.address, 10**20, proof[:64] + b"\x00")):
            with pytest.raises(VoucherRejected):
                payee.check_voucher_proof(*bad)
        with pytest.raises(VoucherRejected):  # a forged proof never reaches the chain
            await payee.redeem(cid, 10**20, close=False, proof=other.voucher_proof(cid, 10**20))
        # the payer's side is not final while the payee has not closed
        with pytest.raises(SettlementPending):
            await payer.settle_payer(cid, 10**20)
        r = await payee.redeem(cid, 10**20, close=True, proof=proof)
        assert (r.paid, r.released) == (10**20, 3 * 10**20)
        assert await payee.token_balance() == 10**20 * 98 // 100  # the 2 % fee went to its address
        assert await payee.token_balance(fee_to) == 10**20 * 2 // 100
        assert (await payer.settle_payer(cid, 10**20)).released == 3 * 10**20
        assert await payer.token_balance() == 9 * 10**20
        assert [op for op, _ in await payee.transactions(cid)] == ["close"]
        assert [op for op, _ in await payer.transactions(cid)] == ["open"]


async def test_the_payer_takes_back_the_rest_after_the_expiry(anvil: Anvil, tmp_path: Path) -> None:
    token, contract, _ = await deploy(anvil)
    async with AsyncExitStack() as stack:
        payer, payee = [await new_driver(stack, anvil, tmp_path / f"{n}.db", token, contract) for n in "ab"]
        await payer.fund(payer.address, 1000)
        now = await payer.rpc.block_timestamp()
        cid = (await payer.lock_deposit("x", payer.address, payee.address, 600, expiry=now + 600)).channel_id
        await payee.accept_deposit(cid, payer.address, payee.address, 600)
        await payee.redeem(cid, 200, close=False, proof=payer.voucher_proof(cid, 200))
        with pytest.raises(SettlementPending):
            await payer.settle_payer(cid, 250)
        await _time_travel(anvil, 601)
        assert (await payer.settle_payer(cid, 250)).released == 400
        assert await payer.token_balance() == 800
        assert [op for op, _ in await payer.transactions(cid)] == ["open", "timeout"]
        # the payee's close after that finds the channel gone and records what it got
        r = await payee.redeem(cid, 250, close=True, proof=payer.voucher_proof(cid, 250))
        assert (r.paid, (await payee.channel(cid)).state) == (0, "closed")


async def test_minting_is_for_local_chains_only(anvil: Anvil, tmp_path: Path) -> None:
    token, contract, _ = await deploy(anvil)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store.open_ctx(tmp_path / "n.db"))
        account = SettlementAccount.from_key(secrets.token_bytes(31).rjust(32, b"\1"))
        real = await EvmDriver.connect(rpc_url=anvil.rpc_url, account=account, token=token, contract=contract,
                                       store=store, local=False)
        stack.push_async_callback(real.aclose)
        with pytest.raises(NotOnThisChain, match=account.address):
            await real.fund(account.address, 10)
        with pytest.raises(DepositMismatch, match="no contract"):
            await EvmDriver.connect(rpc_url=anvil.rpc_url, account=account, token=token, contract=account.address,
                                    store=store)
        with pytest.raises(ChainUnavailable):
            await EvmDriver.connect(rpc_url="http://127.0.0.1:9", account=account, token=token, contract=contract,
                                    store=store)


@pytest.mark.parametrize("crash_after", ["written-down", "sent"])
async def test_a_redeem_cut_by_a_crash_is_finished_on_restart_exactly_once(
        anvil: Anvil, tmp_path: Path, crash_after: str) -> None:
    """The payee dies after writing the redeem down (before sending) or right after sending it
    (before its receipt): the restarted driver pays the voucher once, never twice, never zero."""
    token, contract, _ = await deploy(anvil)
    payee_key = secrets.token_bytes(31).rjust(32, b"\1")
    async with AsyncExitStack() as stack:
        payer = await new_driver(stack, anvil, tmp_path / "a.db", token, contract)
        payee = await new_driver(stack, anvil, tmp_path / "b.db", token, contract, key=payee_key)
        await payer.fund(payer.address, 1000)
        now = await payer.rpc.block_timestamp()
        cid = (await payer.lock_deposit("x", payer.address, payee.address, 500, expiry=now + 3600)).channel_id
        await payee.accept_deposit(cid, payer.address, payee.address, 500)
        proof = payer.voucher_proof(cid, 300)

        real_send = payee.sender.send

        async def crashing_send(to, data, *, gas=None, on_sent=None):  # type: ignore[no-untyped-def]
            if crash_after == "written-down":
                raise trio.Cancelled._create()  # the process dies before the transaction leaves
            async def sent_then_die(tx_hash: str) -> None:
                assert on_sent is not None
                await on_sent(tx_hash)
                raise trio.Cancelled._create()  # dies with the transaction in the mempool
            return await real_send(to, data, gas=gas, on_sent=sent_then_die)

        payee.sender.send = crashing_send  # type: ignore[method-assign]
        with pytest.raises(trio.Cancelled):
            await payee.redeem(cid, 300, close=False, proof=proof)
    async with AsyncExitStack() as stack:  # the restart: same key, same store file
        payee = await new_driver(stack, anvil, tmp_path / "b.db", token, contract, key=payee_key)
        assert await payee.start() == 1
        assert (await payee.channel(cid)).redeemed == 300
        assert await payee.token_balance() == 300
        again = await payee.redeem(cid, 300, close=False, proof=proof)  # the same voucher again: nothing
        assert again.paid == 0 and await payee.token_balance() == 300
        assert await payee.start() == 0


async def test_an_orphaned_deposit_is_taken_back_after_its_expiry(anvil: Anvil, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A requestor that crashed between sending an open and recording the channel still gets the
    deposit back: past the expiry, the sweep takes back every deposit of ours left on chain."""
    token, contract, _ = await deploy(anvil)
    async with AsyncExitStack() as stack:
        payer, payee = [await new_driver(stack, anvil, tmp_path / f"{n}.db", token, contract) for n in "ab"]
        await payer.fund(payer.address, 1000)
        now = await payer.rpc.block_timestamp()
        live = (await payer.lock_deposit("a", payer.address, payee.address, 300, expiry=now + 36_000)).channel_id
        await payer.lock_deposit("b", payer.address, payee.address, 500, expiry=now + 600)  # the orphan
        assert await payer.reclaim_expired() == 0  # nothing expired yet
        await _time_travel(anvil, 3600)
        import time

        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)  # our clock, moved like the chain's
        assert await payer.reclaim_expired() == 1
        assert await payer.token_balance() == 700  # the orphan's 500 back; the live channel untouched
        assert (await payer.channel(live)).state == "open"
