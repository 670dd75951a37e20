"""Running one command (an exe-script's ``run``) in a running container: output, timeout, OOM.

``exec_create`` + ``exec_start(socket=True)``; a worker thread reads Docker's
multiplexed frames and hands each chunk to the trio side through a bounded
memory channel (back-pressure reaches the command's pipe). ``on_output`` gets
every chunk in order; the result keeps the **tail** of each stream, at most
``max_output_bytes`` (the end of a failing command's output says why), and sets
``stdout_truncated``/``stderr_truncated`` when bytes were dropped.

A timeout, a cancellation of the caller or a failing ``on_output`` kills the
command (:mod:`exeunit.docker.kill`); the cleanup is shielded from the caller's
cancellation and bounded in time. The idle init and ``/work`` survive.

OOM: the memory cgroup's ``oom_kill`` counter (v1 ``memory.oom_control``, v2
``memory.events``) read before and after the command; an increase means the
kernel killed a process of the container during the command (exit code 137
alone proves nothing). Without the counter (kernels < 4.13) ``memory.failcnt``
rising together with exit 137 is taken as the sign.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import trio
from docker.utils.socket import frames_iter_no_tty

from exeunit.docker.cgroups import CgroupView
from exeunit.docker.engine import USER, Engine
from exeunit.docker.kill import Killer
from exeunit.errors import RuntimeFailure
from exeunit.runtime import ExecResult, OutputSink

_STREAMS = {1: "stdout", 2: "stderr"}
KILL_GRACE_S = 5.0
"""How long the shielded cleanup waits for the output stream to end after the kill."""


class Tail:
    """The last ``cap`` bytes of a stream, and whether anything was dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = max(0, cap)
        self.buf = bytearray()
        self.truncated = False

    def add(self, data: bytes) -> None:
        self.buf += data
        excess = len(self.buf) - self.cap
        if excess > 0:
            del self.buf[:excess]
            self.truncated = True


def oom_killed(before: tuple[int | None, int | None], after: tuple[int | None, int | None], exit_code: int | None) -> bool:
    """Whether the kernel OOM-killed in the container between two ``(oom kills, failcnt)`` readings."""
    (k0, f0), (k1, f1) = before, after
    if k0 is not None and k1 is not None:
        return k1 > k0
    if f0 is not None and f1 is not None:
        return f1 > f0 and exit_code == 137
    return False


