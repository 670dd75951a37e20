"""An EVM JSON-RPC client for trio, and a transaction sender for one local key.

:class:`Rpc` speaks JSON-RPC over HTTP with httpx (which runs on trio), so the daemon never
blocks its event loop on a chain call: every call has a timeout, a response size bound and a
typed error (:class:`RpcError`). :class:`TxSender` signs type-2 (EIP-1559) transactions with
the settlement key, keeps the account's nonce, waits for the receipt polling every ``poll`` s,
and re-sends the *same* nonce with fees raised by :data:`FEE_BUMP` (nodes need >= 10 % to
replace) when a transaction is not mined within ``resend_after`` s, at most ``max_bumps`` times:
a stuck transaction is replaced, never duplicated. A revert surfaces as :class:`Reverted` with
the contract's custom error name when the ABI knows it.

eth-account (signing) and eth-abi are imported on first use.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

log = logging.getLogger("yagna.chain")

MAX_RESPONSE = 4 << 20
FEE_BUMP = 1.25
"""Replacement fee factor (geth and anvil want at least +10 % on both fee fields)."""


class ChainError(Exception):
    """Base of the chain client's errors."""


class RpcError(ChainError):
    """The node could not be reached, timed out, or answered with an error."""

    def __init__(self, message: str, *, code: int | None = None, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class Reverted(ChainError):
    """A call or transaction reverted; ``error`` is the custom error's name when known."""

    def __init__(self, error: str, detail: str = "", tx_hash: str | None = None) -> None:
        super().__init__(f"reverted: {error}{': ' + detail if detail else ''}")
        self.error = error
        self.tx_hash = tx_hash


class NotMined(ChainError):
    """Not mined after every fee bump; ``tx_hashes`` are all the versions sent (same nonce)."""

    def __init__(self, message: str, tx_hashes: list[str]) -> None:
        super().__init__(message)
        self.tx_hashes = tx_hashes


class Rpc:
    def __init__(self, url: str, *, timeout: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            with trio.fail_after(self.timeout):
                async with self._client.stream("POST", self.url, json=body) as resp:
                    content = bytearray()
                    async for chunk in resp.aiter_bytes():
                        content += chunk
                        if len(content) > MAX_RESPONSE:  # read no further than the bound
                            raise RpcError(f"{method}: answer over {MAX_RESPONSE} bytes")
                    status = resp.status_code
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            raise RpcError(f"{method}: cannot reach the chain at {self.url}: {exc!r}") from None
        try:
            reply = json.loads(content)
        except ValueError:
            raise RpcError(f"{method}: not JSON (HTTP {status})") from None
        if not isinstance(reply, dict):
            raise RpcError(f"{method}: malformed answer")
        if reply.get("error") is not None:
            err = reply["error"] if isinstance(reply["error"], dict) else {"message": str(reply["error"])}
            code = err.get("code")
            raise RpcError(f"{method}: {err.get('message')}", code=code if isinstance(code, int) else None,
                           data=err.get("data"))
        return reply.get("result")

    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId"), 16)

    async def block_timestamp(self) -> int:
        block = await self.call("eth_getBlockByNumber", "latest", False)
        return int(block["timestamp"], 16)


def error_names(abi: list[dict[str, Any]]) -> dict[str, str]:
    """4-byte selector (0x-hex) -> custom error name."""
    from payments.evm import load_eth

    load_eth()
    from eth_utils import keccak

    out = {}
    for item in abi:
        if item.get("type") == "error":
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            out["0x" + keccak(text=sig)[:4].hex()] = item["name"]
    return out


def revert_name(exc: RpcError, errors: dict[str, str]) -> str | None:
    """The custom error a node reported for a reverted call (``data`` starts with its selector)."""
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        return errors.get(data[:10], data[:10])
    return None


@dataclass
class SentTx:
    nonce: int
    hashes: list[str]
    receipt: dict[str, Any]

    @property
    def gas_used(self) -> int:
        return int(self.receipt["gasUsed"], 16)


class TxSender:
    """Sends transactions from one key; one at a time (the nonce is ours, kept in order)."""

    def __init__(self, rpc: Rpc, private_key: bytes, *, errors: dict[str, str] | None = None,
                 poll: float = 0.01, resend_after: float = 15.0, max_bumps: int = 4,
                 priority_fee: int = 10**9) -> None:
        from payments.evm import load_eth

        load_eth()
        from eth_account import Account

        self.rpc = rpc
        self._key = private_key
        self.address = str(Account.from_key(private_key).address)
        self.errors = errors or {}
        self.poll = poll
        self.resend_after = resend_after
        self.max_bumps = max_bumps
        self.priority_fee = priority_fee
        self._lock = trio.Lock()
        self._chain_id: int | None = None

    async def call(self, to: str, data: bytes) -> bytes:
        """``eth_call`` (a view, or a dry run of a transaction from our address)."""
        try:
            out = await self.rpc.call("eth_call", {"from": self.address, "to": to, "data": "0x" + data.hex()}, "latest")
        except RpcError as exc:
            raise self._reverted(exc) from None
        return bytes.fromhex(str(out)[2:])

    async def send(self, to: str | None, data: bytes, *, gas: int | None = None,
                   on_sent: Callable[[str], Awaitable[None]] | None = None) -> SentTx:
        """Sign and send; wait for the receipt; :class:`Reverted` if it reverts (on the dry run
        before sending, or mined with status 0), :class:`NotMined` after every fee bump.

        ``on_sent`` gets each version's hash right after it went out (a journal writes it down,
        so a restart can look it up instead of guessing)."""
        async with self._lock:
            if self._chain_id is None:
                self._chain_id = await self.rpc.chain_id()
            tx: dict[str, Any] = {"from": self.address, "data": "0x" + data.hex()}
            if to is not None:
                tx["to"] = to
            if gas is None:
                try:
                    gas = int(int(await self.rpc.call("eth_estimateGas", tx), 16) * 1.2) + 10_000
                except RpcError as exc:
                    raise self._reverted(exc) from None
            nonce = int(await self.rpc.call("eth_getTransactionCount", self.address, "pending"), 16)
            base = int((await self.rpc.call("eth_getBlockByNumber", "latest", False)).get("baseFeePerGas", "0x0"), 16)
            tip = self.priority_fee
            max_fee = 2 * base + tip
            hashes: list[str] = []
            for attempt in range(self.max_bumps + 1):
                raw = self._sign({"type": 2, "chainId": self._chain_id, "nonce": nonce, "gas": gas,
                                  "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
                                  "to": to or b"", "value": 0, "data": data})
                try:
                    hashes.append(str(await self.rpc.call("eth_sendRawTransaction", "0x" + raw.hex())))
                    if on_sent is not None:
                        await on_sent(hashes[-1])
                except RpcError as exc:
                    if "nonce too low" in str(exc).lower() or "already known" in str(exc).lower():
                        pass  # an earlier version of it got in: wait for the receipts below
                    else:
                        raise
                receipt = await self._wait(hashes, self.resend_after)
                if receipt is not None:
                    if int(receipt["status"], 16) != 1:
                        raise Reverted(await self._why(tx), tx_hash=receipt["transactionHash"])
                    return SentTx(nonce, hashes, receipt)
                tip = int(tip * FEE_BUMP) + 1
                max_fee = int(max_fee * FEE_BUMP) + 1
                log.info("transaction %s (nonce %d) not mined in %.0f s: re-sent with fees x%.2f (%d of %d)",
                         hashes[-1] if hashes else "?", nonce, self.resend_after, FEE_BUMP, attempt + 1, self.max_bumps)
            raise NotMined(f"nonce {nonce} not mined after {self.max_bumps} fee bumps", hashes)

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        got = await self.rpc.call("eth_getTransactionReceipt", tx_hash)
        return got if isinstance(got, dict) else None

    async def _wait(self, hashes: list[str], seconds: float) -> dict[str, Any] | None:
        with trio.move_on_after(seconds):
            while True:
                for h in hashes:  # any version of the transaction (same nonce) may be the one mined
                    got = await self.receipt(h)
                    if got is not None:
                        return got
                await trio.sleep(self.poll)
        return None

    async def _why(self, tx: dict[str, Any]) -> str:
        try:
            await self.rpc.call("eth_call", tx, "latest")
        except RpcError as exc:
            return revert_name(exc, self.errors) or str(exc)
        return "status 0"

    def _reverted(self, exc: RpcError) -> ChainError:
        name = revert_name(exc, self.errors)
        if name is None and "revert" not in str(exc).lower():
            return exc
        return Reverted(name or "revert", str(exc))

    def _sign(self, tx: dict[str, Any]) -> bytes:
        from payments.evm import load_eth

        load_eth()
        from eth_account import Account
        from eth_utils import to_checksum_address

        if tx["to"] == b"":
            del tx["to"]
        else:
            tx["to"] = to_checksum_address(tx["to"])
        return bytes(Account.sign_transaction(tx, self._key).raw_transaction)
