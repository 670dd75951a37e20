"""A small synchronous web3 client for contract tests: locally signed type-2 transactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from payments.evm.artifacts import artifact
from yagna.chain.rpc import error_names

Account.enable_unaudited_hdwallet_features()


def dev_keys(n: int) -> list[bytes]:
    """anvil's first ``n`` dev accounts (its default mnemonic)."""
    from yagna.chain.anvil import DEV_MNEMONIC

    return [bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key) for i in range(n)]


@dataclass
class Chain:
    w3: Web3

    def address(self, key: bytes) -> str:
        return str(Account.from_key(key).address)

    def deploy(self, name: str, key: bytes, *args: Any) -> Any:
        art = artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = self.send(factory.constructor(*args), key)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)

    def send(self, call: Any, key: bytes) -> Any:
        """Sign ``call`` (a contract function or constructor call) with ``key``, send it raw, await
        its receipt; a revert raises :class:`Reverted` with the custom error's name."""
        sender = self.address(key)
        try:
            tx = call.build_transaction({
                "from": sender, "nonce": self.w3.eth.get_transaction_count(sender),
                "chainId": self.w3.eth.chain_id, "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9,
            })
        except (ContractCustomError, ContractLogicError) as exc:
            raise Reverted(self._name(exc)) from None
        raw = Account.sign_transaction(tx, key).raw_transaction
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(raw), poll_latency=0.005)
        if receipt["status"] != 1:
            raise Reverted("status 0")
        return receipt

    def _name(self, exc: Exception) -> str:
        data = getattr(exc, "data", None) or ""
        if isinstance(data, str):
            selector = data[:10]
            for name in ("PaymentChannels", "TestToken"):
                found = error_names(artifact(name).abi).get(selector)
                if found:
                    return found
            # OpenZeppelin's ERC20 errors are in the token's ABI; anything else by its text
        return str(exc)

    def increase_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


class Reverted(Exception):
    """A transaction reverted; ``args[0]`` is the custom error's name."""
