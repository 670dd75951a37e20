"""The Docker implementation of :class:`exeunit.runtime.Runtime` (docker-py on worker threads).

Every docker-py call is blocking, so each one runs through
``trio.to_thread.run_sync(..., limiter=self.limiter)``. Docker's exceptions are
mapped once, here, at the boundary (:meth:`DockerRuntime._call`):

- ``docker.errors.ImageNotFound`` (and a bad image reference) -> :class:`ImageError`;
- ``docker.errors.NotFound`` on a container -> ``RuntimeFailure(code="container-gone")``;
- ``APIError`` 409 (container stopped or paused) -> ``RuntimeFailure(code="container-state")``;
- any other ``APIError`` -> ``RuntimeFailure(code="engine-error")``;
- the engine unreachable (``DockerException`` from the client factory, a
  requests/socket error) -> ``RuntimeFailure(code="engine-unavailable")``.

The container (hardening the spec cannot change)
------------------------------------------------
``network_mode="none"``, every capability dropped, ``no-new-privileges``,
user ``1000:1000`` (numeric: it need not exist in the image), a read-only root
filesystem, ``/tmp`` a tmpfs of ``limits.tmp_bytes`` (mode 1777), ``/dev/shm``
private and ``tmp_bytes`` large, ``nano_cpus`` from ``cpu_threads``, memory and
memory+swap limits equal (no swap), ``pids_limit``, the spec's labels, logs
off, ``oom_score_adj`` 500 (under host memory pressure the work dies before the
daemon). The entrypoint is an idle, zombie-reaping shell loop (:data:`IDLE_COMMAND`;
``init=False``): every ``run`` command is an exec into it. ``stop_signal`` is
SIGKILL, so a stop is immediate.

``/work``: a per-container named volume of the ``local`` driver backed by tmpfs
(``size=limits.storage_bytes,uid=1000,gid=1000,mode=0755``), labelled like the
container, removed by :meth:`remove`. Why not a plain ``--tmpfs /work``: the
archive API (``put_archive``/``get_archive``, i.e. ``docker cp``) does not see
tmpfs mounts — it writes to the layer underneath, which the read-only root
refuses anyway — whereas it mounts volumes. The tmpfs backing gives a hard size
cap; its price is that files in ``/work`` (like those in ``/tmp``) are RAM and
are charged to the container's memory cgroup: they count against
``memory_bytes``. The volume outlives the container's processes (a timed-out
command is killed without touching ``/work``) but not a stop of the container.
:meth:`start` creates the empty ``/work/in`` and ``/work/out`` (1000:1000). What
the image itself holds under ``/work`` is hidden: Docker's copy-up of image
content into a fresh volume does not survive a tmpfs backing (it is copied at
create time into a tmpfs that is unmounted again), so images keep their files
elsewhere.

Commands (``exec``)
-------------------
``exec_create`` + ``exec_start(socket=True)``; a worker thread reads Docker's
multiplexed frames and hands each chunk to the trio side through a bounded
memory channel (back-pressure reaches the command's pipe). ``on_output`` gets
every chunk in order; the result keeps the **tail** of each stream, at most
``max_output_bytes`` (the end of a failing command's output says why), and sets
``stdout_truncated``/``stderr_truncated`` when bytes were dropped.

Killing (timeout, cancellation of the caller, a failing ``on_output``): Docker
cannot kill an exec. The runtime freezes the container (``docker pause``: the
freezer cgroup, so nothing forks meanwhile), SIGKILLs the exec's process (its
host pid from ``exec_inspect``), every descendant, and every orphan the init
adopted (from the container cgroup's ``cgroup.procs`` and ``/proc/<pid>/stat``),
then thaws. Other running execs' trees are spared. (A command that exits by
itself leaves what it started in the background running, like a shell would;
only a kill sweeps orphans.) The idle init and ``/work``
survive. This needs the daemon to see the engine's pids and be allowed to
signal them (root, or CAP_KILL); otherwise it falls back to
``kill -KILL -1`` run in the container as uid 1000 (kills every process of the
work, not only this command's; needs a ``kill`` in the image), and as a last
resort kills the container. The cleanup is shielded from the caller's
cancellation and bounded in time.

OOM: the memory cgroup's ``oom_kill`` counter (v1 ``memory.oom_control``, v2
``memory.events``) read before and after the command; an increase means the
kernel killed a process of the container during the command (exit code 137
alone proves nothing). Without the counter (kernels < 4.13) ``memory.failcnt``
rising together with exit 137 is taken as the sign.

Files: ``put_file`` streams a one-file tar (parent directories included, all
owned 1000:1000 so commands can change them) through the archive API into
``/work``; docker cp's semantics apply: whatever is at the path or on its way
(a file, a symlink, a directory tree) is *replaced*, never followed, so a
symlink planted by a command cannot redirect a transfer out of ``/work``. A
full ``/work`` -> ``TransferRefused("too-large")``. Files written this way are
charged to the engine's memory cgroup, not the container's. ``get_file``
refuses anything but a regular file (``bad-path``; symlinks included), a file
over ``max_bytes`` before a byte is copied (``too-large``, and again while
copying should it grow), a missing one (``not-found``); it writes a temporary
file renamed into place. Paths must normalize to below ``/work``.

Usage: duration from the container's ``StartedAt``; cpu seconds and peak memory
from its cgroup, found through its init's ``/proc/<pid>/cgroup`` and our
mountinfo (:mod:`exeunit.cgroup`, cgroup v1 and v2); ``docker stats`` (one shot)
when the cgroup files are out of reach.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import posixpath
import signal
import socket
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import trio
from docker.types import Mount
from docker.utils.socket import frames_iter_no_tty

from exeunit import cgroup
from exeunit.errors import ImageError, RuntimeFailure, TransferRefused
from exeunit.image_archive import check_image_id, verify_image_archive
from exeunit.runtime import (
    LABEL_NODE,
    ContainerSpec,
    ExecResult,
    OutputSink,
    Usage,
)

log = logging.getLogger("yagna.exeunit.docker")

T = TypeVar("T")

USER = "1000:1000"
"""Every process of the work runs as this numeric uid:gid."""
UID = GID = 1000
WORK_DIR = "/work"
WORK_SUBDIRS = ("in", "out")
"""Made empty in ``/work`` at start (owned by the work's user): where inputs and results go by convention."""
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
"""PID 1 of every container: idles, reaps the orphans of commands, exits on TERM."""
LABEL_WORK_VOLUME = "network.yagna.work-volume"
"""Container label naming its ``/work`` volume."""

_STREAMS = {1: "stdout", 2: "stderr"}
_KILL_GRACE_S = 5.0
"""How long the shielded cleanup waits for the output stream to end after the kill."""
_GO_MODE_TYPE = 0x8F280000
"""Go's os.FileMode type bits (dir, symlink, device, pipe, socket, char device, irregular)."""


def _parse_docker_time(s: str) -> float | None:
    """Docker's RFC 3339 with nanoseconds -> epoch seconds; the zero time -> None."""
    if not s or s.startswith("0001-01-01"):
        return None
    s = s.rstrip("Z")
    offset = "+00:00"
    for sign in ("+", "-"):
        idx = s.rfind(sign)
        if idx > 10:
            s, offset = s[:idx], s[idx:]
            break
    if "." in s:
        head, frac = s.split(".", 1)
        s = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(s + offset).timestamp()


class _Tail:
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


class DockerRuntime:
    """:class:`exeunit.runtime.Runtime` on a Docker engine (see the module docstring)."""

    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient] = docker.from_env,
        *,
        limiter: trio.CapacityLimiter | None = None,
        extra_labels: Mapping[str, str] | None = None,
    ) -> None:
        """``extra_labels`` go on every container and volume besides the spec's (e.g. a test session's tag)."""
        self._client_factory = client_factory
        self._extra_labels = dict(extra_labels or {})
        self._client: docker.DockerClient | None = None
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(8)
        self._cgroup_dirs: dict[tuple[str, int], dict[str, str | None]] = {}
        self._running_execs: dict[str, set[str]] = {}
        """container id -> exec ids in flight (spared when killing another exec)."""

    # -- the boundary -------------------------------------------------------

    def _api(self) -> docker.APIClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client.api

    def _guard(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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

    async def _call(self, what: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            api = self._guard("engine", self._api)
            return self._guard(what, getattr(api, fn_name), *args, **kwargs)

        return await trio.to_thread.run_sync(run, limiter=self.limiter)

    async def _blocking(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run our own blocking helper (it may call the api) on a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(self._guard, what, fn, *args), limiter=self.limiter)

    # -- lifecycle ----------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        check_image_id(spec.image_id)
        lim = spec.limits
        if lim.cpu_threads <= 0 or lim.memory_bytes <= 0 or lim.storage_bytes <= 0 or lim.pids <= 0:
            raise RuntimeFailure(f"container limits must be positive: {lim}", code="bad-limits")
        volume = f"yagna-work-{uuid.uuid4().hex}"
        labels = {**self._extra_labels, **spec.labels}
        labels[LABEL_WORK_VOLUME] = volume
        try:
            await self._call(
                "volume",
                "create_volume",
                name=volume,
                driver="local",
                driver_opts={
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={lim.storage_bytes},uid={UID},gid={GID},mode=0755,nosuid,nodev",
                },
                labels={**self._extra_labels, **spec.labels},
            )
            return await self._blocking("container", self._create_container, spec, volume, labels)
        except BaseException:
            # Also when cancelled while the volume or the container was being made: nothing may
            # outlive a failed create (the container, if the engine made it, carries the volume's label).
            with trio.CancelScope(shield=True):
                await self._discard(volume)
            raise

    async def _discard(self, volume: str) -> None:
        try:
            made = await self._call("container", "containers", all=True, filters={"label": f"{LABEL_WORK_VOLUME}={volume}"})
            for c in made or []:
                await self._call("container", "remove_container", c["Id"], force=True, v=True)
            await self._remove_volume(volume)
        except RuntimeFailure as exc:  # the engine is gone or busy: the node's next start removes orphans
            log.warning("could not clean up after a failed create (%s): %s", volume, exc)

    def _create_container(self, spec: ContainerSpec, volume: str, labels: dict[str, str]) -> str:
        api = self._api()
        lim = spec.limits
        host_config = api.create_host_config(
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            read_only=True,
            mounts=[Mount(WORK_DIR, volume, type="volume")],
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={lim.tmp_bytes},mode=1777"},
            ipc_mode="private",
            shm_size=lim.tmp_bytes,
            nano_cpus=int(lim.cpu_threads * 1e9),
            mem_limit=lim.memory_bytes,
            memswap_limit=lim.memory_bytes,
            pids_limit=lim.pids,
            oom_score_adj=500,
            init=False,
            log_config={"type": "none", "config": {}},
            restart_policy={"Name": "no"},
        )
        created = api.create_container(
            image=spec.image_id,
            entrypoint=IDLE_COMMAND,
            command=[],
            user=USER,
            working_dir=WORK_DIR,
            environment=dict(spec.env),
            labels=labels,
            host_config=host_config,
            network_disabled=True,
            stop_signal="SIGKILL",
            name=spec.name,
        )
        return created["Id"]

    async def start(self, container_id: str) -> None:
        await self._call("container", "start", container_id)
        # The tmpfs of /work is fresh at each start: lay out its conventional
        # directories, writable by the work's user.
        await self._blocking("container", self._make_work_dirs, container_id)

    def _make_work_dirs(self, container_id: str) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in WORK_SUBDIRS:
                d = tarfile.TarInfo(name)
                d.type = tarfile.DIRTYPE
                d.mode = 0o755
                d.uid, d.gid = UID, GID
                d.mtime = int(time.time())
                tf.addfile(d)
        self._api().put_archive(container_id, WORK_DIR, buf.getvalue())

    async def pause(self, container_id: str) -> None:
        state = await self._state(container_id)
        if not state.get("Paused"):
            await self._call("container", "pause", container_id)

    async def unpause(self, container_id: str) -> None:
        state = await self._state(container_id)
        if state.get("Paused"):
            await self._call("container", "unpause", container_id)

    async def _state(self, container_id: str) -> dict[str, Any]:
        info = await self._call("container", "inspect_container", container_id)
        return info["State"]

    async def remove(self, container_id: str) -> None:
        try:
            info = await self._call("container", "inspect_container", container_id)
        except RuntimeFailure as e:
            if e.code == "container-gone":
                return
            raise
        volumes = [m["Name"] for m in info.get("Mounts", []) if m.get("Type") == "volume" and m.get("Name")]
        labelled = (info.get("Config", {}).get("Labels") or {}).get(LABEL_WORK_VOLUME)
        try:
            await self._call("container", "remove_container", container_id, force=True, v=True)
        except RuntimeFailure as e:
            if e.code != "container-gone":
                raise
        self._forget(container_id)
        for name in volumes:
            if name == labelled:  # only the volume we made; never a volume we did not create
                await self._remove_volume(name)

    async def _remove_volume(self, name: str) -> None:
        try:
            await self._call("volume", "remove_volume", name, force=True)
        except RuntimeFailure as e:
            if e.code != "volume-gone":
                raise

    def _forget(self, container_id: str) -> None:
        for key in [k for k in list(self._cgroup_dirs) if k[0] == container_id]:
            self._cgroup_dirs.pop(key, None)  # shared by the worker threads: another may drop it first
        self._running_execs.pop(container_id, None)

    async def leftovers(self, node_id: str) -> list[tuple[str, dict[str, str]]]:
        found = await self._call("container", "containers", all=True, filters={"label": f"{LABEL_NODE}={node_id}"})
        return [(c["Id"], dict(c.get("Labels") or {})) for c in found]

    async def remove_orphan_volumes(self, node_id: str) -> list[str]:
        """Remove work volumes labelled with ``node_id`` that no container uses
        (left by a crash between creating a volume and its container). Returns their names."""
        found = await self._call("volume", "volumes", filters={"label": f"{LABEL_NODE}={node_id}"})
        removed = []
        for v in (found or {}).get("Volumes") or []:
            name = v["Name"]
            if not name.startswith("yagna-work-"):
                continue
            try:
                await self._call("volume", "remove_volume", name)
            except RuntimeFailure as e:
                if e.code == "container-state":  # in use
                    continue
                if e.code != "volume-gone":
                    raise
            removed.append(name)
        return removed

    # -- cgroup access ------------------------------------------------------

    def _cgroup_dirs_of(self, container_id: str) -> tuple[int, dict[str, str | None]]:
        """(init host pid, {controller: dir or None}) of a running container. Blocking.

        Cached per container while its init lives (checked by the init's
        ``/proc/<pid>/cgroup`` still naming the container: no API call).
        """
        for (cid, pid), dirs in list(self._cgroup_dirs.items()):
            if cid == container_id:
                text = self._read(f"/proc/{pid}", "cgroup")
                if text is not None and container_id in text:
                    return pid, dirs
                self._cgroup_dirs.pop((cid, pid), None)  # another worker thread may have dropped it already
        info = self._api().inspect_container(container_id)
        pid = int(info["State"].get("Pid") or 0)
        if pid <= 0:
            raise RuntimeFailure(f"container {container_id[:12]} is not running", code="container-state")
        key = (container_id, pid)
        dirs = self._cgroup_dirs.get(key)
        if dirs is None:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    proc = cgroup.parse_proc_cgroup(f.read())
                with open("/proc/self/mountinfo") as f:
                    mounts = cgroup.parse_mountinfo(f.read())
            except OSError:
                proc, mounts = {}, []
            dirs = {c: cgroup.cgroup_dir(c, proc, mounts) for c in ("memory", "cpuacct", "cpu", "pids", "freezer")}
            for c, d in list(dirs.items()):
                if d is not None and not os.path.isdir(d):
                    dirs[c] = None
            self._cgroup_dirs[key] = dirs
        return pid, dirs

    @staticmethod
    def _read(d: str | None, name: str) -> str | None:
        if d is None:
            return None
        try:
            with open(os.path.join(d, name)) as f:
                return f.read()
        except OSError:
            return None

    def _oom_state(self, container_id: str) -> tuple[int | None, int | None]:
        """(oom kills, memory failcnt) of the container's memory cgroup. Blocking."""
        try:
            _, dirs = self._cgroup_dirs_of(container_id)
        except RuntimeFailure:
            return None, None
        d = dirs.get("memory")
        text = self._read(d, "memory.oom_control") or self._read(d, "memory.events")
        kills = cgroup.oom_kills(text) if text else None
        fail = self._read(d, "memory.failcnt")
        return kills, (cgroup.parse_int(fail) if fail else None)

    # -- exec ---------------------------------------------------------------

    async def exec(
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
        oom_before = await self._blocking("container", self._oom_state, container_id)
        created = await self._call(
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
        self._running_execs.setdefault(container_id, set()).add(exec_id)
        try:
            return await self._exec_started(
                container_id, exec_id, timeout_s, on_output, max_output_bytes, oom_before
            )
        finally:
            self._running_execs.get(container_id, set()).discard(exec_id)

    async def _exec_started(
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
            sock = await self._call("container", "exec_start", exec_id, socket=True)
        outs = {"stdout": _Tail(max_output_bytes), "stderr": _Tail(max_output_bytes)}
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
                        await self._stop_exec(container_id, exec_id, sock, recv, pump_done,
                                              outs if timed_out else None, on_output if timed_out else None)
        if failure is not None:
            raise failure
        finished_at = time.time()
        if timed_out:
            exit_code = None
        else:
            exit_code = await self._exit_code(exec_id)
        oom_after = await self._blocking("container", self._oom_state, container_id)
        oom_killed = self._oom_killed(oom_before, oom_after, exit_code)
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(outs["stdout"].buf),
            stderr=bytes(outs["stderr"].buf),
            started_at=started_at,
            finished_at=finished_at,
            timed_out=timed_out,
            oom_killed=oom_killed,
            stdout_truncated=outs["stdout"].truncated,
            stderr_truncated=outs["stderr"].truncated,
        )

    async def _stop_exec(
        self,
        container_id: str,
        exec_id: str,
        sock: Any,
        recv: trio.MemoryReceiveChannel[tuple[str, bytes]],
        pump_done: trio.Event,
        outs: dict[str, _Tail] | None,
        on_output: OutputSink | None,
    ) -> None:
        """Kill a command that is still running, then end its output pump (bounded)."""
        try:
            await self._kill_exec(container_id, exec_id)
            if outs is not None:
                # A timeout: deliver what the command wrote before it died (bounded).
                with trio.move_on_after(_KILL_GRACE_S):
                    async for kind, data in recv:
                        outs[kind].add(data)
                        if on_output is not None:
                            await on_output(kind, data)
        finally:
            await recv.aclose()  # a pump blocked on the channel stops
            with trio.move_on_after(_KILL_GRACE_S):
                await pump_done.wait()
            if not pump_done.is_set():
                self._shutdown_socket(sock)  # a pump blocked on the socket stops

    @staticmethod
    def _oom_killed(before: tuple[int | None, int | None], after: tuple[int | None, int | None], exit_code: int | None) -> bool:
        (k0, f0), (k1, f1) = before, after
        if k0 is not None and k1 is not None:
            return k1 > k0
        if f0 is not None and f1 is not None:
            return f1 > f0 and exit_code == 137
        return False

    @staticmethod
    def _shutdown_socket(sock: Any) -> None:
        raw = getattr(sock, "_sock", sock)
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    async def _exit_code(self, exec_id: str) -> int | None:
        # The stream ends when the process's pipes close; the exit status lands
        # in the engine a moment later.
        for _ in range(100):
            info = await self._call("container", "exec_inspect", exec_id)
            if not info.get("Running"):
                return info.get("ExitCode")
            await trio.sleep(0.02)
        return None

    async def _kill_exec(self, container_id: str, exec_id: str) -> None:
        """Kill the exec's process tree and the orphans it left; the init and /work stay."""
        try:
            await self._blocking("container", self._kill_exec_blocking, container_id, exec_id)
            return
        except PermissionError:
            pass  # fall back below: we may not signal the engine's processes
        except RuntimeFailure as e:
            if e.code == "container-gone":
                return
            raise
        await self._kill_inside(container_id, exec_id)

    def _exec_pid(self, exec_id: str) -> int:
        info = self._api().exec_inspect(exec_id)
        return int(info.get("Pid") or 0) if info.get("Running") else 0

    def _kill_exec_blocking(self, container_id: str, exec_id: str) -> None:
        api = self._api()
        pid = self._exec_pid(exec_id)
        if pid <= 0:
            return  # already over
        init_pid, dirs = self._cgroup_dirs_of(container_id)
        procs_dir = dirs.get("pids") or dirs.get("freezer") or dirs.get("memory") or dirs.get("cpu")
        if procs_dir is None or not os.path.exists(f"/proc/{pid}"):
            raise PermissionError("the container's processes are out of reach")
        others = [
            self._exec_pid(e) for e in self._running_execs.get(container_id, set()) if e != exec_id
        ]
        was_paused = bool(api.inspect_container(container_id)["State"].get("Paused"))
        if not was_paused:
            api.pause(container_id)
        try:
            members = cgroup.parse_pids(self._read(procs_dir, "cgroup.procs") or "")
            ppid_of: dict[int, int] = {}
            for p in members:
                text = self._read(f"/proc/{p}", "stat")
                ppid = cgroup.parse_proc_stat_ppid(text) if text else None
                if ppid is not None:
                    ppid_of[p] = ppid
            spared: set[int] = {init_pid}
            for o in others:
                if o > 0:
                    spared |= {o} | cgroup.descendants(o, ppid_of)
            # The command, and the orphans of this (or an earlier) command the init
            # adopted, each with all its descendants.
            roots = ({pid} | {p for p, pp in ppid_of.items() if pp == init_pid}) - spared
            targets = set(roots)
            for r in roots:
                targets |= cgroup.descendants(r, ppid_of)
            targets -= spared
            for p in targets:
                try:
                    self._sigkill(p)
                except ProcessLookupError:
                    continue
        finally:
            if not was_paused:
                self._thaw(api, container_id)
        self._wait_dead(targets)

    @staticmethod
    def _wait_dead(pids: set[int], bound_s: float = 3.0) -> None:
        """Return once every killed pid is gone or a zombie (a SIGKILL lands when the cgroup thaws;
        under load the caller could otherwise still see the command listed). Bounded. Blocking."""
        deadline = time.monotonic() + bound_s
        alive = set(pids)
        while alive and time.monotonic() < deadline:
            for pid in list(alive):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                            alive.discard(pid)
                except OSError:
                    alive.discard(pid)
            if alive:
                time.sleep(0.01)

    @staticmethod
    def _thaw(api: Any, container_id: str) -> None:
        """Unpause and make sure it took: under load the next exec otherwise met a paused container (409)."""
        for _ in range(50):
            try:
                api.unpause(container_id)
            except docker.errors.APIError as e:
                if e.status_code != 409:  # 409: not paused (any more)
                    raise
            if not api.inspect_container(container_id)["State"].get("Paused"):
                return
            time.sleep(0.02)

    @staticmethod
    def _sigkill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    async def _kill_inside(self, container_id: str, exec_id: str) -> None:
        """Fallback kill from inside: ``kill -KILL -1`` as uid 1000 (PID 1 is immune)."""
        try:
            created = await self._call(
                "container", "exec_create", container_id, ["kill", "-KILL", "-1"], user=USER, privileged=False
            )
            await self._call("container", "exec_start", created["Id"])
            for _ in range(150):
                if not (await self._call("container", "exec_inspect", exec_id)).get("Running"):
                    return
                await trio.sleep(0.02)
        except RuntimeFailure as e:
            if e.code == "container-gone":
                return
        # Last resort: the container goes (its /work with it); later calls see it stopped.
        await self._call("container", "kill", container_id)

    # -- files --------------------------------------------------------------

    @staticmethod
    def _work_path(path: str) -> str:
        if not isinstance(path, str) or "\x00" in path or not path.startswith("/"):
            raise TransferRefused("bad-path", f"not an absolute container path: {path!r}")
        norm = posixpath.normpath(path)
        if not norm.startswith(WORK_DIR + "/") or ".." in norm.split("/"):
            raise TransferRefused("bad-path", f"outside {WORK_DIR}: {path!r}")
        return norm

    async def put_file(self, container_id: str, path: str, data_path: str, *, mode: int = 0o644) -> None:
        dest = self._work_path(path)
        await self._blocking("container", self._put_file_blocking, container_id, dest, data_path, mode)

    def _put_file_blocking(self, container_id: str, dest: str, data_path: str, mode: int) -> None:
        # One uncompressed tar streamed from a spooled file: the parent directories
        # (owned by the work's uid, like what a command would create) then the file.
        rel = dest[len(WORK_DIR) + 1 :]
        parts = rel.split("/")
        size = os.path.getsize(data_path)
        spool = _TarStream(data_path, parts, size, mode & 0o7777)
        try:
            self._api().put_archive(container_id, WORK_DIR, spool)
        except docker.errors.APIError as e:
            if "no space left" in str(e.explanation or e).lower():
                raise TransferRefused("too-large", f"{dest}: {WORK_DIR} is full ({size} bytes sent)") from e
            raise
        finally:
            spool.close()

    async def get_file(self, container_id: str, path: str, dest_path: str, *, max_bytes: int) -> int:
        src = self._work_path(path)
        return await self._blocking("container", self._get_file_blocking, container_id, src, dest_path, max_bytes)

    def _get_file_blocking(self, container_id: str, src: str, dest_path: str, max_bytes: int) -> int:
        api = self._api()
        try:
            stat = api.get_archive(container_id, src, chunk_size=1024 * 1024)
        except docker.errors.NotFound as e:
            # Both "no such container" and "no such file" are 404: tell them apart.
            try:
                api.inspect_container(container_id)
            except docker.errors.NotFound:
                raise e from None
            raise TransferRefused("not-found", f"no such file: {src}") from e
        stream, info = stat
        reader = _IterReader(stream)
        if (info.get("mode", 0) & _GO_MODE_TYPE) != 0 or info.get("linkTarget"):
            reader.close()
            raise TransferRefused("bad-path", f"not a regular file: {src}")
        if info.get("size", 0) > max_bytes:
            reader.close()
            raise TransferRefused("too-large", f"{src} is {info['size']} bytes, over the limit of {max_bytes}")
        written = 0
        tmp = f"{dest_path}.part-{uuid.uuid4().hex[:8]}"
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tf:
                member = tf.next()
                if member is None or not member.isfile():
                    raise TransferRefused("bad-path", f"not a regular file: {src}")
                if member.size > max_bytes:
                    raise TransferRefused("too-large", f"{src} is {member.size} bytes, over {max_bytes}")
                f = tf.extractfile(member)
                assert f is not None
                with open(tmp, "wb") as out:
                    while chunk := f.read(1024 * 1024):
                        written += len(chunk)
                        out.write(chunk)
            os.replace(tmp, dest_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            reader.close()
        return written

    # -- usage --------------------------------------------------------------

    async def usage(self, container_id: str) -> Usage:
        return await self._blocking("container", self._usage_blocking, container_id)

    def _usage_blocking(self, container_id: str) -> Usage:
        api = self._api()
        info = api.inspect_container(container_id)
        state = info["State"]
        started = _parse_docker_time(state.get("StartedAt", ""))
        if started is None:
            return Usage(duration_s=0.0, cpu_s=0.0, peak_memory_bytes=0)
        ended = None if state.get("Running") else _parse_docker_time(state.get("FinishedAt", ""))
        duration = max(0.0, (ended if ended is not None and ended >= started else time.time()) - started)
        cpu_s: float | None = None
        peak: int | None = None
        if state.get("Running"):
            try:
                _, dirs = self._cgroup_dirs_of(container_id)
            except RuntimeFailure:
                dirs = {}
            acct = self._read(dirs.get("cpuacct"), "cpuacct.usage")
            if acct is not None:
                cpu_s = cgroup.cpu_seconds_v1(acct)
            else:
                stat = self._read(dirs.get("cpu"), "cpu.stat")
                cpu_s = cgroup.cpu_seconds_v2(stat) if stat else None
            mem = dirs.get("memory")
            for name in ("memory.max_usage_in_bytes", "memory.peak", "memory.current"):
                text = self._read(mem, name)
                if text is not None and (value := cgroup.parse_int(text)) is not None:
                    peak = value
                    break
            if cpu_s is None or peak is None:
                stats = api.stats(container_id, stream=False, one_shot=True)
                if cpu_s is None:
                    cpu_s = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9
                if peak is None:
                    mem_stats = stats.get("memory_stats", {})
                    peak = int(mem_stats.get("max_usage") or mem_stats.get("usage") or 0)
        return Usage(duration_s=duration, cpu_s=cpu_s or 0.0, peak_memory_bytes=peak or 0)

    # -- images -------------------------------------------------------------

    async def has_image(self, image_id: str) -> bool:
        try:
            await self._call("image", "inspect_image", image_id)
        except ImageError:
            return False
        return True

    async def resolve_image(self, image_ref: str) -> str:
        if not image_ref or not isinstance(image_ref, str):
            raise ImageError(f"bad image reference: {image_ref!r}")
        info = await self._call("image", "inspect_image", image_ref)
        return info["Id"]

    async def save_image(self, image_ref: str, dest_path: str) -> str:
        image_id = await self.resolve_image(image_ref)
        # Saved by id: the archive carries no tags (load_image refuses tags).
        await self._blocking("image", self._save_blocking, image_id, dest_path)
        return image_id

    def _save_blocking(self, image_id: str, dest_path: str) -> None:
        tmp = f"{dest_path}.part-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as out:
                for chunk in self._api().get_image(image_id, chunk_size=1024 * 1024):
                    out.write(chunk)
            os.replace(tmp, dest_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    async def load_image(self, archive_path: str, expected_id: str) -> None:
        # Offline check first: nothing unverified reaches the engine.
        await trio.to_thread.run_sync(verify_image_archive, archive_path, expected_id, limiter=self.limiter)
        await self._blocking("image", self._load_blocking, archive_path)
        if not await self.has_image(expected_id):
            raise ImageError(f"docker load did not produce {expected_id}")

    def _load_blocking(self, archive_path: str) -> None:
        with open(archive_path, "rb") as f:
            for message in self._api().load_image(f):
                if isinstance(message, dict) and message.get("error"):
                    raise ImageError(f"docker load failed: {message['error']}")


class _TarStream(io.RawIOBase):
    """A tar of one file (plus its parent directories) produced while read: no copy in memory or on disk."""

    def __init__(self, data_path: str, parts: list[str], size: int, mode: int) -> None:
        self._pieces: list[bytes | str] = []
        for i in range(1, len(parts)):
            d = tarfile.TarInfo("/".join(parts[:i]))
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            d.uid, d.gid = UID, GID
            d.mtime = int(time.time())
            self._pieces.append(d.tobuf(format=tarfile.PAX_FORMAT))
        info = tarfile.TarInfo("/".join(parts))
        info.size = size
        info.mode = mode
        info.uid, info.gid = UID, GID
        info.mtime = int(time.time())
        self._pieces.append(info.tobuf(format=tarfile.PAX_FORMAT))
        self._pieces.append(data_path)
        pad = (-size) % tarfile.BLOCKSIZE
        self._pieces.append(b"\0" * pad + b"\0" * (2 * tarfile.BLOCKSIZE))
        self._size = size
        self._total = size + sum(len(p) for p in self._pieces if isinstance(p, bytes))
        self._file: io.BufferedReader | None = None
        self._left = 0
        self._buf = b""

    def __len__(self) -> int:
        return self._total  # requests sends a Content-Length instead of chunks

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b)
        while True:
            if self._buf:
                n = min(len(view), len(self._buf))
                view[:n] = self._buf[:n]
                self._buf = self._buf[n:]
                return n
            if self._file is not None:
                if self._left > 0:
                    data = self._file.read(min(len(view), self._left, 1024 * 1024))
                    if not data:
                        raise TransferRefused("bad-path", "the source file shrank while being sent")
                    self._left -= len(data)
                    view[: len(data)] = data
                    return len(data)
                self._file.close()
                self._file = None
                continue
            if not self._pieces:
                return 0
            piece = self._pieces.pop(0)
            if isinstance(piece, str):
                self._file = open(piece, "rb")
                self._left = self._size
            else:
                self._buf = piece

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class _IterReader(io.RawIOBase):
    """A file-like view of docker-py's chunk iterator (for tarfile's stream mode)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._raw = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()
        super().close()
