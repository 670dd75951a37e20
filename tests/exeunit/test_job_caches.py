"""Pipelines' caches on a provider: the store's bounds and eviction, restarts, and the two commands end to end.

The store (``yagna/activity_service/job_caches.py``) on a real folder; the commands
(``cache_save`` / ``cache_restore``) through a provider and a requestor on the in-memory network
with the real Docker engine (the harness of ``test_provider_gc.py``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from exeunit.commands import CacheRestore, CacheSave, ScriptError, parse_script, script_to_wire
from tests.exeunit.test_provider_gc import pair
from yagna.activity_service.job_caches import MAX_ENTRIES_PER_REQUESTOR, JobCaches
from yagna.core.identity import NodeKey




async def _save(caches: JobCaches, requestor: str, key: str, size: int, fill: bytes = b"x") -> None:
    partial = caches.partial_path(requestor)
    partial.write_bytes(fill * size)
    await caches.commit(requestor, key, partial, size)


@pytest.mark.trio
async def test_a_requestor_reads_only_its_own_caches(tmp_path: Path) -> None:
    caches = JobCaches(tmp_path, per_requestor_bytes=1000, total_bytes=10_000)
    await caches.open()
    await _save(caches, "alice", "repo/deps-1", 10, b"a")
    assert caches.lookup("alice", "repo/deps-1") is not None
    assert caches.path_of("alice", "repo/deps-1").read_bytes() == b"a" * 10
    assert caches.lookup("bob", "repo/deps-1") is None  # the same key of another requestor is another cache
    assert caches.lookup("alice", "repo/deps-2") is None
    # a key is never a path: it is stored by its digest
    await _save(caches, "alice", "../../etc/passwd", 3)
    assert {p.name for p in (tmp_path / "alice").iterdir()} == {
        hashlib.sha256(k.encode()).hexdigest() + ".tar" for k in ("repo/deps-1", "../../etc/passwd")}
    # a strange requestor id is hashed into a folder name
    await _save(caches, "../x", "k", 1)
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())


@pytest.mark.trio
async def test_the_least_recently_used_go_first_past_the_requestor_bound(tmp_path: Path) -> None:
    caches = JobCaches(tmp_path, per_requestor_bytes=300, total_bytes=10_000)
    await caches.open()
    for key in ("a", "b", "c"):
        await _save(caches, "alice", key, 100)
    entry = caches.lookup("alice", "a")
    assert entry is not None
    await caches.touch(entry)  # "a" was restored: "b" is now the oldest
    await _save(caches, "alice", "d", 100)
    assert [caches.lookup("alice", k) is not None for k in "abcd"] == [True, False, True, True]
    assert not caches.path_of("alice", "b").exists() and caches.evicted == 1
    # a saved key replaces its older content (and its size)
    await _save(caches, "alice", "a", 50)
    assert caches.used_bytes == 250
    # one over the bound is refused and leaves nothing behind
    partial = caches.partial_path("alice")
    partial.write_bytes(b"x" * 301)
    with pytest.raises(ValueError, match="over this provider's bound"):
        await caches.commit("alice", "big", partial, 301)
    assert not partial.exists() and caches.used_bytes == 250


@pytest.mark.trio
async def test_the_total_bound_evicts_the_oldest_of_anyone(tmp_path: Path) -> None:
    caches = JobCaches(tmp_path, per_requestor_bytes=200, total_bytes=300)
    await caches.open()
    await _save(caches, "alice", "a1", 100)
    await _save(caches, "bob", "b1", 100)
    await _save(caches, "alice", "a2", 100)
    await _save(caches, "bob", "b2", 100)  # 400 > 300: alice's a1, the oldest, goes
    assert caches.lookup("alice", "a1") is None
    assert all(caches.lookup(r, k) for r, k in (("bob", "b1"), ("alice", "a2"), ("bob", "b2")))
    assert caches.used_bytes == 300


@pytest.mark.trio
async def test_the_count_per_requestor_is_bounded(tmp_path: Path) -> None:
    caches = JobCaches(tmp_path, per_requestor_bytes=10**9, total_bytes=10**9)
    await caches.open()
    for i in range(MAX_ENTRIES_PER_REQUESTOR + 3):
        await _save(caches, "alice", f"k{i}", 1)
    assert len(caches.entries_of("alice")) == MAX_ENTRIES_PER_REQUESTOR
    assert caches.lookup("alice", "k0") is None and caches.lookup("alice", f"k{MAX_ENTRIES_PER_REQUESTOR + 2}")


@pytest.mark.trio
async def test_caches_survive_a_restart_within_the_new_bounds(tmp_path: Path) -> None:
    caches = JobCaches(tmp_path, per_requestor_bytes=1000, total_bytes=1000)
    await caches.open()
    for key in ("old", "mid", "new"):
        await _save(caches, "alice", key, 100)
        os.utime(caches.path_of("alice", key), (1000 + len(caches.entries_of("alice")),) * 2)
    (tmp_path / "alice" / "0123.part").write_bytes(b"half")  # a save cut by a crash
    again = JobCaches(tmp_path, per_requestor_bytes=200, total_bytes=1000)  # the operator lowered the bound
    await again.open()
    assert [again.lookup("alice", k) is not None for k in ("old", "mid", "new")] == [False, True, True]
    assert not (tmp_path / "alice" / "0123.part").exists()
    assert again.used_bytes == 200 and not caches.path_of("alice", "old").exists()


def test_the_commands_round_trip_and_are_checked() -> None:
    script = [{"cache_restore": {"key": "r/k", "to": "/work/in/c.tar"}},
              {"cache_save": {"key": "r/k", "from": "/work/out/c.tar"}}]
    parsed = parse_script(script)
    assert parsed == [CacheRestore("r/k", "/work/in/c.tar"), CacheSave("r/k", "/work/out/c.tar")]
    assert script_to_wire(parsed) == script
    for bad, field in (({"cache_restore": {"key": "", "to": "/work/in/c"}}, "key"),
                       ({"cache_restore": {"key": "k" * 513, "to": "/work/in/c"}}, "key"),
                       ({"cache_restore": {"key": 5, "to": "/work/in/c"}}, "key"),
                       ({"cache_restore": {"key": "k", "to": "/etc/passwd"}}, "to"),
                       ({"cache_save": {"key": "k", "from": "/work/in/../../x"}}, "from"),
                       ({"cache_save": {"key": "k"}}, "from")):
        with pytest.raises(ScriptError) as info:
            parse_script([bad])
        assert info.value.field == field


@pytest.mark.trio
async def test_saved_by_one_activity_restored_by_the_next(tmp_path: Path, test_image: str) -> None:
    async with pair(tmp_path, NodeKey.generate()) as p:
        make = {"run": {"argv": ["sh", "-c", "mkdir -p /work/out && head -c 200000 /dev/urandom > /work/out/c.tar"]}}
        first, result = await p.run([{"deploy": {"image": test_image}}, {"start": {}}, make,
                                     {"cache_restore": {"key": "repo/deps", "to": "/work/in/c.tar"}}])
        restore = result["results"][3]
        assert restore["exit_code"] == 1 and "no cache" in restore["stderr"]  # a miss is not an error
        _, result = await p.run([{"cache_save": {"key": "repo/deps", "from": "/work/out/c.tar"}},
                                 {"run": {"argv": ["sha256sum", "/work/out/c.tar"]}}], first)
        saved = result["results"][0]
        assert saved["error"] is None and saved["size"] == 200000
        assert result["results"][1]["stdout"].split()[0] == saved["sha256"]
        await p.destroy(first)
        second, result = await p.run([{"deploy": {"image": test_image}}, {"start": {}},
                                      {"cache_restore": {"key": "repo/deps", "to": "/work/in/c.tar"}},
                                 {"run": {"argv": ["sha256sum", "/work/in/c.tar"]}}])
        restored = result["results"][2]
        assert restored["exit_code"] == 0 and restored["sha256"] == saved["sha256"]
        assert result["results"][3]["stdout"].split()[0] == saved["sha256"]
        assert p.prov.provider is not None and p.prov.provider.caches.view()["caches"] == 1
        # bigger than what the provider keeps for a requestor: refused, nothing kept
        p.prov.provider.caches.per_requestor_bytes = 1000
        _, result = await p.run([make, {"cache_save": {"key": "repo/big", "from": "/work/out/c.tar"}}], second)
        assert result["results"][1]["error"] and "1000" in result["results"][1]["error"]
        assert p.prov.provider.caches.view()["caches"] == 1
        assert not list((tmp_path / "prov" / "exeunit" / "caches").glob("*/*.part"))
