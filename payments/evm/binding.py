"""A node's settlement address, bound both ways: ``node id <-> 0x address``.

The node key (ed25519) seals ``{"address", "proof"}`` under the domain
``yagna/settlement-binding/1``; ``proof`` is the settlement key's EIP-191 signature of
``"yagna settlement binding: node <node id>"``. Both directions matter: the node-key seal says
which address a node's vouchers must recover to, and the proof stops a node from claiming an
address it does not hold (someone else's channel deposits as if they were its own). Providers
check a channel's on-chain payer and every voucher's signer against the requestor's bound
address before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from yagna.core.envelope import open_signed, seal
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey

DOMAIN = "yagna/settlement-binding/1"
MAX_BINDING_SIZE = 512


class BindingError(ValueError):
    """A binding that does not verify, with the reason."""


@dataclass(frozen=True)
class Binding:
    node_id: str
    address: str
    """Checksummed 0x address."""
    raw: bytes


def proof_text(node_id: str) -> str:
    return f"yagna settlement binding: node {node_id}"


def make(node_key: NodeKey, settlement_private_key: bytes) -> bytes:
    from payments.evm import load_eth

    load_eth()
    from eth_account import Account
    from eth_account.messages import encode_defunct

    account = Account.from_key(settlement_private_key)
    proof = Account.sign_message(encode_defunct(text=proof_text(node_key.node_id)), settlement_private_key)
    return seal(node_key, DOMAIN, {"address": str(account.address), "proof": bytes(proof.signature)})


def verify(data: bytes, node_id: str | None = None) -> Binding:
    """Check both signatures; ``node_id``, if given, must be the signer. Raises :class:`BindingError`."""
    try:
        env = open_signed(data, domain=DOMAIN, max_size=MAX_BINDING_SIZE, expected_signer=node_id)
    except WireError as exc:
        raise BindingError(f"settlement binding: {exc}") from None
    payload = env.payload
    if not isinstance(payload, dict) or set(payload) != {"address", "proof"}:
        raise BindingError("settlement binding: the payload must be {address, proof}")
    address, proof = payload["address"], payload["proof"]
    if not isinstance(address, str) or not isinstance(proof, bytes) or len(proof) != 65:
        raise BindingError("settlement binding: address must be a string and proof 65 bytes")
    from payments.evm import load_eth

    load_eth()
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from eth_utils import is_checksum_address

    if not is_checksum_address(address):
        raise BindingError(f"settlement binding: {address!r} is not a checksummed 0x address")
    try:
        signer = Account.recover_message(encode_defunct(text=proof_text(env.signer)), signature=proof)
    except Exception as exc:  # eth-keys raises several kinds for bad signatures
        raise BindingError(f"settlement binding: bad proof signature ({exc})") from None
    if signer != address:
        raise BindingError(f"settlement binding: the proof was signed by {signer}, not by {address}")
    return Binding(env.signer, address, bytes(data))
