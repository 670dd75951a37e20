"""yagna.net.fast_io: the Noise/Yamux bulk-I/O patch keeps the wire format, the order and the checks."""

from __future__ import annotations

import os
import random
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IncompleteReadError
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.io import BaseNoiseMsgReadWriter, NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from noise.backends.default.ciphers import ChaCha20Cipher
from noise.exceptions import NoiseInvalidMessage

from yagna.net import fast_io
from yagna.net.host import build_host, close_host

LISTEN = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


# -- Noise, against fake sockets ---------------------------------------------------------
class _State:
    """The parts of noise's CipherState the patch uses (key + nonce counter)."""

    def __init__(self, key: bytes) -> None:
        self.cipher = ChaCha20Cipher()
        self.cipher.initialize(key)
        self.n = 0
        self.k = key

    def has_key(self) -> bool:
        return True

    def encrypt_with_ad(self, ad: bytes | None, plaintext: bytes) -> bytes:  # the library's own path
        out: bytes = self.cipher.encrypt(self.k, self.n, ad, plaintext)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes | None, ciphertext: bytes) -> bytes:
        out: bytes = self.cipher.decrypt(self.k, self.n, ad, ciphertext)
        self.n += 1
        return out


class _Sock:
    """A raw connection: records writes; reads hand out ``incoming`` in random pieces, then EOF."""

    def __init__(self, incoming: bytes = b"", seed: int = 1) -> None:
        self.written = bytearray()
        self.incoming = bytearray(incoming)
        self.rng = random.Random(seed)

    async def write(self, data: bytes) -> None:
        self.written += data

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        k = min(len(self.incoming), self.rng.randint(1, 100_000), n or 1 << 30)
        out = bytes(self.incoming[:k])
        del self.incoming[:k]
        return out


class _Proto:
    def __init__(self, key: bytes) -> None:
        self.cipher_state_encrypt = _State(key)
        self.cipher_state_decrypt = _State(key)


class _NoiseState:
    def __init__(self, key: bytes) -> None:
        self.noise_protocol = _Proto(key)
        self.handshake_finished = True

    def encrypt(self, data: bytes) -> bytes:
        return self.noise_protocol.cipher_state_encrypt.encrypt_with_ad(None, data)

    def decrypt(self, data: bytes) -> bytes:
        return self.noise_protocol.cipher_state_decrypt.decrypt_with_ad(None, data)


def _rw(sock: _Sock, key: bytes) -> NoiseTransportReadWriter:
    rw = NoiseTransportReadWriter(sock, _NoiseState(key))  # type: ignore[arg-type]
    return rw


def _session(rw: NoiseTransportReadWriter) -> SecureSession:
    s = SecureSession.__new__(SecureSession)
    s.conn = rw
    s._reset_internal_buffer()
    return s


@pytest.fixture(autouse=True)
def _patched() -> None:
    fast_io.apply()


KEY = bytes(range(32))


async def test_writes_what_the_stock_reader_reads_in_order() -> None:
    sock = _Sock()
    writer = _rw(sock, KEY)
    msgs = [os.urandom(n) for n in (0, 1, 65519, 65520, 300_000, 17)]
    for m in msgs:
        await writer.write_msg(m)
    # the stock reader (the library's own framing and cipher calls) gets the same bytes back
    stock = _rw(_Sock(bytes(sock.written)), KEY)
    got = bytearray()
    while True:
        try:
            got += await BaseNoiseMsgReadWriter.read_msg(stock)
        except IncompleteReadError:
            break
    assert bytes(got) == b"".join(msgs)
    assert writer.noise_state.noise_protocol.cipher_state_encrypt.n == 1 + 1 + 1 + 2 + 5 + 1  # type: ignore[attr-defined]


async def test_reads_what_the_stock_writer_wrote_with_any_read_size() -> None:
    stock = _rw(_Sock(), KEY)
    data = os.urandom(1_000_000)
    pieces = [data[:10], data[10:70_000], data[70_000:]]
    for p in pieces:
        await BaseNoiseMsgReadWriter.write_msg(stock, p)
    wire = bytes(stock.read_writer.read_write_closer.written)  # type: ignore[attr-defined]
    for seed in range(3):
        session = _session(_rw(_Sock(wire, seed=seed), KEY))
        rng = random.Random(seed)
        got = bytearray()
        while len(got) < len(data):
            n = rng.choice([None, 1, 12, 4096, 262_144, 2_000_000])
            got += await session.read(n if n is None else min(n, len(data) - len(got)))
        assert bytes(got) == data


