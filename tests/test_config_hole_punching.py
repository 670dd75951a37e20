"""``[net] hole_punching`` in yagna.toml and ``service run --hole-punching/--no-hole-punching``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from yagna import config_file
from yagna.cli.main import cli
from yagna.config import ConfigError


def _load(tmp_path: Path, text: str) -> config_file.FileSettings:
    path = tmp_path / "yagna.toml"
    path.write_text(text)
    return config_file.load(path, required=True)


def test_the_key_is_read_and_absent_means_unset(tmp_path: Path) -> None:
    assert _load(tmp_path, "[net]\nhole_punching = false\n").net.hole_punching is False
    assert _load(tmp_path, "[net]\nhole_punching = true\n").net.hole_punching is True
    assert _load(tmp_path, "[net]\n").net.hole_punching is None


@pytest.mark.parametrize("value", ['"off"', "0", "[]"])
def test_a_bad_value_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="net.hole_punching must be true or false"):
        _load(tmp_path, f"[net]\nhole_punching = {value}\n")


def test_service_run_documents_the_flag() -> None:
    out = CliRunner().invoke(cli, ["service", "run", "--help"]).output
    assert "--hole-punching / --no-hole-punching" in out and "net.hole_punching" in out
