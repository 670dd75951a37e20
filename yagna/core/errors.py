"""The exception tree of ``yagna.core``.

::

    YagnaError                 root of every error this project raises on purpose
    ├── WireError              remote input is malformed: garbage CBOR, non-canonical
    │                          encoding, oversized, wrong shape, wrong domain tag,
    │                          bad signature. The *peer* broke the rules.
    ├── EncodeError            we tried to encode a value that has no canonical CBOR
    │                          form. *We* broke the rules (a bug, not bad input).
    ├── IdentityError          the node key file is missing, unreadable or corrupt.
    ├── DataDirError           the data directory cannot be used.
    └── MoneyError             an amount is not a valid token amount (float, negative,
                               too precise, too large, not a number).

Other packages (``market``, ``payments``, ``exeunit``, the daemon) root their own
trees in :class:`YagnaError` so a caller can catch "anything we raise on purpose".
"""


class YagnaError(Exception):
    """Root of every error this project raises on purpose."""


class WireError(YagnaError):
    """Remote input is malformed (the peer broke the rules)."""


class EncodeError(YagnaError):
    """A local value cannot be encoded canonically (we broke the rules)."""


class IdentityError(YagnaError):
    """The node key file is missing, unreadable or corrupt."""


class DataDirError(YagnaError):
    """The node's data directory cannot be used (the message says why and what to do)."""


class MoneyError(YagnaError):
    """An amount is not a valid token amount; the message says why (floats are never money)."""
