"""The exception tree of ``requestor_sdk``.

::

    SdkError(YagnaError)
    └── DaemonNotFound     no running node could be located (the message says how to start one)
"""

from yagna.core.errors import YagnaError


class SdkError(YagnaError):
    """Root of the SDK's errors."""


class DaemonNotFound(SdkError):
    """No running yagna node could be located."""
