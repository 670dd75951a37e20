"""The NFQUEUE messages of the user-space delay, byte for byte against the kernel's ABI."""

from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from yagna.netlab import nfqueue


def _header(msg: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack_from("=IHHII", msg)  # type: ignore[return-value]


def _attrs(msg: bytes) -> dict[int, bytes]:
    out, pos = {}, 16 + 4
    while pos < len(msg):
        length, kind = struct.unpack_from("=HH", msg, pos)
        out[kind] = msg[pos + 4: pos + length]
        pos += (length + 3) & ~3
    return out


def test_bind_asks_for_metadata_whole_gso_packets_and_fail_open() -> None:
    cmd, params = nfqueue.bind(7, 1000, seq=5)
    for msg, seq in ((cmd, 5), (params, 6)):
        length, kind, flags, got_seq, _ = _header(msg)
        assert length == len(msg) and length % 4 == 0
        assert kind == (3 << 8) | 2 and flags == 0x1 | 0x4 and got_seq == seq
        assert struct.unpack_from("!BBH", msg, 16) == (socket.AF_UNSPEC, 0, 7)  # queue 7, big endian
    assert _attrs(cmd) == {1: struct.pack("!BxH", 1, socket.AF_INET)}
    a = _attrs(params)
    assert a[2] == struct.pack("!IB", 0, 1)  # copy range 0, NFQNL_COPY_META
    assert a[3] == struct.pack("!I", 1000)
    assert a[4] == a[5] == struct.pack("!I", 0b101)  # FAIL_OPEN | GSO, in mask and flags


def test_batch_verdict_accepts_up_to_an_id() -> None:
    msg = nfqueue.accept_up_to(3, 0xDEADBEEF)
    length, kind, flags, _, _ = _header(msg)
    assert (length, kind, flags) == (len(msg), (3 << 8) | 3, 0x1)
    assert struct.unpack_from("!BBH", msg, 16)[2] == 3
    assert _attrs(msg) == {2: struct.pack("!II", 1, 0xDEADBEEF)}


def _packet_msg(packet_id: int, extra_first: bool = False) -> bytes:
    attrs = b""
    if extra_first:  # NFQA_MARK before the header: attributes come in any order
        attrs += struct.pack("=HH", 8, 3) + struct.pack("!I", 42)
    attrs += struct.pack("=HH", 11, 1 | 0x8000) + struct.pack("!IHB", packet_id, 0x0800, 4) + b"\0"
    body = struct.pack("!BBH", socket.AF_INET, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), (3 << 8) | 0, 0, 0, 0) + body


def test_parse_packets_and_errors() -> None:
    ack = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", 0) + b"\0" * 16
    err = struct.pack("=IHHII", 36, 2, 0, 2, 0) + struct.pack("=i", -1) + b"\0" * 16
    data = _packet_msg(1) + _packet_msg(2, extra_first=True) + ack + err
    assert list(nfqueue.parse(data)) == [("packet", 1), ("packet", 2), ("error", 0), ("error", 1)]


@given(st.binary(max_size=400))
def test_parse_never_fails_on_garbage(data: bytes) -> None:
    for kind, value in nfqueue.parse(data):
        assert kind in ("packet", "error") and isinstance(value, int)


def test_parse_stops_at_a_truncated_message() -> None:
    msg = _packet_msg(9)
    assert list(nfqueue.parse(msg[:-3])) == []
    assert list(nfqueue.parse(msg + msg[:10])) == [("packet", 9)]
