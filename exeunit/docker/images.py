"""Images: look up, ``docker save`` for a peer, verify then ``docker load`` what a peer sent,
and the record of which images a node loaded from peers.

The record is a tag: ``yagna-peer-image:<node>-<hex>`` (``<node>``: 16 hex digits
of the sha256 of the node id, so several nodes on one engine keep their own
records). An image that carries no such tag was put there by someone else and is
never removed by us. Removing an image is removing our tag: Docker deletes the
image only when nothing else refers to it (another tag, such as an operator's or
another node's record; a container of any state refuses it with a conflict), so
an image an operator tagged since stays.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import trio

from exeunit.docker.engine import Engine
from exeunit.errors import ImageError, RuntimeFailure
from exeunit.image_archive import check_image_id, verify_image_archive
from exeunit.runtime import ImageCommand, PeerImage

PEER_IMAGE_REPO = "yagna-peer-image"


def peer_tag(image_id: str, node_id: str) -> str:
    """Our record's tag of ``image_id`` for ``node_id`` (the part after ``PEER_IMAGE_REPO:``)."""
    return f"{_node_part(node_id)}-{image_id.removeprefix('sha256:')}"


def _node_part(node_id: str) -> str:
    return hashlib.sha256(node_id.encode()).hexdigest()[:16]


class Images:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def has(self, image_id: str) -> bool:
        try:
            await self._engine.call("image", "inspect_image", image_id)
        except ImageError:
            return False
        return True

    async def resolve(self, image_ref: str) -> str:
        if not image_ref or not isinstance(image_ref, str):
            raise ImageError(f"bad image reference: {image_ref!r}")
        info = await self._engine.call("image", "inspect_image", image_ref)
        return str(info["Id"])

    async def command(self, image_id: str) -> ImageCommand:
        """The image's default entrypoint + command (Docker's rule: entrypoint first), workdir, env."""
        info = await self._engine.call("image", "inspect_image", image_id)
        config = info.get("Config") or {}
        entrypoint = [str(a) for a in (config.get("Entrypoint") or [])]
        argv = entrypoint + [str(a) for a in (config.get("Cmd") or [])]
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            name, _, value = str(item).partition("=")
            env[name] = value
        return ImageCommand(argv=argv, workdir=str(config.get("WorkingDir") or "/"), env=env, entrypoint=entrypoint)

    async def save(self, image_ref: str, dest_path: str) -> str:
        image_id = await self.resolve(image_ref)
        # Saved by id: the archive carries no tags (load refuses tags).
        await self._engine.blocking("image", self._save_blocking, image_id, dest_path)
        return image_id

    def _save_blocking(self, image_id: str, dest_path: str) -> None:
        tmp = f"{dest_path}.part-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as out:
                for chunk in self._engine.api().get_image(image_id, chunk_size=1024 * 1024):
                    out.write(chunk)
            os.replace(tmp, dest_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    async def load(self, archive_path: str, expected_id: str) -> None:
        # Offline check first: nothing unverified reaches the engine.
        await trio.to_thread.run_sync(verify_image_archive, archive_path, expected_id, limiter=self._engine.limiter)
        await self._engine.blocking("image", self._load_blocking, archive_path)
        if not await self.has(expected_id):
            raise ImageError(f"docker load did not produce {expected_id}")

    def _load_blocking(self, archive_path: str) -> None:
        with open(archive_path, "rb") as f:
            for message in self._engine.api().load_image(f):
                if isinstance(message, dict) and message.get("error"):
                    raise ImageError(f"docker load failed: {message['error']}")

    # -- the record of images loaded from peers ----------------------------------

    async def mark_peer(self, image_id: str, node_id: str) -> None:
        check_image_id(image_id)
        info = await self._engine.call("image", "inspect_image", image_id)
        if any(not t.startswith(PEER_IMAGE_REPO + ":") for t in info.get("RepoTags") or []):
            return  # it was here, tagged by someone else, before we loaded it over itself: not ours
        await self._engine.call("image", "tag", image_id, PEER_IMAGE_REPO, peer_tag(image_id, node_id))

    async def adopt_peer(self, image_id: str, node_id: str) -> bool:
        try:
            info = await self._engine.call("image", "inspect_image", image_id)
        except ImageError:
            return False
        if not any(t.startswith(PEER_IMAGE_REPO + ":") for t in info.get("RepoTags") or []):
            return False
        await self.mark_peer(image_id, node_id)
        return True

    async def peer_images(self, node_id: str) -> list[PeerImage]:
        mine = f"{PEER_IMAGE_REPO}:{_node_part(node_id)}-"
        found = await self._engine.call("image", "images", name=PEER_IMAGE_REPO)
        images = [i for i in found or [] if any(t.startswith(mine) for t in i.get("RepoTags") or [])]
        if not images:
            return []
        used = {c.get("ImageID") for c in await self._engine.call("container", "containers", all=True) or []}
        return [PeerImage(image_id=i["Id"], size=int(i.get("Size") or 0), in_use=i["Id"] in used) for i in images]

    async def remove_peer(self, image_id: str, node_id: str) -> bool:
        check_image_id(image_id)
        try:
            answer = await self._engine.call("image", "remove_image", f"{PEER_IMAGE_REPO}:{peer_tag(image_id, node_id)}")
        except ImageError:
            return False  # our record is gone already
        except RuntimeFailure as exc:
            if exc.code == "container-state":  # a container uses it: our record stays, for a later try
                return False
            raise
        return any(isinstance(a, dict) and a.get("Untagged") for a in answer or [])
