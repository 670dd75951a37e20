"""An async client of the local daemon's REST API (``/api/v1``), for trio.

Every HTTP failure is mapped once, here, to :class:`~requestor_sdk.errors.ApiError`
(the daemon answered with an error) or :class:`~requestor_sdk.errors.DaemonUnreachable`
(it did not answer); callers never see httpx exceptions.
"""

from __future__ import annotations

from typing import Any

import httpx

from requestor_sdk.errors import ApiError, DaemonUnreachable
from requestor_sdk.locate import DaemonLocation


class Api:
    """Thin typed wrappers over the daemon's routes; one ``httpx.AsyncClient`` underneath."""

    def __init__(self, location: DaemonLocation, *, timeout: float = 30.0) -> None:
        self.location = location
        self._http = httpx.AsyncClient(
            base_url=f"{location.api_url}/api/v1",
            headers={"Authorization": f"Bearer {location.app_key}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            resp = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DaemonUnreachable(f"cannot reach the node at {self.location.api_url}: {exc!r}") from None
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = {"message": resp.text}
        if resp.status_code >= 400:
            code = body.get("error") if isinstance(body, dict) else None
            message = (body.get("message") or body.get("detail") or resp.text) if isinstance(body, dict) else resp.text
            if isinstance(code, str) and code not in str(message):
                message = f"{code}: {message}"
            raise ApiError(f"{method} {path}: {message} (HTTP {resp.status_code})", status=resp.status_code,
                           code=code if isinstance(code, str) else None)
        return body

    # -- market -------------------------------------------------------------------------
    async def create_demand(self, *, properties: dict[str, Any], constraints: str, subnet: str,
                            expiration_s: int) -> dict[str, Any]:
        return await self.call("POST", "/market/demands", json={  # type: ignore[no-any-return]
            "properties": properties, "constraints": constraints, "subnet": subnet, "expiration_s": expiration_s})

    async def delete_demand(self, demand_id: str) -> None:
        await self.call("DELETE", f"/market/demands/{demand_id}")

    async def negotiate(self, demand_id: str, *, count: int, timeout_s: float,
                        strategy: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", f"/market/demands/{demand_id}/negotiate",  # type: ignore[no-any-return]
                               json={"count": count, "timeout_s": timeout_s, "strategy": strategy},
                               timeout=timeout_s + 15)

    async def terminate_agreement(self, agreement_id: str, reason: str) -> None:
        await self.call("POST", f"/market/agreements/{agreement_id}/terminate", json={"reason": reason})

    async def reputation(self) -> list[dict[str, Any]]:
        return await self.call("GET", "/reputation")  # type: ignore[no-any-return]

    async def record_outcome(self, provider_id: str, outcome: str, latency_ms: float | None = None) -> None:
        body: dict[str, Any] = {"outcome": outcome}
        if latency_ms is not None:
            body["latency_ms"] = max(0.0, latency_ms)
        await self.call("POST", f"/reputation/{provider_id}", json=body)

    # -- activity -----------------------------------------------------------------------
    async def create_activity(self, agreement_id: str) -> str:
        reply = await self.call("POST", "/activity", json={"agreement_id": agreement_id})
        return str(reply["activity_id"])

    async def exec(self, activity_id: str, script: list[dict[str, Any]]) -> str:
        reply = await self.call("POST", f"/activity/{activity_id}/exec", json={"script": script})
        return str(reply["batch_id"])

    async def events(self, activity_id: str, batch_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        return await self.call("GET", f"/activity/{activity_id}/exec/{batch_id}/events",  # type: ignore[no-any-return]
                               params={"after": after, "timeout": timeout}, timeout=timeout + 15)

    async def wait_batch(self, activity_id: str, batch_id: str, timeout: float) -> dict[str, Any]:
        return await self.call("POST", f"/activity/{activity_id}/exec/{batch_id}/wait",  # type: ignore[no-any-return]
                               params={"timeout": timeout}, timeout=timeout + 15)

    async def destroy_activity(self, activity_id: str) -> None:
        await self.call("DELETE", f"/activity/{activity_id}")

    # -- payments -----------------------------------------------------------------------
    async def payment_status(self) -> dict[str, Any]:
        return await self.call("GET", "/payment/status")  # type: ignore[no-any-return]

    async def fund(self, amount: str) -> dict[str, Any]:
        return await self.call("POST", "/payment/fund", json={"amount": amount})  # type: ignore[no-any-return]

    # -- deployments (long-running services; docs/services.md) --------------------------
    async def create_deployment(self, manifest: str, *, source: str = "manifest", rates: dict[str, str] | None = None,
                                ports: list[dict[str, Any]] | None = None,
                                payment_interval_s: int | None = None) -> dict[str, Any]:
        """Start a deployment; the daemon answers at once (replicas pending) with its view.

        ``ports``: ``[{"service", "container_port", "local_port"}]`` (replica i gets ``local_port + i``).
        """
        body = {"manifest": manifest, "source": source, "rates": dict(rates or {}), "ports": list(ports or []),
                "payment_interval_s": payment_interval_s}
        return await self.call("POST", "/deployments", json=body, timeout=60)  # type: ignore[no-any-return]

    async def list_deployments(self) -> list[dict[str, Any]]:
        return await self.call("GET", "/deployments")  # type: ignore[no-any-return]

    async def deployment(self, deployment_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/deployments/{deployment_id}")  # type: ignore[no-any-return]

    async def close_deployment(self, deployment_id: str) -> dict[str, Any]:
        """End a deployment (the daemon waits up to 30 s for its replicas to stop); its final view."""
        return await self.call("DELETE", f"/deployments/{deployment_id}", timeout=60)  # type: ignore[no-any-return]

    async def deployment_logs(self, deployment_id: str, *, after: int = 0, timeout: float = 0.0,
                              tail: int | None = None) -> dict[str, Any]:
        """``{"lines": [{seq, at, source, stream, text}], "last_seq", "closed"}``; ``timeout`` long-polls."""
        params: dict[str, Any] = {"after": after, "timeout": timeout}
        if tail is not None:
            params["tail"] = tail
        return await self.call("GET", f"/deployments/{deployment_id}/logs",  # type: ignore[no-any-return]
                               params=params, timeout=timeout + 15)
