"""``[market] anti_entropy_interval`` in yagna.toml."""

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


def test_the_interval_is_read_and_absent_means_the_default(tmp_path: Path) -> None:
    assert _load(tmp_path, "[market]\nanti_entropy_interval = 1.5\n").market.anti_entropy_interval == 1.5
    assert _load(tmp_path, "[market]\nanti_entropy_interval = 0\n").market.anti_entropy_interval == 0.0
    assert _load(tmp_path, "[net]\n").market.anti_entropy_interval is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[market]\nanti_entropy_interval = -1\n", "market.anti_entropy_interval must be a number of seconds"),
        ("[market]\nanti_entropy_interval = 7200\n", "from 0 to 3600"),
        ('[market]\nanti_entropy_interval = "3s"\n', "market.anti_entropy_interval"),
        ("[market]\nanti_entropy_interval = true\n", "market.anti_entropy_interval"),
        ("[market]\nanti_entropy = 3\n", r"unknown key\(s\) in \[market\]: anti_entropy"),
        ("market = 3\n", r"\[market\] must be a table"),
        ("[markt]\n", r"unknown section.*markt.*\[market\]"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        _load(tmp_path, text)


def test_service_run_names_the_key_in_its_help() -> None:
    out = CliRunner().invoke(cli, ["service", "run", "--help"]).output
    assert "market.anti_entropy_interval" in out
