"""The node's config file (yagna/config_file.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from yagna import config_file
from yagna.config import ConfigError

BOOT = "/ip4/198.18.0.10/tcp/7464/p2p/12D3KooWAbc"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "yagna.toml"
    path.write_text(text)
    return path


def test_reads_net_settings(tmp_path: Path) -> None:
    path = write(tmp_path, f'[net]\nlisten = ["/ip4/0.0.0.0/tcp/7464"]\nbootstrap = ["{BOOT}"]\n'
                           "target_peers = 4\nmax_peers = 32\n")
    got = config_file.load(path, required=True)
    assert got.path == path
    assert got.net.listen == ["/ip4/0.0.0.0/tcp/7464"]
    assert got.net.bootstrap == [BOOT]
    assert (got.net.target_peers, got.net.max_peers) == (4, 32)


def test_missing_optional_file_gives_defaults(tmp_path: Path) -> None:
    got = config_file.load(tmp_path / "yagna.toml", required=False)
    assert got.path is None and got.net.bootstrap == [] and got.net.target_peers is None


def test_optional_file_under_a_data_dir_that_is_a_file_gives_defaults(tmp_path: Path) -> None:
    """The data-dir check reports a data dir that is a file; the config loader must not preempt it."""
    data_dir = tmp_path / "file"
    data_dir.write_text("not a directory")
    got = config_file.load(config_file.default_path(data_dir), required=False)
    assert got.path is None
    with pytest.raises(ConfigError, match="not a directory"):
        config_file.load(config_file.default_path(data_dir), required=True)


def test_missing_required_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config_file.load(tmp_path / "nope.toml", required=True)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[nett]\n", "unknown section.*nett"),
        ("[net]\nbootstrapp = []\n", "unknown key.*bootstrapp"),
        ("[net]\nbootstrap = \"/ip4/1.2.3.4\"\n", "net.bootstrap must be a list of strings"),
        ("[net]\nbootstrap = [1]\n", "net.bootstrap must be a list of strings"),
        ("[net]\ntarget_peers = 0\n", "net.target_peers must be a whole number"),
        ("[net]\nmax_peers = true\n", "net.max_peers must be a whole number"),
        ("net = 3\n", r"\[net\] must be a table"),
        ("[net\n", "not valid TOML"),
    ],
)
def test_bad_files_name_what_is_wrong(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        config_file.load(write(tmp_path, text), required=True)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "#" * (config_file.MAX_FILE_SIZE + 1))
    with pytest.raises(ConfigError, match="larger than"):
        config_file.load(path, required=True)
