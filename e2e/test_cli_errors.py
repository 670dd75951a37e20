"""Bad configuration gets one line that says what to do, a non-zero exit, no traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.daemons import run_cli


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def _assert_one_line_error(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_api_port_in_use(tmp_path: Path, busy_port: int) -> None:
    proc = run_cli("service", "run", "--api-port", str(busy_port), data_dir=tmp_path / "n", check=False)
    _assert_one_line_error(proc, str(busy_port), "already in use", "--api-port")


def test_p2p_port_in_use(tmp_path: Path, busy_port: int) -> None:
    proc = run_cli("service", "run", "--api-port", "0", "--listen", f"/ip4/127.0.0.1/tcp/{busy_port}",
                   data_dir=tmp_path / "n", check=False)
    _assert_one_line_error(proc, str(busy_port), "already in use", "--listen")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a directory")
    proc = run_cli("service", "run", "--api-port", "0", data_dir=path, check=False)
    _assert_one_line_error(proc, str(path), "not a directory")


def test_data_dir_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "sub"
    proc = run_cli("service", "run", "--api-port", "0", data_dir=path, check=False)
    _assert_one_line_error(proc, str(path))


def test_corrupt_node_key(tmp_path: Path) -> None:
    data = tmp_path / "n"
    data.mkdir()
    (data / "node.key").write_bytes(b"garbage")
    proc = run_cli("service", "run", "--api-port", "0", data_dir=data, check=False)
    _assert_one_line_error(proc, "node.key")


@pytest.mark.parametrize(
    "addr, needle",
    [
        ("not-a-multiaddr", "bad multiaddr"),
        ("/ip4/127.0.0.1/tcp/4001", "/p2p/<node id>"),
        ("/ip4/127.0.0.1/tcp/4001/p2p/notanid", "notanid"),
    ],
)
def test_bad_bootstrap_multiaddr(tmp_path: Path, addr: str, needle: str) -> None:
    proc = run_cli("service", "run", "--api-port", "0", "--bootstrap", addr, data_dir=tmp_path / "n", check=False)
    _assert_one_line_error(proc, needle)


def test_client_command_without_a_running_node(tmp_path: Path) -> None:
    proc = run_cli("net", "peers", data_dir=tmp_path / "nothing", check=False)
    _assert_one_line_error(proc, "no node is running", "yagna service run")
