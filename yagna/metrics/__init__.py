"""Prometheus metrics of a node: ``GET /metrics`` on the API port and an optional listener.

``exposition`` (the text format 0.0.4, written here: families, samples, escaping),
``histogram`` and ``bounded`` (sans-io building blocks a service may hold),
``log_counter`` (warnings and errors by logger, a logging handler), ``collectors``
(each reads one service through what its REST routes use), ``registry``
(:class:`~yagna.metrics.registry.NodeMetrics`: runs the collectors, skips and counts a
failing one, caches a scrape for a second), ``address`` (``--metrics-listen HOST:PORT``)
and ``listener`` (that listener, without an app key). docs/metrics.md lists every metric.

This package imports nothing on its own: :mod:`yagna.config` checks an address with
:mod:`yagna.metrics.address` without loading the rest.
"""
