"""Reading a container's counters from its cgroup: pure parsing of the kernel's files.

The Docker runtime finds a container's cgroup through its init process:
``/proc/<pid>/cgroup`` names the cgroup path per hierarchy, ``/proc/self/mountinfo``
says where each hierarchy is mounted. These functions turn the texts of those
files (and of the counter files) into values; they do no I/O, so they are tested
on sample contents. Both layouts are supported:

- cgroup v1: one hierarchy per controller (``memory``, ``cpuacct``, ``freezer``,
  ``pids``...), counters ``cpuacct.usage`` (ns), ``memory.max_usage_in_bytes``,
  ``memory.oom_control`` (``oom_kill N`` since Linux 4.13);
- cgroup v2: one unified hierarchy (``0::/path``), counters ``cpu.stat``
  (``usage_usec``), ``memory.peak`` (Linux 5.19+; else ``memory.current``),
  ``memory.events`` (``oom_kill N``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

UNIFIED = ""
"""Key of the cgroup v2 (unified) hierarchy in :func:`parse_proc_cgroup`'s result."""


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup hierarchy mount from mountinfo."""

    root: str
    """The path inside the hierarchy that is mounted (``/`` unless namespaced/bound)."""
    mountpoint: str
    version: int
    controllers: frozenset[str]
    """v1: the controllers of this hierarchy (``memory``, ``name=systemd``...); v2: empty."""


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` -> {controller: path}; the v2 entry under :data:`UNIFIED`.

    A v1 line ``4:cpu,cpuacct:/docker/ab`` gives both ``cpu`` and ``cpuacct``.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        if controllers == "":
            out[UNIFIED] = path
        else:
            for c in controllers.split(","):
                out[c] = path
    return out


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and all(c in "01234567" for c in field[i + 1 : i + 4]):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts of ``/proc/self/mountinfo``.

    Line format: ``id parent major:minor root mountpoint options [optional...] - fstype source superoptions``.
    """
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 3:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root = _unescape_mountinfo(fields[3])
        mountpoint = _unescape_mountinfo(fields[4])
        if fstype == "cgroup2":
            mounts.append(CgroupMount(root, mountpoint, 2, frozenset()))
        else:
            superopts = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
            known = {
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
                "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc",
            }  # fmt: skip
            ctrls = frozenset(o for o in superopts if o in known or o.startswith("name="))
            mounts.append(CgroupMount(root, mountpoint, 1, ctrls))
    return mounts


def _under(mount: CgroupMount, path: str) -> str | None:
    root = mount.root.rstrip("/") or "/"
    path = posixpath.normpath(path) if path else "/"
    if root == "/":
        rel = path.lstrip("/")
    elif path == root:
        rel = ""
    elif path.startswith(root + "/"):
        rel = path[len(root) + 1 :]
    else:
        return None
    return posixpath.join(mount.mountpoint, rel) if rel else mount.mountpoint


def cgroup_dir(controller: str, proc_cgroup: dict[str, str], mounts: list[CgroupMount]) -> str | None:
    """The directory holding ``controller``'s files for a process, or None.

    v1 first (the controller's own hierarchy), then v2 (the unified hierarchy,
    which holds every enabled controller's files). None when neither is mounted
    or the process's cgroup lies outside what is mounted here.
    """
    path = proc_cgroup.get(controller)
    if path is not None:
        for m in mounts:
            if m.version == 1 and controller in m.controllers:
                d = _under(m, path)
                if d is not None:
                    return d
    path = proc_cgroup.get(UNIFIED)
    if path is not None:
        for m in mounts:
            if m.version == 2:
                d = _under(m, path)
                if d is not None:
                    return d
    return None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.events``, ``memory.oom_control``, ``memory.stat``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_int(text: str) -> int | None:
    """A single-number file (``cpuacct.usage``, ``memory.max_usage_in_bytes``); ``max`` -> None."""
    s = text.strip()
    if not s or s == "max":
        return None
    try:
        return int(s)
    except ValueError:
        return None


def parse_pids(text: str) -> list[int]:
    """``cgroup.procs`` / ``tasks``: one pid a line."""
    return [int(x) for x in text.split() if x.isascii() and x.isdigit()]  # "²".isdigit(), but int() refuses it


def cpu_seconds_v1(cpuacct_usage: str) -> float | None:
    """``cpuacct.usage`` (nanoseconds) -> seconds."""
    ns = parse_int(cpuacct_usage)
    return None if ns is None else ns / 1e9


def cpu_seconds_v2(cpu_stat: str) -> float | None:
    """``cpu.stat``'s ``usage_usec`` -> seconds."""
    usec = parse_flat_keyed(cpu_stat).get("usage_usec")
    return None if usec is None else usec / 1e6


def oom_kills(text: str) -> int | None:
    """``oom_kill`` of v1 ``memory.oom_control`` or v2 ``memory.events``; None when absent
    (v1 kernels before 4.13 do not count kills)."""
    return parse_flat_keyed(text).get("oom_kill")


def parse_proc_stat_ppid(text: str) -> int | None:
    """The parent pid from ``/proc/<pid>/stat`` (the command name may hold spaces and parens)."""
    close = text.rfind(")")
    if close < 0:
        return None
    rest = text[close + 1 :].split()
    if len(rest) < 2:
        return None
    try:
        return int(rest[1])
    except ValueError:
        return None


def descendants(root: int, ppid_of: dict[int, int]) -> set[int]:
    """Every pid whose parent chain reaches ``root`` (``root`` excluded)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in ppid_of.items():
        children.setdefault(ppid, []).append(pid)
    out: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in out and child != root:
                out.add(child)
                stack.append(child)
    return out
