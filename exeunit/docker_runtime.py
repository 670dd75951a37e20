"""The Docker implementation of :class:`exeunit.runtime.Runtime` (docker-py on worker threads).

:class:`DockerRuntime` composes the concerns of :mod:`exeunit.docker`, each in
its own module with its own docstring:

- the boundary to the engine and its error mapping (:mod:`exeunit.docker.engine`);
- the hardened container and its tmpfs-backed ``/work`` volume (:mod:`exeunit.docker.containers`);
- commands: output streaming, timeouts, OOM detection (:mod:`exeunit.docker.exec`),
  and killing one command without touching the rest (:mod:`exeunit.docker.kill`);
- files into and out of ``/work`` (:mod:`exeunit.docker.files`);
- images: save, verify, load, and which were loaded from peers (:mod:`exeunit.docker.images`);
- usage counters from the cgroup (:mod:`exeunit.docker.usage`, :mod:`exeunit.docker.cgroups`).

The names this module had before the split stay importable from here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import docker
import trio

from exeunit.docker.cgroups import CgroupView
from exeunit.docker.containers import IDLE_COMMAND, LABEL_WORK_VOLUME, WORK_SUBDIRS, Containers
from exeunit.docker.engine import GID, UID, USER, WORK_DIR, Engine
from exeunit.docker.exec import Execs
from exeunit.docker.files import Files
from exeunit.docker.images import Images
from exeunit.docker.kill import Killer
from exeunit.docker.usage import UsageMeter
from exeunit.runtime import ContainerSpec, ExecResult, ImageCommand, OutputSink, PeerImage, Upload, Usage

__all__ = [
    "GID",
    "IDLE_COMMAND",
    "LABEL_WORK_VOLUME",
    "UID",
    "USER",
    "WORK_DIR",
    "WORK_SUBDIRS",
    "DockerRuntime",
]


LABEL_GVMI_SHA3 = "network.yagna.gvmi-sha3"
"""Label of an image imported from a Golem package: the package's sha3-224 (the cache's key)."""


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
        self.engine = Engine(client_factory, limiter=limiter)
        self.limiter = self.engine.limiter
        self.cgroups = CgroupView(self.engine)
        self.containers = Containers(self.engine, extra_labels)
        self.killer = Killer(self.engine, self.cgroups)
        self.execs = Execs(self.engine, self.cgroups, self.killer)
        self.files = Files(self.engine)
        self.images = Images(self.engine)
        self.meter = UsageMeter(self.engine, self.cgroups)

    # -- lifecycle ----------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        return await self.containers.create(spec)

    async def start(self, container_id: str) -> None:
        await self.containers.start(container_id)

    async def pause(self, container_id: str) -> None:
        await self.containers.pause(container_id)

    async def unpause(self, container_id: str) -> None:
        await self.containers.unpause(container_id)

    async def remove(self, container_id: str) -> None:
        await self.containers.remove(container_id)
        self.cgroups.forget(container_id)
        self.execs.forget(container_id)

    async def leftovers(self, node_id: str) -> list[tuple[str, dict[str, str]]]:
        return await self.containers.leftovers(node_id)

    async def remove_orphan_volumes(self, node_id: str) -> list[str]:
        return await self.containers.remove_orphan_volumes(node_id)

    # -- commands -----------------------------------------------------------

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
        return await self.execs.run(container_id, argv, env=env, workdir=workdir, timeout_s=timeout_s,
                                    on_output=on_output, max_output_bytes=max_output_bytes)

    # -- files --------------------------------------------------------------

    async def put_file(self, container_id: str, path: str, data_path: str, *, mode: int = 0o644) -> None:
        await self.files.put(container_id, path, data_path, mode=mode)

    def upload(self, container_id: str, path: str, size: int, *, mode: int = 0o644) -> AbstractAsyncContextManager[Upload]:
        return self.files.upload(container_id, path, size, mode=mode)

    async def get_file(self, container_id: str, path: str, dest_path: str, *, max_bytes: int,
                       digest: Any = None) -> int:
        return await self.files.get(container_id, path, dest_path, max_bytes=max_bytes, digest=digest)

    # -- usage --------------------------------------------------------------

    async def usage(self, container_id: str) -> Usage:
        return await self.meter.usage(container_id)

    # -- images -------------------------------------------------------------

    async def has_image(self, image_id: str) -> bool:
        return await self.images.has(image_id)

    async def resolve_image(self, image_ref: str) -> str:
        return await self.images.resolve(image_ref)

    async def image_command(self, image_id: str) -> ImageCommand:
        return await self.images.command(image_id)

    async def save_image(self, image_ref: str, dest_path: str) -> str:
        return await self.images.save(image_ref, dest_path)

    async def load_image(self, archive_path: str, expected_id: str) -> None:
        await self.images.load(archive_path, expected_id)

    async def import_gvmi(self, path: str, sha3: str, node_id: str, *, max_bytes: int) -> str:
        """A verified Golem ``.gvmi`` file as an image recorded like one loaded from a peer (tagged
        ``yagna-peer-image:<node>-<id>``, so the image collector removes it when unused); its id."""
        from exeunit.commands import VOLUME_DIR
        from exeunit.docker.images import PEER_IMAGE_REPO, peer_tag
        from exeunit.gvmi import gvmi_to_docker

        def run() -> str:
            api = self.engine.api()
            temporary = f"{PEER_IMAGE_REPO}:gvmi-{sha3[:48]}"
            image_id = gvmi_to_docker(path, api, temporary, max_bytes=max_bytes, tmp_dir=os.path.dirname(path),
                                      volume_root=VOLUME_DIR, extra_labels={LABEL_GVMI_SHA3: sha3})
            api.tag(image_id, PEER_IMAGE_REPO, peer_tag(image_id, node_id))
            api.remove_image(temporary)  # only the tag: the record's tag keeps the image
            return image_id

        return await self.engine.blocking("image", run)

    async def find_gvmi(self, sha3: str, node_id: str) -> tuple[str, list[str]] | None:
        """An image this node imported from the Golem package ``sha3`` before (a restart keeps the
        cache): ``(image id, its Golem volumes)``, or None."""
        from exeunit.docker.images import PEER_IMAGE_REPO, peer_tag
        from exeunit.gvmi import LABEL_GOLEM_VOLUMES

        def run() -> tuple[str, list[str]] | None:
            api = self.engine.api()
            for image in api.images(filters={"label": f"{LABEL_GVMI_SHA3}={sha3}"}):
                image_id = str(image["Id"])
                if f"{PEER_IMAGE_REPO}:{peer_tag(image_id, node_id)}" in (image.get("RepoTags") or []):
                    labels = image.get("Labels") or {}
                    return image_id, sorted(json.loads(labels.get(LABEL_GOLEM_VOLUMES, "[]")))
            return None

        return await self.engine.blocking("image", run)

    async def mark_peer_image(self, image_id: str, node_id: str) -> None:
        await self.images.mark_peer(image_id, node_id)

    async def adopt_peer_image(self, image_id: str, node_id: str) -> bool:
        return await self.images.adopt_peer(image_id, node_id)

    async def peer_images(self, node_id: str) -> list[PeerImage]:
        return await self.images.peer_images(node_id)

    async def remove_peer_image(self, image_id: str, node_id: str) -> bool:
        return await self.images.remove_peer(image_id, node_id)
