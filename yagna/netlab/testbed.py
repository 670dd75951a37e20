"""The shell around ``plan``: runs the commands, records what it makes before making it.

``<root>/netlab.json`` lists the testbed's namespaces before the first one is created, so a
``down`` after a crash (of ours, or of the machine half-way through ``up``) knows every name.
``down`` also deletes any namespace that carries the testbed's prefix (``yn-<tag>-``) but is
not in the record. Everything the plan creates lives inside those namespaces; deleting them
deletes every veth, bridge, route and iptables rule the testbed made. The only processes the
testbed starts are the user-space delay's (kernels without netem), recorded by pid and also
found by namespace and command line.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from yagna.netlab import plan
from yagna.netlab.errors import CommandFailed, NetlabError, NotSupported
from yagna.netlab.netns import run_in_netns
from yagna.netlab.topology import DELAY_QUEUE, Impairment, Topology, prefix_of

COMMAND_TIMEOUT = 30.0
TOOLS = ("ip", "iptables-restore", "sysctl")


def preflight() -> None:
    """Raise :class:`NotSupported` unless this is Linux, we are root, and the tools exist."""
    if not sys.platform.startswith("linux"):
        raise NotSupported(f"the NAT testbed needs Linux network namespaces; this is {sys.platform}")
    if os.geteuid() != 0:
        raise NotSupported("the NAT testbed needs root (it creates network namespaces and iptables rules); "
                           "run it with sudo, or use the loopback devnet (no --topology)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise NotSupported(f"the NAT testbed needs {', '.join(missing)} (Debian: apt-get install iproute2 iptables procps)")


def run(op: plan.Op) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(op.argv), input=op.stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, stdin=None if op.stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise NotSupported(f"{op.argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(list(op.argv), -1, f"no answer within {COMMAND_TIMEOUT:g}s") from None
    if op.check and proc.returncode != 0:
        raise CommandFailed(list(op.argv), proc.returncode, proc.stderr)
    return proc


Runner = Callable[[plan.Op], "subprocess.CompletedProcess[str]"]


def list_namespaces(runner: Runner = run) -> list[str]:
    proc = runner(plan.Op(("ip", "netns", "list")))
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def namespace_pids(ns: str, runner: Runner = run) -> list[int]:
    """Processes running in namespace ``ns`` (empty if it does not exist)."""
    proc = runner(plan.Op(("ip", "netns", "pids", ns), check=False))
    return [int(x) for x in proc.stdout.split() if x.isdigit()]


@dataclass
class Record:
    """What ``netlab.json`` holds."""

    topology: Topology
    delay: plan.DelayBackend | None
    """How a link's delay is added; ``None``: the kernel has neither netem nor NFQUEUE, no delay."""
    delayers: dict[str, int] = field(default_factory=dict)
    """User-space delay processes: edge namespace -> pid."""


@dataclass
class Built:
    topology: Topology
    """As built: every delay 0 when no way to add delay was found."""
    delay: plan.DelayBackend | None
    seconds: float


class Delayers(Protocol):
    """The user-space delay's processes (one per edge namespace with a delay)."""

    def available(self, ns: str) -> bool:
        """An NFQUEUE can be bound in namespace ``ns``."""

    def start(self, ns: str, delay_ms: float) -> int:
        """Start one in ``ns``; its pid, once it holds the queue."""

    def stop(self, ns: str, pid: int) -> None:
        """Stop ``pid`` if it still is the delay process of ``ns`` (never anyone else's)."""

    def running_in(self, ns: str) -> list[int]:
        """Delay processes of ``ns`` running there (also ones missing from the record)."""


