"""yagna.core.links: a link's target read lexically against its tree."""

from __future__ import annotations

import pytest

from yagna.core.links import climbs_out


@pytest.mark.parametrize(("rel", "target", "out"), [
    ("a", "b", False), ("a", "../b", True), ("d/a", "../b", False), ("d/a", "../../b", True),
    ("d/a", "x/../../b", False), ("d/a", "x/../../../b", True), ("d/e/a", "./.././../b", False),
    ("a", "d/../../b", True), ("d//a", "../b", False),
])
def test_climbs_out(rel: str, target: str, out: bool) -> None:
    assert climbs_out(rel, target) is out
