"""The Python SDK for requestor scripts: talks to a local daemon over its REST API.

It imports only ``yagna.core`` from this project, never daemon internals.

::

    from requestor_sdk import Requestor, Task

    async with Requestor(image="local/busybox:1", budget="1") as r:
        for result in await r.run([Task("a", ["echo", "hi"])], redundancy=2):
            print(result.task.id, result.status, result.stdout)

or, from a plain script, ``requestor_sdk.run_tasks([...], image=..., budget=...)``.
"""

from requestor_sdk.budget import Budget, Pricing, parse_tokens, tokens
from requestor_sdk.errors import (
    ApiError, BudgetError, DaemonNotFound, DaemonUnreachable, JobFileError, SdkError,
)
from requestor_sdk.jobfile import Job, load_job, parse_job
from requestor_sdk.locate import DaemonLocation, locate
from requestor_sdk.requestor import InsufficientFunds, Market, Requestor
from requestor_sdk.sync import run_tasks
from requestor_sdk.tasks import (
    Attempt, AttemptFinished, AttemptStarted, BudgetStopped, Event, MarketNote, Output, ProviderJoined,
    ProviderLeft, Spend, Task, TaskFinished, TaskResult,
)
from requestor_sdk.verify import Decision, decide, result_digest

__all__ = [
    "ApiError", "Attempt", "AttemptFinished", "AttemptStarted", "Budget", "BudgetError", "BudgetStopped",
    "DaemonLocation", "DaemonNotFound", "DaemonUnreachable", "Decision", "Event", "InsufficientFunds", "Job",
    "JobFileError", "Market", "MarketNote", "Output", "Pricing", "ProviderJoined", "ProviderLeft", "Requestor",
    "SdkError", "Spend", "Task", "TaskFinished", "TaskResult", "decide", "load_job", "locate", "parse_job",
    "parse_tokens", "result_digest", "run_tasks", "tokens",
]
