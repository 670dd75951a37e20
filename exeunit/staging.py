"""The provider's staging directory: results of ``transfer_out`` kept until their requestor fetches them.

A result is copied out of the container into a file here and served to the
requestor as a blob. Without a bound a requestor could fill the provider's disk
by asking for results it never fetches (issue 11 row 9: 629 MB left behind
forever after three 200 MB transfers). The rules:

- a result file is removed when its requestor has fetched it to the last byte
  (the blob server says so); when its activity is destroyed (the requestor has
  downloaded what it wanted: its batch reports done only after that); otherwise
  :attr:`StagingBounds.ended_grace_s` after its activity ended (a ``terminate``
  command at the end of a script ends the activity before the requestor fetches
  that batch's results; a silent requestor, an ended agreement); and at the
  provider's start (whatever a crash left: results, half-copied files, inputs
  and image archives on their way in);
- what one activity keeps is bounded by the storage its agreement bought (its
  ``/work`` cannot hold more at once either) and by
  :data:`StagingBounds.files_per_activity`; what the node keeps in all by
  :data:`StagingBounds.total_bytes` and :data:`StagingBounds.total_files`;
  past a bound the transfer fails with :class:`~exeunit.errors.StagingFull`
  before a byte is copied, and nothing already kept is lost.

Room is reserved for the largest file the transfer may copy while it copies
(so concurrent transfers cannot overshoot together), then settled to the
file's real size. :class:`StagingBudget` is the accounting (pure);
:class:`Staging` adds the files (their I/O on worker threads).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from exeunit.errors import StagingFull, TransferRefused
from exeunit.runtime import Runtime

log = logging.getLogger("yagna.exeunit.staging")

__all__ = ["Staging", "StagingBounds", "StagingBudget"]


@dataclass(frozen=True)
class StagingBounds:
    total_bytes: int = 8 * 2**30
    """Unfetched results the node keeps in all: what a provider's disk gives to every requestor together."""
    total_files: int = 4096
    files_per_activity: int = 256
    """Unfetched results one activity keeps (its bytes are bounded by the agreement's storage)."""
    ended_grace_s: float = 60.0
    """How long the results of an activity that ended (not destroyed) stay fetchable."""
    sweep_s: float = 5.0
    """How often results past their grace are looked for."""


@dataclass
class _Held:
    activity_id: str
    nbytes: int


class StagingBudget:
    """Bytes and files held per activity and in all; refuses past the bounds. Pure."""

    def __init__(self, bounds: StagingBounds = StagingBounds()) -> None:
        self.bounds = bounds
        self._held: dict[str, _Held] = {}
        """name -> who holds it and how many bytes."""
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def held_by(self, activity_id: str) -> tuple[int, int]:
        """``(bytes, files)`` the activity holds."""
        mine = [h.nbytes for h in self._held.values() if h.activity_id == activity_id]
        return sum(mine), len(mine)

    def names_of(self, activity_id: str) -> list[str]:
        return [name for name, h in self._held.items() if h.activity_id == activity_id]

    def reserve(self, name: str, activity_id: str, *, want: int, activity_bytes: int) -> int:
        """Hold room for a file of up to ``want`` bytes; returns how many bytes it may have
        (``want``, or less when only less is left). ``StagingFull`` when nothing is left."""
        if name in self._held:
            raise ValueError(f"{name} is already held")
        held, files = self.held_by(activity_id)
        b = self.bounds
        if files >= b.files_per_activity:
            raise StagingFull(f"the activity keeps {files} results nobody fetched (at most {b.files_per_activity}); "
                              "fetch them or end the activity")
        if len(self._held) >= b.total_files:
            raise StagingFull(f"the provider keeps {len(self._held)} unfetched results (at most {b.total_files}); "
                              "try again later")
        room = min(want, activity_bytes - held, b.total_bytes - self.total_bytes)
        if room <= 0:
            raise StagingFull(
                f"no room left to keep a result: this activity keeps {held} bytes unfetched "
                f"(at most {activity_bytes}, the storage of its agreement), the provider "
                f"{self.total_bytes} of {b.total_bytes}; fetch the results or end the activity")
        self._held[name] = _Held(activity_id, room)
        self.total_bytes += room
        return room

    def settle(self, name: str, nbytes: int) -> None:
        """The file is written: it holds ``nbytes`` (no more than reserved)."""
        held = self._held[name]
        nbytes = min(nbytes, held.nbytes)
        self.total_bytes -= held.nbytes - nbytes
        held.nbytes = nbytes

    def release(self, name: str) -> bool:
        """Forget a file; False if it was not held."""
        held = self._held.pop(name, None)
        if held is None:
            return False
        self.total_bytes -= held.nbytes
        return True


