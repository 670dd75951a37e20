"""What Golem's REST API shapes share: bare-JSON-string ids, ISO timestamps, error bodies.

Golem's generated clients (ya-aioclient, used by yapapi) accept ids as JSON strings
(``"abc"``), read ``eventDate``/``timestamp`` as ISO 8601 with a zone, and raise on any
non-2xx status; 408 and 504 count as intermittent on their polling loops.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi.responses import JSONResponse, Response

GOLEM_TOKEN_DECIMALS = 18


def iso(ms: int | float | None = None) -> str:
    """ISO 8601 with milliseconds and ``Z`` (now if ``ms`` is None)."""
    when = dt.datetime.now(dt.UTC) if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_ms(text: str | None) -> int:
    """``afterTimestamp`` as Golem's clients send it (``+00:00`` or ``Z``); 0 for none or garbage."""
    if not text:
        return 0
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def json_string(value: str, status: int = 200) -> Response:
    """A bare JSON string body (``"id"``): what Golem's API answers for created ids."""
    return Response(json.dumps(value), status_code=status, media_type="application/json")


_CODES = {400: "bad_request", 404: "not_found", 409: "conflict", 410: "gone", 429: "too_many", 500: "error"}


def golem_error(status: int, message: str) -> JSONResponse:
    """Golem's error body ``{"message": ...}``, with our ``error`` code beside it (the API's one error shape)."""
    return JSONResponse({"error": _CODES.get(status, "error"), "message": message}, status_code=status)


def tokens(units: int) -> str:
    """Base units as Golem's decimal-string amounts (``"0.0012"``), exact."""
    whole, frac = divmod(int(units), 10**GOLEM_TOKEN_DECIMALS)
    text = f"{whole}.{frac:018d}".rstrip("0").rstrip(".")
    return text or "0"


def units(text: Any) -> int:
    """A Golem decimal-string (or number) amount as base units; ValueError for garbage or < 0."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise ValueError(f"not an amount: {str(text)[:40]!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a non-negative amount: {str(text)[:40]!r}")
    return int(value * 10**GOLEM_TOKEN_DECIMALS)


def golem_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """Our offer properties as Golem's clients read them: linear coefficients in tokens (floats),
    not base units (Golem's default strategy caps the fixed price at 1.0 and per-second prices at
    0.2/0.1 tokens)."""
    out = dict(properties)
    coeffs = out.get("golem.com.pricing.model.linear.coeffs")
    if isinstance(coeffs, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in coeffs):
        out["golem.com.pricing.model.linear.coeffs"] = [c / 10**GOLEM_TOKEN_DECIMALS for c in coeffs]
    return out
