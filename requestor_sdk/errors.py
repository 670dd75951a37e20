"""The exception tree of ``requestor_sdk``.

::

    SdkError(YagnaError)
    ├── DaemonNotFound     no running node could be located (the message says how to start one)
    ├── ApiError           the local daemon refused a request (``status``, ``code``)
    │   └── DaemonUnreachable   the local daemon did not answer at all
    ├── JobFileError       a batch job file is invalid (``field`` and ``line`` say where)
    └── BudgetError        a budget or price setting is invalid

Failures of providers or of single tasks are not exceptions: they are part of
a task's result (:class:`requestor_sdk.TaskResult`), because a batch goes on
when one provider fails.
"""

from yagna.core.errors import YagnaError


class SdkError(YagnaError):
    """Root of the SDK's errors."""


class DaemonNotFound(SdkError):
    """No running yagna node could be located."""


class ApiError(SdkError):
    """The local daemon answered a request with an error.

    ``status`` is the HTTP status, ``code`` the daemon's error code when it
    sent one (``insufficient-funds``, ``provider-unreachable``, ...).
    """

    def __init__(self, message: str, *, status: int = 0, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DaemonUnreachable(ApiError):
    """The local daemon did not answer (it stopped, or the URL is wrong)."""


class JobFileError(SdkError):
    """A job file is invalid; ``field`` (dotted, e.g. ``task[2].params``) and ``line`` say where."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None,
                 line: int | None = None) -> None:
        where = ":".join(p for p in (path, str(line) if line else None) if p)
        prefix = f"{where}: " if where else ""
        fld = f"{field}: " if field else ""
        super().__init__(f"{prefix}{fld}{message}")
        self.path, self.field, self.line = path, field, line


class BudgetError(SdkError):
    """A budget, price cap or amount given to the SDK is invalid."""
