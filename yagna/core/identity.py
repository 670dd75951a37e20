"""Node identity: one ed25519 key per node, named by its libp2p peer id.

The same key signs libp2p transport handshakes and application objects, so
the node id *is* the libp2p peer id (``12D3KooW...``). We compute it here
without importing libp2p (the lightweight SDK imports ``yagna.core``)::

    node_id = base58btc(multihash_identity(protobuf PublicKey{Type: Ed25519, Data: pk}))
            = base58btc(00 24 | 08 01 12 20 | <32-byte public key>)

The daemon hands the same key to libp2p through its 32-byte seed::

    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair
    priv = Ed25519PrivateKey.from_bytes(node_key.seed)   # nacl SigningKey(seed)
    key_pair = KeyPair(priv, priv.get_public_key())      # peer id == node_key.node_id

Key file format (``NodeKey.load_or_create``), UTF-8 text, mode 0600::

    # yagna node key: SECRET, whoever holds it can act as this node.
    # node id: 12D3KooW...
    yagna-node-key/1
    <64 lowercase hex digits: the 32-byte ed25519 seed>

Blank lines and lines starting with ``#`` are ignored (the node id comment
is informational only; the seed is authoritative). The ``/1`` is the format
version so that a future format is refused clearly instead of misread.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import secrets
import stat
from pathlib import Path

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_core_ed25519_is_valid_point

from yagna.core.base58 import b58decode, b58encode
from yagna.core.errors import IdentityError, WireError

__all__ = [
    "NodeKey",
    "node_id_from_public_key",
    "public_key_from_node_id",
    "verify",
    "KEY_FILE_MAGIC",
]

log = logging.getLogger("yagna.identity")

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

# multihash(identity, len 36) + protobuf PublicKey{Type=Ed25519(1), Data=<32 bytes>}
_PEER_ID_PREFIX = bytes((0x00, 0x24, 0x08, 0x01, 0x12, 0x20))
_MAX_NODE_ID_CHARS = 64  # real ones are 52; bounds the base58 bignum work on garbage

KEY_FILE_MAGIC = "yagna-node-key/1"
_MAX_KEY_FILE_SIZE = 4096


# --------------------------------------------------------------------------
# Node ids
# --------------------------------------------------------------------------


def node_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id (``12D3KooW...``) of a raw 32-byte ed25519 public key."""
    _check_public_key(public_key)
    return b58encode(_PEER_ID_PREFIX + bytes(public_key))


def public_key_from_node_id(node_id: str) -> bytes:
    """Extract the ed25519 public key embedded in a node id; :class:`WireError` if invalid."""
    if not isinstance(node_id, str) or len(node_id) > _MAX_NODE_ID_CHARS:
        raise WireError(f"not a node id: {node_id!r:.80}")
    try:
        raw = b58decode(node_id)
    except ValueError as exc:
        raise WireError(f"node id {node_id!r} is not base58: {exc}") from None
    if len(raw) != len(_PEER_ID_PREFIX) + PUBLIC_KEY_SIZE or not raw.startswith(_PEER_ID_PREFIX):
        raise WireError(f"node id {node_id!r} is not an ed25519 libp2p peer id")
    public_key = raw[len(_PEER_ID_PREFIX) :]
    _check_public_key(public_key)
    return public_key