async def test_a_forged_message_is_refused() -> None:
    sock = _Sock()
    writer = _rw(sock, KEY)
    await writer.write_msg(b"a" * 100_000)
    wire = bytearray(sock.written)
    wire[70_000] ^= 1  # in the second message
    session = _session(_rw(_Sock(bytes(wire)), KEY))
    got = await session.read(65519)  # the first message is fine
    assert got == b"a" * 65519
    with pytest.raises(NoiseInvalidMessage):
        await session.read(100)


async def test_eof_inside_a_message_is_an_incomplete_read_and_between_messages_a_clean_one() -> None:
    sock = _Sock()
    await _rw(sock, KEY).write_msg(b"x" * 1000)
    whole = bytes(sock.written)
    session = _session(_rw(_Sock(whole), KEY))
    assert await session.read(1000) == b"x" * 1000
    with pytest.raises(IncompleteReadError) as clean:
        await session.read(12)
    assert clean.value.is_clean_close
    session = _session(_rw(_Sock(whole[:500]), KEY))
    with pytest.raises(IncompleteReadError) as cut:
        await session.read(12)
    assert not cut.value.is_clean_close


# -- Yamux + Noise between two real hosts -------------------------------------------------
PROTO = TProtocol("/yagna-test/echo/1.0.0")


async def _pair(nursery: trio.Nursery) -> tuple[Any, Any]:
    a, b = build_host(os.urandom(32)), build_host(os.urandom(32))
    for h in (a, b):
        await nursery.start(_run_host, h)
    await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
    return a, b


async def _run_host(host: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    async with host.run([LISTEN]):
        try:
            await host.get_network().auto_connector.stop()
            task_status.started()
            await trio.sleep_forever()
        finally:
            await close_host(host)


async def _read_all(stream: Any, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        try:
            got += await stream.read(n - len(got))
        except StreamEOF:
            break
    return bytes(got)


@pytest.mark.parametrize("write_size", [7, 65_536 - 12, 1 << 20])
async def test_streams_carry_bulk_data_both_ways(write_size: int) -> None:
    data = os.urandom(3 * 2**20 + 5 if write_size > 7 else 100_000)
    async with trio.open_nursery() as nursery:
        a, b = await _pair(nursery)

        async def echo(stream: Any) -> None:
            got = await _read_all(stream, len(data))
            await stream.write(got[::-1])
            await stream.close()

        b.set_stream_handler(PROTO, echo)
        with trio.fail_after(30):
            stream = await a.new_stream(b.get_id(), [PROTO])
            for off in range(0, len(data), write_size):
                await stream.write(data[off:off + write_size])
            back = await _read_all(stream, len(data))
        assert back == data[::-1]
        nursery.cancel_scope.cancel()


async def test_a_writer_blocked_on_the_window_resumes_as_soon_as_the_reader_reads() -> None:
    """Yamux's window runs out while the reader sleeps; the writer wakes on the WINDOW_UPDATE
    (the stock writer polled every 10 ms, and after 5 s without one it still resets the stream)."""
    data = os.urandom(8 * 2**20)
    async with trio.open_nursery() as nursery:
        a, b = await _pair(nursery)
        done = trio.Event()

        async def slow(stream: Any) -> None:
            await trio.sleep(1.0)  # the 256 KiB initial window is long exhausted
            got = await _read_all(stream, len(data))
            await stream.write(str(len(got)).encode())
            await stream.close()
            done.set()

        b.set_stream_handler(PROTO, slow)
        with trio.fail_after(30):
            stream = await a.new_stream(b.get_id(), [PROTO])
            await stream.write(data)
            assert stream.muxed_stream._zero_window_waits >= 1
            assert await _read_all(stream, 7) == str(len(data)).encode()
            await done.wait()
        nursery.cancel_scope.cancel()
