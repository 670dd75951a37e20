"""`yagna pipeline run` against real daemons and containers: a C program built, tested and brought back.

Three providers, a funded requestor, a git repository with a small C program and a
`.yagna/pipeline.yml` that builds it with `make` in `local/debian-gcc:12` (Debian's toolchain,
imported from this machine's packages: scripts/build-toolchain-image.sh), tests it and returns the
binary as an artifact. Checked: the JSON result (steps, exit codes, artifact hashes), the binary
runs here; a failing step stops the pipeline and sets the exit code (a step allowed to fail does
not); a matrix of three runs on three different providers; secrets are masked in the logs. And
caches: saved by the provider that ran the job, hit there by the next run (which is faster by the
work the cache saves), uploaded from the requestor's copy when that provider is gone; ``--verify``
on two providers agrees on a deterministic build and reports a build that is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from e2e.daemons import YAGNA, Daemon, containers_of, devnet, wait_until

ROOT = Path(__file__).resolve().parent.parent

HELLO_C = r"""#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "world";
    printf("hello, %s (%zu)\n", who, strlen(who));
    return 0;
}
"""
MAKEFILE = """\
CFLAGS ?= -O2 -Wall
out/hello: src/hello.c
\tmkdir -p out
\t$(CC) $(CFLAGS) -o $@ $<
test: out/hello
\t./out/hello yagna | grep -q 'hello, yagna (5)'
\t@echo tests passed
"""
PIPELINE = """\
image: local/debian-gcc:12
env:
  GREETING: hi
secrets: [DEPLOY_TOKEN]
steps:
  - name: build
    run: make
  - name: test
    run: |
      make test
      echo "token is $DEPLOY_TOKEN"
artifacts:
  - out/hello
"""


@pytest.fixture(scope="module")
def toolchain_image() -> str:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-toolchain-image.sh")], capture_output=True,
                         text=True, timeout=600, check=True)
    return out.stdout.strip().splitlines()[-1]


def _repo(path: Path, pipeline: str = PIPELINE) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "src" / "hello.c").write_text(HELLO_C)
    (path / "Makefile").write_text(MAKEFILE)
    (path / ".gitignore").write_text("out/\n*.o\n")
    (path / ".yagna").mkdir()
    (path / ".yagna" / "pipeline.yml").write_text(pipeline)
    (path / "out").mkdir()
    (path / "out" / "stale-binary").write_text("ignored by git: never uploaded")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "hello"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return path


def _pipeline(req: Daemon, repo: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*YAGNA, "--data-dir", str(req.data_dir), "pipeline", "run", "--json", *args], cwd=repo,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def test_build_test_and_bring_back_a_c_program(tmp_path: Path, daemons: list[Daemon], test_image: str,
                                               toolchain_image: str) -> None:
    req, provs = devnet(tmp_path, daemons)
    repo = _repo(tmp_path / "repo")

    proc = _pipeline(req, repo, env={"DEPLOY_TOKEN": "s3cr3t-value"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "passed" and result["exit_code"] == 0, result
    assert [(s["name"], s["status"], s["exit_code"]) for s in result["steps"]] == [
        ("build", "passed", 0), ("test", "passed", 0)]
    assert result["provider_id"] in {p.node_id for p in provs} and float(result["cost"]) > 0
    (artifact,) = result["artifacts"]
    local = Path(result["artifacts_dir"]) / artifact["path"]
    assert artifact["path"] == "out/hello" and local.stat().st_size == artifact["size"]
    assert hashlib.sha256(local.read_bytes()).hexdigest() == artifact["sha256"]
    assert Path(result["artifacts_dir"]).is_relative_to(repo / ".yagna" / "artifacts")
    ran = subprocess.run([str(local), "pipeline"], capture_output=True, text=True, check=True)
    assert ran.stdout == "hello, pipeline (8)\n"  # built on the network, runs here
    logs = proc.stderr
    assert "==> build" in logs and "==> test" in logs and "tests passed" in logs
    assert "token is ***" in logs and "s3cr3t-value" not in logs + proc.stdout  # the secret is masked
    assert "stale-binary" not in logs

    # A failing step stops the pipeline with its exit code; a step allowed to fail does not.
    failing = PIPELINE.replace("artifacts:\n  - out/hello\n", "").replace("secrets: [DEPLOY_TOKEN]\n", "") + """\
  - name: lint
    continue_on_error: true
    run: exit 5
  - name: broken
    run: exit 3
  - name: never
    run: echo never ran
"""
    (repo / ".yagna" / "pipeline.yml").write_text(failing)
    proc = _pipeline(req, repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["exit_code"] == 3
    assert [(s["name"], s["status"]) for s in result["steps"]] == [
        ("build", "passed"), ("test", "passed"), ("lint", "failed (allowed)"), ("broken", "failed"),
        ("never", "skipped")]
    assert "never ran" not in proc.stderr

    # A matrix of three: each combination a job of its own, on three different providers.
    matrix = PIPELINE.replace("secrets: [DEPLOY_TOKEN]\n", "").replace('echo "token is $DEPLOY_TOKEN"', "true") + """\
