"""What a provider can sell (threads, memory, disk) and a ledger of what is reserved.

A provider runs several agreements at once, each reserving the threads,
memory and disk of its preset. The ledger must return *exactly* to where it
started when every reservation is released, however many come and go: a
float ledger (``0.1 + 0.2 - 0.2 != 0.1``) would slowly leak or invent
capacity. So :class:`Capacity` rounds memory and storage up to whole MiB on
construction and does all arithmetic in integer MiB; its ``mem_gib`` and
``storage_gib`` are floats that are exact multiples of 1/1024, so they print
and compare as the user expects.

:func:`machine_capacity` measures the machine (its inputs are injectable for
tests) and :func:`default_limits` applies Golem's default share of it: all
threads but one, 70% of RAM, 80% of free disk.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from market.errors import MarketError

__all__ = [
    "MAX_GIB",
    "MAX_THREADS",
    "MIB_PER_GIB",
    "Capacity",
    "CapacityError",
    "CapacityLedger",
    "default_limits",
    "machine_capacity",
]

MIB_PER_GIB = 1024
MAX_GIB = 2**30
"""Largest memory or storage size (1 EiB): keeps every MiB count exact in a float."""
MAX_THREADS = 2**20

_MEMTOTAL_RE = re.compile(r"^MemTotal:\s+(\d+)\s*kB\s*$", re.MULTILINE)
_JSON_KEYS = ("threads", "mem_gib", "storage_gib")


class CapacityError(MarketError):
    """A capacity value is invalid, or the machine's capacity cannot be measured."""


def _to_mib(name: str, gib: object) -> int:
    if isinstance(gib, bool) or not isinstance(gib, (int, float)):
        raise CapacityError(f"{name} must be a number of GiB, got {type(gib).__name__}")
    if not math.isfinite(gib) or not 0 <= gib <= MAX_GIB:
        raise CapacityError(f"{name} must be between 0 and {MAX_GIB} GiB, got {gib!r}")
    return math.ceil(gib * MIB_PER_GIB)  # exact: multiplying by a power of two


