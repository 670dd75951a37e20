"""Faster bulk I/O for py-libp2p 0.8.1's Noise and Yamux, applied at host creation (issue 12).

Measured in isolation (``bench/libp2p_stream.py``, one stream between two
processes, 1 MiB writes): stock py-libp2p moves 74-145 MiB/s at 6-8.5 CPU
ms/MiB per side, against 0.4 CPU ms/MiB for the ChaCha20-Poly1305 it must do
and ~900 MiB/s for raw TCP. The time is not the cipher: it is per-message
Python around it (see docs/decisions.md, "Transfers at wire speed"):

* the Noise reader asks the socket for 2 bytes (the length), then for the
  message: two ``recv`` system calls, two trio lock/checkpoint rounds and
  ``read_exactly``'s bytearray per 64 KiB;
* the Noise writer encrypts and sends each 65,519-byte piece on its own
  (one ``send_all`` per piece), and a Yamux frame of 64 KiB + 12 bytes of
  header is two Noise messages (65,519 + 29 bytes);
* Yamux cuts writes into 64 KiB frames, each behind two locks, and its frame
  writer unpacks every header and formats a debug line even with debug off.

What this module changes, nothing else (the wire format is unchanged; every
message is still encrypted and authenticated by the same Noise cipher state,
in the same order):

* Noise transport messages are read from a buffer refilled by large socket
  reads (:data:`READ_SIZE`); a write encrypts all its pieces and sends them
  with one ``send_all``;
* a Yamux stream's write sends DATA frames of up to :data:`FRAME_MAX` bytes
  (within the peer's window as before; py-libp2p and go-yamux accept any
  frame within the window, py-libp2p up to 16 MiB), and the frame writer
  formats its debug line only when debug logging is on;
* a writer out of window waits for the WINDOW_UPDATE itself (the stock one
  polls every 10 ms: at 256 KiB of window, a 10 ms stall per 256 KiB);
* a reader credits the peer once it has read half the window (go-yamux's
  rule), not after every read.

:func:`apply` is idempotent and is called by :func:`yagna.net.host.build_host`.
The bounds stay: a Noise message is at most 65,535 bytes (2-byte length), the
read buffer holds at most one socket read plus one partial message, Yamux's
window and 5 s zero-window timeout are the library's own.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import trio

log = logging.getLogger("yagna.net.fast_io")

READ_SIZE = 256 * 1024
"""Bytes asked of the socket per read when the Noise read buffer runs short."""
FRAME_MAX = 256 * 1024
"""Largest Yamux DATA payload we send (the stock sender uses 64 KiB - 12)."""
NOISE_PLAINTEXT_MAX = 65535 - 16
"""Plaintext bytes per Noise transport message (the length field is 2 bytes; 16 of them the tag)."""
MAX_NONCE = 2**64 - 1

_applied = False
_stock_secure_read: Any = None


def apply() -> None:
    """Install the patches into py-libp2p's classes (process-wide; idempotent)."""
    global _applied, _stock_secure_read
    if _applied:
        return
    from libp2p.security.noise.io import NoiseTransportReadWriter
    from libp2p.security.secure_session import SecureSession
    from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

    _stock_secure_read = SecureSession.read
    SecureSession.read = _secure_read  # type: ignore[method-assign]
    NoiseTransportReadWriter.read_msg = _noise_read_msg  # type: ignore[method-assign]
    NoiseTransportReadWriter.write_msg = _noise_write_msg  # type: ignore[method-assign]
    YamuxStream.write = _yamux_stream_write  # type: ignore[method-assign]
    YamuxStream._auto_tune_and_send_window_update = _yamux_window_update  # type: ignore[method-assign]
    YamuxStream.send_window = property(_get_send_window, _set_send_window)  # type: ignore[assignment,method-assign]
    Yamux._write_frame = _yamux_write_frame  # type: ignore[method-assign]
    Yamux._read_data_body = _yamux_read_data_body  # type: ignore[method-assign]
    _applied = True


def applied() -> bool:
    return _applied


# -- Noise ------------------------------------------------------------------------------
class _Aead:
    """One direction of a Noise cipher state, its AEAD called directly (same key, same nonce counter)."""

    __slots__ = ("state", "aead")

    def __init__(self, state: Any) -> None:
        from noise.backends.default.ciphers import ChaCha20Cipher

        if not isinstance(state.cipher, ChaCha20Cipher):  # py-libp2p's Noise is ChaChaPoly only
            raise TypeError(f"unexpected Noise cipher {type(state.cipher).__name__}")
        self.state = state
        self.aead = state.cipher.cipher

    def _nonce(self) -> bytes:
        n = self.state.n
        if n == MAX_NONCE:
            from noise.exceptions import NoiseMaxNonceError

            raise NoiseMaxNonceError("Nonce has depleted!")
        return b"\0\0\0\0" + n.to_bytes(8, "little")

    def encrypt(self, plaintext: Any) -> bytes:
        out: bytes = self.aead.encrypt(self._nonce(), plaintext, None)
        self.state.n += 1
        return out

    def decrypt(self, ciphertext: Any) -> bytes:
        from cryptography.exceptions import InvalidTag
        from noise.exceptions import NoiseInvalidMessage

        try:
            out: bytes = self.aead.decrypt(self._nonce(), ciphertext, None)
        except InvalidTag:
            raise NoiseInvalidMessage("Failed authentication of message") from None
        self.state.n += 1
        return out


