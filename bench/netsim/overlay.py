"""The overlay graph: a random regular-ish mesh with a latency per link, and Dijkstra on it.

Pure functions of a seeded :class:`random.Random`: the same seed gives the same
graph. Adjacency is stored compactly (``array('I')`` of neighbour indices and a
parallel ``array('f')`` of one-way latencies in seconds) so 10,000 nodes cost
little memory.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array


def random_mesh(n: int, degree: int, rng: random.Random) -> list[array]:
    """Each node gets ``degree`` distinct neighbours where possible (a random regular graph).

    Pairing model: ``degree`` stubs per node, shuffled, paired; self-loops and
    duplicate links are dropped, then nodes left short are linked to random
    nodes that are short too (or to any node), so every degree ends near
    ``degree``. The graph is connected with overwhelming probability for
    ``degree >= 3``; :func:`is_connected` checks.
    """
    if n < 2:
        return [array("I") for _ in range(n)]
    degree = min(degree, n - 1)
    sets: list[set[int]] = [set() for _ in range(n)]
    stubs = [i for i in range(n) for _ in range(degree)]
    rng.shuffle(stubs)
    for k in range(0, len(stubs) - 1, 2):
        a, b = stubs[k], stubs[k + 1]
        if a != b and b not in sets[a]:
            sets[a].add(b)
            sets[b].add(a)
    short = [i for i in range(n) if len(sets[i]) < degree]
    for a in short:
        tries = 0
        while len(sets[a]) < degree and tries < 50 * degree:
            tries += 1
            b = rng.randrange(n)
            if b == a or b in sets[a] or (len(sets[b]) >= degree and tries < 25 * degree):
                continue
            sets[a].add(b)
            sets[b].add(a)
    return [array("I", sorted(s)) for s in sets]


def link_latencies(adj: list[array], rng: random.Random, low_s: float, high_s: float) -> list[array]:
    """One-way latency per link, uniform in [low_s, high_s], the same both ways."""
    chosen: dict[tuple[int, int], float] = {}
    out: list[array] = []
    for a, nbrs in enumerate(adj):
        lats = array("f")
        for b in nbrs:
            key = (a, b) if a < b else (b, a)
            lat = chosen.get(key)
            if lat is None:
                lat = chosen[key] = rng.uniform(low_s, high_s)
            lats.append(lat)
        out.append(lats)
    return out


def is_connected(adj: list[array]) -> bool:
    if not adj:
        return True
    seen = bytearray(len(adj))
    seen[0] = 1
    stack = [0]
    while stack:
        a = stack.pop()
        for b in adj[a]:
            if not seen[b]:
                seen[b] = 1
                stack.append(b)
    return all(seen)


def shortest_times(adj: list[array], lats: list[array], src: int, alive: bytearray | None = None) -> list[float]:
    """Dijkstra: the least total latency from ``src`` to every node (inf if unreachable).

    ``alive``: nodes with a 0 byte neither receive nor forward.
    """
    dist = [math.inf] * len(adj)
    dist[src] = 0.0
    heap = [(0.0, src)]
    while heap:
        d, a = heapq.heappop(heap)
        if d > dist[a]:
            continue
        for b, lat in zip(adj[a], lats[a]):
            if alive is not None and not alive[b]:
                continue
            nd = d + lat
            if nd < dist[b]:
                dist[b] = nd
                heapq.heappush(heap, (nd, b))
    return dist
