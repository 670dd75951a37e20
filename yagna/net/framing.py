"""Length-prefixed frames over libp2p streams.

A frame is an unsigned LEB128 varint length followed by that many bytes (the
go-msgio varint format). The decoder is sans-io (:class:`FrameDecoder`: feed
bytes, get frames); :func:`read_frame` is the thin async shell.

We do not use ``libp2p.io.msgio``: its ``read_exactly`` gives up after 100
partial reads, which caps messages at about 6.5 MB on Yamux and fails on a
healthy but slow connection (lab report, pitfall 7). Our loop reads until the
frame is complete or the caller's deadline (a trio cancel scope) expires.
"""

from __future__ import annotations

from typing import Protocol

from yagna.net.errors import FrameError

MAX_VARINT_LEN = 10  # enough for 64-bit lengths
READ_CHUNK = 1 << 16


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


class FrameDecoder:
    """Sans-io frame decoder with a hard size limit.

    ``feed(data)`` appends bytes; ``next_frame()`` returns one complete frame or
    ``None`` if more bytes are needed; it raises :class:`FrameError` as soon as a
    declared length is over ``max_size`` (before buffering the body) or the
    varint is malformed.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._need: int | None = None  # body length of the frame being read

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def pending(self) -> bool:
        """A frame's length has been read and its body is still incomplete."""
        return self._need is not None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        if self._need is None:
            length, used = self._parse_varint()
            if length is None:
                return None
            if length > self.max_size:
                raise FrameError(f"frame of {length} bytes is over the limit of {self.max_size}")
            del self._buf[:used]
            self._need = length
        if len(self._buf) < self._need:
            return None
        frame = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        self._need = None
        return frame

    def _parse_varint(self) -> tuple[int | None, int]:
        value = 0
        for i, byte in enumerate(self._buf[:MAX_VARINT_LEN]):
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i > 0 and byte == 0:
                    raise FrameError("non-minimal varint length prefix")
                return value, i + 1
        if len(self._buf) >= MAX_VARINT_LEN:
            raise FrameError("varint length prefix is too long")
        return None, 0


class ReadableStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...


async def read_frame(stream: ReadableStream, decoder: FrameDecoder) -> bytes | None:
    """Read one frame; ``None`` on a clean end of stream before any byte of it.

    End of stream in the middle of a frame raises :class:`FrameError`
    (a crashed peer looks like a clean EOF in py-libp2p, so truncation must be
    detected here). Stream errors other than EOF propagate to the caller.
    """
    from libp2p.network.stream.exceptions import StreamEOF

    while True:
        frame = decoder.next_frame()
        if frame is not None:
            return frame
        try:
            chunk = await stream.read(READ_CHUNK)
        except StreamEOF:
            chunk = b""
        if not chunk:
            if decoder.buffered or decoder.pending:
                raise FrameError("stream ended in the middle of a frame")
            return None
        decoder.feed(chunk)
