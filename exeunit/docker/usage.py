"""Usage counters of a container: duration, cpu seconds, peak memory.

Duration from the container's ``StartedAt`` (to ``FinishedAt`` once stopped);
cpu seconds and peak memory from its cgroup (:mod:`exeunit.docker.cgroups`);
``docker stats`` (one shot) when the cgroup files are out of reach.
"""

from __future__ import annotations

import time
from datetime import datetime

from exeunit import cgroup
from exeunit.docker.cgroups import CgroupView
from exeunit.docker.engine import Engine
from exeunit.errors import RuntimeFailure
from exeunit.runtime import Usage


def parse_docker_time(s: str) -> float | None:
    """Docker's RFC 3339 with nanoseconds -> epoch seconds; the zero time -> None."""
    if not s or s.startswith("0001-01-01"):
        return None
    s = s.rstrip("Z")
    offset = "+00:00"
    for sign in ("+", "-"):
        idx = s.rfind(sign)
        if idx > 10:
            s, offset = s[:idx], s[idx:]
            break
    if "." in s:
        head, frac = s.split(".", 1)
        s = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(s + offset).timestamp()


class UsageMeter:
    def __init__(self, engine: Engine, cgroups: CgroupView) -> None:
        self._engine = engine
        self._cgroups = cgroups

    async def usage(self, container_id: str) -> Usage:
        return await self._engine.blocking("container", self._usage_blocking, container_id)

    def _usage_blocking(self, container_id: str) -> Usage:
        api = self._engine.api()
        read = self._cgroups.read
        info = api.inspect_container(container_id)
        state = info["State"]
        started = parse_docker_time(state.get("StartedAt", ""))
        if started is None:
            return Usage(duration_s=0.0, cpu_s=0.0, peak_memory_bytes=0)
        ended = None if state.get("Running") else parse_docker_time(state.get("FinishedAt", ""))
        duration = max(0.0, (ended if ended is not None and ended >= started else time.time()) - started)
        cpu_s: float | None = None
        peak: int | None = None
        if state.get("Running"):
            try:
                _, dirs = self._cgroups.dirs_of(container_id)
            except RuntimeFailure:
                dirs = {}
            acct = read(dirs.get("cpuacct"), "cpuacct.usage")
            if acct is not None:
                cpu_s = cgroup.cpu_seconds_v1(acct)
            else:
                stat = read(dirs.get("cpu"), "cpu.stat")
                cpu_s = cgroup.cpu_seconds_v2(stat) if stat else None
            mem = dirs.get("memory")
            for name in ("memory.max_usage_in_bytes", "memory.peak", "memory.current"):
                text = read(mem, name)
                if text is not None and (value := cgroup.parse_int(text)) is not None:
                    peak = value
                    break
            if cpu_s is None or peak is None:
                stats = api.stats(container_id, stream=False, one_shot=True)
                if cpu_s is None:
                    cpu_s = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9
                if peak is None:
                    mem_stats = stats.get("memory_stats", {})
                    peak = int(mem_stats.get("max_usage") or mem_stats.get("usage") or 0)
        return Usage(duration_s=duration, cpu_s=cpu_s or 0.0, peak_memory_bytes=peak or 0)
