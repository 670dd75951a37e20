"""Where a node keeps its files. Shared by the daemon, the CLI and the SDK.

Data dir layout: ``node.key`` (identity, 0600), ``yagna.db`` (store),
``app-key`` (the local bearer token, 0600), ``node.json`` (written by the
running daemon: node id, pid, API URL, p2p addresses; removed on clean exit),
``yagna.log`` (when started in the background by ``yagna devnet``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from yagna.core.errors import DataDirError


def user_data_root() -> Path:
    """``$XDG_DATA_HOME/yagna`` (default ``~/.local/share/yagna``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "yagna"


def default_data_dir() -> Path:
    """``$YAGNA_DATA_DIR``, else ``<user data root>/node``."""
    env = os.environ.get("YAGNA_DATA_DIR")
    return Path(env) if env else user_data_root() / "node"


SYSTEM_DATA_DIR = Path("/var/lib/yagna")
"""The data dir of a node installed as a system service (``yagna service install``)."""


def client_data_dir() -> Path:
    """The data dir a client command uses when ``--data-dir`` is not given, in this order:
    ``$YAGNA_DATA_DIR``; the user's default (:func:`default_data_dir`) when a node runs there;
    :data:`SYSTEM_DATA_DIR` when a node runs there; the user's default."""
    env = os.environ.get("YAGNA_DATA_DIR")
    if env:
        return Path(env)
    user = user_data_root() / "node"
    if not node_running(user) and node_running(SYSTEM_DATA_DIR):
        return SYSTEM_DATA_DIR
    return user


def node_running(path: Path) -> bool:
    """Whether the ``node.json`` of data dir ``path`` names a live process (False when unreadable)."""
    try:
        info = json.loads((Path(path) / "node.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    pid = info.get("pid") if isinstance(info, dict) else None
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31 and process_alive(pid)


class DataDir:
    """The files of one node's data directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    key_file = property(lambda self: self.path / "node.key")
    settlement_key_file = property(lambda self: self.path / "settlement.key")
    """The secp256k1 settlement account (0600; yagna/chain/account.py)."""
    db_file = property(lambda self: self.path / "yagna.db")
    app_key_file = property(lambda self: self.path / "app-key")
    node_file = property(lambda self: self.path / "node.json")
    log_file = property(lambda self: self.path / "yagna.log")

    def prepare(self) -> None:
        """Create the directory (mode 0700) or explain why it cannot be used."""
        if self.path.exists() and not self.path.is_dir():
            raise DataDirError(
                f"data dir {self.path} exists and is not a directory; pick another --data-dir"
            )
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(
                f"cannot create data dir {self.path}: {exc.strerror}; pick another --data-dir"
            ) from None
        if not os.access(self.path, os.R_OK | os.W_OK | os.X_OK):
            raise DataDirError(
                f"data dir {self.path} is not readable and writable by this user; "
                "fix its permissions or pick another --data-dir"
            )


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (killed but not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
