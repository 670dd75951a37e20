"""A service kept alive in its container: the provider's side of ``serve``.

A ``serve`` command runs for the activity's whole life (:class:`ServiceRunner`):

- the service process (the command given, or the image's entrypoint + command) is one exec in
  the container; when it exits it is started again after a back-off of 1 s doubling to
  :data:`MAX_BACKOFF_S` (back to 1 s after :data:`STABLE_S` of running), and every restart is
  counted and said on the command's stderr (``[yagna] ...`` lines);
- with exposed ports, the static forwarder (``exeunit/forwarder``) runs beside it as a second
  exec, making one Unix socket per port in the tunnel directory, restarted if it dies;
- with a health check, the port is tried every :data:`HEALTH_INTERVAL_S` (TCP: a connect from
  inside the container by the forwarder's ``--probe``; HTTP: a ``GET`` through the tunnel, any
  status below 400 is healthy);
- the output of all of them is this command's output, streamed to the requestor like any ``run``.

What a service costs its provider beyond its container: two worker threads (one per exec's output
pump), one probe exec per health interval, and the output the requestor has not read yet (bounded
by the batch's own limits).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from exeunit.errors import ExeUnitError
from exeunit.runtime import FORWARDER_PATH, TUNNEL_DIR, Runtime
from yagna.activity_service.tunnel import TUNNEL_PER_PEER, SocketDir

log = logging.getLogger("yagna.activity.services")

MAX_BACKOFF_S = 30.0
STABLE_S = 60.0
"""A service that ran this long is restarted after the shortest back-off again."""
HEALTH_INTERVAL_S = 5.0
QUOTA_INTERVAL_S = 15.0
"""How often the persistent volumes' use is measured (a walk of their files on a worker thread)."""
HEALTH_TIMEOUT_S = 3.0
FORWARDER_READY_S = 10.0

Emit = Callable[[str, bytes], Awaitable[None]]


@dataclass
class ServiceState:
    """What the provider reports about a service (``state`` answers carry it)."""

    ports: tuple[int, ...]
    health: dict[str, Any] | None = None
    running: bool = False
    restarts: int = 0
    last_exit: int | None = None
    healthy: bool | None = None
    """None until a check ran (or when none was asked for)."""
    started_at: float | None = None
    tunnel_ready: bool = False
    forwarder_restarts: int = 0
    ready: trio.Event = field(default_factory=trio.Event)
    """Set when the process runs and, with ports, the tunnel's sockets listen."""
    stopped: str | None = None
    """Why the provider stopped the service for good (a volume over its size)."""

    def report(self) -> dict[str, Any]:
        return {"running": self.running, "restarts": self.restarts, "last_exit": self.last_exit,
                "healthy": self.healthy, "ports": list(self.ports), "tunnel_ready": self.tunnel_ready,
                "started_at": self.started_at}


