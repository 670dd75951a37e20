"""``yagna config show|get|set|unset``, ``--data-dir`` after the command, and the daemon refusing a bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from yagna.cli.main import cli

COMMENTED = """# my provider
[net]
# a small mesh
target_peers = 4   # keep it small
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from yagna import settings

    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    monkeypatch.delenv("YAGNA_DATA_DIR", raising=False)
    monkeypatch.delenv("YAGNA_CONFIG", raising=False)


def yagna(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)


def test_set_keeps_comments_and_layout(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(COMMENTED)
    r = yagna("--data-dir", str(tmp_path), "config", "set", "net.target_peers", "6")
    assert r.exit_code == 0, r.output
    r = yagna("config", "set", "market.subnets", "lab, edge", "--data-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    text = (tmp_path / "config.toml").read_text()
    assert text.startswith("# my provider\n[net]\n# a small mesh\ntarget_peers = 6   # keep it small\n")
    assert '[market]\nsubnets = ["lab", "edge"]' in text
    r = yagna("config", "unset", "net.target_peers", "--data-dir", str(tmp_path))
    assert r.exit_code == 0 and "target_peers" not in (tmp_path / "config.toml").read_text()
    assert "# a small mesh" in (tmp_path / "config.toml").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (("net.target_peers", "0"), "net.target_peers must be a whole number from 1 to 10000"),
    (("net.target_peer", "3"), "unknown setting 'net.target_peer'; did you mean net.target_peers?"),
    (("payment.token", "0xabc"), "payment.token must be a 0x address of 40 hex digits"),
    (("provider.preset.price_cpu_hour", "1.2.3"), "provider.preset.price_cpu_hour must be an amount of tokens"),
])
def test_set_refuses_bad_values_and_writes_nothing(tmp_path: Path, args: tuple[str, str], message: str) -> None:
    (tmp_path / "config.toml").write_text(COMMENTED)
    r = yagna("--data-dir", str(tmp_path), "config", "set", *args)
    assert r.exit_code != 0 and message in str(r.exception)
    assert (tmp_path / "config.toml").read_text() == COMMENTED


def test_set_refuses_to_edit_a_file_the_daemon_would_refuse(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[net]\nmax_peers = 0\n")
    r = yagna("--data-dir", str(tmp_path), "config", "set", "net.target_peers", "3")
    assert r.exit_code != 0 and "line 2: net.max_peers must be" in str(r.exception)


def test_show_and_get_say_where_each_value_comes_from(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(COMMENTED + "max_peers = 20\n")
    env = {"YAGNA_MAX_PEERS": "30", "YAGNA_LOG_LEVEL": "debug"}
    r = yagna("--data-dir", str(tmp_path), "config", "show", "--origin", "--json", env=env)
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["file"] == str(tmp_path / "config.toml")
    s = got["settings"]
    assert s["net.target_peers"] == {"value": 4, "origin": "file"}
    assert s["net.max_peers"] == {"value": 30, "origin": "env"}
    assert s["log.level"] == {"value": "debug", "origin": "env"}
    assert s["node.api_port"] == {"value": 7465, "origin": "default"}
    text = yagna("config", "show", "--origin", "--data-dir", str(tmp_path), env=env).output
    assert "net.max_peers" in text and "(env YAGNA_MAX_PEERS)" in text and "(file)" in text
    r = yagna("config", "get", "net.target_peers", "--origin", "--data-dir", str(tmp_path))
    assert r.output.strip() == "4  (file)"
    r = yagna("config", "get", "provider.max_threads", "--data-dir", str(tmp_path))
    assert r.output.strip() == "all but one"


def test_an_explicit_config_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    r = yagna("config", "set", "node.api_port", "7500", "--config", str(path), "--data-dir", str(tmp_path / "d"))
    assert r.exit_code == 0, r.output
    assert path.read_text() == "[node]\napi_port = 7500\n"
    r = yagna("config", "get", "node.api_port", "--data-dir", str(tmp_path / "d"), env={"YAGNA_CONFIG": str(path)})
    assert r.output.strip() == "7500"


def test_data_dir_after_the_command_wins(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.toml").write_text("[net]\nmax_peers = 5\n")
    r = yagna("--data-dir", str(tmp_path / "a"), "config", "get", "net.max_peers", "--data-dir", str(tmp_path / "b"))
    assert r.output.strip() == "5"


def _daemon(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yagna", "service", "run", "--data-dir", str(data_dir),
                           "--api-port", "0", *extra], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("text", "message"), [
    ('[node]\nrole = "provider"\n\n[net]\nmax_peers = "many"\n', "line 5: net.max_peers must be a whole number"),
    ('[provider]\nmax_threads = 2\nmax_ram_gib = 4\n', r"line 3: unknown key(s) in [provider]: max_ram_gib"),
    ("[net]\nmax_peers = = 3\n", "is not valid TOML"),
])
def test_the_daemon_refuses_a_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    tmp_path.joinpath("config.toml").write_text(text)
    proc = _daemon(tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert f"error: config file {tmp_path / 'config.toml'}" in proc.stderr and message in proc.stderr
    assert not (tmp_path / "node.key").exists()  # refused before it did anything


def test_the_daemon_refuses_a_bad_environment_variable(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "yagna", "--data-dir", str(tmp_path), "service", "run"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                                            "YAGNA_API_PORT": "seventy"})
    assert proc.returncode == 1 and "YAGNA_API_PORT (node.api_port) must be a whole number" in proc.stderr