class Execs:
    def __init__(self, engine: Engine, cgroups: CgroupView, killer: Killer) -> None:
        self._engine = engine
        self._cgroups = cgroups
        self._killer = killer
        self.running: dict[str, set[str]] = {}
        """container id -> exec ids in flight (spared when killing another exec)."""

    def forget(self, container_id: str) -> None:
        self.running.pop(container_id, None)

    async def run(
        self,
        container_id: str,
        argv: list[str],
        *,
        env: dict[str, str],
        workdir: str,
        timeout_s: float,
        on_output: OutputSink | None = None,
        max_output_bytes: int = 1024 * 1024,
    ) -> ExecResult:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise RuntimeFailure("exec needs a non-empty argv of strings", code="bad-argv")
        oom_before = await self._engine.blocking("container", self._cgroups.oom_state, container_id)
        created = await self._engine.call(
            "container",
            "exec_create",
            container_id,
            list(argv),
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
            privileged=False,
            user=USER,
            environment=dict(env),
            workdir=workdir,
        )
        exec_id: str = created["Id"]
        self.running.setdefault(container_id, set()).add(exec_id)
        try:
            return await self._started(container_id, exec_id, timeout_s, on_output, max_output_bytes, oom_before)
        finally:
            self.running.get(container_id, set()).discard(exec_id)

    async def _started(
        self,
        container_id: str,
        exec_id: str,
        timeout_s: float,
        on_output: OutputSink | None,
        max_output_bytes: int,
        oom_before: tuple[int | None, int | None],
    ) -> ExecResult:
        started_at = time.time()
        with trio.CancelScope(shield=True):
            # Shielded: a cancel landing after the engine started the command but
            # before we hold its socket would leave it running unseen. The
            # cancellation is seen at the first checkpoint below, which kills it.
            sock = await self._engine.call("container", "exec_start", exec_id, socket=True)
        outs = {"stdout": Tail(max_output_bytes), "stderr": Tail(max_output_bytes)}
        send, recv = trio.open_memory_channel[tuple[str, bytes]](16)
        pump_done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def pump() -> None:
            # Worker thread: Docker's frames -> the channel. Ends at EOF, when the
            # trio side closes the channel, or when the socket is shut down.
            try:
                for stream, data in frames_iter_no_tty(sock):
                    kind = _STREAMS.get(stream)
                    if kind is None or not data:
                        continue
                    trio.from_thread.run(send.send, (kind, data), trio_token=token)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError):
                pass  # the trio side stopped listening: it is killing the command
            except OSError:
                pass  # the socket was shut down by the cleanup
            finally:
                try:
                    sock.close()
                finally:
                    trio.from_thread.run_sync(send.close, trio_token=token)

        async def run_pump() -> None:
            try:
                await trio.to_thread.run_sync(pump, limiter=trio.CapacityLimiter(1))
            finally:
                pump_done.set()

        timed_out = False
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            # The pump has its own limiter: a long command must not hold one of the
            # shared slots every short docker call needs.
            nursery.start_soon(run_pump)
            finished = False
            try:
                with trio.move_on_after(timeout_s) as scope:
                    async for kind, data in recv:
                        outs[kind].add(data)
                        if on_output is not None:
                            await on_output(kind, data)
                timed_out = scope.cancelled_caught
                finished = not timed_out
            except Exception as e:  # re-raised below, bare (not in the nursery's group)
                failure = e
            finally:
                if not finished:
                    with trio.CancelScope(shield=True):
                        await self._stop(container_id, exec_id, sock, recv, pump_done,
                                         outs if timed_out else None, on_output if timed_out else None)
        if failure is not None:
            raise failure
        finished_at = time.time()
        exit_code = None if timed_out else await self._exit_code(exec_id)
        oom_after = await self._engine.blocking("container", self._cgroups.oom_state, container_id)
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(outs["stdout"].buf),
            stderr=bytes(outs["stderr"].buf),
            started_at=started_at,
            finished_at=finished_at,
            timed_out=timed_out,
            oom_killed=oom_killed(oom_before, oom_after, exit_code),
            stdout_truncated=outs["stdout"].truncated,
            stderr_truncated=outs["stderr"].truncated,
        )

    async def _stop(
        self,
        container_id: str,
        exec_id: str,
        sock: Any,
        recv: trio.MemoryReceiveChannel[tuple[str, bytes]],
        pump_done: trio.Event,
        outs: dict[str, Tail] | None,
        on_output: OutputSink | None,
    ) -> None:
        """Kill a command that is still running, then end its output pump (bounded)."""
        try:
            await self._killer.kill(container_id, exec_id, spare=self.running.get(container_id, set()) - {exec_id})
            if outs is not None:
                # A timeout: deliver what the command wrote before it died (bounded).
                with trio.move_on_after(KILL_GRACE_S):
                    async for kind, data in recv:
                        outs[kind].add(data)
                        if on_output is not None:
                            await on_output(kind, data)
        finally:
            await recv.aclose()  # a pump blocked on the channel stops
            with trio.move_on_after(KILL_GRACE_S):
                await pump_done.wait()
            if not pump_done.is_set():
                _shutdown_socket(sock)  # a pump blocked on the socket stops

    async def _exit_code(self, exec_id: str) -> int | None:
        # The stream ends when the process's pipes close; the exit status lands
        # in the engine a moment later.
        for _ in range(100):
            info = await self._engine.call("container", "exec_inspect", exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else None
            await trio.sleep(0.02)
        return None


def _shutdown_socket(sock: Any) -> None:
    raw = getattr(sock, "_sock", sock)
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
