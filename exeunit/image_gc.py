"""Collecting the images a provider loaded from its requestors.

A provider that lacks an image gets it from the requestor (``docker load``);
without collection every image any requestor ever sent stays on the provider's
disk for good (issue 11 row 9). The rules:

- only images recorded as loaded from a peer by this node are candidates
  (:meth:`exeunit.runtime.Runtime.mark_peer_image`); an image the operator put
  there is never touched, and one the operator tagged since stays too (removing
  is dropping our record; the engine keeps what something else refers to);
- an image no container uses is removed :attr:`ImageBounds.grace_s` after it
  was last seen in use (or loaded), so that the next activity of the same
  requestor finds it;
- past :attr:`ImageBounds.max_images` or :attr:`ImageBounds.max_bytes`, unused
  images go least recently used first, sparing those used in the last
  :attr:`ImageBounds.min_keep_s` (an image just loaded for a container about to
  be made);
- at the node's start every unused one goes (its activities are over).

:class:`ImagePolicy` decides (pure, with the caller's clock);
:class:`ImageCollector` asks the runtime and removes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from exeunit.errors import ExeUnitError
from exeunit.runtime import PeerImage, Runtime

log = logging.getLogger("yagna.exeunit.images")

__all__ = ["ImageBounds", "ImageCollector", "ImagePolicy"]


@dataclass(frozen=True)
class ImageBounds:
    grace_s: float = 600.0
    """An unused image stays this long after its last use (a requestor's next activity reuses it)."""
    max_images: int = 16
    max_bytes: int = 20 * 2**30
    """Images loaded from peers kept at most (by count and by bytes) once unused ones can go."""
    min_keep_s: float = 60.0
    """An image used (or loaded) this recently is not evicted for the bounds."""
    interval_s: float = 60.0
    """How often the collector looks."""


class ImagePolicy:
    """Which peer-loaded images to remove now. Pure: times are the caller's clock."""

    def __init__(self, bounds: ImageBounds = ImageBounds()) -> None:
        self.bounds = bounds
        self.last_used: dict[str, float] = {}

    def used(self, image_id: str, now: float) -> None:
        self.last_used[image_id] = now

    def select(self, images: Sequence[PeerImage], now: float, *, at_start: bool = False) -> list[str]:
        b = self.bounds
        listed = {i.image_id for i in images}
        for gone in set(self.last_used) - listed:
            del self.last_used[gone]
        for i in images:
            if i.in_use or i.image_id not in self.last_used:
                self.last_used[i.image_id] = now  # first seen counts as a use: its grace starts now
        unused = sorted((i for i in images if not i.in_use), key=lambda i: self.last_used[i.image_id])
        victims = [i for i in unused if at_start or now - self.last_used[i.image_id] >= b.grace_s]
        count = len(images) - len(victims)
        nbytes = sum(i.size for i in images) - sum(i.size for i in victims)
        for i in unused:  # least recently used first
            if count <= b.max_images and nbytes <= b.max_bytes:
                break
            if i in victims or now - self.last_used[i.image_id] < b.min_keep_s:
                continue
            victims.append(i)
            count -= 1
            nbytes -= i.size
        return [i.image_id for i in victims]

    def removed(self, image_id: str) -> None:
        self.last_used.pop(image_id, None)


class ImageCollector:
    """Asks the runtime for this node's peer-loaded images and removes what :class:`ImagePolicy` picks.

    Bookkeeping never fails a deploy: an engine error here is logged and tried again later.
    """

    def __init__(self, runtime: Runtime, node_id: str, bounds: ImageBounds = ImageBounds()) -> None:
        self._runtime = runtime
        self._node_id = node_id
        self.policy = ImagePolicy(bounds)

    async def loaded(self, image_id: str) -> None:
        """This node just loaded ``image_id`` from a peer."""
        self.policy.used(image_id, trio.current_time())
        try:
            await self._runtime.mark_peer_image(image_id, self._node_id)
        except ExeUnitError as exc:
            log.warning("cannot record image %s as loaded from a peer (it will not be collected): %s",
                        image_id[:19], exc)

    async def present(self, image_id: str) -> None:
        """An activity uses ``image_id``, which was here already (another node may have loaded it)."""
        try:
            if await self._runtime.adopt_peer_image(image_id, self._node_id):
                self.policy.used(image_id, trio.current_time())
        except ExeUnitError as exc:
            log.warning("cannot look at image %s: %s", image_id[:19], exc)

    async def collect(self, *, at_start: bool = False) -> list[str]:
        """Remove what is due now (the engine keeps an image that something else refers to);
        returns the ids whose record went. Engine errors are logged."""
        try:
            images = await self._runtime.peer_images(self._node_id)
        except ExeUnitError as exc:
            log.warning("cannot list images loaded from peers: %s", exc)
            return []
        dropped = []
        for image_id in self.policy.select(images, trio.current_time(), at_start=at_start):
            try:
                if not await self._runtime.remove_peer_image(image_id, self._node_id):
                    continue  # a container was made from it meanwhile: seen in use next time
            except ExeUnitError as exc:
                log.warning("cannot remove image %s: %s", image_id[:19], exc)
                continue
            log.info("image %s loaded from a peer is not needed any more: removed", image_id[:19])
            self.policy.removed(image_id)
            dropped.append(image_id)
        return dropped

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.policy.bounds.interval_s)
            await self.collect()
