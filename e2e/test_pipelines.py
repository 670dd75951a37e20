"""`yagna pipeline run` against real daemons and containers: a C program built, tested and brought back.

Three providers, a funded requestor, a git repository with a small C program and a
`.yagna/pipeline.yml` that builds it with `make` in `local/debian-gcc:12` (Debian's toolchain,
imported from this machine's packages: scripts/build-toolchain-image.sh), tests it and returns the
binary as an artifact. Checked: the JSON result (steps, exit codes, artifact hashes), the binary
runs here; a failing step stops the pipeline and sets the exit code (a step allowed to fail does
not); a matrix of three runs on three different providers; secrets are masked in the logs.
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
