"""Finding the local node for a script that names none: :func:`find_node`.

First as :func:`~requestor_sdk.locate` finds it (an explicit data dir; ``YAGNA_API_URL`` +
``YAGNA_APPKEY``; ``YAGNA_DATA_DIR``; the default data dir, an installed service's); when none
of those runs a node and no data dir was named, the requestor of the devnet (``yagna devnet up``,
under ``<user data root>/devnet``), so that ``yagna devnet up && python script.py`` needs no
settings at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from requestor_sdk.errors import DaemonNotFound
from requestor_sdk.locate import DaemonLocation, locate, locate_in
from yagna.core.paths import DataDir, user_data_root

__all__ = ["devnet_requestor_dir", "find_node"]


def devnet_requestor_dir(root: Path | None = None) -> Path | None:
    """The data dir of the devnet's requestor under ``root`` (default ``<user data root>/devnet``), if one
    was started there on this host's loopback (a NAT testbed's requestor lives in a namespace: not ours)."""
    root = root if root is not None else user_data_root() / "devnet"
    try:
        state = json.loads((root / "devnet.json").read_text())
    except (OSError, ValueError):
        return None
    nodes = state.get("nodes") if isinstance(state, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and node.get("role") == "requestor" and not node.get("netns") \
                and isinstance(node.get("data_dir"), str):
            return Path(node["data_dir"])
    return None


def find_node(data_dir: Path | str | None = None) -> DaemonLocation:
    """The running node a requestor script talks to (see the module's docstring for the order)."""
    try:
        return locate(data_dir)
    except DaemonNotFound as first:
        if data_dir is not None or os.environ.get("YAGNA_DATA_DIR"):
            raise
        devnet = devnet_requestor_dir()
        if devnet is None:
            raise DaemonNotFound(f"{first}; or start a local network: yagna devnet up") from None
        try:
            return locate_in(DataDir(devnet))
        except DaemonNotFound as second:
            raise DaemonNotFound(f"{first}; the devnet's requestor is not running either ({second})") from None
