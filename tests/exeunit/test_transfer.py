"""Content-addressed transfers: the sink refuses early and verifies at the end."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.errors import TransferRefused
from exeunit.transfer import ChunkPlan, Sha256Sink, blob_id_for, check_range, parse_blob_id, sha256_file

DATA = b"hello, provider\n" * 100
DIGEST = hashlib.sha256(DATA).hexdigest()


class _Refused:
    """``with _Refused("too-large"):`` asserts a TransferRefused with that code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, etype: object, exc: object, tb: object) -> bool:
        assert isinstance(exc, TransferRefused), f"expected TransferRefused({self.code!r}), got {exc!r}"
        assert exc.code == self.code, exc
        return True


def test_sink_accepts_the_right_bytes_in_any_chunking() -> None:
    sink = Sha256Sink(DIGEST, len(DATA))
    for i in range(0, len(DATA), 7):
        assert sink.write(DATA[i : i + 7]) == len(DATA[i : i + 7])
    assert sink.finish() == DIGEST and sink.received == len(DATA)


def test_empty_blob() -> None:
    sink = Sha256Sink(hashlib.sha256(b"").hexdigest(), 0)
    sink.write(b"")
    assert sink.finish() == hashlib.sha256(b"").hexdigest()


def test_sink_refuses_the_first_byte_past_the_declared_size() -> None:
    sink = Sha256Sink(DIGEST, len(DATA))
    sink.write(DATA)
    with _Refused("too-large"):
        sink.write(b"x")
    with _Refused("too-large"):  # stays refused
        sink.finish()
    with _Refused("too-large"):
        sink.write(b"")


def test_sink_refuses_a_declared_size_over_the_limit_before_any_byte() -> None:
    with _Refused("too-large"):
        Sha256Sink(DIGEST, 1001, max_bytes=1000)
    Sha256Sink(DIGEST, 1000, max_bytes=1000)


def test_short_content_is_a_mismatch() -> None:
    sink = Sha256Sink(DIGEST, len(DATA))
    sink.write(DATA[:-1])
    with _Refused("hash-mismatch"):
        sink.finish()


def test_wrong_content_is_a_mismatch() -> None:
    sink = Sha256Sink(DIGEST, len(DATA))
    sink.write(DATA[:-1] + b"?")
    with _Refused("hash-mismatch"):
        sink.finish()
    with _Refused("hash-mismatch"):
        sink.write(b"")


def test_write_after_finish_is_a_bug() -> None:
    sink = Sha256Sink(DIGEST, len(DATA))
    sink.write(DATA)
    sink.finish()
    with pytest.raises(ValueError):
        sink.write(b"")


@pytest.mark.parametrize(("digest", "size"), [("AB" * 32, 1), ("ab" * 31, 1), ("ab" * 32, -1), ("ab" * 32, True), (5, 1)])
def test_sink_arguments_are_checked(digest: object, size: object) -> None:
    with pytest.raises(ValueError):
        Sha256Sink(digest, size)  # type: ignore[arg-type]


@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(1, 50))
def test_property_only_the_exact_bytes_pass(expected: bytes, got: bytes, chunk: int) -> None:
    sink = Sha256Sink(hashlib.sha256(expected).hexdigest(), len(expected))
    try:
        for i in range(0, len(got), chunk):
            sink.write(got[i : i + chunk])
        sink.finish()
    except TransferRefused as exc:
        assert got != expected
        assert exc.code == ("too-large" if len(got) > len(expected) else "hash-mismatch")
        assert sink.received <= len(expected)
    else:
        assert got == expected


# -- chunks -------------------------------------------------------------------------------


def test_chunk_plan() -> None:
    assert list(ChunkPlan(10, 4)) == [(0, 4), (4, 4), (8, 2)]
    assert list(ChunkPlan(8, 4)) == [(0, 4), (4, 4)]
    assert list(ChunkPlan(0, 4)) == [] and len(ChunkPlan(0, 4)) == 0
    assert len(ChunkPlan(10, 4)) == 3 and len(ChunkPlan(3, 4)) == 1
    for size, chunk in ((-1, 1), (1, 0), (1, -1), (True, 1), (1.0, 1)):
        with pytest.raises(ValueError):
            ChunkPlan(size, chunk)  # type: ignore[arg-type]


@given(st.integers(0, 10_000), st.integers(1, 3000))
def test_property_chunks_tile_the_blob(size: int, chunk_size: int) -> None:
    plan = list(ChunkPlan(size, chunk_size))
    assert len(plan) == len(ChunkPlan(size, chunk_size))
    position = 0
    for offset, length in plan:
        assert offset == position and 0 < length <= chunk_size
        check_range(offset, length, size=size, max_chunk=chunk_size)
        position += length
    assert position == size


def test_check_range() -> None:
    assert check_range(0, 10, size=10, max_chunk=10) == (0, 10)
    assert check_range(10, 0, size=10, max_chunk=10) == (10, 0)
    with _Refused("too-large"):
        check_range(0, 11, size=100, max_chunk=10)
    with _Refused("not-found"):
        check_range(5, 6, size=10, max_chunk=10)
    with _Refused("not-found"):
        check_range(11, 0, size=10, max_chunk=10)
    for offset, length in ((-1, 1), (0, -1), (True, 1), ("0", 1), (0, None), (0.0, 1)):
        with _Refused("not-found"):
            check_range(offset, length, size=10, max_chunk=10)


# -- files and blob ids ---------------------------------------------------------------------


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(DATA)
    assert sha256_file(path, chunk_size=5) == (DIGEST, len(DATA))
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(str(tmp_path / "empty")) == (hashlib.sha256(b"").hexdigest(), 0)


def test_blob_ids_round_trip() -> None:
    assert blob_id_for("file", DIGEST) == f"file:{DIGEST}"
    assert blob_id_for("image", DIGEST) == f"image:sha256:{DIGEST}"
    assert blob_id_for("image", f"sha256:{DIGEST}") == f"image:sha256:{DIGEST}"
    assert parse_blob_id(f"file:{DIGEST}") == ("file", DIGEST)
    assert parse_blob_id(f"image:sha256:{DIGEST}") == ("image", DIGEST)


@pytest.mark.parametrize(
    ("kind", "digest"), [("file", DIGEST.upper()), ("file", f"sha256:{DIGEST}"), ("vm", DIGEST), ("image", "sha256:x")]
)
def test_blob_id_for_refuses_our_own_bugs(kind: str, digest: str) -> None:
    with pytest.raises(ValueError):
        blob_id_for(kind, digest)


@pytest.mark.parametrize(
    "blob_id",
    [
        None,
        5,
        b"file:" + DIGEST.encode(),
        "",
        DIGEST,
        f"file:{DIGEST.upper()}",
        f"file:{DIGEST}\n",
        f"file:sha256:{DIGEST}",
        f"image:{DIGEST}",
        f"image:sha256:{DIGEST}x",
        f"dir:{DIGEST}",
        "file:../../etc/passwd",
        "x" * 10_000,
    ],
)
def test_parse_blob_id_answers_garbage_with_not_found(blob_id: object) -> None:
    with _Refused("not-found"):
        parse_blob_id(blob_id)


@given(st.text(max_size=100) | st.binary(max_size=20) | st.integers() | st.none())
def test_property_parse_blob_id_raises_only_not_found(blob_id: object) -> None:
    try:
        kind, digest = parse_blob_id(blob_id)
    except TransferRefused as exc:
        assert exc.code == "not-found"
    else:
        assert blob_id_for(kind, digest) == blob_id
