"""The exception tree of ``exeunit``.

::

    YagnaError                       (yagna.core) root of everything we raise on purpose
    └── ExeUnitError                 root of the exe-unit's errors
        ├── ScriptError              an exe-script (or one command of it) is malformed;
        │                            ``.index`` names the command, ``.field`` the field
        ├── TransferRefused          a transfer is refused: bad path, wrong sha256,
        │   │                        over the size limit (``.code`` says which)
        │   └── StagingFull          the provider keeps too many unfetched results
        ├── ImageError               an image is missing, or an archive does not match
        │                            the image id it claims to be
        ├── IllegalTransition        an activity state change the table does not allow
        └── RuntimeFailure           the container runtime failed (engine unreachable,
                                     container vanished); ``.code`` for the caller

Failures of the *work* (non-zero exit, timeout, out-of-memory kill) are results,
not exceptions: they come back in :class:`exeunit.runtime.ExecResult`.
"""

from __future__ import annotations

from yagna.core.errors import YagnaError


class ExeUnitError(YagnaError):
    """Root of every error the exe-unit raises on purpose."""

    code = "exeunit-error"


class ScriptError(ExeUnitError):
    """An exe-script is malformed. Raised on remote input: the parser's only error."""

    code = "bad-script"

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None) -> None:
        self.index = index
        self.field = field
        where = ""
        if index is not None:
            where += f"command {index}"
        if field is not None:
            where += (": " if where else "") + f"field {field!r}"
        super().__init__(f"{where}: {message}" if where else message)


class TransferRefused(ExeUnitError):
    """A file or image transfer is refused. ``code`` is one of ``bad-path``,
    ``hash-mismatch``, ``too-large``, ``not-found``, ``relay-limit`` (bigger than a relayed
    connection carries, and there is no direct one)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class StagingFull(TransferRefused):
    """A ``transfer_out`` result would not fit in what the provider keeps for its requestor
    (per activity or in all); code ``staging-full``. Fetched results and ended activities free room."""

    def __init__(self, message: str) -> None:
        super().__init__("staging-full", message)


class ImageError(ExeUnitError):
    """An image is missing or an image archive does not match its image id."""

    code = "image-error"


class IllegalTransition(ExeUnitError):
    """An activity state change that the transition table does not allow."""

    code = "illegal-transition"


class RuntimeFailure(ExeUnitError):
    """The container runtime itself failed (not the work running in it)."""

    def __init__(self, message: str, *, code: str = "runtime-failure") -> None:
        self.code = code
        super().__init__(message)
