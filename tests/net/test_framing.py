"""The sans-io frame decoder: chunking invariance, limits, varint rules, garbage."""

from __future__ import annotations

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yagna.net.errors import FrameError
from yagna.net.framing import MAX_VARINT_LEN, FrameDecoder, encode_frame, encode_varint, read_frame

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames_strategy = st.lists(st.binary(max_size=300), max_size=12)


def decode_all(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[i:j] for i, j in zip(bounds, bounds[1:])]


def decode_varint(data: bytes) -> int:
    """Reference LEB128 decoder for the tests."""
    value = 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * i)
    return value


@given(st.integers(0, 2**64 - 1))
@PROPERTY
def test_varint_is_minimal_leb128(n: int) -> None:
    data = encode_varint(n)
    assert decode_varint(data) == n
    assert all(b & 0x80 for b in data[:-1]) and not data[-1] & 0x80
    assert len(data) == max(1, (n.bit_length() + 6) // 7) <= MAX_VARINT_LEN


def test_varint_rejects_negative() -> None:
    with pytest.raises(ValueError):
        encode_varint(-1)


@given(frames_strategy, st.lists(st.integers(0, 10_000), max_size=30))
@PROPERTY
def test_any_split_of_a_stream_yields_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder(max_size=300)
    got: list[bytes] = []
    for chunk in split(stream, cuts):
        decoder.feed(chunk)
        got += decode_all(decoder)
    assert got == frames
    assert decoder.buffered == 0
    assert decoder.next_frame() is None


@given(frames_strategy)
@PROPERTY
def test_byte_by_byte(frames: list[bytes]) -> None:
    decoder = FrameDecoder(max_size=300)
    got: list[bytes] = []
    for byte in b"".join(encode_frame(f) for f in frames):
        decoder.feed(bytes([byte]))
        got += decode_all(decoder)
    assert got == frames


@given(st.integers(1, 10_000), st.integers(1, 2**63))
@PROPERTY
def test_declared_length_over_the_limit_fails_before_the_body(max_size: int, excess: int) -> None:
    decoder = FrameDecoder(max_size=max_size)
    decoder.feed(encode_varint(max_size + excess))  # the prefix alone, no body
    with pytest.raises(FrameError):
        decoder.next_frame()


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_size=10)
    decoder.feed(encode_frame(b"x" * 10))
    assert decoder.next_frame() == b"x" * 10


@given(st.integers(0, 2**63), st.integers(1, 4))
@PROPERTY
def test_non_minimal_varints_are_refused(n: int, padding: int) -> None:
    # Extend the minimal encoding with continuation bytes that add only zeros.
    minimal = bytearray(encode_varint(n))
    minimal[-1] |= 0x80
    padded = bytes(minimal) + b"\x80" * (padding - 1) + b"\x00"
    assert decode_varint(padded) == n
    decoder = FrameDecoder(max_size=2**64)
    decoder.feed(padded)
    with pytest.raises(FrameError):
        decoder.next_frame()


@given(st.binary(min_size=MAX_VARINT_LEN, max_size=20).map(lambda b: bytes(x | 0x80 for x in b)))
def test_overlong_varints_are_refused(data: bytes) -> None:
    decoder = FrameDecoder(max_size=2**64)
    decoder.feed(data)
    with pytest.raises(FrameError):
        decoder.next_frame()


@given(st.integers(1, MAX_VARINT_LEN - 1))
def test_unfinished_varint_needs_more_bytes(length: int) -> None:
    decoder = FrameDecoder(max_size=2**70)
    decoder.feed(b"\x81" * length)
    assert decoder.next_frame() is None


@given(st.lists(st.binary(max_size=64), max_size=10), st.integers(0, 2000))
@PROPERTY
def test_garbage_yields_only_frames_frame_errors_or_needs_more(chunks: list[bytes], max_size: int) -> None:
    decoder = FrameDecoder(max_size=max_size)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            for frame in decode_all(decoder):
                assert len(frame) <= max_size
    except FrameError:
        pass


@given(frames_strategy, st.binary(min_size=1, max_size=50))
@PROPERTY
def test_a_frame_error_is_raised_again_not_skipped(frames: list[bytes], tail: bytes) -> None:
    """After the good frames, an oversized prefix keeps failing (no resync on garbage)."""
    decoder = FrameDecoder(max_size=300)
    decoder.feed(b"".join(encode_frame(f) for f in frames) + encode_varint(301) + tail)
    assert [decoder.next_frame() for _ in frames] == frames
    for _ in range(2):
        with pytest.raises(FrameError):
            decoder.next_frame()


# -- the async shell -----------------------------------------------------------------


class ChunkedStream:
    """A stream that returns the given chunks, then EOF (b"") forever."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._chunks.pop(0) if self._chunks else b""


async def test_read_frame_over_chunks_and_clean_eof() -> None:
    stream = b"".join(encode_frame(f) for f in (b"one", b"", b"three" * 100))
    reader = ChunkedStream([stream[i : i + 7] for i in range(0, len(stream), 7)])
    decoder = FrameDecoder(max_size=1000)
    assert await read_frame(reader, decoder) == b"one"
    assert await read_frame(reader, decoder) == b""
    assert await read_frame(reader, decoder) == b"three" * 100
    assert await read_frame(reader, decoder) is None


@pytest.mark.parametrize("data", [encode_varint(10), encode_frame(b"x" * 10)[:-1], b"\x80"])
async def test_eof_in_the_middle_of_a_frame_is_a_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError):
        await read_frame(ChunkedStream([data]), FrameDecoder(max_size=100))


async def test_read_frame_raises_on_oversized_prefix_without_reading_the_body() -> None:
    reader = ChunkedStream([encode_varint(10_000), b"never read"])
    with pytest.raises(FrameError):
        await read_frame(reader, FrameDecoder(max_size=100))
    assert reader._chunks == [b"never read"]