def _aead(rw: Any, direction: str) -> _Aead:
    key = "_yagna_" + direction
    got: _Aead | None = rw.__dict__.get(key)
    if got is None:
        proto = rw.noise_state.noise_protocol
        got = _Aead(proto.cipher_state_encrypt if direction == "enc" else proto.cipher_state_decrypt)
        rw.__dict__[key] = got
    return got


def _rbuf(rw: Any) -> bytearray:
    buf: bytearray | None = rw.__dict__.get("_yagna_rbuf")
    if buf is None:
        buf = rw.__dict__["_yagna_rbuf"] = bytearray()
    return buf


def _decrypt_ready(rw: Any, buf: bytearray, out: list[bytes], want: int) -> int:
    """Decrypt whole messages already in ``buf`` into ``out`` until ``want`` bytes; returns the bytes added."""
    got = 0
    pos = 0
    aead = _aead(rw, "dec")
    view = memoryview(buf)
    try:
        while got < want and len(buf) - pos >= 2:
            end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
            if end > len(buf):
                break
            plaintext = aead.decrypt(view[pos + 2:end])
            pos = end
            out.append(plaintext)
            got += len(plaintext)
    finally:
        view.release()
        if pos:  # what was decrypted is consumed, even when a later message fails
            del buf[:pos]
    return got


async def _fill(rw: Any, buf: bytearray) -> None:
    """Read more ciphertext from the socket (at least the rest of the next message), or raise at EOF."""
    want = READ_SIZE
    if len(buf) >= 2:
        want = max(want, 2 + ((buf[0] << 8) | buf[1]) - len(buf))
    data = await rw.read_writer.read_write_closer.read(want)
    if not data:
        from libp2p.io.exceptions import IncompleteReadError

        raise IncompleteReadError(
            f"Connection closed during read operation: {len(buf)} bytes of a Noise message",
            expected_bytes=2 if len(buf) < 2 else 2 + ((buf[0] << 8) | buf[1]),
            received_bytes=len(buf),
        )
    buf += data


async def _noise_read_msg(self: Any, prefix_encoded: bool = False) -> bytes:
    """One decrypted Noise transport message, from a buffer filled by large socket reads."""
    if prefix_encoded:  # handshake-time only; never on the transport path
        raise NotImplementedError("prefix_encoded on a transport message")
    buf = _rbuf(self)
    out: list[bytes] = []
    while not out:
        _decrypt_ready(self, buf, out, 1)
        if not out:
            await _fill(self, buf)
    return out[0]


async def _secure_read(self: Any, n: int | None = None) -> bytes:
    """SecureSession.read: ``n`` bytes (fewer only at EOF), or with ``n`` None what is there / one message.

    Messages already received are decrypted in one synchronous loop, without a
    task switch per 64 KiB message; plaintext beyond ``n`` waits in ``_yagna_left``.
    """
    from libp2p.security.noise.io import NoiseTransportReadWriter

    rw = self.conn
    if not isinstance(rw, NoiseTransportReadWriter):
        return await _stock_secure_read(self, n)  # type: ignore[no-any-return]
    if n == 0:
        return b""
    left: bytearray | None = self.__dict__.get("_yagna_left")
    if left is None:
        left = self.__dict__["_yagna_left"] = bytearray()
    if left and (n is None or len(left) >= n):
        k = len(left) if n is None else n
        data = bytes(left[:k])
        del left[:k]
        return data
    buf = _rbuf(rw)
    want = 1 if n is None else n
    out: list[bytes] = [bytes(left)] if left else []
    have = len(left)
    left.clear()
    try:
        while have < want:
            have += _decrypt_ready(rw, buf, out, want - have)
            if have < want:
                await _fill(rw, buf)
    except BaseException:
        if out:  # keep what was decrypted: the next read carries on where this one stopped
            left[:0] = b"".join(out)
        raise
    data = out[0] if len(out) == 1 else b"".join(out)
    if n is not None and len(data) > n:
        left += memoryview(data)[n:]
        data = data[:n]
    return data


