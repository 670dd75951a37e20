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

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLEM_PYTHON = ROOT / ".venv-golem" / "bin" / "python"
HELLO = ROOT / "tests" / "golem" / "yapapi_examples" / "hello.py"
PY = [sys.executable]


class Namespace:
    def __init__(self, tmp: Path) -> None:
        self.name = f"yg-golem-{secrets.token_hex(3)}"
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        hosts = Path("/etc/netns") / self.name
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 registry.golem.network\n")
        return self

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, **kw)

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(Path("/etc/netns") / self.name, ignore_errors=True)


def _wait_node(data_dir: Path, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited:\n{log.read_text()[-3000:]}")
        try:
            info = json.loads((data_dir / "node.json").read_text())
            if info.get("pid"):
                return info  # type: ignore[no-any-return]
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"daemon not ready:\n{log.read_text()[-3000:]}")


def _golem_image(gvmi: Path) -> None:
    """local/busybox:1 with Golem's volumes (/golem/input, /golem/output), packed by `yagna image pack`."""
    import docker

    client = docker.from_env()
    labels = {"network.yagna.test-session": os.environ["YAGNA_TEST_SESSION"]}
    box = client.api.create_container("local/busybox:1", command=["true"], labels=labels)
    image = client.api.commit(box["Id"], repository="local/busybox-golem", tag="e2e",
                              changes=['VOLUME ["/golem/input", "/golem/output"]'])["Id"]
    client.api.remove_container(box["Id"], force=True)
    try:
        subprocess.run([*PY, "-m", "yagna", "image", "pack", image, "-o", str(gvmi)], check=True,
                       capture_output=True, timeout=120)
    finally:
        client.api.remove_image(image, force=True)
        client.close()


@pytest.fixture
def golem_net(tmp_path: Path, test_image: str) -> Iterator[tuple[Namespace, dict[str, Any]]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace, port 443 inside it)")
    if not GOLEM_PYTHON.exists():
        pytest.fail("yapapi is not installed: run `make setup` (it makes .venv-golem)")
    gvmi = tmp_path / "busybox.gvmi"
    _golem_image(gvmi)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "2", "-subj", "/CN=registry.golem.network",
                    "-addext", "subjectAltName=DNS:registry.golem.network"], check=True, capture_output=True)
    with Namespace(tmp_path) as ns:
        registry = ns.spawn([*PY, str(ROOT / "e2e" / "golem_registry.py"), "--gvmi", str(gvmi), "--cert",
                             str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem")], tmp_path / "registry.log")
        prov_dir, req_dir = tmp_path / "prov", tmp_path / "req"
        prov = ns.spawn([*PY, "-m", "yagna", "--data-dir", str(prov_dir), "service", "run", "--api-port", "0",
                         "--role", "provider"], tmp_path / "prov.log")
        prov_info = _wait_node(prov_dir, prov, tmp_path / "prov.log")
        req = ns.spawn([*PY, "-m", "yagna", "--data-dir", str(req_dir), "service", "run", "--api-port", "7465",
                        "--role", "requestor", "--bootstrap", prov_info["p2p_addrs"][0]], tmp_path / "req.log")
        req_info = _wait_node(req_dir, req, tmp_path / "req.log")
        funded = ns.run([*PY, "-m", "yagna", "--data-dir", str(req_dir), "payment", "fund", "--amount", "10"], timeout=60)
        assert funded.returncode == 0, funded.stderr
        deadline = time.monotonic() + 30
        while "ready" not in (tmp_path / "registry.log").read_text():
            assert registry.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.05)
        yield ns, {"prov": prov_dir, "req": req_dir, "req_info": req_info, "prov_info": prov_info}


def _status(ns: Namespace, data_dir: Path) -> dict[str, Any]:
    out = ns.run([*PY, "-m", "yagna", "--data-dir", str(data_dir), "payment", "status", "--json"], timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _yapapi(ns: Namespace, nodes: dict[str, Any], tmp_path: Path, work: Path,
            *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(work), "YAGNA_APPKEY": (nodes["req"] / "app-key").read_text().strip(),
           "YAGNA_API_URL": "http://127.0.0.1:7465", "SSL_CERT_FILE": str(tmp_path / "cert.pem"),
           "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin"}  # gftp: our console script
    return ns.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(GOLEM_PYTHON), *args],
                  cwd=work, timeout=180)


def test_yapapis_hello_world_runs_unmodified(tmp_path: Path, golem_net: tuple[Namespace, dict[str, Any]]) -> None:
    ns, nodes = golem_net
    work = tmp_path / "hello"
    work.mkdir()
    started = time.monotonic()
    hello = _yapapi(ns, nodes, tmp_path, work, str(HELLO))
    took = time.monotonic() - started
    assert hello.returncode == 0, f"{hello.stdout}\n{hello.stderr}\n{(work / 'hello.log').read_text()[-4000:]}"
    # hello.py prints `date` as run on the provider, e.g. "Fri Dec  4 07:34:34 UTC 2026"
    assert re.search(r"^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \w+ \d{4}$", hello.stdout, re.M), hello.stdout
    assert "Accepted invoice" in hello.stderr, hello.stderr[-3000:]
    print(f"hello.py: {took:.1f} s from start to exit")
    deadline = time.monotonic() + 30
    while True:
        req, prov = _status(ns, nodes["req"]), _status(ns, nodes["prov"])
        rows = [r for s in (req, prov) for r in s["agreements"]]
        if len(rows) == 2 and all(r["state"] == "closed" for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    assert prov["agreements"][0]["reason"] == "paid in full"
    assert prov["balance"]["earned_units"] == req["balance"]["spent_units"] > 0


def test_a_yapapi_script_moves_files_in_and_out_through_gftp(tmp_path: Path,
                                                            golem_net: tuple[Namespace, dict[str, Any]]) -> None:
    """The shape of Golem's blender example: upload inputs, run a command on each, download outputs."""
    ns, nodes = golem_net
    work, inputs, outputs = tmp_path / "files", tmp_path / "in", tmp_path / "out"
    for d in (work, inputs, outputs):
        d.mkdir()
    for i in range(3):
        (inputs / f"part{i}.txt").write_text(f"input number {i}\n" * (200 * (i + 1)))
    run = _yapapi(ns, nodes, tmp_path, work, str(ROOT / "tests" / "golem" / "yapapi_examples" / "files_roundtrip.py"),
                  str(inputs), str(outputs))
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert sorted(run.stdout.split()) == sorted(["done"] * 3 + [f"part{i}.txt" for i in range(3)]), run.stdout
    for i in range(3):
        assert (outputs / f"part{i}.txt.out").read_bytes() == (inputs / f"part{i}.txt").read_text().upper().encode()

