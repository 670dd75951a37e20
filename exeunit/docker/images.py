"""Images: look up, ``docker save`` for a peer, verify then ``docker load`` what a peer sent."""

from __future__ import annotations

import os
import uuid

import trio

from exeunit.docker.engine import Engine
from exeunit.errors import ImageError
from exeunit.image_archive import verify_image_archive


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
