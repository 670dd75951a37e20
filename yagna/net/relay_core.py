"""Circuit relay v2: the sans-io state of both sides (no I/O, explicit ``now``).

* :class:`RelayAdmission` is the relay (hop) side's book of reservations and
  circuits: every per-peer resource capped, every circuit bounded in bytes and
  duration (``docs/bounds.md``). py-libp2p's ``RelayResourceManager`` counts
  reservations but neither circuits per peer nor bytes per circuit in a form we
  can enforce, so the wrapper consults this book before it relays.
* :class:`ReservationKeeper` is the private node's side: it keeps reservations
  on ``want`` (default 2) relays, renews each one ``renew_margin`` before it
  expires, and replaces a relay that died or refused, with a per-relay backoff.

Both are pure: tests drive them with explicit times (``tests/net/test_relay_core.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from yagna.net.errors import NetError

MiB = 1024 * 1024


class RelayLimitExceeded(NetError):
    """A relayed circuit reached the relay's byte or duration limit; names the limit."""


class RelayRefused(NetError):
    """A relay refused a reservation or a circuit (cap reached, no reservation)."""


@dataclass(frozen=True)
class RelayLimits:
    """What a relaying node spends at most. Defaults let a 64 MiB transfer and a typical
    task finish through one circuit; all configurable (``[net.relay]``)."""

    max_reservations: int = 128
    """Reservations held at once (over all peers)."""
    reservation_ttl: float = 900.0
    """Seconds a reservation lasts unless renewed."""
    circuit_bytes: int = 256 * MiB
    """Bytes relayed per circuit (both directions together)."""
    circuit_duration: float = 600.0
    """Seconds a circuit lives."""
    circuits_per_peer: int = 4
    """Circuits at once in which one peer is source or destination."""
    max_circuits: int = 32
    """Circuits at once over all peers."""

    def __post_init__(self) -> None:
        for name in ("max_reservations", "circuit_bytes", "circuits_per_peer", "max_circuits"):
            if getattr(self, name) < 1:
                raise ValueError(f"relay limit {name} must be at least 1")
        if self.reservation_ttl <= 0 or self.circuit_duration <= 0:
            raise ValueError("relay durations must be positive")

    def worst_case_bytes(self) -> int:
        """Bytes a relay carries at most per ``circuit_duration`` (all circuits full)."""
        return self.max_circuits * self.circuit_bytes


@dataclass
class _Circuit:
    src: str
    dst: str
    opened: float
    carried: int = 0


class RelayAdmission:
    """The relay side: who holds a reservation, which circuits are open, what each carried."""

    def __init__(self, limits: RelayLimits | None = None) -> None:
        self.limits = limits or RelayLimits()
        self._reservations: dict[str, float] = {}  # peer -> expiry
        self._circuits: dict[int, _Circuit] = {}
        self._next_id = 0

    # reservations --------------------------------------------------------
    def reserve(self, peer: str, now: float) -> float:
        """Grant or renew ``peer``'s reservation; return its expiry. Raises RelayRefused."""
        self.expire(now)
        if peer not in self._reservations and len(self._reservations) >= self.limits.max_reservations:
            raise RelayRefused(f"relay reservations full ({self.limits.max_reservations})")
        expiry = now + self.limits.reservation_ttl
        self._reservations[peer] = expiry
        return expiry

    def has_reservation(self, peer: str, now: float) -> bool:
        expiry = self._reservations.get(peer)
        return expiry is not None and expiry > now

    def drop(self, peer: str) -> None:
        """The peer disconnected: its reservation goes."""
        self._reservations.pop(peer, None)

    def reservations(self) -> int:
        return len(self._reservations)

    def expire(self, now: float) -> None:
        for peer in [p for p, t in self._reservations.items() if t <= now]:
            del self._reservations[peer]

    # circuits ------------------------------------------------------------
    def _per_peer(self, peer: str) -> int:
        return sum(1 for c in self._circuits.values() if peer in (c.src, c.dst))

    def open_circuit(self, src: str, dst: str, now: float) -> int:
        """Admit a circuit ``src`` -> ``dst``; return its id. Raises RelayRefused."""
        if src == dst:
            raise RelayRefused("a circuit to oneself")
        if not self.has_reservation(dst, now):
            raise RelayRefused(f"{dst} holds no reservation on this relay")
        if len(self._circuits) >= self.limits.max_circuits:
            raise RelayRefused(f"relay circuits full ({self.limits.max_circuits})")
        for peer in (src, dst):
            if self._per_peer(peer) >= self.limits.circuits_per_peer:
                raise RelayRefused(f"{peer} already has {self.limits.circuits_per_peer} circuits")
        cid = self._next_id
        self._next_id += 1
        self._circuits[cid] = _Circuit(src, dst, now)
        return cid

    def deadline(self, cid: int) -> float:
        """When circuit ``cid`` must end (its duration limit)."""
        return self._circuits[cid].opened + self.limits.circuit_duration

    def allowance(self, cid: int) -> int:
        """Bytes circuit ``cid`` may still carry."""
        return max(0, self.limits.circuit_bytes - self._circuits[cid].carried)

    def carried(self, cid: int, nbytes: int, now: float) -> None:
        """Account ``nbytes`` relayed on ``cid``; raise RelayLimitExceeded past a limit."""
        c = self._circuits[cid]
        c.carried += nbytes
        if c.carried > self.limits.circuit_bytes:
            raise RelayLimitExceeded(
                f"relay limit: circuit carried {self.limits.circuit_bytes // MiB} MiB "
                f"(the relay's per-circuit byte limit)"
            )
        if now >= c.opened + self.limits.circuit_duration:
            raise RelayLimitExceeded(
                f"relay limit: circuit open {self.limits.circuit_duration:.0f} s "
                f"(the relay's per-circuit duration limit)"
            )

    def close_circuit(self, cid: int) -> None:
        self._circuits.pop(cid, None)

    def circuits(self) -> int:
        return len(self._circuits)


