"""The exe-unit: exe-scripts, the activity state machine, container limits, transfers, the runtime interface.

Sans-io at its core (commands, activity, paths, transfer, limits, cgroup and
image-archive parsing); :mod:`exeunit.docker_runtime` is the one module that
does I/O (docker-py on worker threads) and is imported on its own, so that
importing the package does not need the ``docker`` library.
"""

from exeunit.activity import Activity, Batch, Event, State
from exeunit.commands import (
    Command,
    Deploy,
    Run,
    Start,
    Terminate,
    TransferIn,
    TransferOut,
    parse_script,
    script_to_wire,
)
from exeunit.errors import (
    ExeUnitError,
    IllegalTransition,
    ImageError,
    RuntimeFailure,
    ScriptError,
    TransferRefused,
)
from exeunit.limits import limits_from_agreement, narrow
from exeunit.paths import container_path
from exeunit.runtime import ContainerLimits, ContainerSpec, ExecResult, Runtime, Usage
from exeunit.transfer import Sha256Sink, sha256_file

__all__ = [
    "Activity",
    "Batch",
    "Command",
    "ContainerLimits",
    "ContainerSpec",
    "Deploy",
    "Event",
    "ExecResult",
    "ExeUnitError",
    "IllegalTransition",
    "ImageError",
    "Run",
    "Runtime",
    "RuntimeFailure",
    "ScriptError",
    "Sha256Sink",
    "Start",
    "State",
    "Terminate",
    "TransferIn",
    "TransferOut",
    "Usage",
    "container_path",
    "limits_from_agreement",
    "narrow",
    "parse_script",
    "script_to_wire",
    "sha256_file",
]
