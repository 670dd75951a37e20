"""The boundary to the Docker engine: docker-py on worker threads, its errors mapped to ours.

Every docker-py call is blocking, so each one runs through
``trio.to_thread.run_sync(..., limiter=engine.limiter)``. Docker's exceptions
are mapped once, here (:meth:`Engine.guard`):

- ``docker.errors.ImageNotFound`` (and a bad image reference) -> :class:`ImageError`;
- ``docker.errors.NotFound`` on a container -> ``RuntimeFailure(code="container-gone")``
  (``<what>-gone`` in general: ``volume-gone``, ...);
- ``APIError`` 409 (container stopped or paused, volume in use) -> ``RuntimeFailure(code="container-state")``;
- any other ``APIError`` -> ``RuntimeFailure(code="engine-error")``;
- the engine unreachable (``DockerException`` from the client factory, a
  requests/socket error) -> ``RuntimeFailure(code="engine-unavailable")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import trio

from exeunit.errors import ImageError, RuntimeFailure

T = TypeVar("T")

USER = "1000:1000"
"""Every process of the work runs as this numeric uid:gid."""
UID = GID = 1000
WORK_DIR = "/work"


class Engine:
    """One lazily made docker client, a limiter for the worker threads, and the error mapping."""

    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient] = docker.from_env,
        *,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._client: docker.DockerClient | None = None
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(8)

    def api(self) -> docker.APIClient:
        """The low-level client (blocking; made on first use)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client.api

    def guard(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (on a worker thread) mapping docker's errors to ours."""
        try:
            return fn(*args, **kwargs)
        except docker.errors.ImageNotFound as e:
            raise ImageError(f"image not found: {e.explanation or e}") from e
        except docker.errors.NotFound as e:
            if what == "image":
                raise ImageError(f"image not found: {e.explanation or e}") from e
            raise RuntimeFailure(f"{what} gone: {e.explanation or e}", code=f"{what}-gone") from e
        except docker.errors.APIError as e:
            if what == "image" and e.status_code == 400:
                raise ImageError(f"bad image reference: {e.explanation or e}") from e
            if e.status_code == 409:
                raise RuntimeFailure(f"{what}: {e.explanation or e}", code="container-state") from e
            raise RuntimeFailure(f"docker engine error: {e.explanation or e}", code="engine-error") from e
        except (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError) as e:
            raise RuntimeFailure(f"docker engine unreachable: {e}", code="engine-unavailable") from e

    async def call(self, what: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        """``api.<fn_name>(*args, **kwargs)`` on a worker thread, errors mapped."""

        def run() -> Any:
            api = self.guard("engine", self.api)
            return self.guard(what, getattr(api, fn_name), *args, **kwargs)

        return await trio.to_thread.run_sync(run, limiter=self.limiter)

    async def blocking(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run our own blocking helper (it may call :meth:`api`) on a worker thread, errors mapped."""
        return await trio.to_thread.run_sync(functools.partial(self.guard, what, fn, *args), limiter=self.limiter)
