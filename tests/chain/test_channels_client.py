"""ChannelsClient on anvil over the trio JSON-RPC client: the whole life of a channel as the EVM
settlement driver will drive it (payer opens, payee redeems and closes), fee to its recipient."""

from __future__ import annotations

from payments.evm import voucher
from payments.evm.voucher import VoucherDomain
from yagna.chain.anvil import Anvil
from yagna.chain.channels import ChannelsClient, all_errors, deploy_local
from yagna.chain.rpc import Reverted, Rpc, TxSender

from .evm import dev_keys

TOKEN = 10**18


async def test_open_redeem_close_with_the_fee_and_a_refusal_by_name(anvil: Anvil) -> None:
    rpc = Rpc(anvil.rpc_url)
    deployer, payer_key, payee_key, fee_key = dev_keys(12)[8:12]
    errors = all_errors()
    deployer_tx = TxSender(rpc, deployer, errors=errors)
    fee = TxSender(rpc, fee_key).address
    token, contract = await deploy_local(deployer_tx, fee_recipient=fee, fee_bps=200)
    payer = ChannelsClient(TxSender(rpc, payer_key, errors=errors), token, contract)
    payee = ChannelsClient(TxSender(rpc, payee_key, errors=errors), token, contract)
    await payer.mint(100 * TOKEN)
    now = await rpc.block_timestamp()
    cid, _ = await payer.open(payee.sender.address, 40 * TOKEN, now + 3600)  # 40 tokens: past 2**64 units
    state = await payer.channel(cid)
    assert (state.payer, state.payee, state.deposit, state.redeemed) == (
        payer.sender.address, payee.sender.address, 40 * TOKEN, 0)
    assert await payer.token_balance() == 60 * TOKEN
    domain = VoucherDomain(await rpc.chain_id(), contract)
    await payee.redeem(cid, 10 * TOKEN, voucher.sign(payer_key, domain, cid, 10 * TOKEN))
    try:
        await payee.redeem(cid, 10 * TOKEN, voucher.sign(payer_key, domain, cid, 10 * TOKEN))
    except Reverted as exc:
        assert exc.error == "NotIncreasing"
    else:
        raise AssertionError("a stale voucher was redeemed")
    await payee.close(cid, 15 * TOKEN, voucher.sign(payer_key, domain, cid, 15 * TOKEN))
    assert await payee.token_balance() == 15 * TOKEN * 98 // 100
    assert await payee.token_balance(fee) == 15 * TOKEN * 2 // 100
    assert await payer.token_balance() == 85 * TOKEN
    assert not (await payer.channel(cid)).exists
    await rpc.aclose()