matrix:
  opt: ["-O0", "-O1", "-O2"]
"""
    matrix = matrix.replace("run: make\n", "run: make CFLAGS='${{ matrix.opt }} -Wall'\n")
    (repo / ".yagna" / "pipeline.yml").write_text(matrix)
    proc = _pipeline(req, repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "passed" and len(result["runs"]) == 3
    assert {r["matrix"]["opt"] for r in result["runs"]} == {"-O0", "-O1", "-O2"}
    assert len({r["provider_id"] for r in result["runs"]}) == 3, "each combination on its own provider"
    assert all(r["status"] == "passed" and r["artifacts"] for r in result["runs"])
    wait_until(lambda: all(containers_of(p.node_id) == [] for p in provs), timeout=30, what="containers removed")


CACHED = """\
image: local/busybox:1
cache:
  key: deps-${{ hashFiles('deps.lock') }}
  paths: [.deps]
steps:
  - name: deps
    run: |
      if [ -f .deps/lib.txt ]; then echo "deps from cache"; else
        sleep 3; mkdir -p .deps; cp deps.lock .deps/lib.txt; head -c 200000 /dev/urandom > .deps/blob
        echo "deps built"; fi
  - name: build
    run: mkdir -p out && cat .deps/lib.txt src.txt > out/app.txt
artifacts: ["out/**/*.txt"]
"""


def _cached_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "deps.lock").write_text("libfoo==1.2\n")
    (path / "src.txt").write_text("the app\n")
    (path / ".gitignore").write_text(".deps/\nout/\n")
    (path / ".yagna").mkdir()
    (path / ".yagna" / "pipeline.yml").write_text(CACHED)
    for cmd in (["git", "init", "-q"], ["git", "remote", "add", "origin", "https://example.org/app.git"],
                ["git", "add", "-A"], ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit",
                                       "-qm", "app"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return path


def _deps(result: dict[str, object]) -> dict[str, object]:
    return next(s for s in result["steps"] if s["name"] == "deps")  # type: ignore[attr-defined, union-attr]


def test_caches_and_verification(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    req, provs = devnet(tmp_path, daemons)
    repo = _cached_repo(tmp_path / "repo")

    cold = _pipeline(req, repo)
    assert cold.returncode == 0, cold.stdout + cold.stderr
    first = json.loads(cold.stdout)
    (cache,) = first["caches"]
    assert cache["status"] == "miss" and cache["saved"] and cache["bytes"] > 200000, cache
    assert cache["key"].startswith("deps-") and len(cache["key"]) == len("deps-") + 64
    assert "deps built" in cold.stderr

    warm = _pipeline(req, repo)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    second = json.loads(warm.stdout)
    assert second["provider_id"] == first["provider_id"], "the job goes where its cache is"
    assert second["caches"][0]["status"] == "hit" and not second["caches"][0]["saved"]
    assert "deps from cache" in warm.stderr and "deps built" not in warm.stderr
    # measurably faster: the step skipped the 3 s of work the cache holds
    assert float(_deps(first)["seconds"]) - float(_deps(second)["seconds"]) > 2.0, (first, second)
    assert second["artifacts"][0]["sha256"] == first["artifacts"][0]["sha256"]

    # The provider holding the cache is gone: the job runs elsewhere and uploads the requestor's copy.
    holder = next(p for p in provs if p.node_id == first["provider_id"])
    holder.stop()
    moved = _pipeline(req, repo)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    third = json.loads(moved.stdout)
    assert third["provider_id"] != first["provider_id"]
    assert third["caches"][0]["status"] == "uploaded" and third["caches"][0]["saved"], third["caches"]
    assert "deps from cache" in moved.stderr

    # A new lock file is a new key: built again.
    (repo / "deps.lock").write_text("libfoo==1.3\n")
    fresh = json.loads(_pipeline(req, repo).stdout)
    assert fresh["caches"][0]["status"] == "miss" and fresh["caches"][0]["key"] != cache["key"]

    # --verify: the same job on the two providers left; a deterministic build agrees ...
    proc = _pipeline(req, repo, "--verify", "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    verify = result["verify"]
    assert verify["match"] and verify["differences"] == [] and verify["provider_id"] != result["provider_id"]
    assert verify["run"]["artifacts"] == result["artifacts"] and result["caches"] == []
    # ... a build that is not reproducible is reported, and fails the run.
    (repo / ".yagna" / "pipeline.yml").write_text(CACHED.replace("src.txt > out/app.txt",
                                                                 "src.txt /proc/sys/kernel/random/uuid > out/app.txt"))
    proc = _pipeline(req, repo, "--verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and not result["verify"]["match"]
    assert any(d.startswith("artifact out/app.txt: sha256") for d in result["verify"]["differences"]), result
    assert [s["status"] for s in result["steps"]] == ["passed", "passed"]  # the steps agreed
    assert (Path(result["artifacts_dir"]) / "verify" / "out" / "app.txt").is_file()
    wait_until(lambda: all(containers_of(p.node_id) == [] for p in provs if p is not holder), timeout=30,
               what="containers removed")
