"""The EVM settlement driver: payment channels in the ``PaymentChannels`` contract, an ERC-20 token.

One driver acts for one node: its settlement key (``settlement.key``) signs every transaction
and every EIP-712 voucher proof; other accounts are only read. The chain is the truth; the
node's store keeps a journal (``chain_channels``, migration 7) of what it needs to act after
a crash:

- **open** (payer): the channel id is the contract's ``keccak(chain id, contract, payer, payee,
  nonce)``; opens are serialised so the id read before sending is the one the event names.
- **accept** (payee): the contract's record must show the promised payer, this node as payee,
  the promised deposit and an expiry not before the caller's minimum, on this node's contract
  and chain; nothing is trusted from the other node's bookkeeping.
- **redeem / close** (payee): the amount, the proof and every transaction hash are written
  down *before* the outcome is known; :meth:`EvmDriver.start` finishes what a crash left from
  the chain (a mined hash, else the contract's ``redeemed``, else sending again). The contract
  refuses an amount not above what it paid, so a voucher is never paid twice.
- **settle** (payer): final once the payee closed the channel (the refund is read from the
  ``Closed`` event) or, past the expiry, by calling ``timeout``.

Costs (bench/chain_settlement.py, anvil, 2 % fee): open 134.7 k gas (151.8 k the first time,
plus a one-off approve of 46.7 k), redeem 83.8 k, close 67.6 k, timeout 45.7 k.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from payments.driver import Balance, ChannelInfo, Redemption
from payments.errors import (
    AmountInvalid,
    ChainUnavailable,
    DepositMismatch,
    DepositReused,
    DriverError,
    InsufficientFunds,
    NotOnThisChain,
    SettlementPending,
    UnknownChannel,
    VoucherRejected,
)
from payments.evm import voucher as evm_voucher
from payments.evm.voucher import VoucherDomain, VoucherError
from yagna.chain.account import SettlementAccount
from yagna.chain.channels import ChannelsClient, OnChainChannel, all_errors, encode_call
from yagna.chain.rpc import NotMined, Reverted, Rpc, RpcError, TxSender
from yagna.store.db import Store

log = logging.getLogger("yagna.chain.driver")

LOCAL_CHAIN_IDS = frozenset({31337, 1337})
"""anvil's and Ganache/Hardhat's default chain ids: tokens there have no value and may be minted."""
TOPIC_CLOSED = "Closed(bytes32,uint256,uint256,uint256,uint256)"
TOPIC_TIMED_OUT = "TimedOut(bytes32,uint256)"
DEFAULT_LIFE_S = 24 * 3600
GAS_FLOOR = 10**16
"""Wei a local chain's faucet keeps on a node's account for gas (0.01 ETH: ~50 opens at 1 gwei)."""


def channel_bytes(channel_id: str) -> bytes:
    """``0x`` + 64 hex digits -> 32 bytes; :class:`UnknownChannel` for anything else (never a chain id)."""
    if not (isinstance(channel_id, str) and len(channel_id) == 66 and channel_id[:2] == "0x"):
        raise UnknownChannel(f"{channel_id!r:.80} is not a channel id of the contract (0x + 64 hex digits)")
    try:
        return bytes.fromhex(channel_id[2:])
    except ValueError:
        raise UnknownChannel(f"{channel_id!r:.80} is not hex") from None


def _amount(value: object, what: str, *, positive: bool) -> int:
    if type(value) is not int:
        raise TypeError(f"{what} must be an int of base units, not {type(value).__name__}")
    if value < 0 or value > 2**256 - 1 or (positive and value == 0):
        raise AmountInvalid(f"{what} must be an int in {1 if positive else 0}..2**256-1, got {value}")
    return value


class EvmDriver:
    """:class:`payments.driver.SettlementDriver` on an EVM chain (see the module's docstring)."""

    name = "erc20"

    def __init__(self, *, rpc_url: str, account: SettlementAccount, token: str, contract: str, store: Store,
                 chain_id: int, local: bool | None = None, resend_after: float = 15.0) -> None:
        from eth_utils import to_checksum_address

        self.rpc_url = rpc_url
        self.rpc = Rpc(rpc_url)
        self.account = account
        self.address = account.address
        self.chain_id = chain_id
        self.test_network = chain_id in LOCAL_CHAIN_IDS if local is None else local
        self.sender = TxSender(self.rpc, account.private_key, errors=all_errors(), resend_after=resend_after)
        self.client = ChannelsClient(self.sender, token, contract)
        self.token = self.client.token
        self.contract = self.client.contract
        self.domain = VoucherDomain(chain_id, self.contract)
        self._store = store
        self._open_lock = trio.Lock()
        self._redeeming: dict[str, trio.Lock] = {}
        self.recovered = 0
        """Redeems/closes a crash left unfinished that :meth:`start` finished."""
        self.after_sent: Callable[[str], Awaitable[None]] | None = None
        """Test hook: called with each redeem/close hash once it is journaled (a crash test kills here)."""

    @classmethod
    async def connect(cls, *, rpc_url: str, account: SettlementAccount, token: str, contract: str, store: Store,
                      local: bool | None = None, resend_after: float = 15.0) -> EvmDriver:
        """Ask the chain its id and check the contract is there (a wrong address fails here, loudly)."""
        rpc = Rpc(rpc_url)
        try:
            chain_id = await rpc.chain_id()
            code = await rpc.call("eth_getCode", contract, "latest")
        except RpcError as exc:
            raise ChainUnavailable(str(exc) if rpc_url in str(exc) else f"the chain at {rpc_url}: {exc}") from None
        finally:
            await rpc.aclose()
        if not code or code == "0x":
            raise DepositMismatch(f"no contract at {contract} on chain {chain_id} ({rpc_url})")
        return cls(rpc_url=rpc_url, account=account, token=token, contract=contract, store=store,
                   chain_id=chain_id, local=local, resend_after=resend_after)

    async def aclose(self) -> None:
        await self.rpc.aclose()

    def account_of(self, node_id: str) -> str:
        return self.address

    # -- crash recovery ----------------------------------------------------------------
    async def start(self) -> int:
        """Finish every redeem/close a crash left unfinished; returns how many."""
        rows = await self._store.fetchall(
            "SELECT channel_id FROM chain_channels WHERE pending_amount IS NOT NULL AND chain_id = ? AND contract = ?",
            (self.chain_id, self.contract))
        for row in rows:
            channel_id = str(row["channel_id"])
            async with self._lock_of(channel_id):
                await self._finish_pending(channel_id)
            self.recovered += 1
        return len(rows)

    async def reclaim_expired(self) -> int:
        """Payer side: take back every deposit of ours past its expiry that is still on chain.

        Covers channels nobody else will end: an open whose agreement never got its channel
        (a crash between sending the open and recording the channel), a provider gone for good.
        Past the expiry the payee had its time (it closes at expiry minus a margin)."""
        rows = await self._store.fetchall(
            "SELECT channel_id FROM chain_channels WHERE role = 'payer' AND state = 'open' AND expiry <= ? "
            "AND chain_id = ? AND contract = ?", (int(time.time()), self.chain_id, self.contract))
        done = 0
        for row in rows:
            try:
                await self.settle_payer(str(row["channel_id"]), 0)
                done += 1
            except (SettlementPending, ChainUnavailable) as exc:  # the chain's clock is behind ours
                log.info("reclaiming %s later: %s", str(row["channel_id"])[:14], exc)
        return done

    async def _finish_pending(self, channel_id: str) -> Redemption | None:
        """A redeem/close was written down and maybe sent: settle it from the chain, or send it again."""
        row = await self._row(channel_id)
        if row is None or row["pending_amount"] is None:
            return None
        amount, close, proof = int(row["pending_amount"]), bool(row["pending_close"]), bytes(row["pending_proof"] or b"")
        for tx_hash in json.loads(row["pending_hashes"] or "[]"):
            receipt = await self._call(self.sender.receipt(tx_hash))
            if receipt is not None and int(receipt["status"], 16) == 1:
                log.info("channel %s: %s %s was mined before the restart", channel_id[:12],
                         "close" if close else "redeem", tx_hash)
                return await self._record_outcome(channel_id, row, tx_hash, close)
        state = await self._onchain(channel_id)
        if not state.exists:  # closed by a transaction we did not see mined, or timed out
            return await self._record_gone(channel_id, row)
        if not close and state.redeemed >= min(amount, state.deposit):
            return await self._record_redeemed(channel_id, row, state.redeemed, None)
        log.info("channel %s: sending the %s of %d again after a restart", channel_id[:12],
                 "close" if close else "redeem", amount)
        return await self._send_redeem(channel_id, row, amount, close, proof)

    # -- reads -------------------------------------------------------------------------
    async def _call(self, aw: Any) -> Any:
        try:
            return await aw
        except (RpcError, NotMined) as exc:
            raise ChainUnavailable(f"chain {self.chain_id} at {self.rpc_url}: {exc}") from None

    async def _onchain(self, channel_id: str) -> OnChainChannel:
        return await self._call(self.client.channel(channel_bytes(channel_id)))

    async def _row(self, channel_id: str) -> sqlite3.Row | None:
        return await self._store.fetchone(
            "SELECT * FROM chain_channels WHERE channel_id = ? AND chain_id = ? AND contract = ?",
            (channel_id, self.chain_id, self.contract))

    async def token_balance(self, address: str | None = None) -> int:
        return int(await self._call(self.client.token_balance(address or self.address)))

    async def gas_balance(self, address: str | None = None) -> int:
        return int(await self._call(self.rpc.call("eth_getBalance", address or self.address, "latest")), 16)

    async def balance(self, account: str) -> Balance:
        """Tokens held on chain plus what this node's journal knows about its channels."""
        tokens = await self.token_balance(account)
        locked = spent = earned = 0
        for row in await self._store.fetchall(
                "SELECT * FROM chain_channels WHERE chain_id = ? AND contract = ? AND (payer = ? OR payee = ?)",
                (self.chain_id, self.contract, account, account)):
            redeemed = int(row["redeemed"])
            if row["role"] == "payer" and row["payer"] == account:
                if row["state"] == "open":
                    state = await self._onchain(str(row["channel_id"]))
                    redeemed = state.redeemed if state.exists else redeemed
                    locked += int(row["deposit"]) - redeemed if state.exists else 0
                spent += redeemed
            elif row["role"] == "payee" and row["payee"] == account:
                earned += redeemed
        return Balance(account, tokens + locked, locked, spent, earned)

    async def channel(self, channel_id: str) -> ChannelInfo:
        row = await self._row(channel_id)
        if row is None:
            state = await self._onchain(channel_id)
            if not state.exists:
                raise UnknownChannel(f"no channel {channel_id} on contract {self.contract}")
            return ChannelInfo(channel_id, state.payer, state.payee, state.deposit, state.redeemed, "open", state.expiry)
        redeemed = int(row["redeemed"])
        if row["state"] == "open":
            state = await self._onchain(channel_id)
            if state.exists:
                redeemed = state.redeemed
        return ChannelInfo(channel_id, row["payer"], row["payee"], int(row["deposit"]), redeemed, row["state"],
                           int(row["expiry"]))

    async def transactions(self, channel_id: str) -> list[list[str]]:
        """``[[op, hash], ...]`` mined for the channel (for ``payment status``)."""
        row = await self._row(channel_id)
        return json.loads(row["txs"]) if row is not None else []

    # -- funding -----------------------------------------------------------------------
    async def fund(self, account: str, amount: int) -> Balance:
        """Mint test tokens (and gas) on a local chain; elsewhere say how to fund the address."""
        _amount(amount, "amount", positive=True)
        if not self.test_network:
            raise NotOnThisChain(f"chain {self.chain_id} has real tokens: send tokens ({self.token}) and gas to "
                                 f"{account} from a wallet or an exchange; nothing can be minted here")
        await self.ensure_gas(account)
        try:
            await self.sender.send(self.token, encode_call("TestToken", "mint", account, amount))
        except Reverted as exc:
            if exc.error == "MintTooLarge":
                raise AmountInvalid(f"the test token mints at most 10**24 base units (1,000,000 tokens) per call, "
                                    f"not {amount}") from None
            raise NotOnThisChain(f"the token {self.token} refused to mint ({exc.error}): not a test token") from None
        except (RpcError, NotMined) as exc:
            raise ChainUnavailable(str(exc)) from None
        return await self.balance(account)

    async def ensure_gas(self, account: str) -> None:
        """Local chains only: top the account's ETH up to :data:`GAS_FLOOR` (anvil_setBalance)."""
        if self.test_network and await self.gas_balance(account) < GAS_FLOOR:
            await self._call(self.rpc.call("anvil_setBalance", account, hex(GAS_FLOOR * 100)))

    # -- payer -------------------------------------------------------------------------
    async def lock_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                           expiry: int = 0) -> ChannelInfo:
        from eth_abi import encode
        from eth_utils import is_address, keccak, to_checksum_address

        _amount(amount, "deposit", positive=True)
        if payer != self.address:
            raise DriverError(f"this node pays from {self.address}, not {payer}")
        if not is_address(payee) or to_checksum_address(payee) == self.address:
            raise DepositMismatch(f"{payee!r:.80} is not a payee address")
        payee = to_checksum_address(payee)
        if await self._store.fetchone("SELECT 1 FROM chain_channels WHERE proposed_id = ?", (channel_id,)):
            raise DepositReused(f"channel id {channel_id!r} was used before; a channel id is never reused")
        async with self._open_lock:
            held = await self.token_balance()
            if amount > held:
                raise InsufficientFunds(f"{self.address} holds {held} base units of {self.token} on chain "
                                        f"{self.chain_id}, the deposit needs {amount}")
            now = await self._call(self.rpc.block_timestamp())
            expiry = expiry or now + DEFAULT_LIFE_S
            nonce_raw = await self._call(self.sender.call(self.contract, encode_call("PaymentChannels", "nonces",
                                                                                     self.address)))
            nonce = int.from_bytes(nonce_raw[:32], "big")
            cid = "0x" + keccak(encode(["uint256", "address", "address", "address", "uint256"],
                                       [self.chain_id, self.contract, self.address, payee, nonce])).hex()
            t = int(time.time())
            await self._store.execute(
                "INSERT INTO chain_channels (channel_id, chain_id, contract, role, proposed_id, payer, payee, deposit, "
                "expiry, state, created_at, updated_at) VALUES (?, ?, ?, 'payer', ?, ?, ?, ?, ?, 'open', ?, ?)",
                (cid, self.chain_id, self.contract, channel_id, self.address, payee, str(amount), expiry, t, t),
                durable=True)
            try:
                got, sent = await self.client.open(payee, amount, expiry)
            except Reverted as exc:
                await self._store.execute("DELETE FROM chain_channels WHERE channel_id = ?", (cid,), durable=True)
                raise DriverError(f"the contract refused the open: {exc}") from None
            except (RpcError, NotMined) as exc:
                raise ChainUnavailable(f"open not confirmed: {exc}") from None
            if "0x" + got.hex() != cid:  # someone else sent from our key: keep the chain's id
                log.warning("open: the contract named channel 0x%s, expected %s", got.hex(), cid)
                await self._store.execute("UPDATE chain_channels SET channel_id = ? WHERE channel_id = ?",
                                          ("0x" + got.hex(), cid), durable=True)
                cid = "0x" + got.hex()
            await self._append_tx(cid, "open", sent.hashes[-1])
            await self._store.execute("UPDATE chain_channels SET from_block = ? WHERE channel_id = ?",
                                      (int(sent.receipt["blockNumber"], 16), cid), durable=True)
        log.info("channel %s opened on chain %d: %d to %s until %d", cid[:14], self.chain_id, amount, payee, expiry)
        return ChannelInfo(cid, self.address, payee, amount, 0, "open", expiry)

    async def top_up(self, channel_id: str, amount: int) -> ChannelInfo:
        _amount(amount, "top-up", positive=True)
        row = await self._row(channel_id)
        if row is None:
            raise UnknownChannel(f"no channel {channel_id!r} of ours on chain {self.chain_id}")
        if row["role"] != "payer" or row["state"] != "open":
            raise DepositMismatch(f"channel {channel_id[:14]} is {row['state'] if row['state'] != 'open' else 'not ours to top up'}")
        async with self._open_lock:
            held = await self.token_balance()
            if amount > held:
                raise InsufficientFunds(f"{self.address} holds {held} base units of {self.token} on chain "
                                        f"{self.chain_id}, the top-up needs {amount}")
            try:
                sent = await self.client.top_up(channel_bytes(channel_id), amount, int(row["expiry"]))
            except Reverted as exc:
                if "NoChannel" in str(exc):  # the payee closed it meanwhile
                    raise DepositMismatch(f"channel {channel_id[:14]} is closed on chain") from None
                raise DriverError(f"the contract refused the top-up: {exc}") from None
            except (RpcError, NotMined) as exc:
                raise ChainUnavailable(f"top-up not confirmed: {exc}") from None
            deposit = int(row["deposit"]) + amount
            await self._store.execute("UPDATE chain_channels SET deposit = ?, updated_at = ? WHERE channel_id = ?",
                                      (str(deposit), int(time.time()), channel_id), durable=True)
            await self._append_tx(channel_id, "top_up", sent.hashes[-1])
        log.info("channel %s topped up by %d to %d", channel_id[:14], amount, deposit)
        return ChannelInfo(channel_id, self.address, row["payee"], deposit, 0, "open", int(row["expiry"]))

    async def accept_top_up(self, channel_id: str, deposit: int) -> ChannelInfo:
        _amount(deposit, "deposit", positive=True)
        row = await self._row(channel_id)
        if row is None or row["role"] != "payee":
            raise UnknownChannel(f"no channel {channel_id!r} paying us on chain {self.chain_id}")
        state = await self._onchain(channel_id)
        if state.payee != self.address or state.deposit < deposit or deposit < int(row["deposit"]):
            raise DepositMismatch(f"channel {channel_id[:14]} holds {state.deposit} on chain; {deposit} was promised")
        await self._store.execute("UPDATE chain_channels SET deposit = ?, updated_at = ? WHERE channel_id = ?",
                                  (str(deposit), int(time.time()), channel_id), durable=True)
        return ChannelInfo(channel_id, state.payer, self.address, deposit, state.redeemed, "open", state.expiry)

    def voucher_proof(self, channel_id: str, cumulative_amount: int) -> bytes:
        return evm_voucher.sign(self.account.private_key, self.domain, channel_bytes(channel_id), cumulative_amount)

    async def settle_payer(self, channel_id: str, signed: int) -> Redemption:
        row = await self._row(channel_id)
        if row is None or row["role"] != "payer":
            raise UnknownChannel(f"no channel {channel_id} that this node pays into")
        deposit = int(row["deposit"])
        if row["state"] == "closed":
            return Redemption(channel_id, 0, int(row["refunded"] or 0))
        state = await self._onchain(channel_id)
        if state.exists:
            now = await self._call(self.rpc.block_timestamp())
            if now < state.expiry:
                raise SettlementPending(f"channel {channel_id[:14]} is open on chain until the provider closes it "
                                        f"or it expires at {state.expiry} ({state.expiry - now} s)")
            try:
                sent = await self.client.timeout(channel_bytes(channel_id))
            except Reverted as exc:
                if exc.error != "NoChannel":
                    raise DriverError(f"timeout refused: {exc.error}") from None
            except (RpcError, NotMined) as exc:
                raise ChainUnavailable(str(exc)) from None
            else:
                await self._append_tx(channel_id, "timeout", sent.hashes[-1])
        redeemed, refunded = await self._final(channel_id, row)
        await self._store.execute(
            "UPDATE chain_channels SET state = 'closed', redeemed = ?, refunded = ?, updated_at = ? WHERE channel_id = ?",
            (str(redeemed), str(refunded), int(time.time()), channel_id), durable=True)
        return Redemption(channel_id, 0, refunded if refunded is not None else deposit - min(signed, deposit))

    async def _final(self, channel_id: str, row: sqlite3.Row) -> tuple[int, int]:
        """(redeemed, refunded) of a channel the contract deleted, from its Closed/TimedOut event."""
        from eth_abi import decode
        from eth_utils import keccak

        logs = await self._call(self.rpc.call("eth_getLogs", {
            "address": self.contract, "fromBlock": hex(int(row["from_block"] or 0)), "toBlock": "latest",
            "topics": [["0x" + keccak(text=TOPIC_CLOSED).hex(), "0x" + keccak(text=TOPIC_TIMED_OUT).hex()],
                       channel_id]}))
        deposit = int(row["deposit"])
        for entry in logs if isinstance(logs, list) else []:
            data = bytes.fromhex(entry["data"][2:])
            if entry["topics"][0] == "0x" + keccak(text=TOPIC_CLOSED).hex():
                _cum, _paid, _fee, refunded = decode(["uint256"] * 4, data)
            else:
                (refunded,) = decode(["uint256"], data)
            return deposit - int(refunded), int(refunded)
        raise ChainUnavailable(f"channel {channel_id[:14]} is gone from the contract but no Closed/TimedOut event "
                               "was found (a pruned node?)")

    # -- payee -------------------------------------------------------------------------
    async def accept_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                             min_expiry: int = 0) -> ChannelInfo:
        _amount(amount, "deposit", positive=True)
        state = await self._onchain(channel_id)
        problems = []
        if not state.exists:
            raise DepositMismatch(f"no channel {channel_id} on contract {self.contract} of chain {self.chain_id}")
        if state.payer != payer:
            problems.append(f"payer is {state.payer}, the requestor's bound address is {payer}")
        if state.payee != self.address or payee != self.address:
            problems.append(f"payee is {state.payee}, this provider is {self.address}")
        if state.deposit != amount:
            problems.append(f"deposit is {state.deposit}, {amount} was promised")
        if state.redeemed:
            problems.append(f"{state.redeemed} was redeemed already")
        if state.expiry < min_expiry:
            problems.append(f"it expires at {state.expiry}, before {min_expiry}")
        if problems:
            raise DepositMismatch(f"channel {channel_id[:14]}: " + "; ".join(problems))
        row = await self._row(channel_id)
        if row is not None:
            if row["role"] != "payee" or (row["payer"], int(row["deposit"])) != (payer, amount):
                raise DepositReused(f"channel {channel_id} is known with other terms")
        else:
            t = int(time.time())
            block = int(await self._call(self.rpc.call("eth_blockNumber")), 16)  # its end comes later than this
            await self._store.execute(
                "INSERT INTO chain_channels (channel_id, chain_id, contract, role, payer, payee, deposit, expiry, "
                "state, from_block, created_at, updated_at) VALUES (?, ?, ?, 'payee', ?, ?, ?, ?, 'open', ?, ?, ?)",
                (channel_id, self.chain_id, self.contract, payer, self.address, str(amount), state.expiry, block, t, t),
                durable=True)
        return ChannelInfo(channel_id, payer, self.address, amount, 0, "open", state.expiry)

    def check_voucher_proof(self, channel_id: str, payer: str, cumulative_amount: int, proof: bytes) -> None:
        if not proof:
            raise VoucherRejected("missing-proof", "a voucher on a chain carries the payer's EIP-712 signature")
        try:
            signer = evm_voucher.signer(self.domain, channel_bytes(channel_id), cumulative_amount, proof)
        except (VoucherError, UnknownChannel) as exc:
            raise VoucherRejected("bad-proof", str(exc)) from None
        if signer != payer:
            raise VoucherRejected("bad-proof", f"the EIP-712 signature is by {signer}, not the payer {payer}")

    def _lock_of(self, channel_id: str) -> trio.Lock:
        return self._redeeming.setdefault(channel_id, trio.Lock())

    async def redeem(self, channel_id: str, cumulative_amount: int, *, close: bool,
                     proof: bytes = b"") -> Redemption:
        _amount(cumulative_amount, "cumulative_amount", positive=False)
        async with self._lock_of(channel_id):
            await self._finish_pending(channel_id)  # an earlier attempt first (never two in flight)
            row = await self._row(channel_id)
            if row is None or row["role"] != "payee":
                raise UnknownChannel(f"no channel {channel_id} paying this node")
            if row["state"] == "closed":
                return Redemption(channel_id, 0, 0)
            capped = min(cumulative_amount, int(row["deposit"]))
            if capped <= int(row["redeemed"]) and not close:
                return Redemption(channel_id, 0, 0)
            if capped > int(row["redeemed"]):
                self.check_voucher_proof(channel_id, row["payer"], cumulative_amount, proof)
            else:
                cumulative_amount, proof = int(row["redeemed"]), b""
            await self._store.execute(
                "UPDATE chain_channels SET pending_amount = ?, pending_close = ?, pending_proof = ?, "
                "pending_hashes = '[]', updated_at = ? WHERE channel_id = ?",
                (str(cumulative_amount), int(close), proof, int(time.time()), channel_id), durable=True)
            return await self._send_redeem(channel_id, row, cumulative_amount, close, proof)

    async def _send_redeem(self, channel_id: str, row: sqlite3.Row, amount: int, close: bool,
                           proof: bytes) -> Redemption:
        async def journal(tx_hash: str) -> None:
            def fn(conn: sqlite3.Connection) -> None:
                got = conn.execute("SELECT pending_hashes FROM chain_channels WHERE channel_id = ?",
                                   (channel_id,)).fetchone()
                hashes = json.loads(got[0] or "[]") + [tx_hash]
                conn.execute("UPDATE chain_channels SET pending_hashes = ? WHERE channel_id = ?",
                             (json.dumps(hashes), channel_id))
            await self._store.transaction(fn, durable=True)
            if self.after_sent is not None:
                await self.after_sent(tx_hash)

        cid = channel_bytes(channel_id)
        op = "close" if close else "redeem"
        try:
            sent = await self.sender.send(self.contract, encode_call("PaymentChannels", op, cid, amount, proof),
                                          on_sent=journal)
        except Reverted as exc:
            state = await self._onchain(channel_id)
            if exc.error == "NotIncreasing" and state.exists:
                return await self._record_redeemed(channel_id, row, state.redeemed, None)
            if exc.error == "NoChannel" or not state.exists:
                return await self._record_gone(channel_id, row)
            await self._clear_pending(channel_id)
            raise DriverError(f"the contract refused the {op}: {exc}") from None
        except (RpcError, NotMined) as exc:
            raise ChainUnavailable(f"{op} of channel {channel_id[:14]} not confirmed yet (kept, retried): {exc}") from None
        return await self._record_outcome(channel_id, row, sent.hashes[-1], close)

    async def _record_outcome(self, channel_id: str, row: sqlite3.Row, tx_hash: str, close: bool) -> Redemption:
        if close:
            return await self._record_gone(channel_id, row, tx_hash)
        state = await self._onchain(channel_id)
        return await self._record_redeemed(channel_id, row, state.redeemed, tx_hash)

    async def _record_redeemed(self, channel_id: str, row: sqlite3.Row, redeemed: int, tx_hash: str | None) -> Redemption:
        before = int(row["redeemed"])
        await self._store.execute(
            "UPDATE chain_channels SET redeemed = ?, pending_amount = NULL, pending_close = NULL, pending_proof = NULL, "
            "pending_hashes = NULL, updated_at = ? WHERE channel_id = ?",
            (str(max(before, redeemed)), int(time.time()), channel_id), durable=True)
        if tx_hash:
            await self._append_tx(channel_id, "redeem", tx_hash)
        return Redemption(channel_id, max(0, redeemed - before), 0)

    async def _record_gone(self, channel_id: str, row: sqlite3.Row, tx_hash: str | None = None) -> Redemption:
        redeemed, refunded = await self._final(channel_id, row)
        before = int(row["redeemed"])
        await self._store.execute(
            "UPDATE chain_channels SET redeemed = ?, refunded = ?, state = 'closed', pending_amount = NULL, "
            "pending_close = NULL, pending_proof = NULL, pending_hashes = NULL, updated_at = ? WHERE channel_id = ?",
            (str(redeemed), str(refunded), int(time.time()), channel_id), durable=True)
        if tx_hash:
            await self._append_tx(channel_id, "close", tx_hash)
        return Redemption(channel_id, max(0, redeemed - before), refunded)

    async def _clear_pending(self, channel_id: str) -> None:
        await self._store.execute(
            "UPDATE chain_channels SET pending_amount = NULL, pending_close = NULL, pending_proof = NULL, "
            "pending_hashes = NULL WHERE channel_id = ?", (channel_id,), durable=True)

    async def _append_tx(self, channel_id: str, op: str, tx_hash: str) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            got = conn.execute("SELECT txs FROM chain_channels WHERE channel_id = ?", (channel_id,)).fetchone()
            if got is not None:
                txs = json.loads(got[0]) + [[op, tx_hash]]
                conn.execute("UPDATE chain_channels SET txs = ? WHERE channel_id = ?", (json.dumps(txs[-16:]), channel_id))
        await self._store.transaction(fn, durable=True)

    async def describe(self) -> dict[str, Any]:
        """The ``chain`` object of ``payment status``."""
        try:
            balance: int | None = await self.token_balance()
            gas: int | None = await self.gas_balance()
        except DriverError:  # the chain is unreachable: status shows the rest
            balance = gas = None
        return {"chain_id": self.chain_id, "rpc_url": self.rpc_url, "token_address": self.token,
                "contract_address": self.contract, "account": self.address, "token_balance": balance,
                "gas_balance": gas, "test_chain": self.test_network}
