"""Composition of the exe-unit service: the blob server, the provider side, the requestor side.

The provider side needs a container runtime; the requestor side uses one only
to resolve image names and to serve images to providers that lack them (a
requestor without Docker names images by id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import trio

from exeunit.runtime import Runtime
from yagna.core.identity import NodeKey
from yagna.activity_service.blobs import BlobServer
from yagna.activity_service.job_caches import JobCaches
from yagna.activity_service.protocol import ACTIVITY
from yagna.activity_service.provider import ProviderActivities
from yagna.activity_service.requestor import RequestorActivities
from yagna.net.errors import RequestRejected
from yagna.net.reqresp import Request
from yagna.store.activity_repos import Activities
from yagna.store.market_repos import Agreements

log = logging.getLogger("yagna.activity")


@dataclass
class ActivityConfig:
    network_id: str = "testnet"
    provider: bool = True
    requestor: bool = True
    work_dir: Path = Path("exeunit")
    """Staging files of transfers and images (under the data dir)."""
    keepalive_s: float = 30.0
    """Provider: an activity whose requestor was silent this long is terminated and its container removed."""
    agreement_check_s: float = 2.0
    """Provider: how often activities of ended agreements are looked for."""
    job_cache_bytes: int = 4 << 30
    """Provider: pipelines' caches kept for all requestors together (least recently used go first)."""
    job_cache_per_requestor_bytes: int = 1 << 30
    """Provider: pipelines' caches kept for one requestor."""
    faults: frozenset[str] = frozenset()
    """Test-only fault injection: ``wrong-results`` (a provider that returns wrong outputs)."""


class ActivityService:
    def __init__(self, *, node_id: str, config: ActivityConfig, rr, store, runtime: Runtime | None,  # type: ignore[no-untyped-def]
                 key: NodeKey | None = None) -> None:
        """``key`` (the node's) signs result receipts; without it a provider sends none."""
        self.config = config
        self.blobs = BlobServer(rr)
        rows, agreements = Activities(store), Agreements(store)
        self._rows = rows
        self.provider: ProviderActivities | None = None
        self.requestor: RequestorActivities | None = None
        if config.provider:
            if runtime is None:
                raise ValueError("a provider needs a container runtime")
            self.provider = ProviderActivities(
                node_id=node_id, network_id=config.network_id, rr=rr, blobs=self.blobs, runtime=runtime, key=key,
                faults=config.faults,
                activities=rows, agreements=agreements, staging=config.work_dir / "provider",
                keepalive_s=config.keepalive_s, agreement_check_s=config.agreement_check_s,
                caches=JobCaches(config.work_dir / "caches", total_bytes=config.job_cache_bytes,
                                 per_requestor_bytes=config.job_cache_per_requestor_bytes),
            )
        if config.requestor:
            self.requestor = RequestorActivities(
                rr=rr, blobs=self.blobs, activities=rows, agreements=agreements,
                staging=config.work_dir / "requestor", network_id=config.network_id,
                resolve_image=runtime.resolve_image if runtime is not None else None,
                save_image=runtime.save_image if runtime is not None else None,
                keepalive_s=min(config.keepalive_s, 10.0),
            )
        rr.register(ACTIVITY, self._handle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.blobs.run)
            if self.provider is not None:
                await nursery.start(self.provider.run)
            if self.requestor is not None:
                await nursery.start(self.requestor.run)
            task_status.started()

    async def count_by_state(self) -> dict[tuple[str, str], int]:
        """Activities by ``(role, state)``, both sides, all of them (metrics)."""
        return await self._rows.count_by_state()

    async def _handle(self, request: Request) -> object:
        if self.provider is None:
            raise RequestRejected("not-a-provider", "this node does not sell")
        return await self.provider.handle(request.peer, request.payload)
