"""Hole punching (DCUtR): upgrade a relayed connection to a direct one.

py-libp2p 0.8.1's ``DCUtRProtocol`` does the exchange (CONNECT with our predicted
addresses, SYNC, a TCP simultaneous open from our listen port with the security
roles fixed by the spec); the swarm's ``best`` connection choice then puts new
streams on the direct connection. What we change, and why (docs/decisions.md,
"Hole punching"):

* **Who initiates.** The library polls every connection every 2 s and lets both
  sides initiate, so two of our nodes would open two crossing sessions and
  dial each other twice. Here exactly one side initiates: the one with the lower
  node id (both are ours; a deterministic rule needs no extra round trip), as
  soon as the peer manager reports a connection that is only relayed.
* **What a peer can make us do** (every peer is a potential attacker; a CONNECT
  makes us dial the addresses it lists, a reflection vector): inbound sessions
  only from a peer we reach through a relay and not directly, one session per
  peer at a time, :attr:`PunchLimits.max_sessions` sessions at once, at most
  :attr:`PunchLimits.attempts_per_window` sessions per peer per
  :attr:`PunchLimits.window` s (ours and theirs together), and only TCP
  addresses that are not loopback, unspecified or multicast, at most
  :attr:`PunchLimits.max_addrs` of them.
* **No unilateral dial first.** The peer manager has already dialed the peer's
  direct addresses before it went through a relay; the library's "unilateral
  upgrade" would dial them again (private ones time out) and delay the punch.
* **The relayed leg is not closed** (the library closes it after 60 s whatever runs
  on it); requests move off it (:meth:`HolePunchService._move_off_relayed_leg`).

:class:`PunchPolicy` is the sans-io part (unit tested on a virtual clock);
:class:`HolePunchService` is the trio driver.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from yagna.net.addresses import is_relay_addr

log = logging.getLogger("yagna.net.holepunch")


@dataclass(frozen=True)
class PunchLimits:
    max_sessions: int = 8
    """Hole-punch sessions (ours and inbound) in progress at once."""
    attempts_per_window: int = 3
    """Sessions per peer within ``window`` seconds (the spec retries twice)."""
    window: float = 600.0
    retry_after: float = 5.0
    """Seconds between two sessions we initiate to the same peer."""
    max_addrs: int = 8
    """Addresses of a peer's CONNECT we dial at most."""
    relay_drain: float = 600.0
    """Seconds we keep moving pooled requests off a relayed leg that has a direct twin (a
    circuit's default life; the relay ends it by then)."""


@dataclass
class PunchStats:
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    refused: int = 0
    """Inbound sessions refused by the limits."""
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"attempts": self.attempts, "succeeded": self.succeeded, "failed": self.failed,
                "refused": self.refused, "last_error": self.last_error}


@dataclass
class PunchPolicy:
    """Who initiates, and which sessions are admitted (sans-io: the caller passes the time)."""

    me: str
    limits: PunchLimits = field(default_factory=PunchLimits)
    _active: set[str] = field(default_factory=set)
    _history: dict[str, deque[float]] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)
    """Peers we are directly connected to after a punch (or gave up on) until they disconnect."""

    def initiator(self, peer: str) -> bool:
        """True if we are the side that starts a session with ``peer``."""
        return self.me < peer

    def _recent(self, peer: str, now: float) -> deque[float]:
        times = self._history.setdefault(peer, deque())
        while times and now - times[0] > self.limits.window:
            times.popleft()
        return times

    def should_initiate(self, peer: str, now: float) -> bool:
        if not self.initiator(peer) or peer in self._active or peer in self._done:
            return False
        times = self._recent(peer, now)
        if len(times) >= self.limits.attempts_per_window:
            return False
        if times and now - times[-1] < self.limits.retry_after:
            return False
        return len(self._active) < self.limits.max_sessions

    def admit_inbound(self, peer: str, now: float, *, relayed_only: bool) -> bool:
        """An inbound CONNECT: only over a relay-only link, one at a time, within the budget."""
        if not relayed_only or peer in self._active or len(self._active) >= self.limits.max_sessions:
            return False
        return len(self._recent(peer, now)) < self.limits.attempts_per_window

    def started(self, peer: str, now: float) -> None:
        self._active.add(peer)
        self._recent(peer, now).append(now)

    def finished(self, peer: str, ok: bool) -> None:
        self._active.discard(peer)
        if ok:
            self._done.add(peer)

    def disconnected(self, peer: str) -> None:
        """The peer is gone: it may be punched again when it comes back (its budget stays)."""
        self._done.discard(peer)

    def forget_idle(self, now: float) -> None:
        """Drop histories older than the window (bounds memory to peers seen within it)."""
        for peer in [p for p in self._history if not self._recent(p, now)]:
            del self._history[peer]

    def active(self) -> int:
        return len(self._active)

    def in_progress(self, peer: str) -> bool:
        return peer in self._active

    def may_punch_soon(self, peer: str, now: float) -> bool:
        """A session with ``peer`` is under way, or one is about to start: ours, or, when the
        peer initiates, its first (none recorded within the window yet)."""
        if peer in self._active:
            return True
        if self.initiator(peer):
            return self.should_initiate(peer, now)
        return peer not in self._done and not self._recent(peer, now)


