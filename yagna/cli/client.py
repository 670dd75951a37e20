"""A small synchronous client of a node's REST API, for the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from requestor_sdk.locate import DaemonLocation, locate
from yagna.core.errors import YagnaError


class ApiError(YagnaError):
    """The node's API refused a request or could not be reached."""


class NodeClient:
    def __init__(self, location: DaemonLocation, timeout: float = 10.0) -> None:
        self.location = location
        self._http = httpx.Client(
            base_url=location.api_url,
            headers={"Authorization": f"Bearer {location.app_key}"},
            timeout=timeout,
        )

    @classmethod
    def for_data_dir(cls, data_dir: Path | None) -> NodeClient:
        return cls(locate(data_dir))

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the node at {self.location.api_url}: {exc}") from None
        if resp.status_code == 204:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = {"message": resp.text}
        if resp.status_code >= 400:
            message = body.get("message") or body.get("detail") or resp.text
            raise ApiError(f"{message} (HTTP {resp.status_code})")
        return body

    def close(self) -> None:
        self._http.close()
