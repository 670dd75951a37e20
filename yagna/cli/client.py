"""A small synchronous client of a node's REST API, for the CLI.

It uses the standard library's ``http.client`` (one keep-alive connection to
127.0.0.1): importing httpx alone cost a CLI command ~100 ms, two thirds of
its 150 ms budget (docs/decisions.md, "Start-up: a lean CLI").
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from requestor_sdk.locate import DaemonLocation, locate
from yagna.core.errors import YagnaError


class ApiError(YagnaError):
    """The node's API refused a request or could not be reached."""


def _query_value(value: Any) -> str:
    if isinstance(value, bool):  # as httpx sends them
        return "true" if value else "false"
    return "" if value is None else str(value)


class NodeClient:
    def __init__(self, location: DaemonLocation, timeout: float = 10.0) -> None:
        self.location = location
        self.timeout = timeout
        url = urlsplit(location.api_url)
        if url.scheme != "http" or not url.hostname:
            raise ApiError(f"unsupported API URL {location.api_url!r} (expected http://host:port)")
        self._host = url.hostname
        self._port = url.port or 80
        self._base = url.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {location.app_key}", "Accept": "application/json"}
        self._conn: http.client.HTTPConnection | None = None

    @classmethod
    def for_data_dir(cls, data_dir: Path | None) -> NodeClient:
        return cls(locate(data_dir))

    def _request(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                 timeout: float | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: once more on a new one
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            wanted = self.timeout if timeout is None else timeout
            self._conn.timeout = wanted
            if self._conn.sock is not None:
                self._conn.sock.settimeout(wanted)
            try:
                self._conn.request(method, target, body=body, headers=headers)
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt:
                    raise ApiError(f"cannot reach the node at {self.location.api_url}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:  # refused, timeout, malformed reply
                self.close()
                reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
                raise ApiError(f"cannot reach the node at {self.location.api_url}: {reason}") from None
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
             timeout: float | None = None) -> Any:
        """One REST call; ``timeout`` (seconds) overrides the client's for this call (e.g. a long negotiation)."""
        target = f"{self._base}/api/v1{path}"
        if params:
            target += "?" + urlencode({k: _query_value(v) for k, v in params.items() if v is not None})
        headers = dict(self._headers)
        body = None
        if json is not None:
            body = _dumps(json)
            headers["Content-Type"] = "application/json"
        status, data = self._request(method, target, body, headers, timeout)
        if status == 204:
            return None
        text = data.decode("utf-8", errors="replace")
        try:
            parsed = _loads(data)
        except ValueError:
            parsed = {"message": text}
        if status >= 400:
            message = (parsed.get("message") or parsed.get("detail")) if isinstance(parsed, dict) else None
            raise ApiError(f"{message or text} (HTTP {status})")
        return parsed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _loads(data: bytes) -> Any:
    return json.loads(data)