def _check_public_key(public_key: bytes) -> None:
    """Reject wrong sizes and weak (small-order / non-canonical) points."""
    if not isinstance(public_key, (bytes, bytearray)) or len(public_key) != PUBLIC_KEY_SIZE:
        raise WireError(f"an ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
    if not _valid_point(bytes(public_key)):
        raise WireError("not a valid ed25519 public key (weak or off-curve point)")


@functools.lru_cache(maxsize=4096)
def _valid_point(public_key: bytes) -> bool:
    """The point check costs ~74 us and the same few keys (channel parties, peers) recur: cache it."""
    return bool(crypto_core_ed25519_is_valid_point(public_key))


def verify(node_id_or_public_key: str | bytes, data: bytes, signature: bytes) -> None:
    """Check a detached ed25519 signature; raise :class:`WireError` if it does not verify.

    The signer is given either as a node id or as a raw 32-byte public key.
    """
    if isinstance(node_id_or_public_key, str):
        public_key = public_key_from_node_id(node_id_or_public_key)
    else:
        _check_public_key(node_id_or_public_key)
        public_key = bytes(node_id_or_public_key)
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_SIZE:
        raise WireError(f"an ed25519 signature is {SIGNATURE_SIZE} bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(bytes(data), bytes(signature))
    except nacl.exceptions.BadSignatureError:
        raise WireError("signature does not verify") from None


# --------------------------------------------------------------------------
# The node's own key
# --------------------------------------------------------------------------


class NodeKey:
    """This node's ed25519 signing key (a PyNaCl ``SigningKey``) and derived node id."""

    __slots__ = ("_signing_key", "_public_key", "_node_id")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self._public_key = bytes(signing_key.verify_key)
        self._node_id = node_id_from_public_key(self._public_key)

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
            raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes")
        return cls(nacl.signing.SigningKey(bytes(seed)))

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed. Secret: this is what the key file stores."""
        return bytes(self._signing_key)

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        return self._signing_key

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def node_id(self) -> str:
        return self._node_id

    def sign(self, data: bytes) -> bytes:
        """A 64-byte detached ed25519 signature over ``data``."""
        return self._signing_key.sign(bytes(data)).signature

    def __repr__(self) -> str:  # never show the seed
        return f"NodeKey(node_id={self._node_id!r})"

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[NodeKey, bool]:
        """Load the key file at ``path``, creating it if missing; return ``(key, created)``.

        Creation is atomic and never clobbers: the seed is written to a 0600
        temp file in the same directory, fsynced, then hard-linked into place
        (so a concurrent creator cannot be overwritten; the loser loads the
        winner's key). Raises :class:`IdentityError` for unreadable or corrupt
        files, with the path and what to do.
        """
        path = Path(path)
        text = _read_key_file(path)
        if text is not None:
            return cls.from_seed(_parse_key_file(text, path)), False
        key = cls.generate()
        if _create_key_file(path, _format_key_file(key)):
            log.info("created node key %s (node id %s)", path, key.node_id)
            return key, True
        text = _read_key_file(path)  # lost a creation race: use the winner's key
        if text is None:
            raise IdentityError(
                f"cannot create node key file {path}: something is in the way but cannot be "
                "opened (a dangling symlink?); remove it or point the daemon elsewhere"
            )
        return cls.from_seed(_parse_key_file(text, path)), False


# --------------------------------------------------------------------------
# Key file I/O
# --------------------------------------------------------------------------


def _format_key_file(key: NodeKey) -> bytes:
    return (
        "# yagna node key: SECRET, whoever holds it can act as this node.\n"
        f"# node id: {key.node_id}\n"
        f"{KEY_FILE_MAGIC}\n"
        f"{key.seed.hex()}\n"
    ).encode("ascii")


def _parse_key_file(raw: bytes, path: Path) -> bytes:
    corrupt = (
        f"node key file {path} is corrupt ({{}}). Restore it from a backup, or move it "
        "away to create a new identity (a new node id; anything bound to the old one is lost)."
    )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise IdentityError(corrupt.format("not a text file")) from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and lines[0].startswith("yagna-node-key/") and lines[0] != KEY_FILE_MAGIC:
        raise IdentityError(
            f"node key file {path} has format {lines[0]!r}, this yagna reads only "
            f"{KEY_FILE_MAGIC!r}; upgrade yagna"
        )
    if len(lines) != 2 or lines[0] != KEY_FILE_MAGIC:
        raise IdentityError(corrupt.format(f"expected a {KEY_FILE_MAGIC!r} line and a seed line"))
    try:
        seed = bytes.fromhex(lines[1])
    except ValueError:
        raise IdentityError(corrupt.format("the seed is not hex")) from None
    if len(seed) != SEED_SIZE:
        raise IdentityError(corrupt.format(f"the seed is {len(seed)} bytes, not {SEED_SIZE}"))
    return seed


def _read_key_file(path: Path, what: str = "node key") -> bytes | None:
    """The file's bytes, or ``None`` if it does not exist. Tightens loose permissions.
    ``what`` names the secret in messages (the settlement account reuses this)."""
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _io_error("cannot open", path, exc, what) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IdentityError(
                f"{what} path {path} is not a regular file; point the daemon at a key file "
                "or remove what is there so a new key can be created"
            )
        _tighten_permissions(fd, info.st_mode, path, what)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(_MAX_KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise _io_error("cannot read", path, exc, what) from None
    finally:
        os.close(fd)
    if len(raw) > _MAX_KEY_FILE_SIZE:
        raise IdentityError(f"{what} file {path} is corrupt (larger than {_MAX_KEY_FILE_SIZE} bytes)")
    return raw


def _tighten_permissions(fd: int, mode: int, path: Path, what: str = "node key") -> None:
    if not mode & 0o077:
        return
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        log.warning(
            "%s file %s is readable by group/others (mode %o) and could not be "
            "restricted to 0600 (%s); fix its permissions yourself",
            what, path, stat.S_IMODE(mode), exc,
        )
    else:
        log.warning(
            "%s file %s was readable by group/others (mode %o); restricted it to 0600",
            what, path, stat.S_IMODE(mode),
        )


def _create_key_file(path: Path, content: bytes, what: str = "node key") -> bool:
    """Atomically create ``path`` with ``content``; ``False`` if it already exists."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _io_error("cannot create the directory for", path, exc, what) from None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        _write_synced(tmp, content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # Filesystem without hard links: fall back to a (clobbering) rename.
            if path.exists():
                return False
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise _io_error("cannot create", path, exc, what) from None
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _write_synced(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _io_error(action: str, path: Path, exc: OSError, what: str = "node key") -> IdentityError:
    hint = (
        "check that the daemon runs as the user owning the data directory"
        if isinstance(exc, PermissionError)
        else "check the path and the filesystem"
    )
    return IdentityError(f"{action} {what} file {path}: {exc.strerror or exc}; {hint}")


read_secret_file = _read_key_file
"""Public name for other 0600 secrets of the data dir (the settlement account, yagna/chain/account.py)."""
create_secret_file = _create_key_file
