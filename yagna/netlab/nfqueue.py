"""The few netfilter-queue (NFQUEUE) netlink messages the user-space delay needs; pure bytes in, bytes out.

A packet sent to an NFQUEUE is held by the kernel until a program answers with a verdict. The
delay binds a queue, asks for metadata only (no payload is copied) and for GSO packets whole,
and answers ACCEPT for every packet id up to N at once (a batch verdict) when the oldest held
packet is due. Kernel ABI: linux/netfilter/nfnetlink_queue.h, linux/netlink.h.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET = (NFNL_SUBSYS_QUEUE << 8) | 0
MSG_CONFIG = (NFNL_SUBSYS_QUEUE << 8) | 2
MSG_VERDICT_BATCH = (NFNL_SUBSYS_QUEUE << 8) | 3

CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_MASK, CFG_FLAGS = 1, 2, 3, 4, 5
CMD_BIND = 1
COPY_META = 1
F_FAIL_OPEN, F_GSO = 1 << 0, 1 << 2
PACKET_HDR = 1
VERDICT_HDR = 2
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big endian)
_NLATTR = struct.Struct("=HH")


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def bind(queue: int, maxlen: int, seq: int = 1) -> list[bytes]:
    """Messages (each acknowledged) that bind ``queue``: metadata only, GSO packets whole, and
    accepted rather than dropped when ``maxlen`` packets are already held (fail open)."""
    return [
        _message(MSG_CONFIG, queue, _attr(CFG_CMD, struct.pack("!BxH", CMD_BIND, socket.AF_INET)),
                 seq, NLM_F_REQUEST | NLM_F_ACK),
        _message(MSG_CONFIG, queue,
                 _attr(CFG_PARAMS, struct.pack("!IB", 0, COPY_META))
                 + _attr(CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
                 + _attr(CFG_MASK, struct.pack("!I", F_FAIL_OPEN | F_GSO))
                 + _attr(CFG_FLAGS, struct.pack("!I", F_FAIL_OPEN | F_GSO)),
                 seq + 1, NLM_F_REQUEST | NLM_F_ACK),
    ]


def accept_up_to(queue: int, packet_id: int, seq: int = 0) -> bytes:
    """A batch verdict: ACCEPT every held packet of ``queue`` whose id is <= ``packet_id``."""
    return _message(MSG_VERDICT_BATCH, queue, _attr(VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)), seq)


def parse(data: bytes) -> Iterator[tuple[str, int]]:
    """``("packet", id)`` per queued packet, ``("error", errno)`` per netlink error/ack (errno 0 = ack)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        body = data[offset + _NLMSGHDR.size: offset + length]
        if kind == NLMSG_ERROR and len(body) >= 4:
            yield "error", -struct.unpack_from("=i", body)[0]
        elif kind == MSG_PACKET:
            pos = _NFGENMSG.size
            while pos + _NLATTR.size <= len(body):
                alen, akind = _NLATTR.unpack_from(body, pos)
                if alen < _NLATTR.size:
                    break
                if akind & 0x3FFF == PACKET_HDR and alen >= _NLATTR.size + 4:
                    yield "packet", struct.unpack_from("!I", body, pos + _NLATTR.size)[0]
                    break
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3
