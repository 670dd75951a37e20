"""The node's settlement account: a secp256k1 key in ``<data dir>/settlement.key`` (0600).

Created on first use like the node key (atomic, never clobbered, loose permissions tightened;
the same file helpers). The ed25519 node key stays the node's identity; this key signs
EIP-712 vouchers and chain transactions, which the EVM can check cheaply.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from payments.evm.voucher import SECP256K1_N
from yagna.core.errors import IdentityError
from yagna.core.identity import create_secret_file, read_secret_file

log = logging.getLogger("yagna.chain")

MAGIC = "yagna-settlement-key/1"
WHAT = "settlement key"


@dataclass(frozen=True)
class SettlementAccount:
    private_key: bytes
    address: str

    def __repr__(self) -> str:  # never show the key
        return f"SettlementAccount(address={self.address!r})"

    @classmethod
    def from_key(cls, private_key: bytes) -> SettlementAccount:
        from payments.evm import load_eth

        load_eth()
        from eth_account import Account

        return cls(bytes(private_key), str(Account.from_key(private_key).address))

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[SettlementAccount, bool]:
        raw = read_secret_file(path, WHAT)
        if raw is None:
            key = _new_key()
            account = cls.from_key(key)
            if create_secret_file(path, _format(account), WHAT):
                log.info("created settlement account %s in %s", account.address, path)
                return account, True
            raw = read_secret_file(path, WHAT)  # lost a creation race: the winner's key
            if raw is None:
                raise IdentityError(f"cannot create {WHAT} file {path}: something is in the way")
        return cls.from_key(_parse(raw, path)), False


def _new_key() -> bytes:
    while True:
        key = secrets.token_bytes(32)
        if 0 < int.from_bytes(key, "big") < SECP256K1_N:
            return key


def _format(account: SettlementAccount) -> bytes:
    return (f"# yagna settlement key: SECRET, whoever holds it can spend this account's tokens.\n"
            f"# address: {account.address}\n{MAGIC}\n{account.private_key.hex()}\n").encode("ascii")


def _parse(raw: bytes, path: Path) -> bytes:
    corrupt = f"{WHAT} file {path} is corrupt ({{}}); restore it from a backup (its tokens are lost without it)"
    try:
        lines = [ln.strip() for ln in raw.decode("ascii").splitlines()]
    except UnicodeDecodeError:
        raise IdentityError(corrupt.format("not a text file")) from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) != 2 or lines[0] != MAGIC:
        raise IdentityError(corrupt.format(f"expected a {MAGIC!r} line and a key line"))
    try:
        key = bytes.fromhex(lines[1])
    except ValueError:
        raise IdentityError(corrupt.format("the key is not hex")) from None
    if len(key) != 32 or not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise IdentityError(corrupt.format("not a secp256k1 private key"))
    return key
