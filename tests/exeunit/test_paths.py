"""Path safety: every way out of /work/in (or a staging dir) is refused."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.errors import ExeUnitError, TransferRefused
from exeunit.paths import MAX_PATH_LEN, container_path, local_path_inside, normalise, split_under

UNDER = "/work/in"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/work/in/x", "/work/in/x"),
        ("/work/in/a//b", "/work/in/a/b"),
        ("/work/in/./a/./b/", "/work/in/a/b"),
        ("//work///in//x", "/work/in/x"),
        ("/work/in/.hidden", "/work/in/.hidden"),
        ("/work/in/...", "/work/in/..."),
        ("/work/in/a..b", "/work/in/a..b"),
        ("/work/in/ünïcode", "/work/in/ünïcode"),
    ],
)
def test_accepted_paths_are_normalised(path: str, expected: str) -> None:
    assert container_path(path, under=UNDER) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/work/in/../../etc/passwd",
        "../../etc/passwd",
        "/work/in/a/../../out/x",
        "/work/in/a/../b",  # stays inside, still refused: no '..' at all
        "/work/in/..",
        "work/in/x",
        "in/x",
        "",
        "/",
        "/work/in",
        "/work/in/",
        "/work/in/.",
        "/work/inside/x",  # prefix of the name is not containment
        "/work/out/x",
        "/etc/passwd",
        "/work/in/a\0b",
        "/work/in/\ud800",
        "/work/in/" + "a" * 256,
        "/work/in/" + "a/" * 2100,
    ],
)
def test_refused_paths(path: str) -> None:
    with pytest.raises(TransferRefused) as info:
        container_path(path, under=UNDER)
    assert info.value.code == "bad-path"


@pytest.mark.parametrize("value", [None, 1, b"/work/in/x", ["/work/in/x"], {"p": 1}])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(TransferRefused, match="not a string"):
        container_path(value, under=UNDER)


def test_length_limit_counts_the_raw_path() -> None:
    long_ok = "/work/in/" + "/".join(["a" * 200] * 19)
    assert len(long_ok) < MAX_PATH_LEN
    assert container_path(long_ok, under=UNDER) == long_ok
    with pytest.raises(TransferRefused, match="longer than"):
        container_path("/work/in/" + "/" * MAX_PATH_LEN + "x", under=UNDER)


def test_under_must_be_normalised() -> None:
    for under in ("work/in", "/work/in/", "/work//in", "/work/../in", "/work/./in"):
        with pytest.raises(ValueError):
            container_path("/work/in/x", under=under)
    assert container_path("/x", under="/") == "/x"


def test_split_under() -> None:
    assert split_under("/work/in//a/b", under=UNDER) == "a/b"
    with pytest.raises(TransferRefused):
        split_under("/work/out/a", under=UNDER)


def test_normalise() -> None:
    assert normalise("/") == "/"
    assert normalise("/work/") == "/work"
    with pytest.raises(TransferRefused):
        normalise("/work/..")


def test_refusal_is_an_exeunit_error_with_a_readable_message() -> None:
    with pytest.raises(ExeUnitError) as info:
        container_path("/work/in/../x", under=UNDER)
    assert "'..'" in str(info.value) and "/work/in/../x" in str(info.value)


_segment = st.sampled_from(["a", "b", "..", ".", "", "in", "work", "out", "etc", "\0", "x.y"])


@given(st.sampled_from(["", "/", "/work/in/", "/work/in", "/work/"]), st.lists(_segment, max_size=12))
def test_property_accepted_paths_stay_strictly_inside(prefix: str, segments: list[str]) -> None:
    path = prefix + "/".join(segments)
    try:
        result = container_path(path, under=UNDER)
    except TransferRefused as exc:
        assert exc.code == "bad-path"
        return
    assert result.startswith(UNDER + "/") and result != UNDER
    assert posixpath.normpath(result) == result
    assert ".." not in result.split("/")
    # whatever the input spelled, the result names what a kernel would resolve it to
    assert posixpath.normpath(path).lstrip("/") == result.lstrip("/")


@given(st.text(max_size=300))
def test_property_garbage_yields_only_bad_path(path: str) -> None:
    try:
        result = container_path(path, under=UNDER)
    except TransferRefused as exc:
        assert exc.code == "bad-path"
    else:
        assert result.startswith(UNDER + "/")


# -- host side -------------------------------------------------------------------------


def test_local_path_inside(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    assert local_path_inside(root, "a/b") == root.resolve() / "a" / "b"
    assert local_path_inside(root, "a//./b") == root.resolve() / "a" / "b"


@pytest.mark.parametrize("relative", ["/etc/passwd", "../x", "a/../../x", "a/..", "", ".", "a\0b", 5])
def test_local_path_inside_refuses(tmp_path: Path, relative: object) -> None:
    with pytest.raises(TransferRefused) as info:
        local_path_inside(tmp_path, relative)  # type: ignore[arg-type]
    assert info.value.code == "bad-path"


def test_local_path_inside_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(TransferRefused, match="outside"):
        local_path_inside(root, "link/file")
    os.symlink(root, root / "self")
    with pytest.raises(TransferRefused):
        local_path_inside(root, "self")
    (root / "inner").mkdir()
    os.symlink(root / "inner", root / "ok")
    assert local_path_inside(root, "ok/file") == root.resolve() / "ok" / "file"