class ServiceRunner:
    def __init__(self, runtime: Runtime, container_id: str, state: ServiceState, *, emit: Emit,
                 socket_dir: SocketDir | None, volumes: list[tuple[str, Path, int]] | None = None) -> None:
        self._runtime = runtime
        self._container = container_id
        self.state = state
        self._emit = emit
        self._socket_dir = socket_dir
        self._volumes = list(volumes or [])

    async def say(self, text: str) -> None:
        await self._emit("stderr", f"[yagna] {text}\n".encode())

    async def run(self, argv: list[str], env: dict[str, str], workdir: str) -> None:
        """Until cancelled (the activity ends) or the container is gone."""
        async with trio.open_nursery() as nursery:
            if self.state.ports:
                nursery.start_soon(self._forwarder)
            if self.state.health:
                nursery.start_soon(self._health)
            if self._volumes:
                nursery.start_soon(self._quota, nursery.cancel_scope)
            await self._service(argv, env, workdir)
            nursery.cancel_scope.cancel()

    async def _quota(self, scope: trio.CancelScope) -> None:
        """A persistent volume lives on the provider's disk, which has no size cap of its own: measured,
        and a service that fills one past its size is stopped for good (the rest of the activity stays)."""
        while True:
            await trio.sleep(QUOTA_INTERVAL_S)
            for name, path, size in self._volumes:
                used = await trio.to_thread.run_sync(disk_usage, path)
                if used > size:
                    self.state.stopped = (f"volume {name} holds {used} bytes, over its size of {size}: "
                                          "the service is stopped")
                    await self.say(self.state.stopped)
                    log.warning("service in %s: %s", self._container[:12], self.state.stopped)
                    scope.cancel()
                    return

    def _mark_ready(self) -> None:
        if self.state.running and (self.state.tunnel_ready or not self.state.ports):
            self.state.ready.set()

    async def _service(self, argv: list[str], env: dict[str, str], workdir: str) -> None:
        backoff = 1.0
        while True:
            t0 = trio.current_time()
            self.state.running, self.state.started_at = True, time.time()
            self._mark_ready()
            exit_code: int | None
            try:
                res = await self._runtime.exec(self._container, argv, env=env, workdir=workdir, timeout_s=math.inf,
                                               on_output=self._emit, max_output_bytes=64 * 1024)
                exit_code, why = res.exit_code, " (killed: out of memory)" if res.oom_killed else ""
            except ExeUnitError as exc:
                if getattr(exc, "code", None) == "container-gone":
                    self.state.running = False
                    await self.say(f"the container is gone: {exc}")
                    return
                exit_code, why = None, f" ({exc})"
            finally:
                self.state.running = False
            ran = trio.current_time() - t0
            if ran >= STABLE_S:
                backoff = 1.0
            self.state.restarts += 1
            self.state.last_exit = exit_code
            await self.say(f"service exited with code {exit_code} after {ran:.1f} s{why}; "
                           f"restart {self.state.restarts} in {backoff:g} s")
            log.info("service in %s exited (%s) after %.1f s; restart %d in %g s", self._container[:12], exit_code,
                     ran, self.state.restarts, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _forwarder(self) -> None:
        argv = [FORWARDER_PATH, TUNNEL_DIR, *(str(p) for p in self.state.ports)]
        while True:
            async def on_output(kind: str, data: bytes) -> None:
                if kind == "stdout" and b"ready" in data:
                    self.state.tunnel_ready = True
                    self._mark_ready()
                elif kind == "stderr":
                    await self._emit("stderr", b"[yagna-forward] " + data)

            try:
                # As many connections as one requestor may hold open through us (each ~128 KiB of the
                # container's memory at most).
                res = await self._runtime.exec(self._container, argv, env={"YAGNA_FORWARD_MAX_CONN": str(TUNNEL_PER_PEER)},
                                               workdir="/", timeout_s=math.inf, on_output=on_output,
                                               max_output_bytes=16 * 1024)
                why = f"exit code {res.exit_code}"
            except ExeUnitError as exc:
                if getattr(exc, "code", None) == "container-gone":
                    return
                why = str(exc)
            self.state.tunnel_ready = False
            self.state.forwarder_restarts += 1
            await self.say(f"the port forwarder stopped ({why}); restarting it")
            await trio.sleep(min(2.0 ** min(self.state.forwarder_restarts, 5), MAX_BACKOFF_S))

    async def _health(self) -> None:
        health = self.state.health or {}
        await trio.sleep(1.0)
        while True:
            ok, why = await self.check(health)
            if ok != self.state.healthy:
                if self.state.healthy is not None or not ok:
                    await self.say(f"health check {'passed' if ok else 'failed'}{': ' + why if why else ''}")
                self.state.healthy = ok
            await trio.sleep(HEALTH_INTERVAL_S)

    async def check(self, health: dict[str, Any]) -> tuple[bool, str]:
        """One health check: ``(healthy, why not)``."""
        if not self.state.running:
            return False, "the service is not running"
        if "http" in health:
            return await self._check_http(int(health["http"]), str(health.get("path", "/")))
        port = int(health["tcp"])
        try:
            res = await self._runtime.exec(self._container, [FORWARDER_PATH, "--probe", str(port), "2000"], env={},
                                           workdir="/", timeout_s=HEALTH_TIMEOUT_S + 2)
        except ExeUnitError as exc:
            return False, f"probe failed: {exc}"
        return (res.exit_code == 0), ("" if res.exit_code == 0 else f"nothing accepts on port {port}")

    async def _check_http(self, port: int, path: str) -> tuple[bool, str]:
        if self._socket_dir is None:
            return False, "no tunnel"
        try:
            with trio.fail_after(HEALTH_TIMEOUT_S):
                sock = await trio.open_unix_socket(str(self._socket_dir.socket(port)))
                async with sock:
                    await sock.send_all(f"GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                    head = b""
                    while b"\r\n" not in head and len(head) < 1024:
                        data = await sock.receive_some(1024)
                        if not data:
                            break
                        head += data
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            return False, f"GET {path} on port {port}: {exc or 'timed out'}"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            status = int(parts[1])
            return status < 400, ("" if status < 400 else f"GET {path} on port {port}: HTTP {status}")
        return False, f"GET {path} on port {port}: no HTTP answer"


def disk_usage(path: Path) -> int:
    """Bytes of disk the files under ``path`` take (allocated blocks, links not followed)."""
    import os

    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total
