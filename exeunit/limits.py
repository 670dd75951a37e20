"""Container limits from an agreement, and a requestor's narrowing of them (pure).

The agreement's ``golem.inf.*`` properties are what the requestor paid for;
:func:`limits_from_agreement` turns them into :class:`~exeunit.runtime.ContainerLimits`:

* ``golem.inf.cpu.threads`` (int >= 1) -> ``cpu_threads``
* ``golem.inf.mem.gib`` (number > 0)   -> ``memory_bytes``
* ``golem.inf.storage.gib`` (number > 0) -> ``storage_bytes``

Floors *raise* tiny values to what a container needs to start at all (a
provider that offers 1 MiB of memory would otherwise sell containers that
cannot run ``sh``); values above the caps are refused, because no host has
them and a typo should not reach Docker. A missing or mistyped property is an
:class:`~exeunit.errors.ExeUnitError` naming it: the agreement is ours (signed
by both sides), so it is not a script error.

Derived limits:

* ``pids`` = 256 + 32 per thread beyond the first, at most 4096: the default
  256 fits a shell pipeline; builds (``make -j``) spawn per thread.
* ``tmp_bytes`` = min(64 MiB, memory / 4): ``/tmp`` is a tmpfs whose pages are
  charged to the container's memory, so it must leave most of memory for work.

:func:`narrow` lets a requestor ask for less (e.g. a smaller memory cap for one
activity), never more: a wider request is refused with a
:class:`~exeunit.errors.ScriptError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from exeunit.errors import ExeUnitError, ScriptError
from exeunit.runtime import ContainerLimits

__all__ = [
    "CPU_THREADS",
    "MAX_CPU_THREADS",
    "MAX_MEMORY_BYTES",
    "MAX_PIDS",
    "MAX_STORAGE_BYTES",
    "MEM_GIB",
    "MIN_MEMORY_BYTES",
    "MIN_PIDS",
    "MIN_STORAGE_BYTES",
    "MIN_TMP_BYTES",
    "NARROWABLE",
    "STORAGE_GIB",
    "limits_from_agreement",
    "narrow",
    "pids_for",
]

CPU_THREADS = "golem.inf.cpu.threads"
MEM_GIB = "golem.inf.mem.gib"
STORAGE_GIB = "golem.inf.storage.gib"

GIB = 1 << 30
MIB = 1 << 20
MAX_CPU_THREADS = 4096
MIN_MEMORY_BYTES = 64 * MIB
MAX_MEMORY_BYTES = 16 * 1024 * GIB
MIN_STORAGE_BYTES = 64 * MIB
MAX_STORAGE_BYTES = 1024 * 1024 * GIB
DEFAULT_PIDS = 256
PIDS_PER_EXTRA_THREAD = 32
MIN_PIDS = 16
MAX_PIDS = 4096
MIN_TMP_BYTES = 1 * MIB
MAX_TMP_BYTES = 64 * MIB

NARROWABLE = ("cpu_threads", "memory_bytes", "storage_bytes", "pids", "tmp_bytes")
"""The keys :func:`narrow` accepts: :class:`ContainerLimits` field names."""

_FLOORS: Mapping[str, float] = {
    "cpu_threads": 0.01,  # Docker's smallest --cpus
    "memory_bytes": MIN_MEMORY_BYTES,
    "storage_bytes": MIN_STORAGE_BYTES,
    "pids": MIN_PIDS,
    "tmp_bytes": MIN_TMP_BYTES,
}


def pids_for(threads: int) -> int:
    """The pids limit for ``threads`` CPU threads (see the module docstring)."""
    return min(MAX_PIDS, DEFAULT_PIDS + PIDS_PER_EXTRA_THREAD * max(0, threads - 1))


def _number(properties: Mapping[str, object], name: str) -> float:
    if name not in properties:
        raise ExeUnitError(f"the agreement has no {name}: cannot size the container")
    value = properties[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExeUnitError(f"the agreement's {name} must be a number, not {type(value).__name__} {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number <= 0:
        raise ExeUnitError(f"the agreement's {name} must be a positive finite number, not {value!r:.40}")
    return number


def _gib_bytes(properties: Mapping[str, object], name: str, floor: int, cap: int) -> int:
    gib = _number(properties, name)
    if gib * GIB > cap:
        raise ExeUnitError(f"the agreement's {name} = {gib:g} is more than the {cap / GIB:g} GiB any host has")
    return max(floor, int(gib * GIB))


def limits_from_agreement(properties: Mapping[str, object]) -> ContainerLimits:
    """The container limits an agreement's ``golem.inf.*`` properties grant."""
    threads = _number(properties, CPU_THREADS)
    if not threads.is_integer():
        raise ExeUnitError(f"the agreement's {CPU_THREADS} must be a whole number, not {properties[CPU_THREADS]!r}")
    if threads > MAX_CPU_THREADS:
        raise ExeUnitError(f"the agreement's {CPU_THREADS} = {threads:g} is more than {MAX_CPU_THREADS}")
    memory = _gib_bytes(properties, MEM_GIB, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)
    storage = _gib_bytes(properties, STORAGE_GIB, MIN_STORAGE_BYTES, MAX_STORAGE_BYTES)
    return ContainerLimits(
        cpu_threads=float(threads),
        memory_bytes=memory,
        storage_bytes=storage,
        pids=pids_for(int(threads)),
        tmp_bytes=max(MIN_TMP_BYTES, min(MAX_TMP_BYTES, memory // 4)),
    )


def narrow(limits: ContainerLimits, requested: Mapping[str, object]) -> ContainerLimits:
    """``limits`` with the requestor's smaller values; :class:`ScriptError` naming the field
    for an unknown key, a non-number, a value below the floor, or any widening.

    ``cpu_threads`` may be fractional (Docker's ``--cpus``); the others are ints.
    Narrowing ``memory_bytes`` also shrinks ``tmp_bytes`` to a quarter of it
    unless ``tmp_bytes`` is given too.
    """
    if not isinstance(requested, Mapping):
        raise ScriptError(f"requested limits must be a map, not {type(requested).__name__}")
    changes: dict[str, int | float] = {}
    for key, value in requested.items():
        if not isinstance(key, str) or key not in NARROWABLE:
            raise ScriptError(f"unknown limit (known: {', '.join(NARROWABLE)})", field=str(key)[:100])
        whole = key != "cpu_threads"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise ScriptError(f"must be {'an integer' if whole else 'a number'}, not {type(value).__name__}", field=key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ScriptError(f"must be finite, not {value!r}", field=key)
        current = getattr(limits, key)
        if value > current:
            raise ScriptError(f"{value!r:.40} would widen the agreement's {current!r}; only narrowing is allowed", field=key)
        if value < _FLOORS[key]:
            raise ScriptError(f"{value!r} is below the minimum {_FLOORS[key]!r}", field=key)
        changes[key] = int(value) if whole else float(value)
    if "memory_bytes" in changes and "tmp_bytes" not in changes:
        # /tmp is charged to memory: a smaller memory cap shrinks it too
        changes["tmp_bytes"] = min(limits.tmp_bytes, max(MIN_TMP_BYTES, int(changes["memory_bytes"]) // 4))
    return dataclasses.replace(limits, **changes)  # type: ignore[arg-type]
