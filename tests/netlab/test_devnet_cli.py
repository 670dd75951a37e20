"""`yagna devnet up` options of the NAT testbed: refused on loopback, parsed per site (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from yagna.cli.devnet_cmd import _site_values, devnet


@pytest.mark.parametrize("args", [["--nat", "provider-1=hard"], ["--loss", "0.1"], ["--delay-ms", "20"],
                                  ["--public-nodes", "1"]])
def test_nat_options_need_the_nat_topology(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(devnet, ["up", "--root", str(tmp_path), *args])
    assert result.exit_code == 2 and "need --topology nat" in result.output
    assert not (tmp_path / "devnet.json").exists()


def test_site_values() -> None:
    assert _site_values(("0.05", "provider-2=0.1"), "--loss", float) == {"*": 0.05, "provider-2": 0.1}
    assert _site_values(("requestor=hard",), "--nat", str) == {"requestor": "hard"}
    with pytest.raises(Exception, match="SITE"):
        _site_values(("provider-1=lots",), "--loss", float)


def test_link_without_a_testbed(tmp_path: Path) -> None:
    result = CliRunner().invoke(devnet, ["link", "provider-1", "--cut", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "no NAT testbed" in result.output
