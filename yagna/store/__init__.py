"""The node's SQLite store.

The daemon uses only what is re-exported here; which driver runs SQLite
(stdlib ``sqlite3`` on a worker thread, see ``docs/decisions.md``) is private
to this package. ``Store.transaction`` hands ``fn`` a ``sqlite3.Connection``
because it is SQLite either way.
"""

from yagna.store.db import Store
from yagna.store.errors import (
    AppKeyExists,
    ConstraintError,
    StoreBusyError,
    StoreClosedError,
    StoreError,
    StoreOpenError,
)
from yagna.store.migrations import MIGRATIONS, Migration
from yagna.store.repos import AppKeyInfo, AppKeys, PeerRecord, Peers, PeerSource, Settings

__all__ = [
    "MIGRATIONS",
    "AppKeyExists",
    "AppKeyInfo",
    "AppKeys",
    "ConstraintError",
    "Migration",
    "PeerRecord",
    "PeerSource",
    "Peers",
    "Settings",
    "Store",
    "StoreBusyError",
    "StoreClosedError",
    "StoreError",
    "StoreOpenError",
]
