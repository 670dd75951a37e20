"""The text format as written here, read back by a real parser (prometheus_client's)."""

from __future__ import annotations

import logging
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from yagna.metrics.address import parse_listen
from yagna.metrics.bounded import OTHER, BoundedLabels
from yagna.metrics.exposition import Family, escape_help, escape_label_value, format_value, render
from yagna.metrics.histogram import Histogram
from yagna.metrics.log_counter import LogCounter


def _parse(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_types_and_samples_read_back() -> None:
    text = render([
        Family("t_info", "gauge", "An info.").add(1, node_id="n1", role="both"),
        Family("t_events_total", "counter", "Events.").add(3, kind="a").add(0, kind="b"),
        Family("t_tokens", "gauge", "Exact tokens.").add(Decimal("12.345678901234567891")),
        Family("t_plain", "untyped", "No labels.").add(2.5),
    ])
    fams = _parse(text)
    assert fams["t_info"].type == "gauge"
    assert fams["t_info"].samples[0].labels == {"node_id": "n1", "role": "both"}
    events = fams["t_events"]  # the parser names a counter's family without _total
    assert events.type == "counter"
    assert [(s.name, s.labels["kind"], s.value) for s in events.samples] == [
        ("t_events_total", "a", 3.0), ("t_events_total", "b", 0.0)]
    assert fams["t_tokens"].samples[0].value == pytest.approx(12.345678901234567891)
    assert "t_tokens 12.345678901234567891\n" in text  # the exact decimal, not a float's rounding
    assert fams["t_plain"].type == "unknown" and fams["t_plain"].samples[0].value == 2.5
    assert text.endswith("\n")


def test_special_values() -> None:
    assert format_value(math.inf) == "+Inf" and format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN" and format_value(Decimal("NaN")) == "NaN"
    assert format_value(7) == "7" and format_value(Decimal("0.025")) == "0.025"
    with pytest.raises(ValueError):
        format_value(True)
    values = [s.value for s in _parse(render([Family("x", "gauge", "x").add(math.inf, a="1").add(math.nan, a="2")]))["x"].samples]
    assert values[0] == math.inf and math.isnan(values[1])


NASTY = ['say "hi"', "back\\slash", "two\nlines", "\\n literal", 'end\\', "ünï ☃", "}{=,", "\ud800 surrogate",
         "cr\rhere", "ls\u2028ps\u2029nel\x85ff\x0c"]


def _expected(text: str) -> str:
    """What a reader gets: lone surrogates as '?', line ends other than \\n as spaces."""
    text = text.encode("utf-8", "replace").decode()
    return "".join(" " if c in "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029" else c for c in text)


@pytest.mark.parametrize("value", NASTY)
def test_label_values_and_help_are_escaped(value: str) -> None:
    text = render([Family("e", "gauge", f"help {value}").add(1, v=value, w="plain")])
    assert len(text.splitlines()) == 3  # HELP, TYPE, one sample: nothing broke a line
    text.encode("utf-8")
    fam = _parse(text)["e"]
    assert fam.samples[0].labels == {"v": _expected(value), "w": "plain"}
    assert fam.documentation == f"help {_expected(value)}".strip()


@given(st.text(max_size=50), st.text(max_size=50))
def test_any_text_round_trips(label: str, help: str) -> None:
    text = render([Family("r", "gauge", help).add(1, v=label)])
    assert len(text.splitlines()) == 3
    fam = _parse(text)["r"]
    assert fam.samples[0].labels["v"] == _expected(label)
    assert fam.documentation.strip() == _expected(help).strip()  # this parser strips a line's ends


def test_escapes() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_help('a"b\\c\nd') == 'a"b\\\\c\\nd'  # a quote needs no escape in help


@pytest.mark.parametrize("bad", [
    lambda: Family("1bad", "gauge", "x"),
    lambda: Family("bad-name", "gauge", "x"),
    lambda: Family("ok", "meter", "x"),
    lambda: Family("no_suffix", "counter", "x"),
    lambda: Family("ok", "gauge", "x").add(1, **{"bad-label": "v"}),
    lambda: Family("ok", "gauge", "x").add(1, __reserved="v"),
    lambda: Family("ok", "gauge", "x").add(1, "_bucket"),
    lambda: Family("ok", "gauge", "x").add("1"),  # type: ignore[arg-type]
    lambda: render([Family("twice", "gauge", "x"), Family("twice", "gauge", "x")]),
])
def test_our_mistakes_are_value_errors(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


def test_histogram() -> None:
    h = Histogram([0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 3.0, math.nan):
        h.observe(v)
    assert h.cumulative() == [(0.1, 2), (1.0, 3), (math.inf, 4)]
    fam = _parse(render([h.family("rt_seconds", "Round trips.", side="p")]))["rt_seconds"]
    assert fam.type == "histogram"
    by = {(s.name, s.labels.get("le")): s.value for s in fam.samples}
    assert by[("rt_seconds_bucket", "0.1")] == 2 and by[("rt_seconds_bucket", "+Inf")] == 4
    assert by[("rt_seconds_count", None)] == 4 and by[("rt_seconds_sum", None)] == pytest.approx(3.65)
    with pytest.raises(ValueError):
        Histogram([1.0, 1.0])


def test_bounded_labels() -> None:
    b = BoundedLabels(2)
    assert [b(v) for v in ("a", "b", "c", "a", "other", "b" * 500)] == ["a", "b", OTHER, "a", OTHER, OTHER]


def test_log_counter_counts_by_level_and_logger_bounded() -> None:
    counter = LogCounter(max_loggers=3)
    log = logging.getLogger("test.metrics.parent")
    log.addHandler(counter)
    log.propagate = False
    try:
        for i in range(10):
            child = logging.getLogger(f"test.metrics.parent.c{i}")
            child.warning("w")
            child.error("e")
        log.info("not counted")
        log.critical("c")
    finally:
        log.removeHandler(counter)
        log.propagate = True
    counts = counter.counts()
    assert counts[("warning", "test.metrics.parent.c0")] == 1
    assert counts[("warning", OTHER)] == 7 and counts[("error", OTHER)] == 7
    assert counts[("critical", OTHER)] == 1
    assert len({logger for _, logger in counts}) == 4  # 3 names + other
    fam = _parse(render([counter.family()]))["yagna_errors"]
    assert sum(s.value for s in fam.samples) == 21


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("[::1]:9464", ("::1", 9464)),
    (" 10.1.2.3:65535 ", ("10.1.2.3", 65535)),
])
def test_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text,says", [
    ("9464", "HOST:PORT"), (":9464", "HOST:PORT"), ("localhost:9464", "no host names"),
    ("999.1.1.1:9464", "IP address"), ("::1:9464", "brackets"), ("[127.0.0.1]:9464", "brackets"),
    ("127.0.0.1:0", "port"), ("127.0.0.1:65536", "port"), ("127.0.0.1:x", "port"),
])
def test_bad_listen_address(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_listen(text)
