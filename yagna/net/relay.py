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
    wake.set()
