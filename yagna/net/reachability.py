"""Are we publicly reachable? The verdict of dial-backs by peers (sans-io core + a trio handle).

A node asks connected peers on public addresses to dial its candidate
addresses back on a new connection (:mod:`yagna.net.dialback`). This module
turns their answers into a status:

* ``unknown`` at start, and while there is no evidence either way (a loopback
  devnet, a LAN with no public peer, a node with no public candidate address);
* ``public`` once peers on at least ``confirmations`` distinct IPs reached us;
* ``private`` once at least ``confirmations`` distinct peers failed and none
  reached us.

A verdict is sticky while new evidence is gathered: when our addresses change
the results are cleared, the status stays until the next checks decide (a
relay decision must not flap on every address change), except that losing
every candidate address makes it ``unknown``. Results expire after
``result_ttl``; :meth:`ReachabilityState.due` says when to ask again.

"Distinct" is by the server's IP (an IPv6 /56 counts once), so several ids on
one machine count as one witness, as in :class:`yagna.net.addresses.ObservedAddrs`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import trio

from yagna.net.addresses import IP, Scope, TcpAddr, addr_scope, observer_group, parse_tcp, scope


class Status(str, enum.Enum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"

    def __str__(self) -> str:
        return self.value


CONFIRMATIONS = 2
RESULT_TTL = 60 * 60.0
"""A dial-back result counts this long (s)."""
RECHECK_INTERVAL = 10 * 60.0
"""Ask again this often (s) even if nothing changed (a NAT or firewall may have)."""
RETRY_INTERVAL = 30.0
"""While undecided (too few distinct servers answered), look for new servers this often (s)."""
MAX_RESULTS = 16
MAX_CANDIDATES = 4
"""Addresses one dial-back request asks about (the server's limit too)."""


@dataclass(frozen=True)
class Result:
    server: str
    """The server's node id (for logs)."""
    ok: bool
    addrs: tuple[str, ...]
    """The candidate addresses the server reached (empty on failure)."""
    at: float


def candidates(listen: Iterable[str], observed: Iterable[str], observed_ips: Iterable[IP]) -> list[str]:
    """Our addresses worth a dial-back: public listen addresses, confirmed observed ones, and
    each observed public IP with each listen port (a NAT with a forwarded port, or a host whose
    public IP is not on an interface). Loopback and private addresses are never asked about:
    reachable on a LAN is not reachable."""
    listen = list(listen)
    out = [a for a in listen if addr_scope(a) is Scope.PUBLIC]
    out += [a for a in observed if addr_scope(a) is Scope.PUBLIC]
    ports = sorted({t.port for t in (parse_tcp(a) for a in listen) if t is not None and t.port})
    for ip in observed_ips:
        if scope(ip) is Scope.PUBLIC:
            out += [str(TcpAddr(ip, port)) for port in ports]
    thin = [parse_tcp(a) for a in out]
    return list(dict.fromkeys(t.thin_waist for t in thin if t is not None))[:MAX_CANDIDATES]


def can_judge(server_ip: IP | None) -> bool:
    """A server judges our public reachability only if it reached us over the internet (a public
    IP on its side of the connection): a peer on our LAN or host would dial our public address
    through hairpin NAT or not at all, which says nothing about the internet."""
    return server_ip is not None and scope(server_ip) is Scope.PUBLIC


@dataclass
class ReachabilityState:
    confirmations: int = CONFIRMATIONS
    result_ttl: float = RESULT_TTL
    recheck_interval: float = RECHECK_INTERVAL
    retry_interval: float = RETRY_INTERVAL
    status: Status = Status.UNKNOWN
    candidates: tuple[str, ...] = ()
    results: dict[str, Result] = field(default_factory=dict)
    """server IP group -> its latest result, for the current candidates."""
    last_check: float | None = None

    def set_candidates(self, addrs: Sequence[str]) -> bool:
        """New candidate addresses; True if they changed (results are then cleared)."""
        new = tuple(addrs)
        if new == self.candidates:
            return False
        self.candidates = new
        self.results.clear()
        self.last_check = None
        if not new:
            self.status = Status.UNKNOWN
        return True

    def record(self, server: str, server_ip: IP, ok: bool, reached: Sequence[str], now: float) -> bool:
        """A server's answer; True if the status changed."""
        group = observer_group(server_ip)
        self.results[group] = Result(server, ok, tuple(a for a in reached if a in self.candidates), now)
        if len(self.results) > MAX_RESULTS:
            oldest = min(self.results, key=lambda g: self.results[g].at)
            del self.results[oldest]
        return self._decide(now)

    def expire(self, now: float) -> bool:
        for group, result in list(self.results.items()):
            if now - result.at > self.result_ttl:
                del self.results[group]
        return self._decide(now)

    def _decide(self, now: float) -> bool:
        live = [r for r in self.results.values() if now - r.at <= self.result_ttl]
        ok = sum(r.ok for r in live)
        failed = sum(not r.ok for r in live)
        before = self.status
        if not self.candidates:
            self.status = Status.UNKNOWN
        elif ok >= self.confirmations:
            self.status = Status.PUBLIC
        elif failed >= self.confirmations and ok == 0:
            self.status = Status.PRIVATE
        return self.status != before

    def verified(self, now: float) -> list[str]:
        """Candidates some server reached (advertised as public addresses while we are public)."""
        out: list[str] = []
        for r in self.results.values():
            if r.ok and now - r.at <= self.result_ttl:
                out += r.addrs
        return list(dict.fromkeys(out))

    def asked(self) -> set[str]:
        """Server IP groups with a current result (not asked again until it expires or addresses change)."""
        return set(self.results)

    def decided(self, now: float) -> bool:
        live = [r for r in self.results.values() if now - r.at <= self.result_ttl]
        return sum(r.ok for r in live) >= self.confirmations or (
            sum(not r.ok for r in live) >= self.confirmations and not any(r.ok for r in live)
        )

    def due(self, now: float) -> bool:
        """Time to ask (more) servers?"""
        if not self.candidates:
            return False
        if self.last_check is None:
            return True
        wait = self.recheck_interval if self.decided(now) else self.retry_interval
        return now - self.last_check >= wait

    def start_round(self, now: float) -> None:
        self.last_check = now
        if self.decided(now):
            # a periodic re-check: ask afresh (the results stay until replaced, the status is sticky)
            for group in list(self.results):
                if now - self.results[group].at >= self.recheck_interval:
                    del self.results[group]


def pick_servers(
    connected: Iterable[tuple[str, IP | None]], asked: set[str], want: int
) -> list[tuple[str, IP]]:
    """Up to ``want`` connected peers that can judge us, one per IP group, none already asked."""
    out: list[tuple[str, IP]] = []
    groups = set(asked)
    for node_id, ip in connected:
        if ip is None or not can_judge(ip):
            continue
        group = observer_group(ip)
        if group in groups:
            continue
        groups.add(group)
        out.append((node_id, ip))
        if len(out) >= want:
            break
    return out


class Reachability:
    """The node's reachability as other parts see it (the relay service, ``net status``).

    ``status`` is one of :class:`Status` (a ``str``: ``"public"``, ``"private"``,
    ``"unknown"``). :meth:`wait_change` returns when it changes.
    """

    def __init__(self, state: ReachabilityState | None = None) -> None:
        self.state = state or ReachabilityState()
        self._changed = trio.Event()

    @property
    def status(self) -> Status:
        return self.state.status

    async def wait_change(self, seen: Status | None = None) -> Status:
        """Wait until the status differs from ``seen`` (default: the current one); return it."""
        seen = self.status if seen is None else seen
        while self.status == seen:
            await self._changed.wait()
        return self.status

    def notify(self) -> None:
        """Wake the waiters (the owner calls it after a transition)."""
        self._changed.set()
        self._changed = trio.Event()
