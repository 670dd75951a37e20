"""Node keys: libp2p-compatible node ids, signatures, and the key file."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from yagna.core import identity
from yagna.core.base58 import b58decode, b58encode
from yagna.core.errors import IdentityError, WireError
from yagna.core.identity import (
    KEY_FILE_MAGIC,
    NodeKey,
    node_id_from_public_key,
    public_key_from_node_id,
    verify,
)

seeds = st.binary(min_size=32, max_size=32)
SETTINGS = settings(max_examples=25, deadline=None)


def libp2p_key_pair(key: NodeKey) -> KeyPair:
    """How the daemon hands a NodeKey to libp2p: through its 32-byte seed."""
    private = Ed25519PrivateKey.from_bytes(key.seed)
    return KeyPair(private, private.get_public_key())


# -- libp2p compatibility -----------------------------------------------------------


@SETTINGS
@given(seeds)
def test_node_id_is_the_libp2p_peer_id(seed: bytes) -> None:
    key = NodeKey.from_seed(seed)
    pair = libp2p_key_pair(key)
    assert ID.from_pubkey(pair.public_key).to_base58() == key.node_id
    assert key.node_id.startswith("12D3KooW")
    assert pair.public_key.to_bytes() == key.public_key


@SETTINGS
@given(seeds, st.binary(max_size=200))
def test_signatures_interoperate_with_libp2p(seed: bytes, data: bytes) -> None:
    key = NodeKey.from_seed(seed)
    pair = libp2p_key_pair(key)
    signature = key.sign(data)
    assert len(signature) == 64
    assert pair.public_key.verify(data, signature)
    verify(key.node_id, data, pair.private_key.sign(data))


def test_libp2p_generated_key_round_trips() -> None:
    pair = KeyPair(private := Ed25519PrivateKey.new(), private.get_public_key())
    peer_id = ID.from_pubkey(pair.public_key).to_base58()
    assert public_key_from_node_id(peer_id) == pair.public_key.to_bytes()
    assert node_id_from_public_key(pair.public_key.to_bytes()) == peer_id


def test_known_vector() -> None:
    key = NodeKey.from_seed(bytes(32))
    assert key.public_key.hex() == "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
    assert key.node_id == "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    assert b58decode(key.node_id) == bytes.fromhex("002408011220") + key.public_key


# -- node ids ---------------------------------------------------------------------


@SETTINGS
@given(seeds)
def test_public_key_round_trip(seed: bytes) -> None:
    key = NodeKey.from_seed(seed)
    assert public_key_from_node_id(key.node_id) == key.public_key


@pytest.mark.parametrize(
    "node_id",
    [
        "",
        "1",
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXT",  # one char short
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTNN",  # one char long
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXT0",  # '0' is not base58
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTl",  # nor 'l'
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # sha256 multihash (RSA-style id)
        "16Uiu2HAkwF5vG9S8rJ5iA4L4EBDZtzLU4G6vEMWPy5JX9ZQ1xD5T",  # secp256k1 id
        "1" * 5000,  # long garbage is refused before any bignum work
        b"12D3KooW",
        None,
    ],
    ids=repr,
)
def test_public_key_from_invalid_node_id(node_id: object) -> None:
    with pytest.raises(WireError):
        public_key_from_node_id(node_id)  # type: ignore[arg-type]


def test_weak_public_keys_are_rejected() -> None:
    identity_point = bytes([1]) + bytes(31)  # small order
    for bad in (identity_point, bytes(32), b"\xff" * 32, b"short"):
        with pytest.raises(WireError):
            node_id_from_public_key(bad)
    forged_id = b58encode(bytes.fromhex("002408011220") + identity_point)
    with pytest.raises(WireError):
        public_key_from_node_id(forged_id)


# -- verify -------------------------------------------------------------------------


def test_verify_accepts_node_id_or_public_key() -> None:
    key = NodeKey.generate()
    signature = key.sign(b"data")
    verify(key.node_id, b"data", signature)
    verify(key.public_key, b"data", signature)


def test_verify_rejects_bad_signatures() -> None:
    key, other = NodeKey.generate(), NodeKey.generate()
    signature = key.sign(b"data")
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    cases = [
        (key.node_id, b"datA", signature),
        (key.node_id, b"data", forged),
        (other.node_id, b"data", signature),
        (key.node_id, b"data", signature[:-1]),
        (key.node_id, b"data", signature + b"\0"),
        (key.node_id, b"data", bytes(64)),
        (key.public_key[:31], b"data", signature),
        (12345, b"data", signature),
    ]
    for signer, data, sig in cases:
        with pytest.raises(WireError):
            verify(signer, data, sig)  # type: ignore[arg-type]


# -- NodeKey ------------------------------------------------------------------------


def test_from_seed_validates_length() -> None:
    with pytest.raises(ValueError):
        NodeKey.from_seed(b"\0" * 31)
    assert NodeKey.from_seed(bytes(range(32))).seed == bytes(range(32))


def test_repr_does_not_leak_the_seed() -> None:
    key = NodeKey.generate()
    assert key.node_id in repr(key)
    assert key.seed.hex() not in repr(key)


def test_generated_keys_differ() -> None:
    assert NodeKey.generate().node_id != NodeKey.generate().node_id


# -- key file -----------------------------------------------------------------------


def test_create_then_reload(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key, created = NodeKey.load_or_create(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = NodeKey.load_or_create(path)
    assert not created_again
    assert again.node_id == key.node_id and again.seed == key.seed
    assert os.listdir(tmp_path) == ["node.key"]  # no temp file left behind


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key, _ = NodeKey.load_or_create(path)
    lines = path.read_text().splitlines()
    assert lines[-2:] == [KEY_FILE_MAGIC, key.seed.hex()]
    assert any(key.node_id in line for line in lines if line.startswith("#"))


def test_handwritten_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_text(f"\n# comment\n  {KEY_FILE_MAGIC}  \r\n{'ab' * 32}\n\n")
    path.chmod(0o600)
    key, created = NodeKey.load_or_create(path)
    assert not created and key.seed == bytes.fromhex("ab" * 32)


def test_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "node.key"
    _, created = NodeKey.load_or_create(path)
    assert created and path.is_file()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "corrupt"),
        (b"\x00" * 32, "corrupt"),  # a raw seed is not our format
        (os.urandom(64) + b"\xff", "corrupt"),
        (f"{KEY_FILE_MAGIC}\n".encode(), "corrupt"),
        (f"{KEY_FILE_MAGIC}\n{'ab' * 31}\n".encode(), "seed is 31 bytes"),
        (f"{KEY_FILE_MAGIC}\n{'zz' * 32}\n".encode(), "not hex"),
        (f"{KEY_FILE_MAGIC}\n{'ab' * 32}\nextra\n".encode(), "corrupt"),
        (f"{'ab' * 32}\n".encode(), "corrupt"),
        (b"yagna-node-key/2\nwhatever\n", "upgrade yagna"),
        (b"#" * 5000, "larger than"),
    ],
)
def test_corrupt_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match=match) as info:
        NodeKey.load_or_create(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content  # never overwritten


def test_loose_permissions_are_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "node.key"
    key, _ = NodeKey.load_or_create(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="yagna.identity"):
        again, _ = NodeKey.load_or_create(path)
    assert again.node_id == key.node_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("0600" in r.getMessage() and r.name == "yagna.identity" for r in caplog.records)


def test_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="not a regular file") as info:
        NodeKey.load_or_create(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(IdentityError) as info:
        NodeKey.load_or_create(blocker / "node.key")
    assert "node.key" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    NodeKey.load_or_create(path)
    path.chmod(0o000)
    try:
        with pytest.raises(IdentityError, match="owning the data directory"):
            NodeKey.load_or_create(path)
    finally:
        path.chmod(0o600)


def test_create_never_clobbers_an_existing_file(tmp_path: Path) -> None:
    """The loser of a creation race keeps the winner's file (hard-link, not rename)."""
    path = tmp_path / "node.key"
    winner, _ = NodeKey.load_or_create(path)
    before = path.read_bytes()
    assert identity._create_key_file(path, b"loser") is False
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["node.key"]


