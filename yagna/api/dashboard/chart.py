"""Amounts over time as an inline SVG bar chart, drawn here (no library, nothing fetched).

:func:`bucketize` sums ``(time, series, amount)`` events into equal time
buckets (a round width chosen for the span); :func:`bar_chart` draws them as
stacked bars, one colour per series. Money stays integer base units; floats
only place pixels.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from yagna.api.dashboard.markup import Html, join, tag
from yagna.core.money import UNIT

STEPS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
"""Bucket widths tried in order: the first that fits the span in ``max_buckets``."""


@dataclass(frozen=True)
class Series:
    label: str
    color: str


@dataclass(frozen=True)
class Buckets:
    width_s: int
    starts: list[int]
    """Start of each bucket (unix seconds, a multiple of ``width_s``), oldest first."""
    values: list[tuple[int, ...]]
    """Per bucket, the sum of each series."""

    def totals(self) -> tuple[int, ...]:
        return tuple(sum(col) for col in zip(*self.values)) if self.values else ()


def bucketize(events: Iterable[tuple[float, int, int]], *, series: int, now: float,
              max_buckets: int = 24, min_buckets: int = 12) -> Buckets:
    """Sum ``(unix time, series index, amount)`` into ``min_buckets`` to ``max_buckets`` buckets ending
    with ``now``'s (empty ones before the first event give a short history its context)."""
    items = [(t, s, a) for t, s, a in events if 0 <= s < series and a > 0]
    if not items:
        return Buckets(STEPS_S[0], [], [])
    first = min(t for t, _, _ in items)
    last = max(now, max(t for t, _, _ in items))
    span = last - first
    width = next((w for w in STEPS_S if math.floor(last / w) - math.floor(first / w) < max_buckets), 0)
    if not width:  # longer than the widest steps allow: whole days, as many as needed
        width = 86400 * math.ceil(span / 86400 / (max_buckets - 1))
    count = max(min_buckets, math.floor(last / width) - math.floor(first / width) + 1)
    start = (math.floor(last / width) - count + 1) * width
    sums = [[0] * series for _ in range(count)]
    for t, s, a in items:
        sums[min(count - 1, int((t - start) // width))][s] += a
    return Buckets(width, [start + i * width for i in range(count)], [tuple(v) for v in sums])


def _when(t: int, width_s: int) -> str:
    return time.strftime("%Y-%m-%d" if width_s >= 86400 else "%m-%d %H:%M", time.gmtime(t))


def compact(units: int) -> str:
    """An amount of base units as tokens with 4 significant digits, for an axis (tooltips are exact)."""
    return f"{Decimal(units) / UNIT:.4g}"


def bar_chart(buckets: Buckets, series: Sequence[Series], *, title: str, fmt: Callable[[int], str],
              axis_fmt: Callable[[int], str] = compact, width: int = 640, height: int = 200,
              empty: str = "nothing yet") -> Html:
    """An ``<svg>`` of stacked bars, each with its exact amount (``fmt``) in a tooltip; a labelled empty
    frame without data."""
    left, right, top, bottom = 56, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    parts: list[object] = [tag("title", title)]
    axis = dict(stroke="#888", stroke_width="1")
    parts.append(tag("line", x1=left, y1=top + plot_h, x2=left + plot_w, y2=top + plot_h, **axis))
    parts.append(tag("line", x1=left, y1=top, x2=left, y2=top + plot_h, **axis))
    peak = max((sum(v) for v in buckets.values), default=0)
    if peak <= 0:
        parts.append(tag("text", empty, x=left + plot_w / 2, y=top + plot_h / 2, text_anchor="middle",
                         fill="#666", font_size="13", class_="empty"))
    else:
        n = len(buckets.starts)
        slot = plot_w / n
        bar_w = min(48.0, max(1.0, slot * 0.8))
        for i, (start, values) in enumerate(zip(buckets.starts, buckets.values)):
            x = left + i * slot + (slot - bar_w) / 2
            base = 0
            for s, amount in enumerate(values):
                if amount <= 0:
                    continue
                y0 = top + plot_h - plot_h * base / peak
                y1 = top + plot_h - plot_h * (base + amount) / peak
                parts.append(tag("rect", tag("title", f"{_when(start, buckets.width_s)} UTC: {series[s].label} {fmt(amount)}"),
                                 x=f"{x:.1f}", y=f"{y1:.1f}", width=f"{bar_w:.1f}", height=f"{max(y0 - y1, 0.5):.1f}",
                                 fill=series[s].color, class_="bar", data_series=series[s].label))
                base += amount
        label = dict(fill="#444", font_size="11")
        parts.append(tag("line", x1=left, y1=top, x2=left + plot_w, y2=top, stroke="#ccc", stroke_dasharray="3 3"))
        parts.append(tag("text", axis_fmt(peak), x=left + 4, y=top + 12, **label))  # inside: any length fits
        parts.append(tag("text", "0", x=left - 4, y=top + plot_h, text_anchor="end", **label))
        parts.append(tag("text", _when(buckets.starts[0], buckets.width_s), x=left, y=height - 6, **label))
        if n > 1:
            parts.append(tag("text", _when(buckets.starts[-1], buckets.width_s), x=left + plot_w, y=height - 6,
                             text_anchor="end", **label))
    return tag("svg", join(parts), xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {width} {height}",
               width=width, height=height, role="img", aria_label=title, class_="chart")
