"""The exception tree of ``yagna.netlab``.

::

    NetlabError(YagnaError)     the testbed cannot be built, changed or removed
    ├── NotSupported            not Linux, not root, or a tool (ip, iptables) is missing
    ├── TopologyError           a topology description is invalid (names, counts, rates)
    └── CommandFailed           an ``ip``/``iptables``/``sysctl`` command failed (argv, stderr)
"""

from __future__ import annotations

from yagna.core.errors import YagnaError


class NetlabError(YagnaError):
    """Root of the testbed's errors."""


class NotSupported(NetlabError):
    """This machine cannot run the testbed (the message says what is missing)."""


class TopologyError(NetlabError):
    """A topology description is invalid."""


class CommandFailed(NetlabError):
    """A command of the plan failed."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv, self.returncode, self.stderr = argv, returncode, stderr
        super().__init__(f"`{' '.join(argv)}` failed ({returncode}): {stderr.strip() or '(no output)'}")
