"""Reading a metrics page back with prometheus_client's own parser (shared by the unit and e2e tests)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, Any]:
    """Metric family name -> family, as a real Prometheus text-format parser reads the page."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], sample: str, **labels: str) -> float:
    """The one sample named ``sample`` (with its _total, _bucket, ...) that has ``labels``."""
    found = [s.value for f in fams.values() for s in f.samples
             if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (sample, labels, found)
    return float(found[0])
