"""The shell around ``plan``: runs the commands, records what it makes before making it.

``<root>/netlab.json`` lists the testbed's namespaces before the first one is created, so a
``down`` after a crash (of ours, or of the machine half-way through ``up``) knows every name.
``down`` also deletes any namespace that carries the testbed's prefix (``yn-<tag>-``) but is
not in the record. Everything the plan creates lives inside those namespaces; deleting them
deletes every veth, bridge, route and iptables rule the testbed made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from yagna.netlab import plan
from yagna.netlab.errors import CommandFailed, NetlabError, NotSupported
from yagna.netlab.topology import Impairment, Topology, prefix_of

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
class Built:
    topology: Topology
    netem: bool
    """The kernel has netem: the links' delay is applied (else the testbed runs without delay)."""
    seconds: float


class Testbed:
    """One testbed, recorded in ``<root>/netlab.json``."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path, runner: Runner = run, check_machine: Callable[[], None] = preflight) -> None:
        self.root = root
        self.state_file = root / "netlab.json"
        self._run = runner
        self._preflight = check_machine

    # -- record ----------------------------------------------------------------------
    def load(self) -> tuple[Topology, bool] | None:
        """The recorded topology and whether netem is in use; ``None`` if nothing is recorded."""
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NetlabError(f"cannot read {self.state_file}: {exc}") from None
        return Topology.from_json(raw["topology"]), bool(raw.get("netem", False))

    def _save(self, topo: Topology, netem: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        record = {"topology": topo.to_json(), "namespaces": topo.namespaces(), "netem": netem}
        tmp.write_text(json.dumps(record, indent=2))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # -- up / change / down -------------------------------------------------------------
    def up(self, topo: Topology, *, require_delay: bool = False) -> Built:
        """Build ``topo``. Its links' delay needs netem: without it the testbed runs without
        delay (the record and :attr:`Built.topology` say delay 0), or, with ``require_delay``,
        is removed again and :class:`NotSupported` raised."""
        self._preflight()
        if self.load() is not None:
            raise NetlabError(f"a testbed is already recorded in {self.state_file}; remove it first (down)")
        clash = [ns for ns in list_namespaces(self._run) if ns.startswith(topo.prefix)]
        if clash:
            raise NetlabError(f"namespaces with prefix {topo.prefix} already exist: {', '.join(clash)}")
        start = time.monotonic()
        self._save(topo, netem=False)  # before the first namespace exists
        try:
            for op in plan.build_plan(topo):
                self._run(op)
            netem = self._probe_netem(topo.inet_ns)
            if not netem:
                if require_delay and any(s.link.delay_ms > 0 for s in topo.sites):
                    raise NotSupported("this kernel has no netem (`tc qdisc add ... netem` fails): "
                                       "the testbed cannot add delay; ask for none (delay 0)")
                topo = Topology(topo.tag, tuple(replace(s, link=replace(s.link, delay_ms=0.0)) for s in topo.sites))
            self._save(topo, netem)
            if netem:
                for op in plan.delay_plan(topo):
                    self._run(op)
        except BaseException:
            self.down()
            raise
        return Built(topo, netem, time.monotonic() - start)

    def _probe_netem(self, ns: str) -> bool:
        add, remove = plan.netem_probe(ns)
        if self._run(add).returncode != 0:
            return False
        self._run(remove)
        return True

    def set_link(self, site: str, link: Impairment) -> Topology:
        """Change a site's WAN link now: loss, cut (partition) or heal, delay (with netem)."""
        loaded = self.load()
        if loaded is None:
            raise NetlabError(f"no testbed recorded in {self.state_file}")
        topo, netem = loaded
        if link.delay_ms > 0 and not netem:
            raise NotSupported("this kernel has no netem (tc qdisc ... netem): the testbed runs without delay")
        topo = topo.with_link(site, link)
        for op in plan.link_plan(topo, site, netem=netem):
            self._run(op)
        self._save(topo, netem)
        return topo

    def down(self) -> list[str]:
        """Delete the recorded namespaces and any leftover with the testbed's prefix; the names deleted."""
        loaded = self.load()
        if loaded is None:
            return []
        topo = loaded[0]
        gone = remove_namespaces(topo.tag, topo.namespaces(), self._run)
        self.state_file.unlink(missing_ok=True)
        return gone


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
