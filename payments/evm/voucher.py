"""EIP-712 vouchers of the ``PaymentChannels`` contract: what a payer signs, what the chain checks.

A voucher is ``Voucher(bytes32 channelId, uint256 cumulativeAmount)`` in the domain
``{name: "PaymentChannels", version: "1", chainId, verifyingContract}``: the chain, the contract,
the channel and the amount are all signed, so a voucher is good for exactly one channel of one
contract on one chain. Signatures are 65 bytes (r, s, v) with a low s (the contract refuses a
high s, as OpenZeppelin's ECDSA does).
"""

from __future__ import annotations

import functools
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


def _keccak(data: bytes) -> bytes:
    from eth_hash.auto import keccak

    return bytes(keccak(data))


_DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
_VOUCHER_TYPE = b"Voucher(bytes32 channelId,uint256 cumulativeAmount)"


@functools.cache
def _voucher_typehash() -> bytes:
    return _keccak(_VOUCHER_TYPE)


@functools.lru_cache(maxsize=64)
def _domain_separator(domain: VoucherDomain) -> bytes:
    contract = bytes.fromhex(domain.contract[2:] if domain.contract[:2].lower() == "0x" else domain.contract)
    if len(contract) != 20:
        raise VoucherError(f"a contract address is 20 bytes, not {len(contract)}")
    return _keccak(_keccak(_DOMAIN_TYPE) + _keccak(DOMAIN_NAME.encode()) + _keccak(DOMAIN_VERSION.encode())
                   + domain.chain_id.to_bytes(32, "big") + contract.rjust(32, b"\0"))


def digest(domain: VoucherDomain, channel_id: bytes, cumulative: int) -> bytes:
    """The 32-byte EIP-712 hash that is signed (equals the contract's ``voucherDigest``).

    Computed here (keccak of the encoded struct under the cached domain separator) rather than
    through eth-account's generic typed-data encoder: 6x faster, the same bytes (tested)."""
    if len(channel_id) != 32:
        raise VoucherError(f"a channel id is 32 bytes, not {len(channel_id)}")
    if not 0 <= cumulative <= MAX_UINT256:
        raise VoucherError(f"a cumulative amount is an unsigned 256-bit value, not {cumulative}")
    struct = _keccak(_voucher_typehash() + channel_id + cumulative.to_bytes(32, "big"))
    return _keccak(b"\x19\x01" + _domain_separator(domain) + struct)


def sign(private_key: bytes, domain: VoucherDomain, channel_id: bytes, cumulative: int) -> bytes:
    """A 65-byte signature (r || s || v, v in {27, 28}, low s: libsecp256k1 normalises s)."""
    from coincurve import PrivateKey

    rsv = PrivateKey(private_key).sign_recoverable(digest(domain, channel_id, cumulative), hasher=None)
    return rsv[:64] + bytes([rsv[64] + 27])


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
    from coincurve import PublicKey

    try:
        public = PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]),
                                                      digest(domain, channel_id, cumulative), hasher=None)
    except Exception as exc:  # libsecp256k1 refuses points and r values it cannot recover from
        raise VoucherError(f"cannot recover a signer: {exc}") from None
    return checksum_address(_keccak(public.format(compressed=False)[1:])[-20:])


def checksum_address(raw: bytes) -> str:
    """EIP-55: the hex digits upper-cased where the keccak of the lower-case hex has a nibble >= 8."""
    hexed = raw.hex()
    nibbles = _keccak(hexed.encode()).hex()
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in zip(hexed, nibbles[:40], strict=True))
