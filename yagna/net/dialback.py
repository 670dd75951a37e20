"""Dial-back (``/yagna/dialback/1.0.0``): a peer tells us whether it can reach our addresses.

Why not py-libp2p's AutoNAT v1 (docs/decisions.md, "Addresses and reachability"):
its server "dials back" with ``host.connect()``, which returns at once because
the requester is already connected to it (it asked over that connection), so
every answer is "reachable"; it also stores the requester's claimed addresses
in the peerstore.

Here the server opens a *new* TCP connection to each candidate address and runs
the Noise handshake as initiator expecting the requester's peer id, then
closes it before any muxer is negotiated. It never enters the swarm, so it
neither replaces nor counts against the one connection per peer we allow; a
success proves that the requester itself (not just some program) listens
there. Bounds against being used as a weapon: only addresses whose IP is the
requester's own IP as we see it on the connection it asked over (nobody can
make us dial a third party), never over a relayed connection, at most
:data:`MAX_ADDRS` addresses per request, :data:`PER_PEER_PER_MINUTE` requests
per peer per minute, :data:`MAX_CONCURRENT` dial-backs at once, each bounded
by :data:`DIAL_TIMEOUT`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import trio

from yagna.core.errors import WireError
from yagna.net.addresses import IP, observer_group, parse_tcp
from yagna.net.errors import RequestRejected
from yagna.net.reqresp import ProtocolSpec, Request

log = logging.getLogger("yagna.net.dialback")

DIAL_TIMEOUT = 5.0
"""One dial-back: TCP connect plus Noise handshake."""
DIALBACK = ProtocolSpec(
    "/yagna/dialback/1.0.0", max_request_size=2048, max_response_size=2048,
    timeout=DIAL_TIMEOUT + 5.0, concurrency=16, per_peer=1,
)
MAX_ADDRS = 4
MAX_ADDR_LEN = 100
PER_PEER_PER_MINUTE = 4
MAX_CONCURRENT = 4
"""Dial-backs in flight at once, for all requesters."""
MAX_TRACKED_PEERS = 1024
"""Requesters whose recent requests are remembered for the rate limit (oldest forgotten first)."""


# -- messages (sans-io) ----------------------------------------------------------------
def make_request(addrs: list[str]) -> dict[str, object]:
    return {"addrs": addrs[:MAX_ADDRS]}


def parse_request(payload: object) -> list[str]:
    if not isinstance(payload, dict) or set(payload) != {"addrs"} or not isinstance(payload["addrs"], list):
        raise WireError("dial-back request must be {addrs: [...]}")
    addrs = payload["addrs"]
    if not 1 <= len(addrs) <= MAX_ADDRS:
        raise WireError(f"dial-back request must name 1 to {MAX_ADDRS} addresses")
    for addr in addrs:
        tcp = parse_tcp(addr) if isinstance(addr, str) and len(addr) <= MAX_ADDR_LEN else None
        if tcp is None or tcp.rest or str(tcp) != addr:
            raise WireError(f"bad dial-back address {addr!r}: must be /ip4|ip6/<ip>/tcp/<port>")
    return list(dict.fromkeys(addrs))


def make_response(reached: list[str], failed: list[str]) -> dict[str, object]:
    return {"reached": reached, "failed": failed}


def parse_response(payload: object, asked: list[str]) -> tuple[list[str], list[str]]:
    """(reached, failed), each a subset of what we asked about."""
    if not isinstance(payload, dict) or set(payload) != {"reached", "failed"}:
        raise WireError("dial-back response must be {reached, failed}")
    out = []
    for key in ("reached", "failed"):
        value = payload[key]
        if not isinstance(value, list) or len(value) > MAX_ADDRS or not all(isinstance(a, str) for a in value):
            raise WireError(f"dial-back response {key} must be a list of at most {MAX_ADDRS} strings")
        out.append([a for a in value if a in asked])
    return out[0], out[1]


def dialable_for(addrs: list[str], requester_ip: IP | None) -> list[str]:
    """The addresses we may dial for a requester seen at ``requester_ip``: its own IP only."""
    if requester_ip is None:
        return []
    mine = observer_group(requester_ip)
    out = []
    for addr in addrs:
        tcp = parse_tcp(addr)
        if tcp is not None and tcp.port and observer_group(tcp.ip) == mine and tcp.ip == _plain(requester_ip):
            out.append(addr)
    return out


def _plain(ip: IP) -> IP:
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


class RateLimit:
    """At most ``per_minute`` requests per peer in any 60 s; remembers ``max_peers`` peers."""

    def __init__(self, per_minute: int = PER_PEER_PER_MINUTE, max_peers: int = MAX_TRACKED_PEERS) -> None:
        self.per_minute = per_minute
        self.max_peers = max_peers
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, peer: str, now: float) -> bool:
        times = self._seen.pop(peer, None) or deque()
        while times and now - times[0] >= 60.0:
            times.popleft()
        allowed = len(times) < self.per_minute
        if allowed:
            times.append(now)
        self._seen[peer] = times
        while len(self._seen) > self.max_peers:
            self._seen.popitem(last=False)
        return allowed


# -- server ---------------------------------------------------------------------------------
Dialer = Callable[[str, str], Awaitable[bool]]
"""``dial(node_id, addr)`` -> True if the node with that id answered at that address."""


class DialbackServer:
    def __init__(
        self,
        dial: Dialer,
        remote_ip: Callable[[str], IP | None],
        *,
        relayed: Callable[[str], bool] = lambda _peer: False,
        limit: RateLimit | None = None,
    ) -> None:
        self._dial = dial
        self._remote_ip = remote_ip
        self._relayed = relayed
        self._limit = limit or RateLimit()
        self._slots = trio.CapacityLimiter(MAX_CONCURRENT)

    async def handle(self, request: Request) -> object:
        try:
            addrs = parse_request(request.payload)
        except WireError as exc:
            raise RequestRejected("bad_request", str(exc)) from None
        if self._relayed(request.peer):
            raise RequestRejected("refused", "no dial-back over a relayed connection")
        if not self._limit.allow(request.peer, trio.current_time()):
            raise RequestRejected("rate_limited", f"at most {self._limit.per_minute} dial-backs a minute")
        ip = self._remote_ip(request.peer)
        targets = dialable_for(addrs, ip)
        if not targets:
            raise RequestRejected("refused", f"we dial back only your own IP ({ip})")
        reached: list[str] = []
        failed: list[str] = []

        async def one(addr: str) -> None:
            ok = False
            async with self._slots:
                with trio.move_on_after(DIAL_TIMEOUT):
                    ok = await self._dial(request.peer, addr)
            (reached if ok else failed).append(addr)

        async with trio.open_nursery() as nursery:
            for addr in targets:
                nursery.start_soon(one, addr)
        log.debug("dial-back for %s: reached %s, failed %s", request.peer, reached, failed)
        return make_response(reached, failed)
