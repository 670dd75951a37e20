"""The container runtime interface the activity service drives.

The Docker implementation is :mod:`exeunit.docker_runtime` (docker-py on worker
threads). Failures of the work are results (:class:`ExecResult`), failures of the
runtime are :class:`~exeunit.errors.RuntimeFailure`.

One container per activity: :meth:`Runtime.create` makes it (hardened, limited,
labelled), :meth:`Runtime.start` starts an idle init in it, each ``run`` command
is one :meth:`Runtime.exec` in the running container, and :meth:`Runtime.remove`
kills and removes it. ``/work`` survives between commands of one activity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

LABEL_NODE = "network.yagna.node"
"""Container label: the provider node id that created the container."""
LABEL_ACTIVITY = "network.yagna.activity"
"""Container label: the activity id the container belongs to."""
LABEL_AGREEMENT = "network.yagna.agreement"


@dataclass(frozen=True)
class ContainerLimits:
    """Limits the agreement grants; the requestor cannot widen them."""

    cpu_threads: float
    memory_bytes: int
    storage_bytes: int
    """Size cap of the writable ``/work`` (and what transfers may put there)."""
    pids: int = 256
    tmp_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class ContainerSpec:
    image_id: str
    """``sha256:<hex>``; images are named by id so nothing else can run."""
    limits: ContainerLimits
    labels: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    work_dirs: tuple[str, ...] = ()
    """More directories to make under ``/work`` at each start (relative, e.g. ``vol/golem/output``:
    a Golem image's volumes, linked there)."""
    tunnel: TunnelMounts | None = None
    """A service's tunnel: its forwarder and socket directory mounted in, low ports allowed."""
    volumes: tuple[VolumeMount, ...] = ()
    """A service's storage volumes."""


@dataclass(frozen=True)
class VolumeMount:
    """One storage volume of a service: a directory of the provider's (persistent) or a tmpfs."""

    path: str
    size_bytes: int
    host_dir: str | None = None
    """Persistent: a directory on the provider's disk (mode 0777 inside a 0700 parent); None: a tmpfs of
    ``size_bytes`` (counted against the container's memory, like ``/work``)."""


TUNNEL_DIR = "/.yagna/tunnel"
"""Where a service container sees its tunnel's socket directory (one ``<port>.sock`` per exposed port)."""
FORWARDER_PATH = "/.yagna/forward"
"""Where a service container sees the static forwarder (``exeunit/forwarder``), read-only."""


@dataclass(frozen=True)
class TunnelMounts:
    """Host paths bind-mounted into a service container (the engine must be local)."""

    socket_dir: str
    """A directory of the provider's own (mode 0777 inside a 0700 parent): the forwarder makes its sockets there."""
    forwarder: str
    """The static ``yagna-forward`` binary."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    """None when the command was killed before it exited (timeout)."""
    stdout: bytes
    stderr: bytes
    started_at: float
    """Wall clock (time.time()) at start and end."""
    finished_at: float
    timed_out: bool = False
    oom_killed: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass(frozen=True)
class Usage:
    """Counters of one container from its cgroup (Golem's usage vector)."""

    duration_s: float
    cpu_s: float
    peak_memory_bytes: int

    def golem_vector(self) -> dict[str, float]:
        return {
            "golem.usage.duration_sec": self.duration_s,
            "golem.usage.cpu_sec": self.cpu_s,
            "golem.usage.gib": self.peak_memory_bytes / 2**30,
        }


@dataclass(frozen=True)
class PeerImage:
    """An image this node loaded from a peer (recorded as such; never one the operator put there)."""

    image_id: str
    size: int
    in_use: bool
    """Some container (of any node, running or not) was made from it."""


OutputSink = Callable[[str, bytes], Awaitable[None]]
"""Called with ("stdout"|"stderr", chunk) as output arrives, in order."""


class Upload(Protocol):
    def write(self, pieces: list[bytes]) -> None:
        """The next bytes, in order (blocking: call it on a worker thread)."""
        ...


@dataclass(frozen=True)
class ImageCommand:
    """What an image runs by default (its entrypoint, then its command), and where."""

    argv: list[str]
    workdir: str
    env: dict[str, str]
    entrypoint: list[str] = field(default_factory=list)
    """The entrypoint alone (what ``args`` follow)."""


class Runtime(Protocol):
    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; returns its id."""

    async def start(self, container_id: str) -> None: ...

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
        """Run one command; streams output to ``on_output``; kills it at the timeout.
        A cancelled caller leaves nothing running of this command."""

    async def put_file(self, container_id: str, path: str, data_path: str, *, mode: int = 0o644) -> None:
        """Copy a local file into the container at ``path`` (under /work)."""

    def upload(self, container_id: str, path: str, size: int, *, mode: int = 0o644) -> AbstractAsyncContextManager[Upload]:
        """Stream ``size`` bytes into ``path`` (under /work) while they arrive: ``async with`` it, call
        ``write(pieces)`` from worker threads; a normal exit commits the file, an exception aborts it
        (the container's file stays as it was)."""
        ...

    async def get_file(self, container_id: str, path: str, dest_path: str, *, max_bytes: int,
                       digest: Any = None) -> int:
        """Copy a regular file out of the container; returns its size. ``digest`` (a hashlib object),
        when given, is updated with the bytes as they are copied."""

    async def usage(self, container_id: str) -> Usage: ...

    async def pause(self, container_id: str) -> None: ...

    async def unpause(self, container_id: str) -> None: ...

    async def remove(self, container_id: str) -> None:
        """Kill and remove; idempotent (a missing container is fine)."""

    async def leftovers(self, node_id: str) -> list[tuple[str, dict[str, str]]]:
        """Containers labelled with this node id: [(container_id, labels)]."""

    async def remove_orphan_volumes(self, node_id: str) -> list[str]:
        """Remove work volumes of this node that no container uses (a crash between the two creations)."""

    async def has_image(self, image_id: str) -> bool: ...

    async def save_image(self, image_ref: str, dest_path: str) -> str:
        """``docker save`` into a file; returns the image id (sha256:...)."""

    async def load_image(self, archive_path: str, expected_id: str) -> None:
        """Verify the archive against ``expected_id`` then ``docker load`` it."""

    async def resolve_image(self, image_ref: str) -> str:
        """Name or id -> local image id (sha256:...); ImageError if absent."""

    async def image_command(self, image_id: str) -> ImageCommand:
        """The image's default entrypoint + command, working directory and environment."""

    async def mark_peer_image(self, image_id: str, node_id: str) -> None:
        """Record that ``node_id`` loaded ``image_id`` from a peer: it may collect it later."""

    async def adopt_peer_image(self, image_id: str, node_id: str) -> bool:
        """If ``image_id`` is here because some node loaded it from a peer, record it for
        ``node_id`` too (so that node's collection leaves it to us) and return True."""

    async def peer_images(self, node_id: str) -> list[PeerImage]:
        """The images recorded as loaded from peers by ``node_id``."""

    async def remove_peer_image(self, image_id: str, node_id: str) -> bool:
        """Drop ``node_id``'s record of the image; the image goes with it unless an operator's tag or
        another node's record holds it. A container made from it keeps the record (False), as does a
        record that is gone already."""
