"""The Prometheus text exposition format, version 0.0.4, sans-io.

A :class:`Family` is one metric (name, type, help) with its samples;
:func:`render` writes families as ``# HELP``, ``# TYPE`` and sample lines.
Names are checked (a bad one is a ``ValueError``: our bug, never a peer's);
help text and label values are escaped as the format says (``\\``, ``\\n``, and
``"`` in label values), and other line ends become spaces, so a value that came
from anywhere cannot break a line.
Counters are named with their ``_total``; a histogram's samples carry the
``_bucket``/``_sum``/``_count`` suffixes (:meth:`Family.add`'s ``suffix``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
SUFFIXES = {"counter": ("",), "gauge": ("",), "untyped": ("",),
            "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
"""The sample name suffixes each type allows (a summary's plain samples are its quantiles)."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Value = int | float | Decimal


@dataclass(frozen=True)
class Sample:
    suffix: str
    labels: tuple[tuple[str, str], ...]
    value: Value


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"bad metric name {self.name!r}")
        if self.type not in TYPES:
            raise ValueError(f"bad metric type {self.type!r} of {self.name}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must be named ..._total")

    def add(self, value: Value, suffix: str = "", **labels: object) -> Family:
        """One sample; label values are turned into text (``None`` is the empty string)."""
        if suffix not in SUFFIXES[self.type]:
            raise ValueError(f"suffix {suffix!r} is not one of a {self.type}'s")
        for name in labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"bad label name {name!r} on {self.name}")
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ValueError(f"{self.name}: a sample's value must be a number, not {value!r:.40}")
        self.samples.append(Sample(suffix, tuple((k, "" if v is None else str(v)) for k, v in labels.items()), value))
        return self


def escape_help(text: str) -> str:
    return _clean(text).replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(text: str) -> str:
    return _clean(text).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_LINE_ENDS = dict.fromkeys(map(ord, "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"), " ")
"""What some readers take for a line end (``str.splitlines``) and the format has no escape for: a space."""


def _clean(text: str) -> str:
    """Lone surrogates (which UTF-8 cannot encode) replaced, other line ends made spaces: one line, always."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.translate(_LINE_ENDS)


def format_value(value: Value) -> str:
    if isinstance(value, bool):  # an int, but never a metric's value
        raise ValueError(f"a sample's value must be a number, not {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        if value.is_infinite():
            return "+Inf" if value > 0 else "-Inf"
        return format(value, "f")
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_family(family: Family) -> str:
    lines = [f"# HELP {family.name} {escape_help(family.help)}", f"# TYPE {family.name} {family.type}"]
    for s in family.samples:
        labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in s.labels)
        lines.append(f"{family.name}{s.suffix}{'{' + labels + '}' if labels else ''} {format_value(s.value)}")
    return "\n".join(lines) + "\n"


def render(families: Iterable[Family]) -> str:
    """The page; a name given twice is a ``ValueError`` (the format allows one block per metric)."""
    seen: set[str] = set()
    out = []
    for f in families:
        if f.name in seen:
            raise ValueError(f"metric {f.name} twice")
        seen.add(f.name)
        out.append(render_family(f))
    return "".join(out)
