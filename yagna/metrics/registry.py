"""A node's metrics: run the collectors, keep what works, count what fails.

:class:`NodeMetrics` lives as long as the node (``Node.metrics``). A scrape runs
every collector of :data:`~yagna.metrics.collectors.COLLECTORS` in turn, each
within :data:`COLLECTOR_TIMEOUT_S`; one that raises, times out or yields a bad or
duplicate family is left out of the page and counted in
``yagna_metrics_collector_errors_total`` (its first failure is logged with the
traceback, later ones at debug), so a scrape always answers. Then the node's own
figures: uptime, process CPU and memory, warnings and errors by logger.

Scrapes are serialized and a page is reused for :data:`CACHE_S`: however often a
client asks (the optional listener has no app key), the node collects at most
about once a second.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from yagna.metrics.collectors import COLLECTORS, Collector
from yagna.metrics.exposition import Family, render_family
from yagna.metrics.log_counter import LogCounter

log = logging.getLogger("yagna.metrics")

COLLECTOR_TIMEOUT_S = 3.0
CACHE_S = 1.0


class NodeMetrics:
    def __init__(self, collectors: Sequence[tuple[str, Collector]] = COLLECTORS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._collectors = tuple(collectors)
        self._clock = clock
        self._started = clock()
        self.started_at = time.time()
        self.log_counter = LogCounter()
        """Attach to the root logger while the node runs (``Node.run`` does)."""
        self.collector_errors: dict[str, int] = {}
        self._logged: set[str] = set()
        self._lock = trio.Lock()
        self._page = ""
        self._page_at = -math.inf
        self._last_duration = 0.0

    async def scrape(self, node: Any) -> str:
        """The page in the text format; never raises (but for a caller's cancellation)."""
        async with self._lock:
            if self._clock() - self._page_at < CACHE_S:
                return self._page
            t0 = time.perf_counter()
            names: set[str] = set()
            parts = []
            for name, collect in self._collectors:
                parts.append(await self._run(name, collect, node, names))
            self._last_duration = time.perf_counter() - t0
            parts.append(await self._run("self", self._self_families, node, names))
            self._page, self._page_at = "".join(parts), self._clock()
            return self._page

    async def _run(self, name: str, collect: Collector, node: Any, names: set[str]) -> str:
        """The collector's families rendered, or "" (counted) if anything about it fails."""
        try:
            with trio.fail_after(COLLECTOR_TIMEOUT_S):
                families = await collect(node)
            text = []
            for f in families:
                if f.name in names:
                    raise ValueError(f"metric {f.name} is given by another collector too")
                text.append(render_family(f))
        except Exception as exc:  # noqa: BLE001 - a scrape must answer: the collector is skipped, counted
            self.collector_errors[name] = self.collector_errors.get(name, 0) + 1
            if name not in self._logged:
                self._logged.add(name)
                log.warning("metrics collector %s failed (skipped; counted in "
                            "yagna_metrics_collector_errors_total): %s", name, exc, exc_info=exc)
            else:
                log.debug("metrics collector %s failed: %r", name, exc)
            return ""
        names.update(f.name for f in families)
        return "".join(text)

    async def _self_families(self, node: Any) -> list[Family]:
        out = [
            Family("yagna_uptime_seconds", "gauge", "Seconds since the node started.").add(self._clock() - self._started),
            Family("yagna_start_time_seconds", "gauge", "When the node started, unix seconds.").add(self.started_at),
            Family("yagna_process_cpu_seconds_total", "counter", "CPU time of the daemon's process (user + system), "
                   "seconds.").add(time.process_time()),
        ]
        rss = _resident_bytes()
        if rss is not None:
            out.append(Family("yagna_process_resident_memory_bytes", "gauge",
                              "Resident memory of the daemon's process, bytes.").add(rss))
        fds = _open_fds()
        if fds is not None:
            out.append(Family("yagna_process_open_fds", "gauge", "File descriptors the daemon's process holds open.")
                       .add(fds))
        out.append(self.log_counter.family())
        errors = Family("yagna_metrics_collector_errors_total", "counter",
                        "Collectors that failed and were left out of a scrape, by collector.")
        for name in (*(n for n, _ in self._collectors), "self"):
            errors.add(self.collector_errors.get(name, 0), collector=name)
        out.append(errors)
        out.append(Family("yagna_metrics_scrape_duration_seconds", "gauge",
                          "Seconds the last scrape's collectors took.").add(self._last_duration))
        return out


def _resident_bytes() -> int | None:
    """Resident set size now, from /proc (Linux); None elsewhere (the family is left out)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
