"""This machine's interface addresses and their subnets (to expand a 0.0.0.0 listen address).

Linux: one rtnetlink ``RTM_GETADDR`` dump (stdlib ``socket``, no ``ip`` binary, no
third-party package), every address of every interface, IPv4 and IPv6, with its
prefix length. Elsewhere (or if netlink is refused): the addresses the host name
resolves to, as /32 (/128), plus loopback. Interfaces that are down keep their
addresses in the dump; that is harmless (a peer fails to dial them and moves on).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct

from yagna.net.addresses import Interface

log = logging.getLogger("yagna.net")

_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_MAX_DUMP_BYTES = 4 * 1024 * 1024
"""A machine with thousands of addresses still fits; a runaway answer does not make us read forever."""


def local_interfaces() -> list[Interface]:
    try:
        found = _netlink_addrs()
    except OSError as exc:
        log.debug("netlink address dump failed (%s); using the host name's addresses", exc)
        found = []
    return found or _fallback_addrs()


def _netlink_addrs() -> list[Interface]:
    if not hasattr(socket, "AF_NETLINK"):
        return []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:  # 0 = NETLINK_ROUTE
        sock.settimeout(1.0)
        sock.bind((0, 0))
        request = struct.pack("=IHHII", 16 + 8, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
        request += struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(request)
        out: list[Interface] = []
        total = 0
        while total < _MAX_DUMP_BYTES:
            data = sock.recv(65536)
            total += len(data)
            if not data:
                break
            done, found = parse_addr_dump(data)
            out += found
            if done:
                break
        return out


def parse_addr_dump(data: bytes) -> tuple[bool, list[Interface]]:
    """Parse one ``recv`` of an RTM_GETADDR dump: (saw NLMSG_DONE, addresses)."""
    out: list[Interface] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if kind == _NLMSG_DONE:
            return True, out
        if kind == _NLMSG_ERROR:
            errno = -struct.unpack_from("=i", data, offset + 16)[0] if length >= 20 else 0
            raise OSError(errno, "netlink RTM_GETADDR failed")
        if kind == _RTM_NEWADDR and length >= 24:
            family, prefix, _f, _s, _index = struct.unpack_from("=BBBBI", data, offset + 16)
            attrs = _attrs(data[offset + 24 : offset + length])
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            itf = _interface(family, prefix, raw)
            if itf is not None:
                out.append(itf)
        offset += (length + 3) & ~3
    return False, out


def _attrs(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > len(data):
            break
        attrs.setdefault(kind, data[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return attrs


def _interface(family: int, prefix: int, raw: bytes | None) -> Interface | None:
    if raw is None:
        return None
    try:
        if family == socket.AF_INET and len(raw) == 4 and prefix <= 32:
            return Interface(ipaddress.IPv4Address(raw), prefix)
        if family == socket.AF_INET6 and len(raw) == 16 and prefix <= 128:
            return Interface(ipaddress.IPv6Address(raw), prefix)
    except ValueError:
        return None
    return None


def _fallback_addrs() -> list[Interface]:
    out = [Interface(ipaddress.IPv4Address("127.0.0.1"), 8)]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return out
    for info in infos:
        ip = ipaddress.IPv4Address(info[4][0])
        if Interface(ip, 32) not in out and not ip.is_loopback:
            out.append(Interface(ip, 32))
    return out