async def _noise_write_msg(self: Any, msg: bytes, prefix_encoded: bool = False) -> None:
    """Encrypt ``msg`` in Noise messages of at most 65,535 bytes and send them with one write."""
    if prefix_encoded:  # handshake-time only; never on the transport path
        raise NotImplementedError("prefix_encoded on a transport message")
    view = memoryview(msg)
    parts: list[bytes] = []
    # The connection's own cipher state: nonce order = send order, as no await comes before the one write.
    encrypt = _aead(self, "enc").encrypt
    total = len(view)
    off = 0
    while True:
        ciphertext = encrypt(view[off:off + NOISE_PLAINTEXT_MAX])
        parts.append(len(ciphertext).to_bytes(2, "big"))
        parts.append(ciphertext)
        off += NOISE_PLAINTEXT_MAX
        if off >= total:
            break
    await self.read_writer.read_write_closer.write(b"".join(parts))


# -- Yamux ------------------------------------------------------------------------------
async def _yamux_write_frame(self: Any, data: bytes) -> None:
    """Yamux._write_frame without the per-frame header unpacking and debug formatting."""
    if _yamux_debug():
        from libp2p.stream_muxer.yamux import yamux as y

        _, typ, flags, sid, length = struct.unpack(y.YAMUX_HEADER_FORMAT, data[:y.HEADER_SIZE])
        y.logger.debug("YAMUX TX: type=%s flags=%s stream=%s length=%s", typ, flags, sid, length)
    async with self._write_lock:
        await self.secured_conn.write(data)
    await trio.lowlevel.checkpoint()


async def _yamux_read_data_body(self: Any, length: int) -> bytes:
    """A DATA frame's body in one read of the secure session (ours returns exactly ``length`` bytes or
    raises), instead of ``read_exactly``'s bytearray and copy; the library's timeout."""
    from libp2p.io.exceptions import IncompleteReadError
    from libp2p.io.utils import read_exactly
    from libp2p.security.secure_session import SecureSession
    from libp2p.stream_muxer.yamux.yamux import _yamux_data_read_timeout

    with trio.fail_after(_yamux_data_read_timeout()):
        conn = self.secured_conn
        if not (isinstance(conn, SecureSession) and type(conn).read is _secure_read):
            return await read_exactly(conn, length)  # type: ignore[no-any-return]
        data: bytes = await conn.read(length)
        if len(data) != length:
            raise IncompleteReadError(f"DATA frame of {length} bytes cut at {len(data)}",
                                      expected_bytes=length, received_bytes=len(data))
        return data


def _yamux_debug() -> bool:
    return logging.getLogger("libp2p.stream_muxer.yamux.yamux").isEnabledFor(logging.DEBUG)


async def _yamux_window_update(self: Any, *, bytes_read: int = 0) -> None:
    """Credit the peer with what was read once it reaches half the window (go-yamux's rule).

    The stock method also credits on every read below that threshold ("partial
    slack"), one WINDOW_UPDATE frame per read: with 256 KiB frames, one per frame.
    The window (at most 16 MiB) and its auto-tuning are the library's.
    """
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        consumed = self.target_recv_window - (self.recv_window + buffered)
        if consumed > 0 and consumed >= self._grow_threshold():
            total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


def _get_send_window(self: Any) -> int:
    return self.__dict__.get("_yagna_send_window", 0)  # type: ignore[no-any-return]


def _set_send_window(self: Any, value: int) -> None:
    old = self.__dict__.get("_yagna_send_window", 0)
    self.__dict__["_yagna_send_window"] = value
    if value > old:
        grown = self.__dict__.get("_yagna_window_grown")
        if grown is not None:
            grown.set()


async def _yamux_stream_write(self: Any, data: bytes) -> None:
    """YamuxStream.write with DATA frames of up to :data:`FRAME_MAX` bytes (same locks, window, timeout)."""
    from libp2p.stream_muxer.exceptions import MuxedStreamError
    from libp2p.stream_muxer.yamux.yamux import HEADER_SIZE, TYPE_DATA, YAMUX_HEADER_FORMAT

    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    view = memoryview(data)
    total = len(view)
    sent = 0
    while sent < total:
        frame: bytes | None = None
        while frame is None:
            async with self.rw_lock.write_lock():
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                async with self.window_lock:
                    if self.closed:
                        raise MuxedStreamError("Stream is closed")
                    if self.send_window > 0:
                        to_send = min(self.send_window, FRAME_MAX, total - sent)
                        self.send_window -= to_send
                        header = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, self.stream_id, to_send)
                        frame = b"".join((header, view[sent:sent + to_send]))
            if frame is not None:
                break
            self._zero_window_waits += 1
            with trio.move_on_after(5.0) as cancel_scope:
                while True:
                    async with self.window_lock:
                        if self.send_window > 0 or self.closed:
                            break
                        grown = self.__dict__.get("_yagna_window_grown")
                        if grown is None or grown.is_set():
                            grown = self._yagna_window_grown = trio.Event()
                    # woken by a WINDOW_UPDATE at once (the stock writer polls every 10 ms);
                    # a close is still seen by polling
                    with trio.move_on_after(0.05):
                        await grown.wait()
            if cancel_scope.cancelled_caught:
                raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")
        await self.conn._write_frame(frame)
        sent += len(frame) - HEADER_SIZE
