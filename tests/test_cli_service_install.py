"""``yagna service install --print`` (the systemd unit) and how clients find the installed node.

Nothing here installs anything: only ``--print`` runs, and systemctl is never called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from requestor_sdk.errors import DaemonNotFound
from requestor_sdk.locate import locate
from yagna.cli.main import cli
from yagna.core import paths


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("YAGNA_DATA_DIR", "YAGNA_API_URL", "YAGNA_APPKEY"):
        monkeypatch.delenv(name, raising=False)


def unit(*args: str) -> str:
    r = CliRunner().invoke(cli, [*args])
    assert r.exit_code == 0, r.output
    return r.output


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_the_default_unit() -> None:
    text = unit("service", "install", "--print")
    got = lines(text)
    for line in ("User=yagna", "Group=yagna", "SupplementaryGroups=docker", "Restart=on-failure",
                 "Environment=YAGNA_DATA_DIR=/var/lib/yagna", "StateDirectory=yagna", "StateDirectoryMode=0700",
                 "StandardOutput=journal", "WantedBy=multi-user.target"):
        assert line in got, line
    exec_start = next(line for line in got if line.startswith("ExecStart="))
    assert exec_start.endswith(" --data-dir /var/lib/yagna service run --log-format json")
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.path.isabs(program) and os.access(program, os.X_OK)
    assert text.index("[Unit]") < text.index("[Service]") < text.index("[Install]")


def test_user_and_data_dir_before_or_after_the_command() -> None:
    for args in (("--data-dir", "/srv/yagna node", "service", "install", "--print", "--user", "prov"),
                 ("service", "install", "--print", "--user", "prov", "--data-dir", "/srv/yagna node")):
        got = lines(unit(*args))
        assert "User=prov" in got and "SupplementaryGroups=docker" in got
        assert 'Environment="YAGNA_DATA_DIR=/srv/yagna node"' in got
        assert any(line.startswith("ExecStart=") and '--data-dir "/srv/yagna node" service run --log-format json'
                   in line for line in got)
        assert not any(line.startswith("StateDirectory") for line in got)  # only for /var/lib/<name>


def test_a_bad_user_name_is_refused() -> None:
    r = CliRunner().invoke(cli, ["service", "install", "--print", "--user", "Root; rm"])
    assert r.exit_code != 0 and "is not a valid user name" in str(r.exception)


def _fake_node(data_dir: Path, api_url: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "node.json").write_text(json.dumps({"api_url": api_url, "pid": os.getpid(), "node_id": "x"}))
    (data_dir / "app-key").write_text("secret\n")


def test_clients_find_the_installed_node_when_the_user_runs_none(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "var-lib-yagna"
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIR", system)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    user = tmp_path / "home" / "yagna" / "node"
    assert paths.client_data_dir() == user  # nothing runs anywhere: the user's own
    _fake_node(system, "http://127.0.0.1:7465")
    assert paths.client_data_dir() == system
    assert locate().api_url == "http://127.0.0.1:7465"
    _fake_node(user, "http://127.0.0.1:7466")  # the user's own node comes first
    assert paths.client_data_dir() == user and locate().api_url == "http://127.0.0.1:7466"
    monkeypatch.setenv("YAGNA_DATA_DIR", str(system))  # and an explicit one before both
    assert paths.client_data_dir() == system


def test_an_installed_node_the_user_cannot_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "var-lib-yagna"
    system.mkdir()
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIR", system)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != system)  # as a user other than its owner
    with pytest.raises(DaemonNotFound, match="keeps its data in .*var-lib-yagna, readable only by its user: run this "
                                             "command with sudo"):
        locate()
