"""Circuit relay v2: the trio drivers around the sans-io state in ``relay_core``.

* :func:`keep_reservations` runs a :class:`ReservationKeeper`: it sends the
  reservation requests it asks for (through an injected ``reserve`` callable, in
  production py-libp2p's ``CircuitV2Transport.reserve``), bounds each request in
  time, publishes our circuit addresses through ``publish`` (production:
  ``network.addresses.set_relay_addrs``) whenever the set changes, and sleeps
  until the next renewal. A reserve call that raises anything is a failure of
  that relay, never of the node.
* :func:`should_reserve` is the rule of when a node reserves at all.
* :func:`should_serve` is the rule of when a node serves the hop protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from yagna.net.relay_core import RelayAdmission, RelayLimitExceeded, RelayLimits, RelayRefused, ReservationKeeper

__all__ = [
    "RelayAdmission", "RelayLimitExceeded", "RelayLimits", "RelayRefused", "ReservationKeeper",
    "Waker", "keep_reservations", "should_reserve", "should_serve",
]

log = logging.getLogger("yagna.net.relay")

Reserve = Callable[[str], Awaitable[tuple[float, list[str]]]]
"""``reserve(relay) -> (seconds the reservation lasts, our circuit addresses through it)``."""


def should_reserve(reachability: str, nat_detected: bool) -> bool:
    """Reserve when private, or when unknown but a NAT was seen (loopback devnets stay
    ``unknown`` without a NAT: they need no relay)."""
    return reachability == "private" or (reachability == "unknown" and nat_detected)


def should_serve(setting: str, reachability: str) -> bool:
    """``setting`` is ``auto`` (serve while public), ``on`` (always) or ``off``."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return reachability == "public"


async def keep_reservations(
    keeper: ReservationKeeper,
    reserve: Reserve,
    publish: Callable[[list[str]], None],
    *,
    waker: Waker | None = None,
    request_timeout: float = 10.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``keeper.want`` reservations forever. Whoever feeds the keeper new candidates
    or lost relays calls ``waker.set()`` to wake the loop early."""
    published: list[str] | None = None
    wake = waker or Waker()
    task_status.started()
    async with trio.open_nursery() as nursery:
        while True:
            now = trio.current_time()
            for relay in keeper.due(now):
                nursery.start_soon(_reserve_one, keeper, reserve, relay, request_timeout, wake)
            addrs = keeper.relay_addrs()
            if addrs != published:
                published = addrs
                log.info("relay addresses now: %s", ", ".join(addrs) or "none")
                publish(addrs)
            wakeup = keeper.next_wakeup(now)
            with trio.move_on_at(wakeup if wakeup is not None else float("inf")):
                await wake.wait()


class Waker:
    """A re-armable event: ``set()`` wakes the loop once."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def _reserve_one(keeper: ReservationKeeper, reserve: Reserve, relay: str,
                       timeout: float, wake: Waker) -> None:
    try:
        with trio.fail_after(timeout):
            ttl, addrs = await reserve(relay)
    except trio.Cancelled:
        raise
    except Exception as e:  # a hostile or dead relay: its failure, never the node's
        log.info("reservation on relay %s failed: %s", relay, e)
        keeper.failed(relay, trio.current_time())
    else:
        now = trio.current_time()
        keeper.reserved(relay, now + ttl, now, addrs)
        log.info("reservation on relay %s for %.0f s: %s", relay, ttl, ", ".join(addrs) or "no address")
    wake.set()


# --- the daemon's relay service (py-libp2p's circuit v2, wrapped) -------------------------


