"""Typed calls to the token and the ``PaymentChannels`` contract (the building blocks of the EVM
settlement driver), and the deployment a local chain (devnet, tests) needs.

Every call goes through a :class:`~yagna.chain.rpc.TxSender` (local key, nonces, fee bumps);
arguments are ABI-encoded with eth-abi from the committed artifacts' ABI, results decoded the
same way. Amounts are ints in base units (unsigned 256-bit), channel ids 32 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payments.evm.artifacts import artifact
from yagna.chain.rpc import SentTx, TxSender, error_names

TOPIC_OPENED = "Opened(bytes32,address,address,uint256,uint64)"


@dataclass(frozen=True)
class OnChainChannel:
    channel_id: bytes
    payer: str
    payee: str
    deposit: int
    redeemed: int
    expiry: int
    """Unix seconds."""

    @property
    def exists(self) -> bool:
        return int(self.payer, 16) != 0


def _abi_fn(contract: str, name: str) -> dict[str, Any]:
    for item in artifact(contract).abi:
        if item.get("type") == "function" and item["name"] == name:
            return item
    raise KeyError(f"{contract} has no function {name}")


def encode_call(contract: str, name: str, *args: Any) -> bytes:
    from eth_abi import encode
    from eth_utils import keccak

    fn = _abi_fn(contract, name)
    types = [i["type"] for i in fn["inputs"]]
    selector = keccak(text=f"{name}({','.join(types)})")[:4]
    return selector + encode(types, list(args))


def decode_result(contract: str, name: str, data: bytes) -> tuple[Any, ...]:
    from eth_abi import decode

    return tuple(decode([o["type"] for o in _abi_fn(contract, name)["outputs"]], data))


def deploy_data(contract: str, arg_types: list[str], *args: Any) -> bytes:
    from eth_abi import encode

    return bytes.fromhex(artifact(contract).bytecode[2:]) + (encode(arg_types, list(args)) if args else b"")


def all_errors() -> dict[str, str]:
    return {**error_names(artifact("PaymentChannels").abi), **error_names(artifact("TestToken").abi)}


class ChannelsClient:
    """One node's view of the token and the channel contract, sending from its settlement key."""

    def __init__(self, sender: TxSender, token: str, contract: str) -> None:
        from eth_utils import to_checksum_address

        self.sender = sender
        self.token = to_checksum_address(token)
        self.contract = to_checksum_address(contract)

    async def token_balance(self, address: str | None = None) -> int:
        out = await self.sender.call(self.token, encode_call("TestToken", "balanceOf", address or self.sender.address))
        return int(decode_result("TestToken", "balanceOf", out)[0])

    async def allowance(self) -> int:
        out = await self.sender.call(self.token, encode_call("TestToken", "allowance", self.sender.address, self.contract))
        return int(decode_result("TestToken", "allowance", out)[0])

    async def ensure_allowance(self, amount: int) -> SentTx | None:
        """One ``approve`` of the maximum when the allowance is short (46.7 k gas, once per payer)."""
        if await self.allowance() >= amount:
            return None
        return await self.sender.send(self.token, encode_call("TestToken", "approve", self.contract, 2**256 - 1))

    async def mint(self, amount: int, to: str | None = None) -> SentTx:
        """Test token only (local chains): the faucet."""
        return await self.sender.send(self.token, encode_call("TestToken", "mint", to or self.sender.address, amount))

    async def open(self, payee: str, amount: int, expiry: int) -> tuple[bytes, SentTx]:
        """Lock ``amount`` for ``payee`` until ``expiry``; returns the on-chain channel id."""
        from eth_utils import keccak

        await self.ensure_allowance(amount)
        sent = await self.sender.send(self.contract, encode_call("PaymentChannels", "open", payee, amount, expiry))
        topic = "0x" + keccak(text=TOPIC_OPENED).hex()
        for log in sent.receipt.get("logs", []):
            if log.get("address", "").lower() == self.contract.lower() and log["topics"][0] == topic:
                return bytes.fromhex(log["topics"][1][2:]), sent
        raise RuntimeError(f"open {sent.hashes[-1]} has no Opened event")

    async def top_up(self, channel_id: bytes, amount: int, new_expiry: int) -> SentTx:
        if amount:
            await self.ensure_allowance(amount)
        return await self.sender.send(self.contract, encode_call("PaymentChannels", "topUp", channel_id, amount, new_expiry))

    async def redeem(self, channel_id: bytes, cumulative: int, signature: bytes) -> SentTx:
        return await self.sender.send(self.contract, encode_call("PaymentChannels", "redeem", channel_id, cumulative, signature))

    async def close(self, channel_id: bytes, cumulative: int, signature: bytes) -> SentTx:
        return await self.sender.send(self.contract, encode_call("PaymentChannels", "close", channel_id, cumulative, signature))

    async def timeout(self, channel_id: bytes) -> SentTx:
        return await self.sender.send(self.contract, encode_call("PaymentChannels", "timeout", channel_id))

    async def channel(self, channel_id: bytes) -> OnChainChannel:
        out = await self.sender.call(self.contract, encode_call("PaymentChannels", "channels", channel_id))
        from eth_utils import to_checksum_address

        payer, expiry, payee, deposit, redeemed = decode_result("PaymentChannels", "channels", out)
        return OnChainChannel(channel_id, to_checksum_address(payer), to_checksum_address(payee), int(deposit),
                              int(redeemed), int(expiry))


async def deploy_local(sender: TxSender, *, fee_recipient: str, fee_bps: int) -> tuple[str, str]:
    """Deploy the test token and the channel contract (fee fixed here); returns their addresses."""
    token = (await sender.send(None, deploy_data("TestToken", []))).receipt["contractAddress"]
    channels = await sender.send(None, deploy_data("PaymentChannels", ["address", "address", "uint16"],
                                                   token, fee_recipient, fee_bps))
    return str(token), str(channels.receipt["contractAddress"])
