"""The peer manager: who we know, whom we are connected to, and redialing.

py-libp2p's own AutoConnector is stopped (it dials every peerstore entry up to
200 connections and logs errors for dead ones); this manager decides instead:

* bootstrap peers (from ``--bootstrap``) are always dialed; of the peers
  learned by peer exchange (:mod:`yagna.net.px`) or remembered in the store,
  random ones are dialed until about ``target`` connections are up (a partial
  mesh, :mod:`yagna.net.mesh`); the others stay known, their addresses pinned
  in the peerstore so that a request to one of them dials it on demand;
* above ``max_peers`` connections the newest ones without open streams are
  closed;
* a dropped or unreachable peer is redialed with exponential backoff
  (:func:`yagna.net.backoff.redial_delay`), bootstrap peers forever, others
  until they failed ``forget_after`` times in a row;
* addresses we dial are kept in the peerstore without expiry (``connect()``
  stores them with a 120 s TTL otherwise).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from yagna.core.errors import WireError
from yagna.net import px
from yagna.net.addresses import is_relay_addr, relay_id_of
from yagna.net.backoff import redial_delay
from yagna.net.errors import BadAddressError, PeerUnreachable, RequestError, RequestRejected
from yagna.net.host import DIAL_TIMEOUT_S, parse_multiaddr, peer_info
from yagna.net.mesh import Candidate, Connection, MeshLimits, choose_dials, choose_prunes
from yagna.net.reqresp import Request, RequestResponse

log = logging.getLogger("yagna.net.peers")

PERMANENT_TTL = 0
MAX_LEARNED = 1024
"""Peers learned by peer exchange and not connected, kept at most (each is a future dial)."""
TEACH_SEEN_WITHIN = 600.0
"""Peers we were connected to this recently are taught to others even when not connected now."""
MAX_TAUGHT_PER_PEER = 128
"""Of those, at most this many taught by one peer: a liar cannot fill the list with fake ids."""


class PeerBook(Protocol):
    """Where known peers are remembered across restarts (the node's store)."""

    async def upsert(self, node_id: str, addrs: list[str], source: str) -> None: ...
    async def mark_connected(self, node_id: str) -> None: ...
    async def load(self) -> list[tuple[str, list[str]]]: ...


@dataclass
class PeerState:
    node_id: str
    addrs: list[str] = field(default_factory=list)
    bootstrap: bool = False
    connected: bool = False
    connected_since: float | None = None
    failures: int = 0
    next_attempt: float = 0.0  # trio clock
    dialing: bool = False
    source: str = "px"
    taught_by: str | None = None
    """The peer whose exchange told us of this one (None: bootstrap, inbound, the store)."""
    last_seen: float | None = None
    """trio time we were last connected to it (None: never in this run)."""
    relay: str | None = None
    """The relay carrying our connection to it while connected through one (else None)."""
    dead_relay: str | None = None
    """The relay whose circuit to it dropped last: tried last on the redial (it may have died)."""


@dataclass(frozen=True)
class PeerView:
    """What ``net peers`` shows."""

    node_id: str
    connected: bool
    addrs: list[str]
    """Advertised listen addresses (what we would dial)."""
    remote_addrs: list[str]
    """Transport addresses of the live connection, if any."""
    direction: str | None
    bootstrap: bool
    connected_since: float | None
    failures: int
    connection: str | None = None
    """``direct`` or ``relayed`` (every live connection goes through a relay); None when not connected."""
    relay: str | None = None
    """The relay's node id when relayed."""


class _Notifee(INotifee):
    def __init__(self, send: trio.MemorySendChannel[tuple[str, str]]) -> None:
        self._send = send

    def _put(self, kind: str, conn: INetConn) -> None:
        try:
            self._send.send_nowait((kind, conn.muxed_conn.peer_id.to_base58()))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the periodic reconcile catches up

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._put("up", conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._put("down", conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass


class PeerManager:
    def __init__(
        self,
        host: IHost,
        rr: RequestResponse,
        *,
        my_addrs: Callable[[str], list[str]],
        bootstrap: list[tuple[str, Multiaddr]],
        book: PeerBook | None = None,
        px_interval: float = 5.0,
        redial_base: float = 0.5,
        redial_cap: float = 30.0,
        forget_after: int = 12,
        limits: MeshLimits | None = None,
        on_change: Callable[[], None] | None = None,
        teachable: Callable[[str, list[str]], list[str]] | None = None,
    ) -> None:
        self._host = host
        self._rr = rr
        self._my_addrs = my_addrs
        """``my_addrs(node_id)``: our addresses worth telling that peer (yagna/net/addresses.py)."""
        self._teachable = teachable or (lambda _peer, addrs: list(addrs))
        """``teachable(node_id, addrs)``: of a third party's addresses, those that peer can use
        (no loopback to a remote peer, private ones only within their subnet)."""
        self._me = host.get_id().to_base58()
        self._book = book
        self.px_interval = px_interval
        self.redial_base = redial_base
        self.redial_cap = redial_cap
        self.forget_after = forget_after
        self.limits = limits or MeshLimits()
        self._rng = random.Random()
        self._on_change = on_change or (lambda: None)
        self._peers: dict[str, PeerState] = {}
        self._banned: dict[str, float] = {}  # node id -> trio time the ban ends
        self._connect_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._wake = trio.Event()
        self._events_send, self._events_recv = trio.open_memory_channel[tuple[str, str]](1024)
        self._nursery: trio.Nursery | None = None
        self._on_demand: dict[str, trio.Event] = {}
        """Peers with an on-demand dial in flight (:meth:`ensure_connected`), for the waiters."""
        self.dial_relayed: Callable[[str, list[str]], Awaitable[None]] | None = None
        """Set by the relay service: dials a peer whose only addresses are ``/p2p-circuit`` ones."""
        for node_id, addr in bootstrap:
            state = self._state(node_id)
            state.bootstrap = True
            state.source = "bootstrap"
            if str(addr) not in state.addrs:
                state.addrs.append(str(addr))
        rr.register(px.PX, self._serve_px)
        host.get_network().register_notifee(_Notifee(self._events_send))

    # -- public view ---------------------------------------------------------
    def connected_peers(self) -> list[str]:
        return sorted(p.node_id for p in self._peers.values() if p.connected)

    def view(self) -> list[PeerView]:
        conns = self._host.get_network().connections
        out = []
        for p in sorted(self._peers.values(), key=lambda p: p.node_id):
            remote: list[str] = []
            direction = None
            live = conns.get(ID.from_base58(p.node_id), []) if p.connected else []
            for conn in live:
                remote += [str(a) for a in _safe_transport_addrs(conn)]
                direction = _direction(conn)
            relays = [relay_id_of(a) for a in remote]
            connection = None if not live else ("relayed" if remote and all(r is not None for r in relays) else "direct")
            out.append(
                PeerView(
                    node_id=p.node_id,
                    connected=p.connected,
                    addrs=list(p.addrs),
                    remote_addrs=remote,
                    direction=direction,
                    bootstrap=p.bootstrap,
                    connected_since=p.connected_since,
                    failures=p.failures,
                    connection=connection,
                    relay=next((r for r in relays if r), None) if connection == "relayed" else None,
                )
            )
        return out

    def on_connect(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Call ``listener(node_id)`` (in its own task) each time a peer connects.

        The listener handles its own errors: it runs in the manager's nursery.
        """
        self._connect_listeners.append(listener)

    def ban(self, node_id: str, seconds: float) -> None:
        """Drop the connection to ``node_id`` and refuse it (both ways) for ``seconds``."""
        if node_id == self._me:
            return
        until = trio.current_time() + seconds
        self._banned[node_id] = max(until, self._banned.get(node_id, 0.0))
        log.warning("banning %s for %.0f s", node_id, seconds)
        if self._nursery is not None:
            self._nursery.start_soon(self._hang_up, node_id)

    def is_banned(self, node_id: str) -> bool:
        until = self._banned.get(node_id)
        if until is None:
            return False
        if until <= trio.current_time():
            del self._banned[node_id]
            return False
        return True

    async def _hang_up(self, node_id: str) -> None:
        try:
            with trio.move_on_after(DIAL_TIMEOUT_S):
                await self._host.disconnect(ID.from_base58(node_id))
        except (BaseLibp2pError, OSError, ValueError) as exc:
            log.debug("disconnecting %s failed: %s", node_id, _short(exc))

    # -- service -------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._book is not None:
            for node_id, addrs in await self._book.load():
                if node_id != self._me:
                    state = self._state(node_id)
                    state.addrs = state.addrs or list(addrs)
                    if state.source == "px":
                        state.source = "store"
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._events_loop)
            nursery.start_soon(self._dial_loop)
            nursery.start_soon(self._px_loop)
            task_status.started()

    def _state(self, node_id: str) -> PeerState:
        state = self._peers.get(node_id)
        if state is None:
            state = self._peers[node_id] = PeerState(node_id)
        return state

    def _poke(self) -> None:
        self._wake.set()

    async def _events_loop(self) -> None:
        async for kind, node_id in self._events_recv:
            self._apply(kind, node_id)

    def _apply(self, kind: str, node_id: str) -> None:
        if node_id == self._me:
            return
        state = self._state(node_id)
        now = trio.current_time()
        if kind == "up" and self.is_banned(node_id):
            assert self._nursery is not None
            self._nursery.start_soon(self._hang_up, node_id)
            return
        if kind == "up" and not state.connected:
            state.connected = True
            state.connected_since = time.time()
            state.failures = 0
            state.relay = self._relay_of_connection(node_id)
            log.info("connected to %s%s", node_id, f" through relay {state.relay}" if state.relay else "")
            assert self._nursery is not None
            self._nursery.start_soon(self._after_connect, node_id)
            self._on_change()
        elif kind == "down" and state.connected:
            if self._host.get_network().connections.get(ID.from_base58(node_id)):
                return  # another connection to the same peer is still up
            state.last_seen = now
            state.connected = False
            state.connected_since = None
            relayed, state.relay = state.relay, None
            if relayed is not None or (state.addrs and all(is_relay_addr(a) for a in state.addrs)):
                # carried by (or reachable only through) relays: the one that carried us may have
                # died, the others still hold reservations; redial at once, that relay last
                state.dead_relay = relayed or state.dead_relay
                state.next_attempt = now
                log.info("disconnected from %s (relayed via %s); redialing now", node_id, relayed)
            else:
                state.next_attempt = now + redial_delay(0, base=self.redial_base, cap=self.redial_cap)
                log.info("disconnected from %s; redialing with backoff", node_id)
            self._on_change()
            self._poke()

    def _reconcile(self) -> None:
        live = {p.to_base58() for p in self._host.get_connected_peers()}
        for node_id in live:
            if not self._state(node_id).connected:
                self._apply("up", node_id)
        for state in list(self._peers.values()):
            if state.connected and state.node_id not in live:
                self._apply("down", state.node_id)

    async def _after_connect(self, node_id: str) -> None:
        state = self._peers[node_id]
        if self._book is not None and state.addrs:
            # remember every peer we reach (bootstrap ones too) for the next start
            source = state.source if state.source in ("bootstrap", "px", "inbound") else "px"
            await self._book.upsert(node_id, list(state.addrs), source)
            await self._book.mark_connected(node_id)
        assert self._nursery is not None
        for listener in self._connect_listeners:
            self._nursery.start_soon(listener, node_id)
        await self._exchange(node_id)
        self.pin_addrs()

    async def _dial_loop(self) -> None:
        limiter = trio.CapacityLimiter(8)
        while True:
            self._reconcile()
            now = trio.current_time()
            candidates = [
                Candidate(
                    p.node_id,
                    bootstrap=p.bootstrap,
                    connected=p.connected,
                    dialing=p.dialing,
                    dialable=bool(p.addrs) and p.next_attempt <= now and not self.is_banned(p.node_id),
                    failures=p.failures,
                )
                for p in self._peers.values()
            ]
            assert self._nursery is not None
            for node_id in choose_dials(candidates, self.limits, self._rng):
                state = self._peers[node_id]
                state.dialing = True
                self._nursery.start_soon(self._dial, state, limiter)
            for node_id in choose_prunes(self._connections(), self.limits):
                log.info("more than %d connections: closing the one to %s", self.limits.max_peers, node_id)
                self._nursery.start_soon(self._hang_up, node_id)
            self._wake = trio.Event()
            with trio.move_on_after(0.25):
                await self._wake.wait()

    def _connections(self) -> list[Connection]:
        conns = self._host.get_network().connections
        out = []
        for p in self._peers.values():
            if not p.connected:
                continue
            busy = any(_has_our_streams(c) for c in conns.get(ID.from_base58(p.node_id), []))
            out.append(Connection(p.node_id, since=p.connected_since or 0.0, bootstrap=p.bootstrap, protected=busy))
        return out

    async def _dial(self, state: PeerState, limiter: trio.CapacityLimiter) -> None:
        try:
            async with limiter:
                direct = [a for a in state.addrs if not is_relay_addr(a)]
                circuit = self._circuits_by_relay_liveness(state.addrs, state.dead_relay)
                relayable = bool(circuit) and self.dial_relayed is not None
                try:
                    if relayable and not direct:
                        raise OSError("only relay addresses")
                    info = peer_info(state.node_id, direct or state.addrs)
                    with trio.fail_after(DIAL_TIMEOUT_S + 1):
                        await self._host.connect(info)
                    self._host.get_peerstore().add_addrs(info.peer_id, info.addrs, PERMANENT_TTL)
                except (BaseLibp2pError, OSError, trio.TooSlowError, ValueError):
                    if not relayable or self.dial_relayed is None:
                        raise
                    with trio.fail_after(DIAL_TIMEOUT_S + 1):  # direct failed: through a relay (yagna/net/relay.py)
                        await self.dial_relayed(state.node_id, circuit)
        except (BaseLibp2pError, OSError, trio.TooSlowError, ValueError) as exc:
            state.failures += 1
            delay = redial_delay(state.failures, base=self.redial_base, cap=self.redial_cap)
            state.next_attempt = trio.current_time() + delay
            level = logging.INFO if state.failures <= 2 or state.bootstrap else logging.DEBUG
            log.log(level, "dial %s failed (%d in a row, next in %.1fs): %s",
                    state.node_id, state.failures, delay, _short(exc))
            if not state.bootstrap and state.failures >= self.forget_after:
                log.info("forgetting %s after %d failed dials", state.node_id, state.failures)
                self._peers.pop(state.node_id, None)
        else:
            self._apply("up", state.node_id)
        finally:
            state.dialing = False

    def _circuits_by_relay_liveness(self, addrs: list[str], dead: str | None = None) -> list[str]:
        """Circuit addresses, those through relays we are connected to first and through ``dead``
        (the relay whose circuit just dropped) last: a relay that just died stays in a peer's
        advertised list until it learns; dialing it first costs a timeout."""
        live = {p.to_base58() for p in self._host.get_connected_peers()}
        circuit = [a for a in addrs if is_relay_addr(a)]
        return sorted(circuit, key=lambda a: (relay_id_of(a) == dead, relay_id_of(a) not in live))

    def _relay_of_connection(self, node_id: str) -> str | None:
        """The relay carrying our (only) connection to ``node_id``, None when any is direct."""
        relays: set[str] = set()
        for conn in self._host.get_network().connections.get(ID.from_base58(node_id), []):
            remote = [str(a) for a in _safe_transport_addrs(conn)]
            found = [relay_id_of(a) for a in remote]
            if not remote or any(r is None for r in found):
                return None
            relays.update(r for r in found if r)
        return next(iter(sorted(relays)), None)

    async def ensure_connected(self, node_id: str) -> None:
        """Connect to ``node_id`` now if we are not (direct, then through a relay), ignoring the
        redial backoff; concurrent callers share one dial. For a request to a peer whose
        connection just dropped: it waits for the redial instead of failing at once. Raises
        :class:`PeerUnreachable` when the dial fails (bounded by the dial timeouts)."""
        if node_id == self._me or self.is_banned(node_id):
            raise PeerUnreachable(f"cannot reach {node_id}")
        if self._host.get_network().connections.get(ID.from_base58(node_id)):
            return
        state = self._peers.get(node_id)
        if state is None or not state.addrs:
            return  # not ours to dial: the caller's implicit dial tries the peerstore
        pending = self._on_demand.get(node_id)
        if pending is None:
            pending = self._on_demand[node_id] = trio.Event()
            try:
                while state.dialing:  # the dial loop's attempt is under way: wait for it
                    await trio.sleep(0.05)
                if not self._host.get_network().connections.get(ID.from_base58(node_id)):
                    state.dialing = True
                    await self._dial(state, trio.CapacityLimiter(1))
            finally:
                del self._on_demand[node_id]
                pending.set()
        else:
            await pending.wait()
        if not self._host.get_network().connections.get(ID.from_base58(node_id)):
            raise PeerUnreachable(f"cannot reach {node_id}: {state.failures} dial(s) failed")

    def pin_addrs(self) -> None:
        """Keep known peers' addresses in the peerstore without expiry.

        ``connect()`` stores them with a 120 s TTL and identify re-adds them
        with 7200 s (last writer wins); an expired entry makes the implicit
        dial of ``new_stream`` fail. Cheap: it only sets a TTL field.
        """
        store = self._host.get_peerstore()
        for state in self._peers.values():
            if state.addrs:
                try:
                    info = peer_info(state.node_id, state.addrs)
                except (BadAddressError, ValueError):
                    continue
                store.add_addrs(info.peer_id, info.addrs, PERMANENT_TTL)

    async def _px_loop(self) -> None:
        rng = random.Random()
        while True:
            await trio.sleep(self.px_interval * rng.uniform(0.8, 1.2))
            self.pin_addrs()
            peers = self.connected_peers()
            for node_id in rng.sample(peers, min(3, len(peers))):
                assert self._nursery is not None
                self._nursery.start_soon(self._exchange, node_id)

    async def _exchange(self, node_id: str) -> None:
        try:
            reply = await self._rr.request(node_id, px.PX, px.make_request(self._my_addrs(node_id)))
            hints = px.parse_response(reply)
        except (RequestError, WireError) as exc:
            log.debug("peer exchange with %s failed: %s", node_id, exc)
            return
        learned = 0
        waiting = [p for p in self._peers.values() if p.taught_by is not None and not p.connected]
        room = min(MAX_LEARNED - len(waiting), MAX_TAUGHT_PER_PEER - sum(p.taught_by == node_id for p in waiting))
        for hint in hints:
            hint = px.PeerHint(hint.node_id, tuple(self._teachable(node_id, list(hint.addrs))))
            if hint.node_id == self._me or not hint.addrs:
                continue
            if hint.node_id not in self._peers and learned >= room:
                log.debug("peer exchange with %s: no room for more learned peers", node_id)
                break
            if self._learn(hint.node_id, list(hint.addrs), "px"):
                self._peers[hint.node_id].taught_by = node_id
                learned += 1
                if self._book is not None:
                    await self._book.upsert(hint.node_id, list(hint.addrs), "px")
        if learned:
            log.info("learned %d new peer(s) from %s", learned, node_id)
            self._poke()

    def _learn(self, node_id: str, addrs: list[str], source: str) -> bool:
        """Record advertised addresses; True if the peer is new to us."""
        addrs = [a for a in addrs if _valid_addr(a)]
        new = node_id not in self._peers
        state = self._state(node_id)
        if addrs and addrs != state.addrs:
            state.addrs = addrs
            if not state.connected:
                state.next_attempt = trio.current_time()  # fresh addresses: try now
        if new:
            state.source = source
        return new

    async def _serve_px(self, request: Request) -> object:
        try:
            addrs = px.parse_request(request.payload)
        except WireError as exc:
            raise RequestRejected("bad_request", str(exc)) from None
        addrs = tuple(self._teachable(request.peer, list(addrs)))
        if addrs:
            self._learn(request.peer, list(addrs), "inbound")
            if self._book is not None:
                await self._book.upsert(request.peer, list(addrs), "inbound")
        hints = self._hints_for(request.peer)
        return px.make_response(hints)


    def _hints_for(self, asker: str) -> list[px.PeerHint]:
        """What we teach ``asker``: the peers we are connected to, then (a random sample of)
        peers we were connected to within ``TEACH_SEEN_WITHIN`` s. Teaching only connected
        peers would stop discovery at one hop once nodes keep a partial mesh; peers we never
        reached ourselves are not passed on, so a liar's fake ids do not travel further."""
        now = trio.current_time()
        connected = [p for p in self._peers.values() if p.connected and p.addrs and p.node_id != asker]
        recent = [
            p for p in self._peers.values()
            if not p.connected and p.addrs and p.node_id != asker
            and p.last_seen is not None and now - p.last_seen <= TEACH_SEEN_WITHIN
        ]
        self._rng.shuffle(connected)
        self._rng.shuffle(recent)
        hints = [px.PeerHint(p.node_id, tuple(self._teachable(asker, p.addrs))) for p in connected + recent]
        return [h for h in hints if h.addrs][: px.MAX_PEERS_PER_REPLY]


def _valid_addr(addr: str) -> bool:
    try:
        parse_multiaddr(addr)
    except BadAddressError:
        return False
    return True


def _safe_transport_addrs(conn: INetConn) -> list[Multiaddr]:
    try:
        return list(conn.get_transport_addresses())
    except (BaseLibp2pError, AttributeError, OSError):
        return []


def _has_our_streams(conn: INetConn) -> bool:
    """Streams we opened on ``conn`` (a request of ours in flight, or pooled for the next):
    a peer cannot protect its connection from being shed by opening streams to us."""
    try:
        return any(getattr(getattr(s, "muxed_stream", None), "is_initiator", False) for s in conn.get_streams())
    except (BaseLibp2pError, AttributeError, OSError):
        return False


def _direction(conn: INetConn) -> str | None:
    value = getattr(conn, "direction", None)
    name = getattr(value, "name", None) or (str(value) if value is not None else None)
    return name.lower() if name else None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
