"""What a requestor asks for (:class:`Task`), what it gets back (:class:`TaskResult`), and progress events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Attempt", "AttemptFinished", "AttemptStarted", "BudgetStopped", "Event", "MarketNote", "Output",
    "ProviderJoined", "ProviderLeft", "Spend", "Task", "TaskFinished", "TaskResult",
]


@dataclass(frozen=True)
class Task:
    """One command to run in the job's image.

    ``inputs`` maps a file name under ``/work/in/`` to a local file uploaded
    before the command; ``outputs`` names files under ``/work/out/`` that are
    downloaded after it. ``params`` are kept for the record (the manifest).
    """

    id: str
    argv: Sequence[str]
    inputs: Mapping[str, Path] = field(default_factory=dict)
    outputs: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or "/" in self.id or self.id in (".", ".."):
            raise ValueError(f"task id {self.id!r}: must be non-empty and contain no '/'")
        if not self.argv:
            raise ValueError(f"task {self.id}: argv is empty")
        if not self.timeout > 0:
            raise ValueError(f"task {self.id}: timeout must be > 0")
        for name in [*self.inputs, *self.outputs]:
            if not name or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"task {self.id}: file name {name!r} must be relative, without '..'")


Outcome = Literal["success", "failure", "timeout", "disagreement", "cancelled"]


@dataclass
class Attempt:
    """One run of a task on one provider."""

    provider_id: str
    agreement_id: str
    seconds: float = 0.0
    outcome: Outcome = "failure"
    error: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_sha256: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    """Output name -> SHA-256 of the downloaded file."""
    files: dict[str, Path] = field(default_factory=dict)
    """Output name -> where it was downloaded."""
    digest: str | None = None
    receipt_verified: bool = False
    cost: int = 0
    """Base units: this attempt's share of its agreement's signed amount (set after settlement)."""


@dataclass
class TaskResult:
    task: Task
    status: Literal["ok", "failed"] = "failed"
    reason: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_sha256: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    """Output name -> the accepted file."""
    output_sha256: dict[str, str] = field(default_factory=dict)
    providers: tuple[str, ...] = ()
    """Providers whose (agreeing) result was accepted."""
    attempts: list[Attempt] = field(default_factory=list)
    verification: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cost(self) -> int:
        """Base units: the shares of every attempt (failed ones too) of the amounts signed to providers."""
        return sum(a.cost for a in self.attempts)


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderJoined:
    provider_id: str
    agreement_id: str
    price_cpu_hour: str
    price_hour: str
    start_fee: str


@dataclass(frozen=True)
class ProviderLeft:
    provider_id: str
    agreement_id: str
    reason: str


@dataclass(frozen=True)
class AttemptStarted:
    task_id: str
    provider_id: str


@dataclass(frozen=True)
class Output:
    task_id: str
    provider_id: str
    stream: Literal["stdout", "stderr"]
    data: str


@dataclass(frozen=True)
class AttemptFinished:
    task_id: str
    provider_id: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class TaskFinished:
    result: TaskResult


@dataclass(frozen=True)
class BudgetStopped:
    message: str


@dataclass(frozen=True)
class MarketNote:
    message: str


@dataclass(frozen=True)
class Spend:
    committed: int
    """Base units the batch may have cost so far (signed, or the SDK's bound of what will be signed)."""
    exposure: int
    """Committed plus the worst case of what is running."""
    limit: int


Event = (ProviderJoined | ProviderLeft | AttemptStarted | Output | AttemptFinished | TaskFinished | BudgetStopped
         | MarketNote | Spend)
