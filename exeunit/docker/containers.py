"""Containers and their ``/work`` volumes: create, start, pause, remove, and what a crash left.

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
container, removed by :meth:`Containers.remove`. Why not a plain ``--tmpfs /work``: the
archive API (``put_archive``/``get_archive``, i.e. ``docker cp``) does not see
tmpfs mounts — it writes to the layer underneath, which the read-only root
refuses anyway — whereas it mounts volumes. The tmpfs backing gives a hard size
cap; its price is that files in ``/work`` (like those in ``/tmp``) are RAM and
are charged to the container's memory cgroup: they count against
``memory_bytes``. The volume outlives the container's processes (a timed-out
command is killed without touching ``/work``) but not a stop of the container.
:meth:`Containers.start` creates the empty ``/work/in`` and ``/work/out`` (1000:1000). What
the image itself holds under ``/work`` is hidden: Docker's copy-up of image
content into a fresh volume does not survive a tmpfs backing (it is copied at
create time into a tmpfs that is unmounted again), so images keep their files
elsewhere.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
import uuid
from collections.abc import Mapping
from typing import Any

import trio
from docker.types import Mount

from exeunit.docker.engine import GID, UID, USER, WORK_DIR, Engine
from exeunit.errors import RuntimeFailure
from exeunit.image_archive import check_image_id
from exeunit.runtime import FORWARDER_PATH, LABEL_NODE, TUNNEL_DIR, ContainerSpec

log = logging.getLogger("yagna.exeunit.docker")

WORK_SUBDIRS = ("in", "out")
"""Made empty in ``/work`` at start (owned by the work's user): where inputs and results go by convention."""
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
"""PID 1 of every container: idles, reaps the orphans of commands, exits on TERM."""
LABEL_WORK_DIRS = "network.yagna.work-dirs"
"""Container label: more directories to make under ``/work`` at start (JSON list, relative)."""
LABEL_WORK_VOLUME = "network.yagna.work-volume"
"""Container label naming its ``/work`` volume."""
WORK_VOLUME_PREFIX = "yagna-work-"


class Containers:
    def __init__(self, engine: Engine, extra_labels: Mapping[str, str] | None = None) -> None:
        """``extra_labels`` go on every container and volume besides the spec's (e.g. a test session's tag)."""
        self._engine = engine
        self._extra_labels = dict(extra_labels or {})

    async def create(self, spec: ContainerSpec) -> str:
        check_image_id(spec.image_id)
        lim = spec.limits
        if lim.cpu_threads <= 0 or lim.memory_bytes <= 0 or lim.storage_bytes <= 0 or lim.pids <= 0:
            raise RuntimeFailure(f"container limits must be positive: {lim}", code="bad-limits")
        volume = f"{WORK_VOLUME_PREFIX}{uuid.uuid4().hex}"
        labels = {**self._extra_labels, **spec.labels}
        labels[LABEL_WORK_VOLUME] = volume
        try:
            await self._engine.call(
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
            return await self._engine.blocking("container", self._create_container, spec, volume, labels)
        except BaseException:
            # Also when cancelled while the volume or the container was being made: nothing may
            # outlive a failed create (the container, if the engine made it, carries the volume's label).
            with trio.CancelScope(shield=True):
                await self._discard(volume)
            raise

    async def _discard(self, volume: str) -> None:
        try:
            made = await self._engine.call(
                "container", "containers", all=True, filters={"label": f"{LABEL_WORK_VOLUME}={volume}"}
            )
            for c in made or []:
                await self._engine.call("container", "remove_container", c["Id"], force=True, v=True)
            await self._remove_volume(volume)
        except RuntimeFailure as exc:  # the engine is gone or busy: the node's next start removes orphans
            log.warning("could not clean up after a failed create (%s): %s", volume, exc)

    def _create_container(self, spec: ContainerSpec, volume: str, labels: dict[str, str]) -> str:
        api = self._engine.api()
        lim = spec.limits
        mounts = [Mount(WORK_DIR, volume, type="volume")]
        sysctls: dict[str, str] | None = None
        if spec.tunnel is not None:
            # A service: its forwarder (read-only) and the directory of its sockets, and ports below
            # 1024 for its non-root user (a sysctl of its own network namespace only).
            mounts += [Mount(TUNNEL_DIR, spec.tunnel.socket_dir, type="bind"),
                       Mount(FORWARDER_PATH, spec.tunnel.forwarder, type="bind", read_only=True)]
            sysctls = {"net.ipv4.ip_unprivileged_port_start": "0"}
        for vol in spec.volumes:
            if vol.host_dir is not None:
                mounts.append(Mount(vol.path, vol.host_dir, type="bind"))
            else:
                mounts.append(Mount(vol.path, "", type="tmpfs", tmpfs_size=vol.size_bytes, tmpfs_mode=0o1777))
        host_config = api.create_host_config(
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            read_only=True,
            mounts=mounts,
            sysctls=sysctls,
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
        if spec.work_dirs:
            labels = {**labels, LABEL_WORK_DIRS: json.dumps([_work_rel(d) for d in spec.work_dirs])}
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
        return str(created["Id"])

    async def start(self, container_id: str) -> None:
        await self._engine.call("container", "start", container_id)
        # The tmpfs of /work is fresh at each start: lay out its conventional
        # directories, writable by the work's user.
        await self._engine.blocking("container", self._make_work_dirs, container_id)

    def _make_work_dirs(self, container_id: str) -> None:
        labels = (self._engine.api().inspect_container(container_id).get("Config") or {}).get("Labels") or {}
        extra = json.loads(labels.get(LABEL_WORK_DIRS, "[]"))
        names = list(WORK_SUBDIRS)
        for rel in extra:  # each with its parents, parents first
            parts = _work_rel(rel).split("/")
            names += ["/".join(parts[: i + 1]) for i in range(len(parts)) if "/".join(parts[: i + 1]) not in names]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in names:
                d = tarfile.TarInfo(name)
                d.type = tarfile.DIRTYPE
                d.mode = 0o755
                d.uid, d.gid = UID, GID
                d.mtime = int(time.time())
                tf.addfile(d)
        self._engine.api().put_archive(container_id, WORK_DIR, buf.getvalue())

    async def pause(self, container_id: str) -> None:
        state = await self._state(container_id)
        if not state.get("Paused"):
            await self._engine.call("container", "pause", container_id)

    async def unpause(self, container_id: str) -> None:
        state = await self._state(container_id)
        if state.get("Paused"):
            await self._engine.call("container", "unpause", container_id)

    async def _state(self, container_id: str) -> dict[str, Any]:
        info = await self._engine.call("container", "inspect_container", container_id)
        return dict(info["State"])

    async def remove(self, container_id: str) -> None:
        """Kill and remove the container and the work volume we made for it; idempotent."""
        try:
            info = await self._engine.call("container", "inspect_container", container_id)
        except RuntimeFailure as e:
            if e.code == "container-gone":
                return
            raise
        volumes = [m["Name"] for m in info.get("Mounts", []) if m.get("Type") == "volume" and m.get("Name")]
        labelled = (info.get("Config", {}).get("Labels") or {}).get(LABEL_WORK_VOLUME)
        try:
            await self._engine.call("container", "remove_container", container_id, force=True, v=True)
        except RuntimeFailure as e:
            if e.code != "container-gone":
                raise
        for name in volumes:
            if name == labelled:  # only the volume we made; never a volume we did not create
                await self._remove_volume(name)

    async def _remove_volume(self, name: str) -> None:
        try:
            await self._engine.call("volume", "remove_volume", name, force=True)
        except RuntimeFailure as e:
            if e.code != "volume-gone":
                raise

    async def leftovers(self, node_id: str) -> list[tuple[str, dict[str, str]]]:
        found = await self._engine.call("container", "containers", all=True, filters={"label": f"{LABEL_NODE}={node_id}"})
        return [(c["Id"], dict(c.get("Labels") or {})) for c in found]

    async def remove_orphan_volumes(self, node_id: str) -> list[str]:
        """Remove work volumes labelled with ``node_id`` that no container uses
        (left by a crash between creating a volume and its container). Returns their names."""
        found = await self._engine.call("volume", "volumes", filters={"label": f"{LABEL_NODE}={node_id}"})
        removed = []
        for v in (found or {}).get("Volumes") or []:
            name = v["Name"]
            if not name.startswith(WORK_VOLUME_PREFIX):
                continue
            try:
                await self._engine.call("volume", "remove_volume", name)
            except RuntimeFailure as e:
                if e.code == "container-state":  # in use
                    continue
                if e.code != "volume-gone":
                    raise
            removed.append(name)
        return removed


def _work_rel(path: str) -> str:
    """A directory below ``/work``, relative and normalised; ValueError for anything escaping it."""
    import posixpath

    rel = posixpath.normpath(path).lstrip("/")
    if not rel or rel == "." or rel.startswith("..") or len(rel) > 1024:
        raise ValueError(f"not a directory below /work: {path[:80]!r}")
    return rel
