"""The exception tree of ``yagna.store``.

::

    StoreError                 (a YagnaError) the node database failed us
    ├── StoreOpenError         cannot open: missing/unwritable directory, corrupt
    │                          file, or a schema newer than this program knows
    ├── StoreClosedError       the store was used after ``close()`` (a bug)
    ├── StoreBusyError         another connection held the write lock past the
    │                          busy timeout (usually a second daemon on the same
    │                          data directory)
    └── ConstraintError        a UNIQUE/CHECK/FOREIGN KEY constraint refused a write
        └── AppKeyExists       an app key with that name already exists

Every ``sqlite3.Error`` is mapped to one of these once, at the worker boundary
in :mod:`yagna.store.db`; nothing above the store sees ``sqlite3`` exceptions.
Exceptions raised by a caller's own ``transaction`` function pass through
unchanged (after the rollback).
"""

from yagna.core.errors import YagnaError


class StoreError(YagnaError):
    """The node database failed; the message says what to do."""


class StoreOpenError(StoreError):
    """The database cannot be opened or migrated."""


class StoreClosedError(StoreError):
    """The store was used after it was closed."""


class StoreBusyError(StoreError):
    """The write lock was not obtained within the busy timeout."""


class ConstraintError(StoreError):
    """A constraint of the schema refused the write."""


class AppKeyExists(ConstraintError):
    """An app key with that name already exists."""