class Staging:
    """A directory of result files with a :class:`StagingBudget` (see the module docstring)."""

    def __init__(self, root: Path, bounds: StagingBounds = StagingBounds(), *,
                 on_drop: Callable[[str], None] | None = None) -> None:
        """``on_drop(activity_id)`` is told before an activity's files go (e.g. to stop serving them)."""
        self.root = root
        self.budget = StagingBudget(bounds)
        self._on_drop = on_drop
        self._retired: dict[str, float] = {}
        """activity id -> when (trio clock) its files go."""

    async def open(self) -> int:
        """Make the directory and empty it of what a previous run left; returns how many entries went."""
        removed = await trio.to_thread.run_sync(_empty_dir, self.root)
        if removed:
            log.info("removed %d staging files left by a previous run from %s", removed, self.root)
        return removed

    async def take_out(self, runtime: Runtime, container_id: str, src: str, activity_id: str, *,
                       max_bytes: int, digest: Any = None) -> Path:
        """Copy ``src`` out of the container into a new staged file of the activity; returns its path.

        ``digest`` (a hashlib object), when given, gets the file's bytes as they are copied (one pass).

        ``max_bytes`` is the agreement's storage: the largest result and what the activity keeps in all.
        ``StagingFull`` (a ``TransferRefused``) when it does not fit; the runtime's ``TransferRefused`` otherwise.
        """
        path = self.root / f"out-{activity_id}-{secrets.token_hex(8)}"
        room = self.budget.reserve(path.name, activity_id, want=max_bytes, activity_bytes=max_bytes)
        try:
            if digest is None:
                size = await runtime.get_file(container_id, src, str(path), max_bytes=room)
            else:
                size = await runtime.get_file(container_id, src, str(path), max_bytes=room, digest=digest)
        except TransferRefused as exc:
            self.budget.release(path.name)
            await trio.to_thread.run_sync(_unlink, path)
            if exc.code == "too-large" and room < max_bytes:
                raise StagingFull(f"{src} does not fit in the {room} bytes of staging left for this activity "
                                  "(results nobody fetched yet hold the rest); fetch them or end the activity") from exc
            raise
        except BaseException:
            self.budget.release(path.name)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_unlink, path)
            raise
        self.budget.settle(path.name, size)
        return path

    async def remove(self, path: Path) -> None:
        """A staged file is not needed any more (fetched, or a duplicate of one kept)."""
        if path.parent == self.root and self.budget.release(path.name):
            await trio.to_thread.run_sync(_unlink, path)

    def retire(self, activity_id: str) -> None:
        """The activity ended: its files go after the grace (at once if it has none)."""
        if self.budget.names_of(activity_id):
            self._retired.setdefault(activity_id, trio.current_time() + self.budget.bounds.ended_grace_s)
        elif self._on_drop is not None:
            self._on_drop(activity_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Remove the files of activities past their grace."""
        task_status.started()
        while True:
            await trio.sleep(self.budget.bounds.sweep_s)
            now = trio.current_time()
            for activity_id in [a for a, at in self._retired.items() if at <= now]:
                await self.drop(activity_id)

    async def drop(self, activity_id: str) -> int:
        """Remove every file the activity keeps, now; returns how many."""
        self._retired.pop(activity_id, None)
        if self._on_drop is not None:
            self._on_drop(activity_id)
        names = self.budget.names_of(activity_id)
        for name in names:
            self.budget.release(name)
        if names:
            await trio.to_thread.run_sync(_unlink_all, [self.root / n for n in names])
        return len(names)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # e.g. the directory went: nothing left to free
        log.warning("cannot remove staging file %s: %s", path, exc)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        _unlink(path)


def _empty_dir(root: Path) -> int:
    """Create ``root`` and remove everything in it (never following a symlink out of it). Blocking."""
    root.mkdir(parents=True, exist_ok=True)
    removed = 0
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError as exc:
                log.warning("cannot remove %s from the staging directory: %s", entry.path, exc)
    return removed