@dataclass(frozen=True)
class Capacity:
    """Threads, memory and storage; sizes are rounded *up* to whole MiB (a need is never under-counted).

    ``a.fits(b)`` reads "a fits within b": no element of ``a`` exceeds ``b``'s.
    """

    threads: int
    mem_gib: float
    storage_gib: float

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int):
            raise CapacityError(f"threads must be an integer, got {type(self.threads).__name__}")
        if not 0 <= self.threads <= MAX_THREADS:
            raise CapacityError(f"threads must be between 0 and {MAX_THREADS}, got {self.threads}")
        object.__setattr__(self, "mem_gib", _to_mib("mem_gib", self.mem_gib) / MIB_PER_GIB)
        object.__setattr__(self, "storage_gib", _to_mib("storage_gib", self.storage_gib) / MIB_PER_GIB)

    @classmethod
    def from_mib(cls, threads: int, mem_mib: int, storage_mib: int) -> Capacity:
        """Build from whole MiB (exact)."""
        for name, value in (("mem_mib", mem_mib), ("storage_mib", storage_mib)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise CapacityError(f"{name} must be an integer, got {type(value).__name__}")
        return cls(threads, mem_mib / MIB_PER_GIB, storage_mib / MIB_PER_GIB)

    @property
    def mem_mib(self) -> int:
        return int(self.mem_gib * MIB_PER_GIB)

    @property
    def storage_mib(self) -> int:
        return int(self.storage_gib * MIB_PER_GIB)

    def _ints(self) -> tuple[int, int, int]:
        return (self.threads, self.mem_mib, self.storage_mib)

    def fits(self, other: Capacity) -> bool:
        """Whether every element of ``self`` is at most ``other``'s (``need.fits(free)``)."""
        return all(a <= b for a, b in zip(self._ints(), other._ints()))

    def plus(self, other: Capacity) -> Capacity:
        """Element-wise sum."""
        return Capacity.from_mib(*(a + b for a, b in zip(self._ints(), other._ints())))

    def minus(self, other: Capacity) -> Capacity:
        """Element-wise difference, floored at zero (what is left is never negative)."""
        return Capacity.from_mib(*(max(0, a - b) for a, b in zip(self._ints(), other._ints())))

    def min(self, other: Capacity) -> Capacity:
        """Element-wise minimum (cap ``self`` by ``other``)."""
        return Capacity.from_mib(*(min(a, b) for a, b in zip(self._ints(), other._ints())))

    def to_json(self) -> dict[str, object]:
        return {"threads": self.threads, "mem_gib": self.mem_gib, "storage_gib": self.storage_gib}

    @classmethod
    def from_json(cls, data: object) -> Capacity:
        if not isinstance(data, Mapping):
            raise CapacityError(f"capacity must be an object, got {type(data).__name__}")
        if set(data) != set(_JSON_KEYS):
            raise CapacityError(f"capacity needs exactly the fields {', '.join(_JSON_KEYS)}, got {', '.join(sorted(map(str, data)))}")
        return cls(data["threads"], data["mem_gib"], data["storage_gib"])


ZERO = Capacity(0, 0, 0)
"""Nothing at all."""


# -- the machine -------------------------------------------------------------------------


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (containers, taskset)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _mem_total_bytes(meminfo_text: str | None) -> int:
    if meminfo_text is None:
        try:
            meminfo_text = Path("/proc/meminfo").read_text()
        except OSError:  # pragma: no cover - not Linux
            try:
                return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            except (ValueError, OSError, AttributeError) as exc:
                raise CapacityError(f"cannot measure this machine's memory: {exc}") from None
    m = _MEMTOTAL_RE.search(meminfo_text)
    if m is None:
        raise CapacityError("cannot measure this machine's memory: no 'MemTotal: <n> kB' line in /proc/meminfo")
    return int(m.group(1)) * 1024


def _disk_free_bytes(data_dir: Path) -> int:
    path = data_dir.absolute()
    while not path.exists() and path != path.parent:  # the data dir may not exist yet
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError as exc:
        raise CapacityError(f"cannot measure free disk space at {path}: {exc}") from None


def machine_capacity(
    data_dir: str | os.PathLike[str],
    *,
    cpu_count: int | None = None,
    meminfo_text: str | None = None,
    disk_free_bytes: int | None = None,
) -> Capacity:
    """This machine: usable CPUs, total RAM (``MemTotal``), free disk under ``data_dir``.

    Sizes are rounded *down* to whole MiB here (this is what we have, not what
    we need). Each input can be given instead of measured.
    """
    threads = _cpu_count() if cpu_count is None else cpu_count
    mem_bytes = _mem_total_bytes(meminfo_text)
    disk_bytes = _disk_free_bytes(Path(data_dir)) if disk_free_bytes is None else disk_free_bytes
    if isinstance(disk_bytes, bool) or not isinstance(disk_bytes, int) or disk_bytes < 0:
        raise CapacityError(f"free disk must be a non-negative number of bytes, got {disk_bytes!r}")
    return Capacity.from_mib(threads, mem_bytes // 2**20, disk_bytes // 2**20)


def default_limits(machine: Capacity) -> Capacity:
    """Golem's default share of a machine: all threads but one (at least one), 70% of RAM, 80% of disk."""
    return Capacity.from_mib(max(1, machine.threads - 1), machine.mem_mib * 7 // 10, machine.storage_mib * 8 // 10)


# -- the ledger --------------------------------------------------------------------------


class CapacityLedger:
    """Reservations (by key, e.g. an agreement id) against a total.

    Integer arithmetic throughout, so any sequence of reservations and
    releases that ends with none leaves :meth:`used` exactly zero. The total
    may shrink below what is in use (a provider lowering its limits): nothing
    is evicted, nothing new fits until enough is released.
    """

    def __init__(self, total: Capacity) -> None:
        self._total = self._check(total)
        self._reservations: dict[str, Capacity] = {}
        self._used = ZERO

    @staticmethod
    def _check(capacity: object) -> Capacity:
        if not isinstance(capacity, Capacity):
            raise CapacityError(f"expected a Capacity, got {type(capacity).__name__}")
        return capacity

    @property
    def total(self) -> Capacity:
        return self._total

    def set_total(self, total: Capacity) -> None:
        """Change the total; shrinking below :meth:`used` is allowed (then nothing new fits)."""
        self._total = self._check(total)

    def used(self) -> Capacity:
        return self._used

    def free(self) -> Capacity:
        """What is left, element-wise, never negative."""
        return self._total.minus(self._used)

    def fits(self, need: Capacity) -> bool:
        """Whether ``need`` can be reserved now."""
        return self._used.plus(self._check(need)).fits(self._total)

    def reserve(self, key: str, need: Capacity) -> bool:
        """Reserve ``need`` under ``key``; ``False`` (and no change) if the key is taken or it does not fit."""
        if not isinstance(key, str):
            raise CapacityError(f"a reservation key is a string, got {type(key).__name__}")
        if key in self._reservations or not self.fits(need):
            return False
        self._reservations[key] = need
        self._used = self._used.plus(need)
        return True

    def release(self, key: str) -> bool:
        """Release ``key``'s reservation; ``False`` if there is none."""
        need = self._reservations.pop(key, None)
        if need is None:
            return False
        self._used = self._used.minus(need)
        return True

    def reservations(self) -> dict[str, Capacity]:
        """A copy of the reservations by key."""
        return dict(self._reservations)

    def __repr__(self) -> str:
        return f"CapacityLedger(total={self._total}, used={self._used}, reservations={len(self._reservations)})"
