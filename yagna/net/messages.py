"""Reading fields of a decoded request: one place that turns a wrong type into a coded rejection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yagna.net.errors import RequestRejected


def field(msg: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``msg[name]`` if it has type ``kind``, else a ``bad-request`` rejection naming the field."""
    value = msg.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RequestRejected("bad-request", f"field {name!r} must be {expected}")
    return value
