"""The node's own addresses: listen, observed, relayed, advertised; and its reachability.

The trio shell around :mod:`yagna.net.addresses` (which address goes to whom)
and :mod:`yagna.net.reachability` (are we public): it reads the host's
listeners and this machine's interfaces, asks every newly connected peer what
it sees of us (identify's ``observed_addr``, one bounded exchange per
connection), serves dial-backs (:mod:`yagna.net.dialback`) and asks peers on
public addresses for them when our candidate addresses change and every
:data:`yagna.net.reachability.RECHECK_INTERVAL`.

The relay client (circuit relay v2) hands its reservations' addresses in
through :meth:`AddressBook.set_relay_addrs`; relay and hole-punching code waits
on ``reachability.wait_change()``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio
from libp2p.abc import IHost, INetConn
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

if TYPE_CHECKING:
    from libp2p.transport.tcp.tcp import TCP
    from multiaddr import Multiaddr

from yagna.core.errors import WireError
from yagna.net import dialback
from yagna.net.addresses import (
    IP,
    Interface,
    LocalAddrs,
    ObservedAddrs,
    Scope,
    addr_scope,
    advertise,
    expand_listen,
    is_relay_addr,
    observer_group,
    parse_ip,
    parse_relay,
    scope,
    teachable,
)
from yagna.net.errors import FrameError, RequestError
from yagna.net.framing import FrameDecoder, read_frame
from yagna.net.interfaces import local_interfaces
from yagna.net.reachability import Reachability, Status, candidates, pick_servers
from yagna.net.reqresp import RequestResponse

log = logging.getLogger("yagna.net.addresses")

IDENTIFY = "/ipfs/id/1.0.0"
IDENTIFY_TIMEOUT = 5.0
MAX_IDENTIFY_SIZE = 64 * 1024
"""An identify message (keys, addresses, protocol list) is a few hundred bytes; go-libp2p caps it at 4 KiB of addresses."""
INTERFACE_REFRESH = 60.0
SERVERS_PER_ROUND = 4
MAX_RELAY_ADDRS = 8


class AddressBook:
    def __init__(
        self,
        host: IHost,
        rr: RequestResponse,
        *,
        interfaces: Callable[[], list[Interface]] = local_interfaces,
        observed: ObservedAddrs | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self._host = host
        self._rr = rr
        self._read_interfaces = interfaces
        self._interfaces: tuple[Interface, ...] = ()
        self.observed = observed or ObservedAddrs()
        self.reachability = reachability or Reachability()
        self._relay: tuple[str, ...] = ()
        self._wake = trio.Event()
        self._rng = random.Random()
        self._new_peer = False
        self._in_flight: set[str] = set()
        """IP groups of servers whose dial-back answer is on its way."""
        self.dialback_server = dialback.DialbackServer(self._dial_back, self.remote_ip, relayed=self.relayed)
        rr.register(dialback.DIALBACK, self.dialback_server.handle)
        host._addrs_factory = self.host_addrs  # type: ignore[attr-defined]  # BasicHost's, see host_addrs

    # -- what we have -----------------------------------------------------------------
    def refresh_interfaces(self) -> bool:
        try:
            found = tuple(self._read_interfaces())
        except OSError as exc:
            log.warning("cannot list network interfaces: %s", exc)
            return False
        changed = found != self._interfaces
        self._interfaces = found
        return changed

    def listen_addrs(self) -> list[str]:
        """Transport addresses we listen on, a wildcard (0.0.0.0) expanded to every interface's."""
        if not self._interfaces:
            self.refresh_interfaces()
        return expand_listen([str(a) for a in self._host.get_transport_addrs()], self._interfaces)

    def local(self) -> LocalAddrs:
        now = trio.current_time()
        state = self.reachability.state
        public = self.reachability.status is Status.PUBLIC
        observed = self.observed.confirmed(now) + (state.verified(now) if public else [])
        return LocalAddrs(
            listen=tuple(self.listen_addrs()),
            interfaces=self._interfaces,
            observed=tuple(dict.fromkeys(observed)),
            relay=self._relay,
            public=public,
        )

    def advertised(self) -> list[str]:
        """What a peer on the internet is told (``net status``'s ``advertised_addrs``)."""
        return advertise(self.local(), None)

    def for_peer(self, node_id: str) -> list[str]:
        """Our addresses for ``node_id``, by the IP it reached us from (none known: as for the internet)."""
        return advertise(self.local(), self.remote_ip(node_id))

    def teachable_to(self, node_id: str, addrs: Sequence[str]) -> list[str]:
        """Of a third party's ``addrs``, those worth teaching to ``node_id`` (no loopback to a remote, ...)."""
        remote = self.remote_ip(node_id)
        return [a for a in addrs if teachable(a, remote, self._interfaces)]

    def observed_addrs(self) -> list[str]:
        """Our addresses as peers on two or more distinct IPs reported them (hole punching dials these)."""
        return self.observed.confirmed(trio.current_time())

    def nat_detected(self) -> bool:
        """A peer sees us at a public IP that is none of our interfaces': we are behind a NAT.

        A hint, not a verdict (one peer's word suffices, so it may lie): for choices that are
        cheap when wrong, such as keeping relay reservations while reachability is still
        ``unknown`` because fewer than two peers on public IPs could judge it."""
        mine = {itf.ip for itf in self._interfaces}
        now = trio.current_time()
        return any(scope(ip) is Scope.PUBLIC and ip not in mine for ip in self.observed.ips(now))

    def set_relay_addrs(self, addrs: list[str]) -> None:
        """Our addresses through relays, from the relay client: ``/ip4/<relay>/tcp/<port>/p2p/<relay
        id>/p2p-circuit``, with or without our own ``/p2p/<node id>`` at the end (kept without it,
        like every address in peer exchange). Anything else is dropped with a warning."""
        me = self._host.get_id().to_base58()
        kept: list[str] = []
        for addr in addrs:
            relay = parse_relay(addr, owner=me)
            if relay is None:
                log.warning("not a relay address, not advertised: %s", addr)
            else:
                kept.append(str(relay))
        self._relay = tuple(dict.fromkeys(kept))[:MAX_RELAY_ADDRS]

    def relay_addrs(self) -> list[str]:
        return list(self._relay)

    def host_addrs(self, candidates: list[Multiaddr]) -> list[Multiaddr]:
        """The host's ``addrs_factory``: what py-libp2p's own protocols (identify and its push,
        the signed peer record, DCUtR) announce to every peer alike.

        Wildcards expanded, unspecified and link-local addresses dropped, loopback dropped
        unless we listen on nothing else (a loopback devnet), the library's own observed
        addresses kept only if public; no relay addresses (see below). Private
        listen addresses stay (a peer on our LAN needs them; identify has one message for
        all): exact per-peer choice is made where we decide, in peer exchange.
        """
        from multiaddr import Multiaddr

        listen = set(self.listen_addrs())
        kept: list[str] = []
        for text in expand_listen([str(a) for a in candidates], self._interfaces):
            kind = addr_scope(text)
            if kind in (Scope.UNSPECIFIED, Scope.LINK_LOCAL) or is_relay_addr(text):
                continue
            if kind in (Scope.LOOPBACK, Scope.PRIVATE) and text not in listen:
                continue  # an observation of a non-public address: nobody else can use it
            kept.append(text)
        if any(addr_scope(a) in (Scope.PRIVATE, Scope.PUBLIC) for a in kept):
            kept = [a for a in kept if addr_scope(a) is not Scope.LOOPBACK]
        # No relay address: get_addrs() cuts each address at its first "/p2p/<id>" before appending
        # ours, which turns <relay>/p2p/<relay id>/p2p-circuit into the relay's address with our id.
        out: list[Multiaddr] = []
        for text in dict.fromkeys(kept):
            try:
                out.append(Multiaddr(text))
            except Exception:  # noqa: BLE001 - multiaddr raises a zoo
                log.debug("not announcing unparsable address %s", text)
        return out

    # -- connections ------------------------------------------------------------------
    def _conns(self, node_id: str) -> list[INetConn]:
        try:
            return list(self._host.get_network().connections.get(ID.from_base58(node_id), []))
        except (ValueError, BaseLibp2pError):
            return []

    def remote_ip(self, node_id: str) -> IP | None:
        """The IP of the socket ``node_id``'s direct connection comes from; None if not connected or relayed."""
        for conn in self._conns(node_id):
            relayed, ip = _socket_peer(conn)
            if not relayed and ip is not None:
                return ip
        return None

    def relayed(self, node_id: str) -> bool:
        """Connected to ``node_id`` only through a relay."""
        facts = [_socket_peer(c) for c in self._conns(node_id)]
        return bool(facts) and all(relayed for relayed, _ in facts)

    # -- observed addresses -------------------------------------------------------------
    async def on_connect(self, node_id: str) -> None:
        """Ask the new peer (identify) how it sees us; a listener of PeerManager.on_connect."""
        observer = self.remote_ip(node_id)
        if observer is None or scope(observer) is Scope.LOOPBACK:
            return  # relayed, gone, or on this host: it would report a loopback address, never used
        self._new_peer = True  # a possible dial-back server while undecided
        self._wake.set()
        addr = await self._identify_observed(node_id)
        if addr is None:
            return
        if self.observed.observe(addr, observer, trio.current_time()):
            log.info("observed addresses confirmed by peers: %s", ", ".join(self.observed.confirmed(trio.current_time())))
        self._wake.set()

    async def _identify_observed(self, node_id: str) -> str | None:
        from libp2p.identity.identify.pb.identify_pb2 import Identify

        stream = None
        try:
            with trio.move_on_after(IDENTIFY_TIMEOUT):
                stream = await self._host.new_stream(ID.from_base58(node_id), [TProtocol(IDENTIFY)])
                frame = await read_frame(stream, FrameDecoder(MAX_IDENTIFY_SIZE))
                if frame is None:
                    return None
                msg = Identify()
                msg.ParseFromString(frame)
                if not msg.observed_addr:
                    return None
                return _multiaddr_text(msg.observed_addr)
            return None
        except (BaseLibp2pError, OSError, ValueError, FrameError, Exception) as exc:  # noqa: BLE001 - protobuf's DecodeError too
            log.debug("identify of %s failed: %r", node_id, exc)
            return None
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    try:
                        await stream.close()
                    except Exception:  # noqa: BLE001 - already gone
                        pass

    # -- dial-back ----------------------------------------------------------------------
    async def _dial_back(self, node_id: str, addr: str) -> bool:
        """A fresh TCP connection to ``addr`` and a Noise handshake that must show ``node_id``."""
        from multiaddr import Multiaddr

        swarm = self._host.get_network()
        raw = None
        try:
            transport = _tcp_transport()
            raw = await transport.dial(Multiaddr(addr))
            secured = await swarm.upgrader.upgrade_security(raw, True, ID.from_base58(node_id))  # type: ignore[attr-defined]  # the Swarm has it
            await secured.close()
            raw = None
            return True
        except Exception as exc:  # noqa: BLE001 - any failure is "not reachable there"
            log.debug("dial-back of %s at %s failed: %r", node_id, addr, exc)
            return False
        finally:
            if raw is not None:
                with trio.CancelScope(shield=True):
                    try:
                        await raw.close()
                    except Exception:  # noqa: BLE001
                        pass

    def update_candidates(self) -> bool:
        now = trio.current_time()
        cands = candidates(self.listen_addrs(), self.observed.confirmed(now), self.observed.ips(now))
        state = self.reachability.state
        before = state.status
        changed = state.set_candidates(cands)
        if changed:
            log.info("reachability candidates: %s", ", ".join(cands) or "none")
        if state.status != before:
            self._status_changed(before)
        return changed

    def _status_changed(self, before: Status) -> None:
        log.info("reachability: %s -> %s", before, self.reachability.status)
        self.reachability.notify()

    def _pick(self, connected: list[str]) -> list[tuple[str, IP]]:
        """Servers to ask now: connected peers that can judge, one per IP, none with a current
        result or an answer on its way, at most SERVERS_PER_ROUND in flight."""
        state = self.reachability.state
        if not state.candidates:
            return []
        peers = [(p, self.remote_ip(p)) for p in connected]
        self._rng.shuffle(peers)
        busy = state.asked() | set(self._in_flight)
        return pick_servers(peers, busy, SERVERS_PER_ROUND - len(self._in_flight))

    async def _ask(self, node_id: str, ip: IP) -> None:
        """One dial-back request; its answer recorded unless our candidates changed meanwhile."""
        state = self.reachability.state
        asked = list(state.candidates)
        group = observer_group(ip)
        self._in_flight.add(group)
        try:
            reply = await self._rr.request(node_id, dialback.DIALBACK, dialback.make_request(asked))
            reached, failed = dialback.parse_response(reply, asked)
        except (RequestError, WireError) as exc:
            log.debug("dial-back request to %s: %s", node_id, exc)
            return
        finally:
            self._in_flight.discard(group)
        if not reached and not failed:
            return
        if asked != list(state.candidates):
            return  # our addresses changed meanwhile: the answer is about old ones
        before = state.status
        if state.record(node_id, ip, bool(reached), reached, trio.current_time()):
            self._status_changed(before)
        log.debug("dial-back by %s: reached %s, failed %s", node_id, reached, failed)

    async def check_round(self, connected: list[str]) -> None:
        """Start a round and wait for its answers (the service loop does not wait)."""
        self.reachability.state.start_round(trio.current_time())
        async with trio.open_nursery() as nursery:
            for node_id, ip in self._pick(connected):
                nursery.start_soon(self._ask, node_id, ip)

    def wake(self) -> None:
        self._wake.set()

    async def run(
        self, connected: Callable[[], list[str]], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep interfaces, candidates and the reachability verdict current (until cancelled).

        Dial-back requests run as tasks of their own (a server that lets our SYN time out
        takes 5 s to answer): a peer that connects meanwhile is asked at once.
        """
        self.refresh_interfaces()
        self.update_candidates()
        next_refresh = trio.current_time() + INTERFACE_REFRESH
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wake = trio.Event()  # first: a wake-up during this pass is not lost
                now = trio.current_time()
                if now >= next_refresh:
                    self.refresh_interfaces()
                    next_refresh = now + INTERFACE_REFRESH
                self.update_candidates()
                state = self.reachability.state
                before = state.status
                if state.expire(now):
                    self._status_changed(before)
                new_peer, self._new_peer = self._new_peer, False
                if state.due(now):
                    state.start_round(now)
                    servers = self._pick(connected())
                elif new_peer and not state.decided(now):
                    servers = self._pick(connected())
                else:
                    servers = []
                for node_id, ip in servers:
                    nursery.start_soon(self._ask, node_id, ip)
                with trio.move_on_after(min(state.retry_interval, INTERFACE_REFRESH)):
                    await self._wake.wait()


def _socket_peer(conn: INetConn) -> tuple[bool, IP | None]:
    """(relayed, the remote socket's IP) of a connection.

    The socket's own peer address, not ``get_transport_addresses()``: that falls back
    to the peerstore (what the peer claims) when the swarm did not record the
    transport's. Relayed: the connection type says so, or an address has /p2p-circuit.
    """
    try:
        kind = getattr(conn.get_connection_type(), "value", "")  # type: ignore[attr-defined]  # SwarmConn has it
        remote = conn.muxed_conn.get_remote_address()  # type: ignore[attr-defined]  # Yamux has it
        circuit = any(is_relay_addr(str(a)) for a in conn.get_transport_addresses())
    except Exception:  # noqa: BLE001 - a closing connection raises a zoo
        return False, None
    if kind == "relayed" or circuit:
        return True, None
    return False, parse_ip(remote[0]) if remote else None


def _multiaddr_text(raw: bytes) -> str | None:
    from multiaddr import Multiaddr

    try:
        return str(Multiaddr(raw))
    except Exception:  # noqa: BLE001 - multiaddr raises a zoo on bad bytes
        return None


def _tcp_transport() -> TCP:
    from libp2p.transport.tcp.tcp import TCP

    return TCP()  # stateless for dialing; the swarm's own instance is not exposed
