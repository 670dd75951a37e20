"""The exe-unit's request/response protocols and their message shapes.

``/yagna/activity/1.0.0`` (requestor -> provider of the agreement): create,
exec, events, state, destroy. Its messages, typed, and their codecs live in
:mod:`exeunit.messages`; the shells here only decode, ask the core, store and
send. Every request also tells the provider that its requestor is alive (see
``ProviderActivities.keepalive_s``); ``state`` doubles as the keep-alive ping.

``/yagna/blob/2.0.0`` (either way; the side that holds a blob serves it to the
one peer it was registered for), one stream per transfer
(:mod:`yagna.activity_service.blobs`)::

    fetcher: frame {"blob_id": str}, end of stream
    server:  frame {"ok": {"size": int}} then exactly ``size`` raw bytes, end of stream
             | frame {"err": {"code": str, "msg": str}}, end of stream

A frame is an unsigned-varint length and canonical CBOR of at most
:data:`BLOB_HEADER_MAX` bytes. The fetcher checks the size before the first
byte of data and the sha256 (or, for images, the image id) on arrival.
(``/yagna/blob/1.0.0``, a request per 1 MiB chunk, is gone: issue 12.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exeunit.messages import ID_MAX as _ID_MAX, WAIT_MS_MAX as _WAIT_MS_MAX
from yagna.net.errors import RequestRejected
from yagna.net.messages import field
from yagna.net.reqresp import ProtocolSpec


ACTIVITY = ProtocolSpec(
    "/yagna/activity/1.0.0", max_request_size=256 * 1024, max_response_size=8 * 1024 * 1024, timeout=30.0
)
"""``events`` answers are paged to ``exeunit.messages.PAGE_BYTES`` (2 MiB); ``wait_ms`` stays below the timeout."""

BLOB_STREAM = "/yagna/blob/2.0.0"
BLOB_HEADER_MAX = 1024
"""Largest request or answer frame before the data."""
BLOB_PER_PEER = 8
"""Blob streams one peer holds open to us at once; more are reset at once."""
BLOB_TOTAL = 64
"""Blob streams open to us at once, from all peers."""
HEADER_TIMEOUT_S = 10.0
"""A server resets a blob stream whose request has not arrived by then."""

WAIT_MS_MAX = _WAIT_MS_MAX
ID_MAX = _ID_MAX


def ident(msg: Mapping[str, Any], name: str) -> str:
    value = field(msg, name, str)
    if not 0 < len(value) <= ID_MAX:
        raise RequestRejected("bad-request", f"field {name!r} must be 1 to {ID_MAX} characters")
    return value
