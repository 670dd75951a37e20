"""The Python SDK for requestor scripts: talks to a local daemon over its REST API.

It imports only ``yagna.core`` from this project, never daemon internals.

::

    from requestor_sdk import Requestor, Task

    async with Requestor(image="local/busybox:1", budget="1") as r:
        for result in await r.run([Task("a", ["echo", "hi"])], redundancy=2):
            print(result.task.id, result.status, result.stdout)

or, from a plain script, ``requestor_sdk.run_tasks([...], image=..., budget=...)``.
"""

from typing import TYPE_CHECKING, Any

# The names below load on first use (PEP 562): `yagna market offers` needs only
# `locate` and must not pay for trio and the requestor machinery.
_EXPORTS = {
    "requestor_sdk.budget": ("Budget", "Pricing", "parse_tokens", "tokens"),
    "requestor_sdk.jobfile": ("Job", "load_job", "parse_job"),
    "requestor_sdk.local_node": ("find_node",),
    "requestor_sdk.requestor": ("InsufficientFunds", "Market", "Requestor"),
    "requestor_sdk.services": (
        "DeployFailed", "Deployment", "DeploymentEnded", "DeploymentStatus", "LogLine", "LogStream", "NoSuchEndpoint",
        "NotHealthy", "PortMap", "ReplicaStatus", "Services",
    ),
    "requestor_sdk.sync": ("run_tasks",),
    "requestor_sdk.tasks": (
        "Attempt", "AttemptFinished", "AttemptStarted", "BudgetStopped", "Event", "MarketNote", "Output",
        "ProviderJoined", "ProviderLeft", "Spend", "Task", "TaskFinished", "TaskResult",
    ),
    "requestor_sdk.verify": ("Decision", "decide", "result_digest"),
}
# Light, and ``locate`` is also a submodule's name: imported here so the function wins.
from requestor_sdk.errors import (  # noqa: E402
    ApiError, BudgetError, DaemonNotFound, DaemonUnreachable, JobFileError, SdkError,
)
from requestor_sdk.locate import DaemonLocation, locate  # noqa: E402

_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:
    from requestor_sdk.budget import Budget, Pricing, parse_tokens, tokens
    from requestor_sdk.jobfile import Job, load_job, parse_job
    from requestor_sdk.local_node import find_node
    from requestor_sdk.requestor import InsufficientFunds, Market, Requestor
    from requestor_sdk.services import (
        DeployFailed, Deployment, DeploymentEnded, DeploymentStatus, LogLine, LogStream, NoSuchEndpoint, NotHealthy,
        PortMap, ReplicaStatus, Services,
    )
    from requestor_sdk.sync import run_tasks
    from requestor_sdk.tasks import (
        Attempt, AttemptFinished, AttemptStarted, BudgetStopped, Event, MarketNote, Output, ProviderJoined,
        ProviderLeft, Spend, Task, TaskFinished, TaskResult,
    )
    from requestor_sdk.verify import Decision, decide, result_digest


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'requestor_sdk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ApiError", "Attempt", "AttemptFinished", "AttemptStarted", "Budget", "BudgetError", "BudgetStopped",
    "DaemonLocation", "DaemonNotFound", "DaemonUnreachable", "Decision", "DeployFailed", "Deployment",
    "DeploymentEnded", "DeploymentStatus", "Event", "InsufficientFunds", "Job", "JobFileError", "LogLine",
    "LogStream", "Market", "MarketNote", "NoSuchEndpoint", "NotHealthy", "Output", "PortMap", "Pricing",
    "ProviderJoined", "ProviderLeft", "ReplicaStatus", "Requestor", "SdkError", "Services", "Spend", "Task",
    "TaskFinished", "TaskResult", "decide", "find_node", "load_job", "locate", "parse_job", "parse_tokens",
    "result_digest", "run_tasks", "tokens",
]
