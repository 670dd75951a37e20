"""The shell: the record is written before anything exists, and down removes everything, also leftovers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from yagna.netlab import plan
from yagna.netlab.errors import CommandFailed, NetlabError, NotSupported
from yagna.netlab.netns import run_in_netns
from yagna.netlab.testbed import Testbed
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


def _bed(tmp_path: Path, **kw: object) -> tuple[Testbed, FakeMachine]:
    machine = FakeMachine(tmp_path / "netlab.json", **kw)  # type: ignore[arg-type]
    return Testbed(tmp_path, runner=machine, check_machine=lambda: None), machine


def test_up_records_before_creating_and_down_removes_all(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path)
    topo = devnet_topology("abcd01", 2)
    built = bed.up(topo)
    assert machine.recorded_before_first_add is True
    assert machine.namespaces == set(topo.namespaces())
    assert built.netem is False and bed.load() == (topo, False)
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
    bed._save(topo, netem=False)  # what up wrote before the crash
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


def test_netem_found_applies_delay_else_delay_changes_are_refused(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path, netem=True)
    topo = devnet_topology("abcd01", 1, delay_ms=20)
    bed.up(topo)
    assert sum("replace" in op.argv and "netem" in op.argv for op in machine.log) == len(topo.sites)
    bed.down()
    bed2, _ = _bed(tmp_path / "b", netem=False)
    built = bed2.up(devnet_topology("abcd01", 1, delay_ms=20))
    assert built.netem is False
    assert {s.link.delay_ms for s in built.topology.sites} == {0.0}  # runs without delay, and says so
    loaded = bed2.load()
    assert loaded is not None and loaded[0] == built.topology
    with pytest.raises(NotSupported, match="netem"):
        bed2.set_link("requestor", Impairment(delay_ms=20))


def test_set_link_changes_the_record(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path)
    bed.up(devnet_topology("abcd01", 1))
    bed.set_link("provider-1", Impairment(cut=True))
    loaded = bed.load()
    assert loaded is not None and loaded[0].site("provider-1").site.link.cut
    assert machine.log[-1].stdin == "*filter\n:yn-link - [0:0]\n-A yn-link -j DROP\nCOMMIT\n"
    with pytest.raises(NetlabError):
        bed.set_link("nobody", Impairment())


def test_run_in_netns_of_a_missing_namespace() -> None:
    with pytest.raises(NetlabError):
        run_in_netns("yn-0000-does-not-exist", lambda: 1)


def test_delay_required_without_netem_fails_and_cleans_up(tmp_path: Path) -> None:
    bed, machine = _bed(tmp_path, netem=False)
    with pytest.raises(NotSupported, match="netem"):
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