def dialable(addr: str) -> bool:
    """A CONNECT address we are willing to dial: TCP over IPv4/IPv6, not loopback,
    unspecified, multicast or link-local, no relay hop."""
    parts = addr.strip("/").split("/")
    if "p2p-circuit" in parts or len(parts) < 4 or parts[0] not in ("ip4", "ip6") or parts[2] != "tcp":
        return False
    try:
        ip = ipaddress.ip_address(parts[1])
        port = int(parts[3])
    except ValueError:
        return False
    if not 0 < port < 65536:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local)


def connection_kind(host: Any, peer_id: Any) -> tuple[bool, bool]:
    """``(has a relayed connection, has a direct connection)`` to ``peer_id``."""
    kinds = [_is_relayed(c) for c in _conns(host, peer_id)]
    return True in kinds, False in kinds


def _peer_id(peer: str) -> Any:
    from libp2p.peer.id import ID

    return ID.from_base58(peer)


def _conns(host: Any, peer_id: Any) -> list[Any]:
    conns = host.get_network().connections.get(peer_id, [])
    return list(conns) if isinstance(conns, list) else [conns]


def _is_relayed(conn: Any) -> bool | None:
    """True: every transport address is a circuit one; False: direct; None: closing/unknown."""
    try:
        addrs = [str(a) for a in conn.get_transport_addresses()]
    except Exception:  # noqa: BLE001 - a closing connection
        return None
    if not addrs:
        return None
    return all(is_relay_addr(a) for a in addrs)


