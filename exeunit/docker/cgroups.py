"""Where a container's cgroup lives on this host, and reading its files (blocking; worker threads).

Found through the container init's ``/proc/<pid>/cgroup`` and our mountinfo
(:mod:`exeunit.cgroup` parses both, cgroup v1 and v2). Cached per container
while its init lives. Shared by the worker threads: every cache operation
tolerates another thread having changed the entry meanwhile.
"""

from __future__ import annotations

import os

from exeunit import cgroup
from exeunit.docker.engine import Engine
from exeunit.errors import RuntimeFailure

CONTROLLERS = ("memory", "cpuacct", "cpu", "pids", "freezer")


class CgroupView:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.dirs: dict[tuple[str, int], dict[str, str | None]] = {}
        """(container id, init host pid) -> {controller: dir or None}."""

    def cached(self, container_id: str) -> tuple[int, dict[str, str | None]] | None:
        """What :meth:`dirs_of` knows without asking the engine: None unless the container's init still lives.

        Checked by the init's ``/proc/<pid>/cgroup`` still naming the container.
        """
        for (cid, pid), known in list(self.dirs.items()):
            if cid == container_id:
                text = self.read(f"/proc/{pid}", "cgroup")
                if text is not None and container_id in text:
                    return pid, known
                self.dirs.pop((cid, pid), None)  # another worker thread may have dropped it already
        return None

    def dirs_of(self, container_id: str) -> tuple[int, dict[str, str | None]]:
        """(init host pid, {controller: dir or None}) of a running container. Blocking.

        Cached per container while its init lives (:meth:`cached`: no API call).
        """
        known = self.cached(container_id)
        if known is not None:
            return known
        info = self._engine.api().inspect_container(container_id)
        pid = int(info["State"].get("Pid") or 0)
        if pid <= 0:
            raise RuntimeFailure(f"container {container_id[:12]} is not running", code="container-state")
        key = (container_id, pid)
        dirs = self.dirs.get(key)
        if dirs is None:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    proc = cgroup.parse_proc_cgroup(f.read())
                with open("/proc/self/mountinfo") as f:
                    mounts = cgroup.parse_mountinfo(f.read())
            except OSError:
                proc, mounts = {}, []
            dirs = {c: cgroup.cgroup_dir(c, proc, mounts) for c in CONTROLLERS}
            for c, d in list(dirs.items()):
                if d is not None and not os.path.isdir(d):
                    dirs[c] = None
            self.dirs[key] = dirs
        return pid, dirs

    def forget(self, container_id: str) -> None:
        for key in [k for k in list(self.dirs) if k[0] == container_id]:
            self.dirs.pop(key, None)  # another worker thread may drop it first

    @staticmethod
    def read(d: str | None, name: str) -> str | None:
        """The text of ``d/name``, or None when it cannot be read (or ``d`` is None)."""
        if d is None:
            return None
        try:
            with open(os.path.join(d, name)) as f:
                return f.read()
        except OSError:
            return None

    def oom_state(self, container_id: str) -> tuple[int | None, int | None]:
        """(oom kills, memory failcnt) of the container's memory cgroup. Blocking."""
        try:
            _, dirs = self.dirs_of(container_id)
        except RuntimeFailure:
            return None, None
        d = dirs.get("memory")
        text = self.read(d, "memory.oom_control") or self.read(d, "memory.events")
        kills = cgroup.oom_kills(text) if text else None
        fail = self.read(d, "memory.failcnt")
        return kills, (cgroup.parse_int(fail) if fail else None)
