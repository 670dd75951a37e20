"""The settlement account file and the two-way binding of node id and 0x address (issue 14)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from payments.evm import binding
from payments.evm.binding import BindingError
from yagna.chain.account import SettlementAccount
from yagna.core.envelope import seal
from yagna.core.errors import IdentityError
from yagna.core.identity import NodeKey


def test_created_once_mode_0600_and_loaded_back(tmp_path: Path) -> None:
    path = tmp_path / "settlement.key"
    account, created = SettlementAccount.load_or_create(path)
    assert created and account.address.startswith("0x") and len(account.address) == 42
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = SettlementAccount.load_or_create(path)
    assert not created and again == account
    assert account.private_key.hex() not in repr(account)


def test_loose_permissions_are_tightened_and_a_corrupt_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "settlement.key"
    SettlementAccount.load_or_create(path)
    os.chmod(path, 0o644)
    SettlementAccount.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("yagna-settlement-key/1\nzz\n")
    with pytest.raises(IdentityError, match="settlement key file .* is corrupt .*not hex"):
        SettlementAccount.load_or_create(path)
    path.write_text("yagna-settlement-key/1\n" + "00" * 32 + "\n")
    with pytest.raises(IdentityError, match="not a secp256k1 private key"):
        SettlementAccount.load_or_create(path)


def test_a_binding_verifies_both_ways(tmp_path: Path) -> None:
    node = NodeKey.generate()
    account, _ = SettlementAccount.load_or_create(tmp_path / "settlement.key")
    raw = binding.make(node, account.private_key)
    got = binding.verify(raw, node.node_id)
    assert (got.node_id, got.address) == (node.node_id, account.address)
    with pytest.raises(BindingError, match="signed by .*, expected"):
        binding.verify(raw, NodeKey.generate().node_id)


def test_a_node_cannot_bind_an_address_it_does_not_hold(tmp_path: Path) -> None:
    victim, _ = SettlementAccount.load_or_create(tmp_path / "victim.key")
    mine, _ = SettlementAccount.load_or_create(tmp_path / "mine.key")
    liar = NodeKey.generate()
    # the liar's own proof, with the victim's address put in its place
    honest = binding.verify(binding.make(liar, mine.private_key))
    from yagna.core.envelope import open_signed

    proof = open_signed(honest.raw).payload["proof"]  # type: ignore[index]
    forged = seal(liar, binding.DOMAIN, {"address": victim.address, "proof": proof})
    with pytest.raises(BindingError, match="not by"):
        binding.verify(forged)
    # a proof made for another node id does not carry over either
    other = binding.make(NodeKey.generate(), victim.private_key)
    stolen = open_signed(other).payload["proof"]  # type: ignore[index]
    with pytest.raises(BindingError, match="not by"):
        binding.verify(seal(liar, binding.DOMAIN, {"address": victim.address, "proof": stolen}))


@pytest.mark.parametrize("payload", [
    {"address": "0xabc", "proof": b"\x00" * 65},
    {"address": 5, "proof": b""},
    {"address": "0x" + "ab" * 20},
    ["not", "a", "map"],
])
def test_malformed_bindings_are_refused(payload: object) -> None:
    with pytest.raises(BindingError):
        binding.verify(seal(NodeKey.generate(), binding.DOMAIN, payload))
    with pytest.raises(BindingError):
        binding.verify(b"\xff" * 600)
