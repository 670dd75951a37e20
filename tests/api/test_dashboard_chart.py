"""The dashboard's SVG chart: buckets, and the drawing with no, one and many points."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from yagna.api.dashboard.chart import Series, bar_chart, bucketize
from yagna.core.money import UNIT, format_amount

SERIES = [Series("redeemed", "#2b7a3d"), Series("held", "#8fc99a")]
NOW = 1_700_000_000.0  # 20 s into its minute
SVG = "{http://www.w3.org/2000/svg}"


def _svg(events: list[tuple[float, int, int]], **kw: object) -> ET.Element:
    buckets = bucketize(events, series=2, now=NOW)
    text = bar_chart(buckets, SERIES, title="Earnings <per> bucket", fmt=format_amount, **kw)  # type: ignore[arg-type]
    return ET.fromstring(text)  # well-formed XML, or this raises


def _bars(svg: ET.Element) -> list[ET.Element]:
    return [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]


def test_empty_is_a_labelled_frame() -> None:
    svg = _svg([], empty="no payments yet")
    assert svg.tag == f"{SVG}svg" and svg.get("viewBox") == "0 0 640 200"
    assert not _bars(svg)
    assert [t.text for t in svg.iter(f"{SVG}text")] == ["no payments yet"]
    assert svg.find(f"{SVG}title").text == "Earnings <per> bucket"  # type: ignore[union-attr]


def test_one_point_is_one_bar_in_the_last_bucket() -> None:
    svg = _svg([(NOW - 5, 0, 3 * UNIT // 2)])
    (bar,) = _bars(svg)
    assert bar.get("data-series") == "redeemed"
    assert bar.find(f"{SVG}title").text.endswith("redeemed 1.5")  # type: ignore[union-attr]
    assert float(bar.get("height", 0)) > 100  # the tallest bar fills the plot
    assert float(bar.get("width", 0)) <= 48  # a lone bar stays a bar


def test_many_points_sum_per_bucket_and_stack() -> None:
    events = [(NOW - 3600 * h, h % 2, UNIT) for h in range(48)]  # two days, hourly, alternating series
    events += [(NOW - 10, 1, 5 * UNIT)]
    buckets = bucketize(events, series=2, now=NOW)
    assert len(buckets.starts) <= 24 and buckets.width_s == 3 * 3600
    assert sum(map(sum, buckets.values)) == 53 * UNIT  # nothing lost
    assert buckets.totals() == (24 * UNIT, 29 * UNIT)
    assert all(b % buckets.width_s == 0 for b in buckets.starts)
    svg = _svg(events)
    bars = _bars(svg)
    assert {b.get("data-series") for b in bars} == {"redeemed", "held"}
    assert len(bars) == sum(v > 0 for col in buckets.values for v in col)
    heights = [float(b.get("height", 0)) for b in bars]
    assert max(heights) < 166  # the plot's height; stacked bars share it


def test_short_history_gets_context_and_long_history_whole_days() -> None:
    short = bucketize([(NOW - 10, 0, 1)], series=2, now=NOW)
    assert len(short.starts) == 12 and short.width_s == 60 and sum(short.values[-1]) == 1
    long = bucketize([(NOW - 400 * 86400, 0, 1), (NOW, 1, 2)], series=2, now=NOW)
    assert len(long.starts) <= 24 and long.width_s % 86400 == 0 and long.totals() == (1, 2)


def test_bad_events_are_left_out() -> None:
    buckets = bucketize([(NOW, 0, 0), (NOW, 5, 1), (NOW, -1, 1), (NOW, 0, -3)], series=2, now=NOW)
    assert buckets.starts == [] and _bars(_svg([(NOW, 0, 0)])) == []


def test_labels_are_escaped() -> None:
    buckets = bucketize([(NOW, 0, 1)], series=1, now=NOW)
    text = bar_chart(buckets, [Series('<script>"x"</script>', "#000")], title="<b>", fmt=str)
    assert "<script>" not in text and "<b>" not in text
    assert re.search(r'data-series="&lt;script&gt;&quot;x&quot;&lt;/script&gt;"', text)
