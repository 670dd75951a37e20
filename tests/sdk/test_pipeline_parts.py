"""Pieces of ``yagna pipeline run`` without a network: path globs, the collect script, the requestor's
cache index, ``--verify``'s comparison."""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from requestor_sdk.pipeline import JobResult, StepResult, collect_script, compare_runs, glob_ere
from requestor_sdk.pipeline_cache import LocalCaches, repository_id


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("out/app", ["out/app", "out/app/inner"], ["out/apps", "x/out/app"]),
    ("out/*.o", ["out/a.o"], ["out/a/b.o", "out/a.c"]),
    ("out/**/*.o", ["out/a.o", "out/a/b.o", "out/a/b/c.o"], ["out/a.c", "x/out/a.o"]),
    ("reports/**", ["reports/a", "reports/a/b.xml"], ["reports2/a"]),
    ("**/x.txt", ["x.txt", "a/x.txt", "a/b/x.txt"], ["a/xx.txt"]),
    ("a?.[ch]", ["ab.c", "ab.h"], ["ab.o", "abc.c", "a/.c"]),
    ("a[!x].c", ["ab.c"], ["ax.c"]),
    ("v1.2+(x)|y$", ["v1.2+(x)|y$"], ["v1x2+(x)|y$"]),
])
def test_globs_as_extended_regexes(pattern: str, yes: list[str], no: list[str]) -> None:
    regex = re.compile(glob_ere(pattern))  # the ERE subset used is Python's too
    assert all(regex.match(p) for p in yes), [p for p in yes if not regex.match(p)]
    assert not any(regex.match(p) for p in no), [p for p in no if regex.match(p)]


def test_the_collect_script_packs_what_the_patterns_match(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    for name in ("out/app", "out/top.o", "out/a/b/deep.o", "out/a/keep.c", "x y", "docs/r.md", "docs/sub/s.md"):
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(name)
    archive = tmp_path / "a.tar"
    script = collect_script(["out/app", "out/**/*.o", "x y", "nothing/**", "docs/*.md", "gone"], str(archive),
                            say_missing="no artifact matches").replace("cd /work/ws", f"cd {ws}")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    with tarfile.open(archive) as tf:
        assert sorted(tf.getnames()) == ["docs/r.md", "out/a/b/deep.o", "out/app", "out/top.o", "x y"]
    assert "no artifact matches nothing/**" in proc.stderr and "no artifact matches gone" in proc.stderr
    nothing = subprocess.run(["sh", "-c", collect_script(["none/**", "no"], str(tmp_path / "b.tar")).replace(
        "cd /work/ws", f"cd {ws}")], capture_output=True, text=True, check=True)
    assert nothing.stdout.strip() == "none" and not (tmp_path / "b.tar").exists()


def test_local_caches_remember_holders_and_keep_copies_within_a_bound(tmp_path: Path) -> None:
    caches = LocalCaches(tmp_path, "repo1", max_bytes=250)
    key = caches.full_key("deps-1")
    assert key == "repo1/deps-1" and caches.get(key) is None and caches.holders([key]) == []
    copy = tmp_path / "incoming.tar"
    copy.write_bytes(b"x" * 100)
    caches.remember(key, "prov-a", copy=copy, sha256="ab" * 32)
    entry = caches.get(key)
    assert entry is not None and entry.provider_id == "prov-a" and entry.size == 100
    assert caches.file_of(key).read_bytes() == b"x" * 100 and not copy.exists()
    caches.remember(key, "prov-b")  # a hit elsewhere: the holder changes, the copy stays
    assert caches.holders([key]) == ["prov-b"] and caches.get(key).sha256 == "ab" * 32  # type: ignore[union-attr]
    other = LocalCaches(tmp_path, "repo2", max_bytes=250)
    for i in range(2):  # 300 bytes in all: the least recently used copy goes, its holder is still known
        f = tmp_path / "in.tar"
        f.write_bytes(b"y" * 100)
        other.remember(other.full_key(f"k{i}"), "prov-c", copy=f, sha256="cd" * 32)
    assert caches.get(key).sha256 is None and caches.holders([key]) == ["prov-b"]  # type: ignore[union-attr]
    assert other.get(other.full_key("k1")).sha256 == "cd" * 32  # type: ignore[union-attr]
    (tmp_path / "repo2" / "index.json").write_text("{not json")  # an unreadable index is an empty one
    assert other.get(other.full_key("k1")) is None


def test_the_repository_id_follows_the_origin_url(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        path.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=path, check=True)
        subprocess.run(["git", "remote", "add", "origin", "https://example.org/x.git"], cwd=path, check=True)
    assert repository_id(a) == repository_id(b)  # two clones share caches
    plain = tmp_path / "plain"
    plain.mkdir()
    assert repository_id(plain) != repository_id(a) and len(repository_id(plain)) == 16


def _job(provider: str, steps: Sequence[tuple[str, str, int | None]], artifacts: dict[str, str]) -> JobResult:
    return JobResult(run_id="r", combo={}, status="passed" if all(s[1] == "passed" for s in steps) else "failed",
                     exit_code=0, steps=[StepResult(n, st, code) for n, st, code in steps], provider_id=provider,
                     artifacts=[{"path": p, "sha256": h, "size": 1} for p, h in artifacts.items()])


def test_verify_compares_steps_and_artifacts() -> None:
    steps = [("build", "passed", 0), ("test", "passed", 0)]
    a, b = _job("p1", steps, {"out/app": "1" * 64}), _job("p2", steps, {"out/app": "1" * 64})
    compare_runs(a, b)
    assert a.verify is not None and a.verify["match"] and a.status == "passed" and a.view()["verify"]["provider_id"] == "p2"
    a = _job("p1", steps, {"out/app": "1" * 64, "out/log": "3" * 64})
    b = _job("p2", [("build", "passed", 0), ("test", "failed", 2)], {"out/app": "2" * 64})
    compare_runs(a, b)
    assert a.verify is not None and not a.verify["match"] and (a.status, a.exit_code) == ("failed", 1)
    assert a.verify["differences"] == ["step 'test': passed (exit code 0) vs failed (exit code 2)",
                                       f"artifact out/app: sha256 {'1' * 16}... vs {'2' * 16}...",
                                       "artifact out/log: only from the first provider"]
    a = _job("p1", steps, {})
    compare_runs(a, None)
    assert a.verify == {"provider_id": None, "match": False, "differences": ["the second run did not finish"],
                        "run": None}
