"""Golem's own requestor SDK against our daemons: yapapi 0.13.1 (from `.venv-golem`, pinned in
golem-compat/requirements.txt) runs its `examples/hello-world/hello.py`, unmodified, and prints the
date from our provider; the provider ran the Golem VM image (a `.gvmi` made by `yagna image pack`),
and both sides end paid in full.

Everything runs in a network namespace of the test's own (root): the daemons, a stand-in for
Golem's image registry at `registry.golem.network` (a namespace-local hosts entry and a
self-signed certificate trusted by the yapapi process only) and yapapi. Nothing dials outside it.
The namespace and every process are removed afterwards, also after a failure.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.daemons import containers_of
from e2e.golem_net import GOLEM_PYTHON, HELLO, ROOT, Namespace, golem_net, status, yapapi, yapapi_argv


def _needs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace, port 443 inside it)")
    if not GOLEM_PYTHON.exists():
        pytest.fail("yapapi is not installed: run `make setup` (it makes .venv-golem)")


@pytest.fixture
def golem(tmp_path: Path, test_image: str) -> Iterator[tuple[Namespace, dict[str, Any]]]:
    _needs()
    with golem_net(tmp_path) as world:
        yield world


@pytest.fixture
def golem2(tmp_path: Path, test_image: str) -> Iterator[tuple[Namespace, dict[str, Any]]]:
    _needs()
    with golem_net(tmp_path, providers=2) as world:
        yield world


def test_yapapis_hello_world_runs_unmodified(tmp_path: Path, golem: tuple[Namespace, dict[str, Any]]) -> None:
    ns, nodes = golem
    work = tmp_path / "hello"
    work.mkdir()
    started = time.monotonic()
    hello = yapapi(ns, nodes, tmp_path, work, str(HELLO))
    took = time.monotonic() - started
    assert hello.returncode == 0, f"{hello.stdout}\n{hello.stderr}\n{(work / 'hello.log').read_text()[-4000:]}"
    # hello.py prints `date` as run on the provider, e.g. "Fri Dec  4 07:34:34 UTC 2026"
    assert re.search(r"^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \w+ \d{4}$", hello.stdout, re.M), hello.stdout
    assert "Accepted invoice" in hello.stderr, hello.stderr[-3000:]
    print(f"hello.py: {took:.1f} s from start to exit")
    deadline = time.monotonic() + 30
    while True:
        req, prov = status(ns, nodes["req"]), status(ns, nodes["prov"])
        rows = [r for s in (req, prov) for r in s["agreements"]]
        if len(rows) == 2 and all(r["state"] == "closed" for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    assert prov["agreements"][0]["reason"] == "paid in full"
    assert prov["balance"]["earned_units"] == req["balance"]["spent_units"] > 0


def test_a_yapapi_script_moves_files_in_and_out_through_gftp(tmp_path: Path,
                                                            golem: tuple[Namespace, dict[str, Any]]) -> None:
    """The shape of Golem's blender example: upload inputs, run a command on each, download outputs."""
    ns, nodes = golem
    work, inputs, outputs = tmp_path / "files", tmp_path / "in", tmp_path / "out"
    for d in (work, inputs, outputs):
        d.mkdir()
    for i in range(3):
        (inputs / f"part{i}.txt").write_text(f"input number {i}\n" * (200 * (i + 1)))
    run = yapapi(ns, nodes, tmp_path, work, str(ROOT / "tests" / "golem" / "yapapi_examples" / "files_roundtrip.py"),
                  str(inputs), str(outputs))
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert sorted(run.stdout.split()) == sorted(["done"] * 3 + [f"part{i}.txt" for i in range(3)]), run.stdout
    for i in range(3):
        assert (outputs / f"part{i}.txt.out").read_bytes() == (inputs / f"part{i}.txt").read_text().upper().encode()


def test_stream_output_comes_as_server_sent_events(tmp_path: Path, golem: tuple[Namespace, dict[str, Any]]) -> None:
    ns, nodes = golem
    work = tmp_path / "stream"
    work.mkdir()
    run = yapapi(ns, nodes, tmp_path, work, str(ROOT / "tests" / "golem" / "yapapi_examples" / "stream_output.py"))
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    lines = [line for line in run.stdout.splitlines() if line.startswith("stdout ")]
    assert lines == ["stdout streamed-one", "stdout streamed-two"], run.stdout


def test_a_task_whose_provider_dies_is_retried_on_another(tmp_path: Path,
                                                          golem2: tuple[Namespace, dict[str, Any]]) -> None:
    ns, nodes = golem2
    run, out = _started(ns, nodes, tmp_path, "retry")
    first = out.read_text().split("started ", 1)[1].split()[0]
    victim = next(p for p in nodes["provs"] if p["info"]["node_id"] == first)
    victim["proc"].kill()  # kill -9 of the provider running the task
    victim["proc"].wait(timeout=10)
    run.wait(timeout=150)
    text = out.read_text()
    assert run.returncode == 0, text[-4000:]
    starts = [line.split()[1] for line in text.splitlines() if line.startswith("started ")]
    assert starts[0] == first and any(s != first for s in starts[1:]), text[-3000:]
    assert "result finished" in text, text[-3000:]
    # The killed provider comes back and removes the container its killed run left.
    ns.spawn([sys.executable, "-m", "yagna", "--data-dir", str(victim["dir"]), "service", "run", "--api-port", "0",
              "--role", "provider"], tmp_path / "victim-restart.log")
    deadline = time.monotonic() + 60
    while containers_of(first):
        assert time.monotonic() < deadline, (tmp_path / "victim-restart.log").read_text()[-3000:]
        time.sleep(0.2)


def test_ctrl_c_leaves_nothing_running_and_everything_paid(tmp_path: Path,
                                                           golem: tuple[Namespace, dict[str, Any]]) -> None:
    ns, nodes = golem
    run, out = _started(ns, nodes, tmp_path, "interrupted")
    time.sleep(1.0)  # the command runs
    run.send_signal(signal.SIGINT)  # Ctrl-C
    run.wait(timeout=90)
    provider = nodes["prov_info"]["node_id"]
    deadline = time.monotonic() + 60
    while True:
        req, prov = status(ns, nodes["req"]), status(ns, nodes["prov"])
        rows = [r for st in (req, prov) for r in st["agreements"]]
        if not containers_of(provider) and rows and all(r["state"] == "closed" for r in rows):
            break
        assert time.monotonic() < deadline, (rows, containers_of(provider), out.read_text()[-3000:])
        time.sleep(0.3)
    assert prov["balance"]["earned_units"] == req["balance"]["spent_units"] > 0  # the work done is paid
    assert prov["agreements"][0]["reason"] == "paid in full", prov["agreements"]


def _started(ns: Namespace, nodes: dict[str, Any], tmp_path: Path, name: str) -> tuple[Any, Path]:
    """retry_task.py running in the background, once its task has started: (process, its output file)."""
    work, out = tmp_path / name, tmp_path / f"{name}.out"
    work.mkdir()
    run = ns.spawn(yapapi_argv(nodes, tmp_path, work, str(ROOT / "tests" / "golem" / "yapapi_examples" / "retry_task.py")),
                   out)
    deadline = time.monotonic() + 60
    while "started" not in out.read_text():
        assert run.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
        time.sleep(0.1)
    return run, out
