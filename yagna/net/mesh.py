"""Which peers to dial and which connections to shed: a partial mesh.

Dialing every peer we hear of makes a full mesh: n - 1 connections per node,
each with its Noise session, Yamux windows and gossip state. That does not
scale past a few dozen nodes and lets anyone who publishes many node ids make
every node dial them. Instead a node keeps about ``target`` connections:

* bootstrap peers are always dialed (they are how an operator said to join);
* beyond them, dials go to random known peers until ``target`` connections
  are up (inbound ones count): random choice keeps the overlay an expander,
  so gossip still reaches everyone within a few hops;
* other known peers stay in the book with their addresses; a request to one
  of them dials it on demand (the addresses are pinned in the peerstore);
* above ``max_peers`` connections (inbound floods, on-demand dials) the
  newest non-bootstrap connections are closed, never a protected one (a peer
  we have work with).

Sans-io: plain data in, decisions out; :class:`yagna.net.peers.PeerManager`
applies them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_TARGET = 8
"""Connections a node keeps up by its own dials (GossipSub's mesh degree D is 6; a few spare)."""
DEFAULT_MAX_PEERS = 64


@dataclass(frozen=True)
class MeshLimits:
    target: int = DEFAULT_TARGET
    max_peers: int = DEFAULT_MAX_PEERS

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ValueError("the mesh target must be at least 1 connection")
        if self.max_peers < self.target:
            raise ValueError(f"max peers ({self.max_peers}) must be at least the mesh target ({self.target})")


@dataclass(frozen=True)
class Candidate:
    """A known peer as the dial policy sees it."""

    node_id: str
    bootstrap: bool = False
    connected: bool = False
    dialing: bool = False
    dialable: bool = True
    """Has addresses, is not banned and its backoff has passed."""
    failures: int = 0


@dataclass(frozen=True)
class Connection:
    node_id: str
    since: float
    bootstrap: bool = False
    protected: bool = False


def choose_dials(peers: Iterable[Candidate], limits: MeshLimits, rng: random.Random) -> list[str]:
    """Peers to dial now, bootstrap peers first."""
    peers = list(peers)
    busy = sum(1 for p in peers if p.connected or p.dialing)
    room = limits.max_peers - busy
    ready = [p for p in peers if not p.connected and not p.dialing and p.dialable]
    out = [p.node_id for p in ready if p.bootstrap][: max(room, 0)]
    want = min(limits.target - busy - len(out), room - len(out))
    if want <= 0:
        return out
    others = [p for p in ready if not p.bootstrap]
    rng.shuffle(others)
    others.sort(key=lambda p: min(p.failures, 3))  # stable: random among equally reliable peers
    return out + [p.node_id for p in others[:want]]


def choose_prunes(conns: Iterable[Connection], limits: MeshLimits) -> list[str]:
    """Connections to close because there are more than ``max_peers``: newest first,
    never a bootstrap or protected peer."""
    conns = list(conns)
    excess = len(conns) - limits.max_peers
    if excess <= 0:
        return []
    sheddable = sorted((c for c in conns if not c.bootstrap and not c.protected), key=lambda c: -c.since)
    return [c.node_id for c in sheddable[:excess]]
