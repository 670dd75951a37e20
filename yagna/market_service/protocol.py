"""The market's request/response protocols and their message shapes.

``/yagna/market/negotiate/1.0.0`` (requestor -> provider, and either way for
``terminate``)::

    {"op": "counter", "nid": str, "offer_id": str,
     "properties": {...}, "constraints": str, "expires_at_ms": int}
        -> {"move": "counter", "properties": {...}, "constraints": str, "expires_at_ms": int}
         | {"move": "reject", "code": str, "message": str}
    {"op": "propose_agreement", "nid": str, "valid_until_ms": int, "body": bytes, "signature": bytes}
        -> {"move": "approve", "signature": bytes}
         | {"move": "reject", "code": str, "message": str}
    {"op": "reject", "nid": str, "reason": str}                -> {}
    {"op": "terminate", "agreement_id": str, "reason": str}    -> {}

``/yagna/market/proposal/1.0.0`` (provider -> requestor, the reverse
auction): ``{"demand_id": str, "offer": bytes}`` -> ``{}``.

A peer that breaks the negotiation rules gets an error reply
(:class:`~yagna.net.errors.RequestRejected` with a code) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yagna.net.errors import RequestRejected
from yagna.net.messages import field
from yagna.net.reqresp import ProtocolSpec

NEGOTIATE = ProtocolSpec(
    "/yagna/market/negotiate/1.0.0", max_request_size=512 * 1024, max_response_size=512 * 1024, timeout=10.0
)
PROPOSAL = ProtocolSpec("/yagna/market/proposal/1.0.0", max_request_size=32 * 1024, max_response_size=1024, timeout=5.0)

NID_MAX = 64


def nid(msg: Mapping[str, Any]) -> str:
    value = field(msg, "nid", str)
    if not 0 < len(value) <= NID_MAX:
        raise RequestRejected("bad-request", f"nid must be 1 to {NID_MAX} characters")
    return value


def reject(code: str, message: str) -> dict[str, str]:
    return {"move": "reject", "code": code, "message": message}
