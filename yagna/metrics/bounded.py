"""Bounded label values: the first ``limit`` distinct ones are kept, the rest become ``other``.

Every label a metric carries must have a bounded number of values, or a
scraper's memory (and ours) grows with whatever names appear at run time.
"""

from __future__ import annotations

OTHER = "other"
MAX_VALUE_LENGTH = 120


class BoundedLabels:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._known: set[str] = set()

    def __call__(self, value: str) -> str:
        """``value`` (cut to :data:`MAX_VALUE_LENGTH`) if it is known or there is room, else ``other``."""
        value = value[:MAX_VALUE_LENGTH]
        if value in self._known:
            return value
        if len(self._known) < self.limit and value != OTHER:
            self._known.add(value)
            return value
        return OTHER
