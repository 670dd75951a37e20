"""The exe-unit's request/response protocols and their message shapes.

``/yagna/activity/1.0.0`` (requestor -> provider of the agreement): create,
exec, events, state, destroy. Its messages, typed, and their codecs live in
:mod:`exeunit.messages`; the shells here only decode, ask the core, store and
send. Every request also tells the provider that its requestor is alive (see
``ProviderActivities.keepalive_s``); ``state`` doubles as the keep-alive ping.

``/yagna/blob/1.0.0`` (either way; the side that holds a blob serves it to the
one peer it was registered for)::

    {"blob_id": str, "offset": int, "length": int} -> {"size": int, "data": bytes}

Files and images move as chunks of at most :data:`CHUNK` bytes; the fetcher
keeps a window of chunk requests in flight and checks size and sha256 (or, for
images, the image id) on arrival.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exeunit.messages import ID_MAX as _ID_MAX, WAIT_MS_MAX as _WAIT_MS_MAX
from yagna.net.errors import RequestRejected
from yagna.net.messages import field
from yagna.net.reqresp import ProtocolSpec

CHUNK = 1024 * 1024
"""Bytes per blob chunk request."""

ACTIVITY = ProtocolSpec(
    "/yagna/activity/1.0.0", max_request_size=256 * 1024, max_response_size=8 * 1024 * 1024, timeout=30.0
)
"""``events`` answers are paged to ``exeunit.messages.PAGE_BYTES`` (2 MiB); ``wait_ms`` stays below the timeout."""

BLOB = ProtocolSpec("/yagna/blob/1.0.0", max_request_size=1024, max_response_size=CHUNK + 1024, timeout=30.0,
                    concurrency=64, per_peer=8, max_open_per_peer=32)

WAIT_MS_MAX = _WAIT_MS_MAX
ID_MAX = _ID_MAX


def ident(msg: Mapping[str, Any], name: str) -> str:
    value = field(msg, name, str)
    if not 0 < len(value) <= ID_MAX:
        raise RequestRejected("bad-request", f"field {name!r} must be 1 to {ID_MAX} characters")
    return value
