"""A Prometheus-style histogram a service keeps and a collector reads (sans-io, no locks: trio code only).

Cumulative buckets, a sum and a count: ``observe`` is a few comparisons, and the
memory is fixed by the buckets, whatever the number of observations.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from yagna.metrics.exposition import Family

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: from a request answered on the same machine to one a slow peer answered near its timeout."""


class Histogram:
    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds) or any(math.isnan(b) for b in bounds):
            raise ValueError("histogram buckets must be distinct finite numbers")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` per bucket, ``+Inf`` last."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self._counts):
            running += n
            out.append((bound, running))
        return out

    def family(self, name: str, help: str, **labels: object) -> Family:
        f = Family(name, "histogram", help)
        for bound, n in self.cumulative():
            f.add(n, "_bucket", **labels, le=_le(bound))
        f.add(self.sum, "_sum", **labels)
        f.add(self.count, "_count", **labels)
        return f


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)
