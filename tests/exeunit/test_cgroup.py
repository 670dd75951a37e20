"""exeunit.cgroup: parsing of /proc and cgroup files, on sample contents (v1 and v2)."""

from __future__ import annotations

from exeunit import cgroup

CID = "74fb28a8c6d66860952f949922d2bf98d5984ed3572de0de0dde05396d3417f0"

PROC_CGROUP_V1 = f"""12:hugetlb:/docker/{CID}
9:name=systemd:/docker/{CID}
8:pids:/docker/{CID}
6:freezer:/docker/{CID}
4:memory:/docker/{CID}
2:cpu,cpuacct:/docker/{CID}
0::/docker/{CID}
"""

MOUNTINFO_V1 = """22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
38 30 0:34 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,xattr,name=systemd
"""

PROC_CGROUP_V2 = f"0::/system.slice/docker-{CID}.scope\n"

MOUNTINFO_V2 = """25 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
35 25 0:29 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def test_proc_cgroup_v1_splits_joined_controllers_and_keeps_the_unified_entry() -> None:
    parsed = cgroup.parse_proc_cgroup(PROC_CGROUP_V1)
    assert parsed["cpu"] == parsed["cpuacct"] == parsed["memory"] == f"/docker/{CID}"
    assert parsed["name=systemd"] == f"/docker/{CID}"
    assert parsed[cgroup.UNIFIED] == f"/docker/{CID}"
    assert cgroup.parse_proc_cgroup("garbage\n\n") == {}


def test_mountinfo_finds_cgroup_mounts_only() -> None:
    mounts = cgroup.parse_mountinfo(MOUNTINFO_V1)
    by_point = {m.mountpoint: m for m in mounts}
    assert set(by_point) == {
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/freezer",
        "/sys/fs/cgroup/systemd",
    }
    assert by_point["/sys/fs/cgroup/cpu,cpuacct"].controllers == {"cpu", "cpuacct"}
    assert by_point["/sys/fs/cgroup/systemd"].controllers == {"name=systemd"}
    assert by_point["/sys/fs/cgroup/unified"].version == 2


def test_mountinfo_unescapes_octal() -> None:
    (m,) = cgroup.parse_mountinfo(r"40 30 0:35 / /mnt/with\040space rw - cgroup cgroup rw,memory")
    assert m.mountpoint == "/mnt/with space"


def test_cgroup_dir_v1_per_controller() -> None:
    proc = cgroup.parse_proc_cgroup(PROC_CGROUP_V1)
    mounts = cgroup.parse_mountinfo(MOUNTINFO_V1)
    assert cgroup.cgroup_dir("memory", proc, mounts) == f"/sys/fs/cgroup/memory/docker/{CID}"
    assert cgroup.cgroup_dir("cpuacct", proc, mounts) == f"/sys/fs/cgroup/cpu,cpuacct/docker/{CID}"
    assert cgroup.cgroup_dir("pids", proc, mounts) == f"/sys/fs/cgroup/pids/docker/{CID}"
    # hugetlb is in /proc/<pid>/cgroup but not mounted: the unified hierarchy answers.
    assert cgroup.cgroup_dir("hugetlb", proc, mounts) == f"/sys/fs/cgroup/unified/docker/{CID}"


def test_cgroup_dir_v2_unified() -> None:
    proc = cgroup.parse_proc_cgroup(PROC_CGROUP_V2)
    mounts = cgroup.parse_mountinfo(MOUNTINFO_V2)
    expected = f"/sys/fs/cgroup/system.slice/docker-{CID}.scope"
    assert cgroup.cgroup_dir("memory", proc, mounts) == expected
    assert cgroup.cgroup_dir("cpu", proc, mounts) == expected


def test_cgroup_dir_with_a_mount_root_below_the_hierarchy_root() -> None:
    # Inside a container the hierarchy may be mounted from /docker/<id> down.
    mounts = cgroup.parse_mountinfo(f"50 40 0:31 /docker/{CID} /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert cgroup.cgroup_dir("memory", {"memory": f"/docker/{CID}/child"}, mounts) == "/sys/fs/cgroup/memory/child"
    assert cgroup.cgroup_dir("memory", {"memory": f"/docker/{CID}"}, mounts) == "/sys/fs/cgroup/memory"
    assert cgroup.cgroup_dir("memory", {"memory": "/elsewhere"}, mounts) is None
    assert cgroup.cgroup_dir("memory", {}, mounts) is None
    assert cgroup.cgroup_dir("memory", {"memory": "/x"}, []) is None


def test_counters_v1() -> None:
    assert cgroup.cpu_seconds_v1("2433496883\n") == 2.433496883
    assert cgroup.parse_int("67108864\n") == 64 * 2**20
    assert cgroup.parse_int("max\n") is None and cgroup.parse_int("") is None and cgroup.parse_int("x") is None
    assert cgroup.oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3
    assert cgroup.oom_kills("oom_kill_disable 0\nunder_oom 0\n") is None  # kernel < 4.13


def test_counters_v2() -> None:
    stat = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n"
    assert cgroup.cpu_seconds_v2(stat) == 1.5
    assert cgroup.cpu_seconds_v2("nr_periods 0\n") is None
    assert cgroup.oom_kills("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n") == 1
    assert cgroup.parse_flat_keyed("a 1\nbad line here\nb x\nc 3\n") == {"a": 1, "c": 3}


def test_pids_and_proc_stat() -> None:
    assert cgroup.parse_pids("12\n34\n\n56\n") == [12, 34, 56]
    assert cgroup.parse_proc_stat_ppid("14971 (sleep) S 14885 14971 14971 0 -1 4194560") == 14885
    assert cgroup.parse_proc_stat_ppid("7 (a) b) (c) R 3 7 7 0") == 3  # a name with ") (" in it
    assert cgroup.parse_proc_stat_ppid("garbage") is None


def test_descendants() -> None:
    ppid_of = {2: 1, 3: 2, 4: 3, 5: 1, 6: 5, 7: 99, 8: 8}
    assert cgroup.descendants(2, ppid_of) == {3, 4}
    assert cgroup.descendants(1, ppid_of) == {2, 3, 4, 5, 6}
    assert cgroup.descendants(4, ppid_of) == set()
    assert cgroup.descendants(8, ppid_of) == set()  # a self-loop does not spin