def test_lost_race_loads_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node.key"
    winner = NodeKey.generate()
    real_create = identity._create_key_file

    def racing_create(target: Path, content: bytes) -> bool:
        real_create(target, identity._format_key_file(winner))  # the other process wins
        return real_create(target, content)

    monkeypatch.setattr(identity, "_create_key_file", racing_create)
    key, created = NodeKey.load_or_create(path)
    assert not created and key.node_id == winner.node_id


# -- base58 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"\0", "1"),
        (b"\0\0\0\x28\x7f\xb4\xcd", "111233QC4"),
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
        (b"\x61", "2g"),
        (bytes.fromhex("626262"), "a3gV"),
        (bytes.fromhex("00eb15231dfceb60925886b67d065299925915aeb172c06647"), "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ],
)
def test_base58_vectors(raw: bytes, text: str) -> None:
    assert b58encode(raw) == text
    assert b58decode(text) == raw


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_base58_round_trip(raw: bytes) -> None:
    assert b58decode(b58encode(raw)) == raw


@pytest.mark.parametrize("text", ["0", "O", "I", "l", "abc+", " 1", "\u00e9"])
def test_base58_rejects_bad_characters(text: str) -> None:
    with pytest.raises(ValueError):
        b58decode(text)


def test_libp2p_public_key_type_matches() -> None:
    """Guard the assumption the daemon relies on: libp2p's ed25519 key is nacl's."""
    key = NodeKey.generate()
    public = Ed25519PublicKey.from_bytes(key.public_key)
    assert public.verify(b"x", key.sign(b"x"))


def test_permission_denied_names_the_path_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs as root too: simulate EACCES at open()."""
    path = tmp_path / "node.key"
    NodeKey.load_or_create(path)
    real_open = os.open

    def denied(target: object, *args: object, **kwargs: object) -> int:
        if Path(str(target)) == path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(identity.os, "open", denied)
    with pytest.raises(IdentityError, match="Permission denied") as info:
        NodeKey.load_or_create(path)
    assert str(path) in str(info.value) and "owning the data directory" in str(info.value)


def test_dangling_symlink_in_the_way(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.symlink_to(tmp_path / "missing" / "target")
    with pytest.raises(IdentityError, match="dangling symlink"):
        NodeKey.load_or_create(path)


def test_fifo_in_the_way_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    os.mkfifo(path)
    with pytest.raises(IdentityError, match="not a regular file"):
        NodeKey.load_or_create(path)
