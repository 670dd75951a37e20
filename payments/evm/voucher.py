"""EIP-712 vouchers of the ``PaymentChannels`` contract: what a payer signs, what the chain checks.

A voucher is ``Voucher(bytes32 channelId, uint256 cumulativeAmount)`` in the domain
``{name: "PaymentChannels", version: "1", chainId, verifyingContract}``: the chain, the contract,
the channel and the amount are all signed, so a voucher is good for exactly one channel of one
contract on one chain. Signatures are 65 bytes (r, s, v) with a low s (the contract refuses a
high s, as OpenZeppelin's ECDSA does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOMAIN_NAME = "PaymentChannels"
DOMAIN_VERSION = "1"
VOUCHER_TYPES = {"Voucher": [{"name": "channelId", "type": "bytes32"}, {"name": "cumulativeAmount", "type": "uint256"}]}
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_UINT256 = (1 << 256) - 1


class VoucherError(ValueError):
    """A malformed voucher field or signature."""


@dataclass(frozen=True)
class VoucherDomain:
    chain_id: int
    contract: str
    """The ``PaymentChannels`` address, 0x-prefixed (any case)."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id,
                "verifyingContract": self.contract}


def _message(channel_id: bytes, cumulative: int) -> dict[str, Any]:
    if len(channel_id) != 32:
        raise VoucherError(f"a channel id is 32 bytes, not {len(channel_id)}")
    if not 0 <= cumulative <= MAX_UINT256:
        raise VoucherError(f"a cumulative amount is an unsigned 256-bit value, not {cumulative}")
    return {"channelId": channel_id, "cumulativeAmount": cumulative}


def digest(domain: VoucherDomain, channel_id: bytes, cumulative: int) -> bytes:
    """The 32-byte EIP-712 hash that is signed (equals the contract's ``voucherDigest``)."""
    from payments.evm import load_eth

    load_eth()
    from eth_account.messages import encode_typed_data
    from eth_utils import keccak

    msg = encode_typed_data(domain.as_dict(), VOUCHER_TYPES, _message(channel_id, cumulative))
    return bytes(keccak(b"\x19" + msg.version + msg.header + msg.body))


def sign(private_key: bytes, domain: VoucherDomain, channel_id: bytes, cumulative: int) -> bytes:
    """A 65-byte signature (r || s || v, v in {27, 28}, low s)."""
    from payments.evm import load_eth

    load_eth()
    from eth_account import Account

    signed = Account.sign_typed_data(private_key, domain.as_dict(), VOUCHER_TYPES, _message(channel_id, cumulative))
    return bytes(signed.signature)


def signer(domain: VoucherDomain, channel_id: bytes, cumulative: int, signature: bytes) -> str:
    """The checksummed address that signed; :class:`VoucherError` for a malformed or high-s signature
    (which the contract would refuse too)."""
    if len(signature) != 65:
        raise VoucherError(f"a signature is 65 bytes, not {len(signature)}")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < s <= SECP256K1_N // 2:
        raise VoucherError("signature s is not in the lower half of the curve order (refused on chain)")
    if signature[64] not in (27, 28):
        raise VoucherError(f"signature v is {signature[64]}, not 27 or 28")
    from payments.evm import load_eth

    load_eth()
    from eth_account import Account

    try:
        return str(Account._recover_hash(digest(domain, channel_id, cumulative), signature=signature))
    except Exception as exc:  # eth-keys raises a zoo for bad points
        raise VoucherError(f"cannot recover a signer: {exc}") from None
