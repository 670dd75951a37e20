"""The Docker runtime, with docker-py imported on the first container operation.

``import docker`` (docker-py with requests and urllib3) costs ~80-120 ms and
~6 MiB of a daemon's start-up, and a node that never runs a container (a
requestor) never needs it. :class:`LazyDockerRuntime` is what the node hands
its activity service: every method of :class:`exeunit.runtime.Runtime` is
forwarded to a :class:`exeunit.docker_runtime.DockerRuntime` created on the
first call. The first *async* call imports docker-py on a worker thread, so
the event loop keeps serving meanwhile; any other attribute loads it in place.
Nothing else changes: the runtime is the same object, built with the same
arguments, and a node without an engine still starts and says so on first use.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import trio

from exeunit.runtime import Runtime

MODULE = "exeunit.docker_runtime"
"""The module that imports docker-py (``DockerRuntime``)."""

ASYNC_METHODS = frozenset(name for name, f in vars(Runtime).items() if inspect.iscoroutinefunction(f))
"""The coroutine methods of the Runtime protocol: their first call imports docker-py on a thread."""


class LazyDockerRuntime:
    """A :class:`~exeunit.runtime.Runtime`: ``DockerRuntime(**kwargs)``, created on first use."""

    def __init__(self, *, extra_labels: Mapping[str, str] | None = None) -> None:
        self._kwargs: dict[str, Any] = {"extra_labels": extra_labels}
        self._runtime: Any = None

    @property
    def loaded(self) -> bool:
        """True once the real runtime (and docker-py) exists."""
        return self._runtime is not None

    def _create(self) -> Any:
        if self._runtime is None:  # no await between the check and the assignment
            self._runtime = importlib.import_module(MODULE).DockerRuntime(**self._kwargs)
        return self._runtime

    async def real(self) -> Any:
        """The DockerRuntime; docker-py is imported on a worker thread the first time."""
        if self._runtime is None:
            await trio.to_thread.run_sync(importlib.import_module, MODULE)
        return self._create()

    async def _forward(self, name: str, *args: Any, **kwargs: Any) -> Any:
        runtime = await self.real()
        return await getattr(runtime, name)(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._runtime is None and name in ASYNC_METHODS:
            forward: Callable[..., Any] = functools.partial(self._forward, name)
            return forward
        return getattr(self._create(), name)

    def __repr__(self) -> str:
        return f"<LazyDockerRuntime {'loaded' if self.loaded else 'not loaded'}>"
