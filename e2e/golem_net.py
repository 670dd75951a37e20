"""A Golem world on this machine, for the e2e tests and the bench: a network namespace holding our
daemons (a provider and a requestor on port 7465), a stand-in for Golem's image registry at
``registry.golem.network`` (a namespace-local hosts entry, a self-signed certificate) serving one
``.gvmi`` made by ``yagna image pack``, and helpers to run yapapi (``.venv-golem``) inside it.

Root only (a namespace, port 443 in it). Everything is removed on exit, also after a failure;
nothing dials outside the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def wait_node(data_dir: Path, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
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


def golem_image(gvmi: Path) -> None:
    """local/busybox:1 with Golem's volumes (/golem/input, /golem/output), packed by `yagna image pack`."""
    import docker

    client = docker.from_env()
    session = os.environ.get("YAGNA_TEST_SESSION")  # the test suite checks nothing is left behind
    labels = {"network.yagna.test-session": session} if session else {}
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


@contextlib.contextmanager
def golem_net(tmp_path: Path, providers: int = 1) -> Iterator[tuple[Namespace, dict[str, Any]]]:
    """The world; its description: ``prov`` (the first provider's data dir), ``provs`` (all, with
    their processes), ``req``, ``req_info``, ``prov_info``."""
    gvmi = tmp_path / "busybox.gvmi"
    golem_image(gvmi)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "2", "-subj", "/CN=registry.golem.network",
                    "-addext", "subjectAltName=DNS:registry.golem.network"], check=True, capture_output=True)
    with Namespace(tmp_path) as ns:
        registry = ns.spawn([*PY, str(ROOT / "e2e" / "golem_registry.py"), "--gvmi", str(gvmi), "--cert",
                             str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem")], tmp_path / "registry.log")
        provs = []
        for i in range(providers):
            name = "prov" if i == 0 else f"prov{i + 1}"
            boot = ["--bootstrap", provs[0]["info"]["p2p_addrs"][0]] if provs else []
            proc = ns.spawn([*PY, "-m", "yagna", "--data-dir", str(tmp_path / name), "service", "run", "--api-port",
                             "0", "--role", "provider", *boot], tmp_path / f"{name}.log")
            provs.append({"dir": tmp_path / name, "proc": proc,
                          "info": wait_node(tmp_path / name, proc, tmp_path / f"{name}.log")})
        req_dir = tmp_path / "req"
        req = ns.spawn([*PY, "-m", "yagna", "--data-dir", str(req_dir), "service", "run", "--api-port", "7465",
                        "--role", "requestor", "--bootstrap", provs[0]["info"]["p2p_addrs"][0]], tmp_path / "req.log")
        req_info = wait_node(req_dir, req, tmp_path / "req.log")
        funded = ns.run([*PY, "-m", "yagna", "--data-dir", str(req_dir), "payment", "fund", "--amount", "10"], timeout=60)
        assert funded.returncode == 0, funded.stderr
        deadline = time.monotonic() + 30
        while "ready" not in (tmp_path / "registry.log").read_text():
            assert registry.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.05)
        while True:  # every provider's offer known to the requestor
            offers = ns.run([*PY, "-m", "yagna", "--data-dir", str(req_dir), "market", "offers", "--json"], timeout=30)
            if offers.returncode == 0 and len({o["provider_id"] for o in json.loads(offers.stdout)}) >= providers:
                break
            assert time.monotonic() < deadline, offers.stdout
            time.sleep(0.2)
        yield ns, {"prov": provs[0]["dir"], "provs": provs, "req": req_dir, "req_info": req_info,
                   "prov_info": provs[0]["info"]}


def status(ns: Namespace, data_dir: Path) -> dict[str, Any]:
    out = ns.run([*PY, "-m", "yagna", "--data-dir", str(data_dir), "payment", "status", "--json"], timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def yapapi_argv(nodes: dict[str, Any], tmp_path: Path, work: Path, *args: str) -> list[str]:
    """yapapi's python with the environment a Golem user sets (app key, API URL, our gftp on PATH)."""
    env = {"HOME": str(work), "YAGNA_APPKEY": (nodes["req"] / "app-key").read_text().strip(),
           "YAGNA_API_URL": "http://127.0.0.1:7465", "SSL_CERT_FILE": str(tmp_path / "cert.pem"),
           "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(GOLEM_PYTHON), *args]


def yapapi(ns: Namespace, nodes: dict[str, Any], tmp_path: Path, work: Path,
           *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run(yapapi_argv(nodes, tmp_path, work, *args), cwd=work, timeout=180)
