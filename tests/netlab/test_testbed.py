"""The shell: the record is written before anything exists, and down removes everything, also leftovers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from yagna.netlab import plan
from yagna.netlab.errors import CommandFailed, NetlabError, NotSupported
from yagna.netlab.netns import run_in_netns
from yagna.netlab.testbed import Record, Testbed
from yagna.netlab.topology import Impairment, devnet_topology


class FakeMachine:
    """Keeps a set of namespaces; records commands; fails the n-th build command if told."""

    def __init__(self, state_file: Path, fail_at: int | None = None, netem: bool = False) -> None:
        self.namespaces: set[str] = set()
        self.log: list[plan.Op] = []
        self.state_file, self.fail_at, self.netem = state_file, fail_at, netem
        self.recorded_before_first_add: bool | None = None

    def __call__(self, op: plan.Op) -> subprocess.CompletedProcess[str]:
        self.log.append(op)
        argv = op.argv
        out, rc = "", 0
        if argv[:3] == ("ip", "netns", "list"):
            out = "".join(f"{ns} (id: 1)\n" for ns in sorted(self.namespaces))
        elif argv[:3] == ("ip", "netns", "add"):
            if self.recorded_before_first_add is None:
                self.recorded_before_first_add = self.state_file.exists()
            self.namespaces.add(argv[3])
        elif argv[:3] == ("ip", "netns", "del"):
            rc = 0 if argv[3] in self.namespaces else 1
            self.namespaces.discard(argv[3])
        elif "netem" in argv and "add" in argv:
            rc = 0 if self.netem else 2
        if self.fail_at is not None and len(self.log) == self.fail_at:
            rc = 1
        if rc and op.check:
            raise CommandFailed(list(argv), rc, "boom")
        return subprocess.CompletedProcess(list(argv), rc, out, "")


class FakeDelayers:
    """User-space delay processes as a dict ns -> (pid, ms); NFQUEUE available or not."""

    def __init__(self, available: bool = False) -> None:
        self.can = available
        self.running: dict[str, tuple[int, float]] = {}
        self.next_pid = 1000

    def available(self, ns: str) -> bool:
        return self.can

    def start(self, ns: str, delay_ms: float) -> int:
        assert ns not in self.running
        self.next_pid += 1
        self.running[ns] = (self.next_pid, delay_ms)
        return self.next_pid

    def stop(self, ns: str, pid: int) -> None:
        if self.running.get(ns, (None,))[0] == pid:
            del self.running[ns]

    def running_in(self, ns: str) -> list[int]:
        return [self.running[ns][0]] if ns in self.running else []


def _bed(tmp_path: Path, nfqueue: bool = False, **kw: object) -> tuple[Testbed, FakeMachine]:
    machine = FakeMachine(tmp_path / "netlab.json", **kw)  # type: ignore[arg-type]
    machine.delayers = FakeDelayers(nfqueue)  # type: ignore[attr-defined]
    return Testbed(tmp_path, runner=machine, check_machine=lambda: None, delayers=machine.delayers), machine  # type: ignore[attr-defined]


def test_up_records_before_creating_and_down_removes_all(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path)
    topo = devnet_topology("abcd01", 2)
    built = bed.up(topo)
    assert machine.recorded_before_first_add is True
    assert machine.namespaces == set(topo.namespaces())
    assert built.delay is None and bed.load() == Record(topo, None)
    assert json.loads(bed.state_file.read_text())["namespaces"] == topo.namespaces()
    with pytest.raises(NetlabError, match="already recorded"):
        bed.up(topo)
    machine.namespaces.add("yn-abcd01-stray")  # e.g. from an older version, or made by hand
    machine.namespaces.add("yn-ffff01-other")  # another testbed: never touched
    gone = bed.down()
    assert set(gone) == set(topo.namespaces()) | {"yn-abcd01-stray"}
    assert machine.namespaces == {"yn-ffff01-other"}
    assert not bed.state_file.exists()
    assert bed.down() == []


@pytest.mark.parametrize("fail_at", [3, 10, 40])
def test_a_failed_up_removes_what_it_made(tmp_path: Path, fail_at: int) -> None:
    bed, machine = _bed(tmp_path, fail_at=fail_at)
    with pytest.raises(CommandFailed):
        bed.up(devnet_topology("abcd01", 2))
    assert machine.namespaces == set()
    assert not bed.state_file.exists()


def test_down_after_a_crash_mid_up(tmp_path: Path) -> None:
    """A process killed half-way leaves the record and some namespaces; a later down removes them."""
    bed, machine = _bed(tmp_path, fail_at=25)
    topo = devnet_topology("abcd01", 2)
    bed._save(Record(topo, None))  # what up wrote before the crash
    machine.namespaces |= set(topo.namespaces()[:4])
    fresh = Testbed(tmp_path, runner=machine, check_machine=lambda: None)
    assert set(fresh.down()) == set(topo.namespaces()[:4])
    assert machine.namespaces == set()


def test_existing_namespaces_with_the_prefix_refuse_up(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path)
    machine.namespaces.add("yn-abcd01-inet")
    with pytest.raises(NetlabError, match="already exist"):
        bed.up(devnet_topology("abcd01", 1))
    assert machine.namespaces == {"yn-abcd01-inet"}  # not ours to delete: up made nothing


def test_netem_found_applies_delay(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path, netem=True, nfqueue=True)
    topo = devnet_topology("abcd01", 1, delay_ms=20)
    assert bed.up(topo).delay == "netem"
    assert sum("replace" in op.argv and "netem" in op.argv for op in machine.log) == len(topo.sites)
    assert machine.delayers.running == {}  # type: ignore[attr-defined]


def test_without_netem_the_user_space_delay_runs_one_process_per_link(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path, nfqueue=True)
    topo = devnet_topology("abcd01", 1, delay_ms=20)
    built = bed.up(topo)
    delayers = machine.delayers  # type: ignore[attr-defined]
    edges = {a.edge_ns for a in topo.addresses()}
    assert built.delay == "nfqueue" and built.topology == topo
    assert set(delayers.running) == edges and {ms for _, ms in delayers.running.values()} == {20}
    rec = bed.load()
    assert rec is not None and rec.delay == "nfqueue"
    assert rec.delayers == {ns: pid for ns, (pid, _) in delayers.running.items()}
    assert sum("NFQUEUE" in (op.stdin or "") for op in machine.log) == len(edges)
    # a new delay restarts that link's process; 0 stops it and empties the hook
    bed.set_link("provider-1", Impairment(delay_ms=50))
    p1 = topo.site("provider-1").edge_ns
    assert delayers.running[p1][1] == 50
    bed.set_link("provider-1", Impairment())
    assert p1 not in delayers.running and "NFQUEUE" not in (machine.log[-1].stdin or "")
    # a loss change leaves the delay alone
    before = dict(delayers.running)
    bed.set_link("requestor", Impairment(loss=0.1, delay_ms=20))
    assert delayers.running == before
    bed.down()
    assert delayers.running == {} and machine.namespaces == set()


def test_down_stops_delay_processes_missing_from_the_record(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path, nfqueue=True)
    topo = devnet_topology("abcd01", 1, delay_ms=20)
    bed.up(topo)
    rec = bed.load()
    assert rec is not None
    bed._save(Record(rec.topology, rec.delay, {}))  # a crash right after starting them
    bed.down()
    assert machine.delayers.running == {}  # type: ignore[attr-defined]


def test_with_neither_the_testbed_runs_without_delay_and_says_so(tmp_path: Path) -> None:
    bed2, _ = _bed(tmp_path / "b")
    built = bed2.up(devnet_topology("abcd01", 1, delay_ms=20))
    assert built.delay is None
    assert {s.link.delay_ms for s in built.topology.sites} == {0.0}  # runs without delay, and says so
    loaded = bed2.load()
    assert loaded is not None and loaded.topology == built.topology
    with pytest.raises(NotSupported, match="without delay"):
        bed2.set_link("requestor", Impairment(delay_ms=20))


def test_set_link_changes_the_record(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path)
    bed.up(devnet_topology("abcd01", 1))
    bed.set_link("provider-1", Impairment(cut=True))
    loaded = bed.load()
    assert loaded is not None and loaded.topology.site("provider-1").site.link.cut
    assert machine.log[-1].stdin == "*filter\n:yn-link - [0:0]\n-A yn-link -j DROP\nCOMMIT\n*mangle\n:yn-delay - [0:0]\nCOMMIT\n"
    with pytest.raises(NetlabError):
        bed.set_link("nobody", Impairment())


def test_run_in_netns_of_a_missing_namespace() -> None:
    with pytest.raises(NetlabError):
        run_in_netns("yn-0000-does-not-exist", lambda: 1)


def test_delay_required_without_netem_fails_and_cleans_up(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path, netem=False)
    with pytest.raises(NotSupported, match="neither netem"):
        bed.up(devnet_topology("abcd01", 1, delay_ms=20), require_delay=True)
    assert machine.namespaces == set() and not bed.state_file.exists()


def test_preflight_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from yagna.netlab import testbed

    monkeypatch.setattr(testbed.sys, "platform", "darwin")
    with pytest.raises(NotSupported, match="Linux"):
        testbed.preflight()
    monkeypatch.setattr(testbed.sys, "platform", "linux")
    monkeypatch.setattr(testbed.os, "geteuid", lambda: 1000)
    with pytest.raises(NotSupported, match="needs root"):
        testbed.preflight()
    monkeypatch.setattr(testbed.os, "geteuid", lambda: 0)
    monkeypatch.setattr(testbed.shutil, "which", lambda name: None if name == "iptables-restore" else "/x")
    with pytest.raises(NotSupported, match="iptables-restore"):
        testbed.preflight()
