"""Finding the local daemon: the same conventions as Golem's tools.

Order: an explicit data dir; else ``YAGNA_API_URL`` + ``YAGNA_APPKEY``; else
``YAGNA_DATA_DIR``; else the user's default data dir when a node runs there;
else ``/var/lib/yagna`` (a node installed by ``yagna service install``) when a
node runs there; else the user's default data dir. A data dir gives the API URL
(``node.json``, written by the running daemon) and the local app key
(``app-key``), so scripts need no other settings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from requestor_sdk.errors import DaemonNotFound
from yagna.core import paths
from yagna.core.paths import DataDir, process_alive


@dataclass(frozen=True)
class DaemonLocation:
    api_url: str
    app_key: str
    data_dir: Path | None = None
    node_id: str | None = None
    pid: int | None = None


def locate(data_dir: Path | str | None = None) -> DaemonLocation:
    if data_dir is None:
        url, key = os.environ.get("YAGNA_API_URL"), os.environ.get("YAGNA_APPKEY")
        if url and key:
            return DaemonLocation(api_url=url.rstrip("/"), app_key=key)
    if data_dir is not None:
        return locate_in(DataDir(data_dir))
    try:
        return locate_in(DataDir(paths.client_data_dir()))
    except DaemonNotFound as exc:
        system = paths.SYSTEM_DATA_DIR
        if not os.environ.get("YAGNA_DATA_DIR") and system.is_dir() and not os.access(system, os.R_OK | os.X_OK):
            raise DaemonNotFound(f"{exc}; a node installed as a service keeps its data in {system}, readable "
                                 "only by its user: run this command with sudo (or as that user)") from None
        raise


def locate_in(data: DataDir) -> DaemonLocation:
    start = f"start one with: yagna service run --data-dir {data.path}"
    try:
        info = json.loads(data.node_file.read_text())
    except FileNotFoundError:
        raise DaemonNotFound(f"no node is running with data dir {data.path}; {start}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise DaemonNotFound(f"cannot read {data.node_file}: {exc!s:.200}; {start}") from None
    if not isinstance(info, dict) or not isinstance(info.get("api_url"), str):
        raise DaemonNotFound(f"{data.node_file} is not a node file (no api_url); {start}")
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31 or not process_alive(pid):
        raise DaemonNotFound(
            f"the node of data dir {data.path} is not running (pid {pid} is gone); {start}"
        )
    try:
        key = data.app_key_file.read_text().strip()
    except OSError as exc:
        raise DaemonNotFound(f"cannot read the app key {data.app_key_file}: {exc.strerror}") from None
    return DaemonLocation(
        api_url=str(info["api_url"]).rstrip("/"),
        app_key=key,
        data_dir=data.path,
        node_id=info.get("node_id"),
        pid=pid,
    )