class HolePunchService:
    """Runs DCUtR on the host under :class:`PunchPolicy`; ``wake()`` on connection changes."""

    def __init__(self, host: Any, *, enabled: bool = True, limits: PunchLimits | None = None,
                 poll: float = 2.0, dial_timeout: int = 5) -> None:
        self.host = host
        self.enabled = enabled
        self.policy = PunchPolicy(host.get_id().to_base58(), limits or PunchLimits())
        self.stats = PunchStats()
        self.poll = poll
        self.dial_timeout = dial_timeout
        self.ready = trio.Event()
        self._wake = trio.Event()
        self._proto: Any = None
        self._moving: set[str] = set()
        """Peers whose requests are being moved off a relayed leg."""
        self.on_direct: Callable[[str], Awaitable[None]] | None = None
        """Awaited while a peer has a direct and a relayed connection: production retires the
        peer's idle pooled request streams so new requests open on the direct one."""

    def wake(self) -> None:
        self._wake.set()

    def status(self) -> dict[str, object]:
        return {"enabled": self.enabled, "active": self.policy.active(), **self.stats.as_dict()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.enabled:
            return
        try:
            await self._run()
        except Exception:  # an extra: its failure must never end the node
            log.exception("hole punching stopped")

    async def _run(self) -> None:
        from libp2p.tools.anyio_service.context import background_trio_service

        self._proto = _make_protocol(self)
        async with background_trio_service(self._proto):
            await self._proto.event_started.wait()
            self.ready.set()
            async with trio.open_nursery() as nursery:
                while True:
                    self._drive(nursery)
                    self._wake = trio.Event()
                    with trio.move_on_after(self.poll):
                        await self._wake.wait()

    def _drive(self, nursery: trio.Nursery) -> None:
        now = trio.current_time()
        self.policy.forget_idle(now)
        live = {p.to_base58() for p in self.host.get_network().connections}
        for peer in [p for p in self.policy._done if p not in live]:
            self.policy.disconnected(peer)
        for peer_id, _conns in list(self.host.get_network().connections.items()):
            peer = peer_id.to_base58()
            relayed, direct = connection_kind(self.host, peer_id)
            if direct and relayed and peer not in self._moving:
                self._moving.add(peer)
                nursery.start_soon(self._move_off_relayed_leg, peer_id, peer)
            if direct or not relayed:
                continue
            if self.policy.should_initiate(peer, now):
                self.policy.started(peer, now)
                nursery.start_soon(self._initiate, peer_id, peer)

    async def _move_off_relayed_leg(self, peer_id: Any, peer: str) -> None:
        """A peer has a direct and a relayed connection (after a punch by either side, or a
        direct dial that succeeded later): new streams already take the direct one (the swarm's
        ``best`` choice); our idle pooled request streams on the relayed one are retired now and
        every 2 s while both exist (a request in flight puts its stream back when done), so
        requests move too. The relayed connection itself is left to end with its circuit: closing
        it from our side reset other circuits through the same relay in e2e runs (a transfer to
        another peer then hung on a half-open relayed connection), and the library's own close
        after 60 s would cut a long exec or transfer running on it."""
        try:
            with trio.move_on_after(self.policy.limits.relay_drain):
                while True:
                    relayed, direct = connection_kind(self.host, peer_id)
                    if not (relayed and direct):
                        return
                    if self.on_direct is not None:
                        await self.on_direct(peer)
                    await trio.sleep(2.0)
        except Exception:  # noqa: BLE001 - never the node's failure
            log.debug("moving requests to %s off the relayed leg", peer, exc_info=True)
        finally:
            self._moving.discard(peer)

    async def _initiate(self, peer_id: Any, peer: str) -> None:
        ok = False
        self.stats.attempts += 1
        try:
            log.info("hole punching to %s (relayed)", peer)
            with trio.move_on_after(30):
                ok = bool(await self._proto.initiate_hole_punch(peer_id))
        except Exception as exc:  # noqa: BLE001 - a failed punch is that peer's, never the node's
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self._record(peer, ok)

    def _record(self, peer: str, ok: bool) -> None:
        self.policy.finished(peer, ok)
        if ok:
            self.stats.succeeded += 1
            log.info("direct connection to %s by hole punching", peer)
        else:
            self.stats.failed += 1
            log.info("hole punching to %s failed; staying relayed", peer)
        if ok:
            self.wake()  # _drive moves the pooled requests off the relayed leg

    async def prefer_direct(self, peer: str, timeout: float = 3.0) -> bool:
        """Before a bulk transfer to ``peer``: True if a direct connection is (or, within
        ``timeout`` s, becomes) available. While the only connection is relayed and a punch is
        under way or about to start, wait for it (bounded): a transfer started a moment too
        early would run through the relay and its limits for its whole length."""
        if not self.enabled or self._proto is None:
            return connection_kind(self.host, _peer_id(peer))[1]
        peer_id = _peer_id(peer)
        with trio.move_on_after(timeout):
            while True:
                relayed, direct = connection_kind(self.host, peer_id)
                if direct or not relayed:
                    return direct
                now = trio.current_time()
                if not self.policy.may_punch_soon(peer, now):
                    return False  # nothing under way and nothing to try: the relay it is
                self.wake()
                await trio.sleep(0.05)
        return connection_kind(self.host, peer_id)[1]

    async def on_connect(self, _peer: str) -> None:
        """A peer manager connect listener: look at the new connection now, not at the next poll."""
        self.wake()


def _make_protocol(service: HolePunchService) -> Any:
    """py-libp2p's DCUtR protocol with our policy at its three entry points."""
    from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol

    class _DCUtR(DCUtRProtocol):  # type: ignore[misc]
        async def _auto_drive_loop(self) -> None:  # replaced by HolePunchService._drive
            return

        async def _try_unilateral_upgrade(self, peer_id: Any) -> bool:
            return False  # the peer manager dialed the direct addresses before relaying

        def _decode_observed_addrs(self, addr_bytes: list[bytes]) -> list[Any]:
            addrs = super()._decode_observed_addrs(addr_bytes[: service.policy.limits.max_addrs * 2])
            return [a for a in addrs if dialable(str(a))][: service.policy.limits.max_addrs]

        async def _close_relayed_conns_after_grace(self, peer_id: Any, grace: float = 0.0) -> None:
            return  # see HolePunchService._move_off_relayed_leg: the relayed leg is not closed

        async def _handle_dcutr_stream(self, stream: Any) -> None:
            try:
                peer_id = stream.muxed_conn.peer_id
                peer = peer_id.to_base58()
            except Exception:  # noqa: BLE001
                await _reset(stream)
                return
            relayed, direct = connection_kind(service.host, peer_id)
            now = trio.current_time()
            if not service.policy.admit_inbound(peer, now, relayed_only=relayed and not direct):
                service.stats.refused += 1
                log.info("hole punching from %s refused (not relay-only, busy or over its budget)", peer)
                await _reset(stream)
                return
            service.policy.started(peer, now)
            ok = False
            service.stats.attempts += 1
            try:
                with trio.move_on_after(30):
                    await super()._handle_dcutr_stream(stream)
                ok = connection_kind(service.host, peer_id)[1]
            finally:
                service._record(peer, ok)

    return _DCUtR(service.host, dial_timeout=service.dial_timeout)


async def _reset(stream: Any) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001 - already gone
            pass