@dataclass
class _Held:
    expiry: float
    addrs: list[str] = field(default_factory=list)


class ReservationKeeper:
    """The private node's side: reservations on ``want`` relays, renewed and replaced.

    The driver asks :meth:`due` which relays to (re)reserve now, reports each outcome
    with :meth:`reserved` or :meth:`failed`, reports dead relays with :meth:`lost`,
    and sleeps until :meth:`next_wakeup`.
    """

    def __init__(self, *, want: int = 2, renew_margin: float = 0.25,
                 retry_base: float = 5.0, retry_cap: float = 300.0) -> None:
        if want < 1:
            raise ValueError("want at least one relay")
        self.want = want
        self.renew_margin = renew_margin
        """Renew when this fraction of a reservation's lifetime is left."""
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._candidates: list[str] = []
        self._held: dict[str, _Held] = {}
        self._granted: dict[str, float] = {}  # relay -> time of the last grant
        self._pending: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    # inputs --------------------------------------------------------------
    def candidate(self, relay: str) -> None:
        """A public peer that speaks the hop protocol is connected."""
        if relay not in self._candidates:
            self._candidates.append(relay)

    def lost(self, relay: str) -> None:
        """The relay disconnected or died: drop it (another candidate replaces it)."""
        if relay in self._candidates:
            self._candidates.remove(relay)
        self._held.pop(relay, None)
        self._pending.discard(relay)

    def reserved(self, relay: str, expiry: float, now: float, addrs: list[str] | None = None) -> None:
        self._pending.discard(relay)
        self._failures.pop(relay, None)
        self._retry_at.pop(relay, None)
        if relay not in self._candidates:
            return  # lost while the request was in flight
        self._held[relay] = _Held(expiry, list(addrs or []))
        self._granted[relay] = now

    def failed(self, relay: str, now: float) -> None:
        """The reservation request failed or was refused: back off from this relay."""
        self._pending.discard(relay)
        self._held.pop(relay, None)
        n = self._failures.get(relay, 0) + 1
        self._failures[relay] = n
        self._retry_at[relay] = now + min(self.retry_cap, self.retry_base * 2 ** (n - 1))

    # outputs -------------------------------------------------------------
    def _renew_at(self, relay: str) -> float:
        held = self._held[relay]
        granted = self._granted.get(relay, held.expiry)
        return held.expiry - self.renew_margin * max(0.0, held.expiry - granted)

    def due(self, now: float) -> list[str]:
        """Relays to send a reservation request to now (marked pending)."""
        for relay in [r for r, h in self._held.items() if h.expiry <= now]:
            del self._held[relay]
        out = [r for r in self._held if r not in self._pending and now >= self._renew_at(r)]
        missing = self.want - len(self._held) - len([r for r in self._pending if r not in self._held])
        for relay in self._candidates:
            if missing <= 0:
                break
            if relay in self._held or relay in self._pending or self._retry_at.get(relay, 0.0) > now:
                continue
            out.append(relay)
            missing -= 1
        self._pending.update(out)
        return out

    def next_wakeup(self, now: float) -> float | None:
        """The next time :meth:`due` may return something (None: only on new input)."""
        times = [self._renew_at(r) for r in self._held if r not in self._pending]
        if len(self._held) < self.want:
            times += [t for r, t in self._retry_at.items() if r in self._candidates and r not in self._held]
        return min(times) if times else None

    def relays(self) -> list[str]:
        """Relays we hold a live reservation on."""
        return sorted(self._held)

    def relay_addrs(self) -> list[str]:
        """Our circuit addresses through every held relay (for ``set_relay_addrs``)."""
        return [a for r in sorted(self._held) for a in self._held[r].addrs]
