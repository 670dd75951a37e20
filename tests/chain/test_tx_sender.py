"""TxSender on anvil (trio, httpx): locally signed transactions, nonces, reverts by name, and a
stuck transaction replaced with higher fees, never duplicated (issue 14)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from web3 import Web3

from payments.evm.artifacts import artifact
from yagna.chain.anvil import Anvil
from yagna.chain.rpc import NotMined, Reverted, Rpc, RpcError, TxSender, error_names

from .evm import dev_keys

W3 = Web3()
ERRORS = {**error_names(artifact("PaymentChannels").abi), **error_names(artifact("TestToken").abi)}


def _deploy_data(name: str, *args: Any) -> bytes:
    a = artifact(name)
    return bytes.fromhex(W3.eth.contract(abi=a.abi, bytecode=a.bytecode).constructor(*args).data_in_transaction[2:])


def _call_data(name: str, fn: str, *args: Any) -> bytes:
    return bytes.fromhex(W3.eth.contract(abi=artifact(name).abi).encode_abi(fn, args=list(args))[2:])


@pytest.fixture
async def rpc(anvil: Anvil) -> AsyncIterator[Rpc]:
    client = Rpc(anvil.rpc_url)
    yield client
    await client.aclose()


async def test_deploy_send_and_name_a_revert(rpc: Rpc) -> None:
    key = dev_keys(6)[5]
    sender = TxSender(rpc, key, errors=ERRORS)
    token = (await sender.send(None, _deploy_data("TestToken"))).receipt["contractAddress"]
    channels_tx = await sender.send(None, _deploy_data("PaymentChannels", Web3.to_checksum_address(token),
                                                       sender.address, 200))
    channels = channels_tx.receipt["contractAddress"]
    first = await sender.send(token, _call_data("TestToken", "mint", sender.address, 10**21))
    second = await sender.send(token, _call_data("TestToken", "approve", Web3.to_checksum_address(channels), 2**256 - 1))
    assert second.nonce == first.nonce + 1 and len(second.hashes) == 1
    assert second.gas_used > 21_000
    balance = await sender.call(token, _call_data("TestToken", "balanceOf", sender.address))
    assert int.from_bytes(balance, "big") == 10**21
    with pytest.raises(Reverted) as info:  # refused on the dry run: nothing is sent, no nonce used
        await sender.send(channels, _call_data("PaymentChannels", "open", Web3.to_checksum_address("0x" + "11" * 20), 0, 2**40))
    assert info.value.error == "ZeroAmount"
    with pytest.raises(Reverted) as info:
        await sender.send(token, _call_data("TestToken", "mint", sender.address, 10**25))
    assert info.value.error == "MintTooLarge"
    after = await sender.send(token, _call_data("TestToken", "mint", sender.address, 1))
    assert after.nonce == second.nonce + 1


async def test_a_stuck_transaction_is_replaced_with_higher_fees_not_duplicated() -> None:
    with Anvil(extra=["--no-mining"]) as chain:
        rpc = Rpc(chain.rpc_url)
        key = dev_keys(7)[6]
        sender = TxSender(rpc, key, poll=0.02, resend_after=0.3, max_bumps=3)
        to = sender.address  # a plain self-call (no code): 21,000 gas
        nonce_before = int(await rpc.call("eth_getTransactionCount", sender.address, "latest"), 16)

        async def mine_late() -> None:
            await trio.sleep(0.8)  # after at least one re-send
            await rpc.call("evm_mine")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mine_late)
            sent = await sender.send(to, b"", gas=21_000)
        assert len(sent.hashes) >= 2  # re-sent with higher fees, same nonce
        assert sent.nonce == nonce_before
        assert int(await rpc.call("eth_getTransactionCount", sender.address, "latest"), 16) == nonce_before + 1
        mined = int(sent.receipt["effectiveGasPrice"], 16)
        assert mined > 10**9  # the bumped version is the one mined
        # nothing mines at all: NotMined, with every version sent
        stuck = TxSender(rpc, key, poll=0.02, resend_after=0.1, max_bumps=2)
        with pytest.raises(NotMined) as info:
            await stuck.send(to, b"", gas=21_000)
        assert len(info.value.tx_hashes) == 3
        await rpc.aclose()


async def test_an_unreachable_chain_is_a_typed_error() -> None:
    rpc = Rpc("http://127.0.0.1:9", timeout=2.0)  # discard port: nothing listens
    with pytest.raises(RpcError, match="cannot reach the chain"):
        await rpc.chain_id()
    await rpc.aclose()


async def test_an_oversized_or_garbled_answer_is_a_typed_error() -> None:
    """The answer is read no further than MAX_RESPONSE; non-JSON is refused with the status."""
    import httpx

    from yagna.chain import rpc as rpc_module

    def big(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" + b"1," * (rpc_module.MAX_RESPONSE // 2 + 10) + b"1]")

    client = Rpc("http://chain.invalid", client=httpx.AsyncClient(transport=httpx.MockTransport(big)))
    with pytest.raises(RpcError, match="answer over"):
        await client.chain_id()
    garbled = Rpc("http://chain.invalid", client=httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(502, content=b"<html>bad gateway</html>"))))
    with pytest.raises(RpcError, match="not JSON \\(HTTP 502\\)"):
        await garbled.chain_id()
    errored = Rpc("http://chain.invalid", client=httpx.AsyncClient(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "boom"}}))))
    with pytest.raises(RpcError, match="boom") as info:
        await errored.chain_id()
    assert info.value.code == -32000