class Testbed:
    """One testbed, recorded in ``<root>/netlab.json``."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path, runner: Runner = run, check_machine: Callable[[], None] = preflight,
                 delayers: Delayers | None = None) -> None:
        self.root = root
        self.state_file = root / "netlab.json"
        self._run = runner
        self._preflight = check_machine
        self._delayers = delayers if delayers is not None else ProcessDelayers(root)

    # -- record ----------------------------------------------------------------------
    def load(self) -> Record | None:
        """The record; ``None`` if nothing is recorded."""
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NetlabError(f"cannot read {self.state_file}: {exc}") from None
        delay = raw.get("delay")
        if delay not in ("netem", "nfqueue", None):
            raise NetlabError(f"{self.state_file}: unknown delay backend {delay!r}")
        delayers = {str(ns): int(pid) for ns, pid in dict(raw.get("delayers") or {}).items()}
        return Record(Topology.from_json(raw["topology"]), delay, delayers)

    def _save(self, rec: Record) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        record = {"topology": rec.topology.to_json(), "namespaces": rec.topology.namespaces(),
                  "delay": rec.delay, "delayers": rec.delayers}
        tmp.write_text(json.dumps(record, indent=2))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # -- up / change / down -------------------------------------------------------------
    def up(self, topo: Topology, *, require_delay: bool = False) -> Built:
        """Build ``topo``. Delay comes from netem where the kernel has it, else from the
        user-space delay (NFQUEUE); with neither, the testbed runs without delay (the record
        and :attr:`Built.topology` say delay 0), or, with ``require_delay``, is removed again
        and :class:`NotSupported` raised."""
        self._preflight()
        if self.load() is not None:
            raise NetlabError(f"a testbed is already recorded in {self.state_file}; remove it first (down)")
        clash = [ns for ns in list_namespaces(self._run) if ns.startswith(topo.prefix)]
        if clash:
            raise NetlabError(f"namespaces with prefix {topo.prefix} already exist: {', '.join(clash)}")
        start = time.monotonic()
        rec = Record(topo, None)
        self._save(rec)  # before the first namespace exists
        try:
            for op in plan.build_plan(topo):
                self._run(op)
            wants_delay = any(s.link.delay_ms > 0 for s in topo.sites)
            rec.delay = self._probe_delay(topo.inet_ns)  # also without delay now: set_link may add one
            if rec.delay is None and wants_delay:
                if require_delay:
                    raise NotSupported("this kernel has neither netem (`tc qdisc add ... netem` fails) nor "
                                       "NFQUEUE: the testbed cannot add delay; ask for none (delay 0)")
                rec.topology = Topology(topo.tag, tuple(replace(s, link=replace(s.link, delay_ms=0.0))
                                                        for s in topo.sites))
            self._save(rec)
            if rec.delay is not None:
                for a in rec.topology.addresses():
                    if a.site.link.delay_ms > 0:
                        self._apply_delay(rec, a.site.name)
        except BaseException:
            self.down()
            raise
        return Built(rec.topology, rec.delay, time.monotonic() - start)

    def _probe_delay(self, ns: str) -> plan.DelayBackend | None:
        add, remove = plan.netem_probe(ns)
        if self._run(add).returncode == 0:
            self._run(remove)
            return "netem"
        return "nfqueue" if self._delayers.available(ns) else None

    def _apply_delay(self, rec: Record, site: str) -> None:
        """Make the recorded delay of ``site``'s link true: its process (user space), then its rules."""
        a = rec.topology.site(site)
        if rec.delay == "nfqueue":
            old = rec.delayers.pop(a.edge_ns, None)
            if old is not None:
                self._delayers.stop(a.edge_ns, old)
            if a.site.link.delay_ms > 0:
                rec.delayers[a.edge_ns] = self._delayers.start(a.edge_ns, a.site.link.delay_ms)
            self._save(rec)
        for op in plan.link_plan(rec.topology, site, delay=rec.delay):
            self._run(op)

    def set_link(self, site: str, link: Impairment) -> Topology:
        """Change a site's WAN link now: loss, cut (partition) or heal, delay."""
        rec = self.load()
        if rec is None:
            raise NetlabError(f"no testbed recorded in {self.state_file}")
        if link.delay_ms > 0 and rec.delay is None:
            raise NotSupported("this testbed runs without delay (the kernel has neither netem nor NFQUEUE)")
        before = rec.topology.site(site).site.link
        rec.topology = rec.topology.with_link(site, link)
        if rec.delay == "nfqueue" and before.delay_ms != link.delay_ms:
            self._apply_delay(rec, site)
        else:
            for op in plan.link_plan(rec.topology, site, delay=rec.delay):
                self._run(op)
        self._save(rec)
        return rec.topology

    def down(self) -> list[str]:
        """Stop the delay processes, delete the recorded namespaces and any leftover with the
        testbed's prefix; the names deleted."""
        rec = self.load()
        if rec is None:
            return []
        for ns, pid in rec.delayers.items():
            self._delayers.stop(ns, pid)
        names = rec.topology.namespaces()
        for ns in names:
            for pid in self._delayers.running_in(ns):
                self._delayers.stop(ns, pid)
        gone = remove_namespaces(rec.topology.tag, names, self._run)
        self.state_file.unlink(missing_ok=True)
        return gone


class ProcessDelayers:
    """``ip netns exec NS python -m yagna.netlab.delay NS QUEUE MS`` per edge namespace.

    Its command line names its namespace, so stopping checks that a recorded pid is still
    that process. Its stderr goes to ``<root>/delay-<ns>.log``.
    """

    READY_TIMEOUT = 15.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def available(self, ns: str) -> bool:
        from yagna.netlab.delay import can_bind

        try:
            return run_in_netns(ns, can_bind, timeout=10.0)
        except NetlabError:
            return False

    def start(self, ns: str, delay_ms: float) -> int:
        log = self.root / f"delay-{ns}.log"
        argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "yagna.netlab.delay", ns, str(DELAY_QUEUE),
                f"{delay_ms:g}"]
        with open(log, "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True, close_fds=True)
        self._children[proc.pid] = proc
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], self.READY_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"bound":
            self.stop(ns, proc.pid)
            raise NetlabError(f"the user-space delay did not start in {ns}: {_tail(log)}")
        return proc.pid

    def stop(self, ns: str, pid: int) -> None:
        if not self._is_ours(ns, pid):
            self._reap(pid)
            return
        _signal(pid, signal.SIGTERM)
        end = time.monotonic() + 3.0
        while time.monotonic() < end and self._is_ours(ns, pid):
            self._reap(pid)
            time.sleep(0.02)
        if self._is_ours(ns, pid):
            _signal(pid, signal.SIGKILL)
        self._reap(pid)

    def running_in(self, ns: str) -> list[int]:
        return [pid for pid in namespace_pids(ns) if self._is_ours(ns, pid)]

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]

    @staticmethod
    def _is_ours(ns: str, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return False
        except (OSError, IndexError):
            return False
        return b"yagna.netlab.delay" in argv and ns.encode() in argv


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no log)"


def remove_namespaces(tag: str, names: list[str], runner: Runner = run) -> list[str]:
    """Delete ``names`` and every other namespace with testbed ``tag``'s prefix; the names deleted."""
    prefix = prefix_of(tag)
    present = list_namespaces(runner)
    doomed = [ns for ns in names if ns in present] + [ns for ns in present if ns.startswith(prefix) and ns not in names]
    for op in plan.teardown_plan(doomed):
        runner(op)
    left = leftovers(tag, runner)
    if left:
        raise NetlabError(f"could not delete namespaces: {', '.join(left)}")
    return doomed


def leftovers(tag: str, runner: Runner = run) -> list[str]:
    """Namespaces of testbed ``tag`` that still exist."""
    return [ns for ns in list_namespaces(runner) if ns.startswith(prefix_of(tag))]