class RelayService:
    """Serves the hop protocol while ``should_serve`` and keeps reservations while
    ``should_reserve``. py-libp2p's ``CircuitV2Protocol`` does the relaying (it enforces the
    per-circuit byte and duration limits and the reservation count); we map our
    :class:`RelayLimits` onto it, guard its stream handlers so a hostile stream can only
    reset itself, and replace its 300 s discovery with :class:`ReservationKeeper`."""

    def __init__(self, host: object, addresses: object, setting: str = "auto",
                 limits: RelayLimits | None = None, *, want: int = 2, poll: float = 5.0) -> None:
        self.host = host
        self.addresses = addresses
        self.setting = setting
        self.limits = limits or RelayLimits()
        self.keeper = ReservationKeeper(want=want)
        self.waker = Waker()
        self.poll = poll
        self.serving = False
        self.ready = trio.Event()
        self._transport: object | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_loop)
                nursery.start_soon(self._client_loop)
        except Exception:  # the relay is an extra: its failure must never end the node
            log.exception("relay service stopped")

    # server ----------------------------------------------------------------
    def _libp2p_limits(self) -> object:
        from libp2p.relay.circuit_v2.resources import RelayLimits as L2Limits

        lim = self.limits
        return L2Limits(duration=int(lim.circuit_duration), data=lim.circuit_bytes,
                        max_circuit_conns=lim.max_circuits, max_reservations=lim.max_reservations,
                        reservation_ttl=int(lim.reservation_ttl))

    async def _serve_loop(self) -> None:
        from libp2p.relay.circuit_v2.config import RelayConfig
        from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, CircuitV2Protocol
        from libp2p.relay.circuit_v2.transport import CircuitV2Transport
        from libp2p.tools.anyio_service.context import background_trio_service

        # One protocol instance on every node: its STOP handler accepts circuits to us; the
        # HOP handler (relaying for others) is set only while we serve, guarded.
        proto = CircuitV2Protocol(self.host, limits=self._libp2p_limits(), allow_hop=False)  # type: ignore[arg-type]
        reach = self.addresses.reachability  # type: ignore[attr-defined]
        async with background_trio_service(proto):
            await proto.event_started.wait()
            self.host.set_stream_handler(  # type: ignore[attr-defined]
                proto_stop_id(), self._retagged(_guarded(proto._handle_stop_stream)))  # type: ignore[arg-type]
            self._transport = CircuitV2Transport(self.host, proto, RelayConfig())  # type: ignore[arg-type]
            self.ready.set()
            while True:
                if should_serve(self.setting, reach.status):
                    self.host.set_stream_handler(PROTOCOL_ID, self._capped(_guarded(proto._handle_hop_stream)))  # type: ignore[attr-defined,arg-type]
                    self.serving = True
                    log.info("serving circuit relay v2 (%s)", self.limits)
                    while should_serve(self.setting, reach.status):
                        await reach.wait_change()
                    self.host.remove_stream_handler(PROTOCOL_ID)  # type: ignore[attr-defined]
                    self.serving = False
                    log.info("stopped serving circuit relay v2 (reachability %s)", reach.status)
                else:
                    await reach.wait_change()

    def _retagged(self, handler: Callable[[object], Awaitable[None]]) -> Callable[[object], Awaitable[None]]:
        """py-libp2p tags an inbound relayed connection ``/p2p/<our own id>/p2p-circuit/...``
        (it takes ``host.get_id()`` for the relay); name the real relay, the STOP stream's peer."""

        async def run(stream: object) -> None:
            await handler(stream)
            try:
                import multiaddr

                relay = stream.muxed_conn.peer_id.to_base58()  # type: ignore[attr-defined]
                me = self.host.get_id().to_base58()  # type: ignore[attr-defined]
                wrong = f"/p2p/{me}/p2p-circuit"
                for peer, conns in self.host.get_network().connections.items():  # type: ignore[attr-defined]
                    for conn in conns if isinstance(conns, list) else [conns]:
                        addrs = [str(a) for a in conn.get_transport_addresses()]
                        if addrs and all(a.startswith(wrong) for a in addrs):
                            conn.set_transport_info(
                                [multiaddr.Multiaddr(f"/p2p/{relay}/p2p-circuit/p2p/{peer.to_base58()}")],
                                conn.get_connection_type())
            except Exception:
                log.debug("cannot retag a relayed connection", exc_info=True)

        return run

    def _capped(self, handler: Callable[[object], Awaitable[None]]) -> Callable[[object], Awaitable[None]]:
        """At most ``circuits_per_peer`` hop streams open at once per source peer (a CONNECT
        hop stream lives as long as its circuit; py-libp2p counts only the total)."""
        open_per_peer: dict[str, int] = {}

        async def run(stream: object) -> None:
            try:
                peer = stream.muxed_conn.peer_id.to_base58()  # type: ignore[attr-defined]
            except Exception:
                peer = "?"
            if open_per_peer.get(peer, 0) >= self.limits.circuits_per_peer:
                log.info("relay: %s already has %d hop streams open; refused", peer, self.limits.circuits_per_peer)
                try:
                    await stream.reset()  # type: ignore[attr-defined]
                except Exception:
                    pass
                return
            open_per_peer[peer] = open_per_peer.get(peer, 0) + 1
            try:
                await handler(stream)
            finally:
                open_per_peer[peer] -= 1
                if not open_per_peer[peer]:
                    del open_per_peer[peer]

        return run

    async def dial(self, node_id: str, addrs: list[str]) -> None:
        """Connect to ``node_id`` through one of its circuit addresses (tried in order)."""
        import multiaddr

        await self.ready.wait()
        errors = []
        for addr in addrs:
            full = addr if addr.endswith(f"/p2p/{node_id}") else f"{addr}/p2p/{node_id}"
            try:
                await self._transport.dial(multiaddr.Multiaddr(full))  # type: ignore[union-attr]
                return
            except trio.Cancelled:
                raise
            except Exception as e:
                errors.append(f"{addr}: {e}")
        raise ConnectionError("no relay reached " + node_id + ": " + "; ".join(errors)[:400])

    # client ----------------------------------------------------------------
    async def _client_loop(self) -> None:
        addresses = self.addresses
        reach = addresses.reachability  # type: ignore[attr-defined]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(keep_reservations, self.keeper, self._reserve, self._publish, waker=self.waker))
            while True:
                if should_reserve(reach.status, addresses.nat_detected()):  # type: ignore[attr-defined]
                    self._feed_candidates()
                else:
                    for relay in self.keeper.relays():
                        self.keeper.lost(relay)
                self.waker.set()
                with trio.move_on_after(self.poll):
                    await reach.wait_change()

    def _feed_candidates(self) -> None:
        from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID

        host = self.host
        connected = {p.to_base58() for p in host.get_connected_peers()}  # type: ignore[attr-defined]
        for relay in list(self.keeper._candidates):
            if relay not in connected:
                self.keeper.lost(relay)
        # Peers listing the hop protocol first; the others too, since identify may have run
        # before a peer started serving (it sets the handler once it finds itself public) and
        # py-libp2p pushes no update: a peer that does not relay refuses and is backed off.
        listed: list[str] = []
        others: list[str] = []
        for peer in host.get_connected_peers():  # type: ignore[attr-defined]
            node_id = peer.to_base58()
            if self.addresses.relayed(node_id):  # type: ignore[attr-defined]
                continue
            try:
                protocols = {str(p) for p in host.get_peerstore().get_protocols(peer)}  # type: ignore[attr-defined]
            except Exception:
                protocols = set()
            (listed if str(PROTOCOL_ID) in protocols else others).append(node_id)
        for node_id in listed + others:
            self.keeper.candidate(node_id)

    async def _reserve(self, relay: str) -> tuple[float, list[str]]:
        from libp2p.peer.id import ID
        from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
        from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID
        from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg  # type: ignore[attr-defined]

        peer = ID.from_base58(relay)
        stream = await self.host.new_stream(peer, [PROTOCOL_ID])  # type: ignore[attr-defined]
        try:
            await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
            resp = await read_delimited_msg(stream, HopMessage)
        finally:
            await stream.reset()
        if resp.HasField("status") and resp.status != 100:  # 100 = OK in the relay v2 spec
            raise RelayRefused(f"relay {relay} refused the reservation (status {resp.status})")
        import time

        ttl = float(max(1, resp.reservation.expire - int(time.time()))) if resp.HasField("reservation") else 60.0
        ttl = min(ttl, 3600.0)
        addrs = [f"{a}/p2p/{relay}/p2p-circuit" for a in self._relay_addrs(peer)]
        return ttl, addrs

    def _relay_addrs(self, peer: object) -> list[str]:
        try:
            addrs = self.host.get_peerstore().addrs(peer)  # type: ignore[attr-defined]
        except Exception:
            return []
        out = []
        for a in addrs:
            s = str(a)
            if "/p2p-circuit" in s:  # loopback kept: the address book shows it only to local peers
                continue
            out.append(s.split("/p2p/")[0])
        return out[:4]

    def _publish(self, addrs: list[str]) -> None:
        try:
            self.addresses.set_relay_addrs(addrs)  # type: ignore[attr-defined]
        except Exception:
            log.exception("cannot publish relay addresses")

    def status(self) -> dict[str, object]:
        return {"serving": self.serving, "reservations": self.keeper.relays()}


def proto_stop_id() -> str:
    from libp2p.relay.circuit_v2.protocol import STOP_PROTOCOL_ID

    return str(STOP_PROTOCOL_ID)


def _guarded(handler: Callable[[object], Awaitable[None]]) -> Callable[[object], Awaitable[None]]:
    """A stream handler whose exceptions reset the stream instead of ending the host."""

    async def run(stream: object) -> None:
        try:
            await handler(stream)
        except trio.Cancelled:
            raise
        except Exception as e:
            log.info("hop stream ended with %s", e)
            try:
                await stream.reset()  # type: ignore[attr-defined]
            except Exception:
                pass

    return run
