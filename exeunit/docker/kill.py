"""Killing one command (an exec) of a running container, sparing the init, ``/work`` and other commands.

Docker cannot kill an exec. We freeze the container (``docker pause``: the
freezer cgroup, so nothing forks meanwhile), SIGKILL the exec's process (its
host pid from ``exec_inspect``), every descendant, and every orphan the init
adopted (from the container cgroup's ``cgroup.procs`` and ``/proc/<pid>/stat``),
then thaw. Other running execs' trees are spared. (A command that exits by
itself leaves what it started in the background running, like a shell would;
only a kill sweeps orphans.) This needs the daemon to see the engine's pids and
be allowed to signal them (root, or CAP_KILL); otherwise it falls back to
``kill -KILL -1`` run in the container as uid 1000 (kills every process of the
work, not only this command's; needs a ``kill`` in the image), and as a last
resort kills the container.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Collection
from typing import Any

import docker.errors
import trio

from exeunit import cgroup
from exeunit.docker.cgroups import CgroupView
from exeunit.docker.engine import USER, Engine
from exeunit.errors import RuntimeFailure

_START_WAIT_S = 2.0
"""How long a kill waits for the engine to report a just-started command as running."""


class Killer:
    def __init__(self, engine: Engine, cgroups: CgroupView) -> None:
        self._engine = engine
        self._cgroups = cgroups

    async def kill(self, container_id: str, exec_id: str, spare: Collection[str] = ()) -> None:
        """Kill the exec's process tree and the orphans it left; the init, ``/work`` and the
        trees of the execs in ``spare`` stay."""
        try:
            await self._engine.blocking("container", self._kill_blocking, container_id, exec_id, list(spare))
            return
        except PermissionError:
            pass  # fall back below: we may not signal the engine's processes
        except RuntimeFailure as e:
            if e.code == "container-gone":
                return
            raise
        await self._kill_inside(container_id, exec_id)

    def _exec_pid(self, exec_id: str, *, wait_s: float = 0.0) -> int:
        """The exec's host pid; 0 once it is over. Blocking.

        Right after ``exec_start`` the engine may still report a started command as not running
        (no pid, no exit code yet: its output can arrive before that): wait up to ``wait_s`` for it.
        """
        deadline = time.monotonic() + wait_s
        while True:
            info = self._engine.api().exec_inspect(exec_id)
            if info.get("Running") and info.get("Pid"):
                return int(info["Pid"])
            if info.get("ExitCode") is not None or time.monotonic() >= deadline:
                return 0
            time.sleep(0.01)

    def _kill_blocking(self, container_id: str, exec_id: str, spare: list[str]) -> None:
        api = self._engine.api()
        pid = self._exec_pid(exec_id, wait_s=_START_WAIT_S)
        if pid <= 0:
            return  # already over
        init_pid, dirs = self._cgroups.dirs_of(container_id)
        procs_dir = dirs.get("pids") or dirs.get("freezer") or dirs.get("memory") or dirs.get("cpu")
        if procs_dir is None or not os.path.exists(f"/proc/{pid}"):
            raise PermissionError("the container's processes are out of reach")
        others = [self._exec_pid(e) for e in spare if e != exec_id]
        was_paused = bool(api.inspect_container(container_id)["State"].get("Paused"))
        if not was_paused:
            api.pause(container_id)
        targets: set[int] = set()
        try:
            members = cgroup.parse_pids(self._cgroups.read(procs_dir, "cgroup.procs") or "")
            ppid_of: dict[int, int] = {}
            for p in members:
                text = self._cgroups.read(f"/proc/{p}", "stat")
                ppid = cgroup.parse_proc_stat_ppid(text) if text else None
                if ppid is not None:
                    ppid_of[p] = ppid
            spared: set[int] = {init_pid}
            for o in others:
                if o > 0:
                    spared |= {o} | cgroup.descendants(o, ppid_of)
            # The command, and the orphans of this (or an earlier) command the init
            # adopted, each with all its descendants.
            roots = ({pid} | {p for p, pp in ppid_of.items() if pp == init_pid}) - spared
            targets = set(roots)
            for r in roots:
                targets |= cgroup.descendants(r, ppid_of)
            targets -= spared
            for p in targets:
                try:
                    self.sigkill(p)
                except ProcessLookupError:
                    continue
        finally:
            if not was_paused:
                self._thaw(api, container_id)
        self._wait_dead(targets)

    @staticmethod
    def _wait_dead(pids: set[int], bound_s: float = 3.0) -> None:
        """Return once every killed pid is gone or a zombie (a SIGKILL lands when the cgroup thaws;
        under load the caller could otherwise still see the command listed). Bounded. Blocking."""
        deadline = time.monotonic() + bound_s
        alive = set(pids)
        while alive and time.monotonic() < deadline:
            for pid in list(alive):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                            alive.discard(pid)
                except OSError:
                    alive.discard(pid)
            if alive:
                time.sleep(0.01)

    @staticmethod
    def _thaw(api: Any, container_id: str) -> None:
        """Unpause and make sure it took: under load the next exec otherwise met a paused container (409).

        An unpause that took can still be reported as paused by the next inspect; the unpause tried
        again then fails with "is not paused" (409, or 500 from Docker 28): that is success too."""
        for _ in range(50):
            try:
                api.unpause(container_id)
            except docker.errors.APIError as e:
                if e.status_code != 409 and "is not paused" not in str(e.explanation or e):
                    raise
            if not api.inspect_container(container_id)["State"].get("Paused"):
                return
            time.sleep(0.02)

    @staticmethod
    def sigkill(pid: int) -> None:
        """SIGKILL one host pid (PermissionError when we may not: the caller falls back)."""
        os.kill(pid, signal.SIGKILL)

    async def _kill_inside(self, container_id: str, exec_id: str) -> None:
        """Fallback kill from inside: ``kill -KILL -1`` as uid 1000 (PID 1 is immune)."""
        call = self._engine.call
        try:
            created = await call("container", "exec_create", container_id, ["kill", "-KILL", "-1"], user=USER,
                                 privileged=False)
            await call("container", "exec_start", created["Id"])
            for _ in range(150):
                if not (await call("container", "exec_inspect", exec_id)).get("Running"):
                    return
                await trio.sleep(0.02)
        except RuntimeFailure as e:
            if e.code == "container-gone":
                return
        # Last resort: the container goes (its /work with it); later calls see it stopped.
        await call("container", "kill", container_id)
