"""The market service of a node: offer directory + provider side + requestor side.

One negotiation protocol is registered per host, so this service owns it and
dispatches: ``counter`` / ``propose_agreement`` / ``reject`` go to the
provider side, ``terminate`` to whichever side holds the agreement. It also
answers the questions both sides share (the agreements list, termination).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from market.agreement import AgreementInvalid, verify_agreement
from market.capacity import Capacity
from market.policy import Policy, PolicyConfig
from market.presets import Preset
from market.properties import SRV_COMP_EXPIRATION
from yagna.core.identity import NodeKey
from yagna.market_service.anti_entropy import DEFAULT_INTERVAL_S
from yagna.market_service.offers import OfferDirectory, now_ms
from yagna.market_service.protocol import NEGOTIATE, field as msg_field
from yagna.market_service.provider import ProviderMarket
from yagna.market_service.requestor import NegotiationFailed, RequestorMarket, agreement_view
from yagna.net.errors import RequestError, RequestRejected
from yagna.net.reqresp import Request
from yagna.store.market_repos import Agreements, Presets, ProviderRecords
from yagna.store.repos import Settings

log = logging.getLogger("yagna.market")


@dataclass
class MarketConfig:
    network_id: str = "testnet"
    subnets: list[str] = field(default_factory=lambda: ["public"])
    """Subnets whose offers a node follows from the start (requestors join more on demand)."""
    provider: bool = True
    requestor: bool = True
    capacity: Capacity | None = None
    """What the provider sells in total; None: nothing (a requestor-only node)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    offer_ttl_s: int = 30 * 60
    default_preset: Preset | None = None
    managed_preset: Preset | None = None
    """The config file's preset (``[provider.preset]``), created or updated at start."""
    node_name: str = ""
    agreement_check_s: float = 10.0
    """How often the requestor side looks for its agreements past their expiration."""
    anti_entropy_s: float = DEFAULT_INTERVAL_S
    """Mean seconds between anti-entropy rounds (one random neighbour per subnet; jittered +-50%; 0: off)."""
    payment_platforms: dict[str, str] = field(default_factory=dict)
    capabilities: dict[str, object] = field(default_factory=dict)
    """Extra offer properties saying what this provider can run (``yagna.runtime.golem-vm``)."""
    """Golem payment platform names this node settles on -> its account there (in every offer)."""
    drop_gossip: float = 0.0
    """Tests only (``--test-fault drop-offer-gossip``): the share of offer gossip from peers ignored, as if lost."""


class MarketService:
    def __init__(self, *, key: NodeKey, config: MarketConfig, rr, gossip, peers, store,  # type: ignore[no-untyped-def]
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.config = config
        self._clock_ms = clock_ms
        self.node_id = key.node_id
        self.network_id = config.network_id
        self._rr = rr
        self.agreements = Agreements(store)
        self.directory = OfferDirectory(network_id=config.network_id, gossip=gossip, rr=rr, peers=peers,
                                        me=key.node_id, clock_ms=clock_ms, anti_entropy_s=config.anti_entropy_s,
                                        drop_gossip=config.drop_gossip)
        if config.drop_gossip:
            log.warning("test fault: ignoring %.0f%% of offer gossip from peers", config.drop_gossip * 100)
        self.provider: ProviderMarket | None = None
        self.requestor: RequestorMarket | None = None
        if config.provider:
            self.provider = ProviderMarket(
                key=key, network_id=config.network_id, directory=self.directory, rr=rr,
                presets=Presets(store), agreements=self.agreements,
                capacity=config.capacity or Capacity(0, 0, 0), policy=Policy(config.policy),
                node_name=config.node_name or key.node_id[-8:], offer_ttl_ms=config.offer_ttl_s * 1000,
                default_preset=config.default_preset, managed_preset=config.managed_preset,
                settings=Settings(store), clock_ms=clock_ms,
                payment_platforms=config.payment_platforms, capabilities=config.capabilities,
            )
        if config.requestor:
            self.requestor = RequestorMarket(
                key=key, network_id=config.network_id, directory=self.directory, rr=rr,
                agreements=self.agreements, records=ProviderRecords(store), clock_ms=clock_ms,
            )
        rr.register(NEGOTIATE, self._handle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.directory.run)
            for subnet in self.config.subnets:
                await self.directory.join(subnet)
            if self.requestor is not None:
                await nursery.start(self.requestor.run)
            if self.provider is not None:
                await nursery.start(self.provider.run)
            nursery.start_soon(self._expire_requestor_agreements, self.config.agreement_check_s)
            task_status.started()

    async def _expire_requestor_agreements(self, every_s: float) -> None:
        """Our side of agreements past ``golem.srv.comp.expiration`` ends even if the provider never says so.

        (The provider side ends them itself, see ``ProviderMarket._housekeeping``.)
        """
        while True:
            await trio.sleep(every_s)
            now = self._clock_ms()
            for row in await self.agreements.list(role="requestor", state="approved"):
                agreement = verify_agreement(row.raw, network_id=self.network_id)
                expires = agreement.terms.get(SRV_COMP_EXPIRATION, agreement.demand_properties.get(SRV_COMP_EXPIRATION))
                if isinstance(expires, int) and expires <= now:
                    await self.agreements.set_state(row.agreement_id, "terminated", "expired")
                    log.info("agreement %s expired", row.agreement_id[:12])

    # -- protocol dispatch ------------------------------------------------------------
    async def _handle(self, request: Request) -> object:
        msg = request.payload
        if not isinstance(msg, dict):
            raise RequestRejected("bad-request", "expected a map")
        if msg.get("op") == "terminate":
            return await self._on_terminate(request.peer, msg)
        if self.provider is None:
            raise RequestRejected("not-a-provider", "this node does not sell")
        return await self.provider.handle(request)

    async def _on_terminate(self, peer: str, msg: dict) -> object:  # type: ignore[type-arg]
        agreement_id = msg_field(msg, "agreement_id", str)
        reason = msg_field(msg, "reason", str)[:200] or "terminated"
        row = await self.agreements.get(agreement_id)
        if row is None or row.peer_id != peer:
            raise RequestRejected("unknown-agreement", "no agreement with this id between us")
        if row.state != "approved":
            return {}
        if row.role == "provider" and self.provider is not None:
            await self.provider.terminate(agreement_id, f"requestor: {reason}", notify=False)
        else:
            await self.agreements.set_state(agreement_id, "terminated", f"provider: {reason}")
        log.info("agreement %s terminated by %s: %s", agreement_id[:12], peer, reason)
        return {}

    # -- agreements (both roles) ---------------------------------------------------------
    async def list_agreements(self, *, role: str | None = None, state: str | None = None,
                              limit: int = 1000) -> list[dict[str, object]]:
        """The newest ``limit`` agreements (``created_at``/``updated_at``: unix seconds of the store)."""
        out = []
        for row in await self.agreements.list(role=role, state=state, limit=limit):
            try:
                agreement = verify_agreement(row.raw, network_id=self.network_id)
            except AgreementInvalid as exc:  # pragma: no cover - verified before storing
                log.error("stored agreement %s does not verify: %s", row.agreement_id, exc)
                continue
            out.append({**agreement_view(agreement, state=row.state, role=row.role, reason=row.reason),
                        "created_at": row.created_at, "updated_at": row.updated_at})
        return out

    async def get_agreement(self, agreement_id: str) -> dict[str, object]:
        row = await self.agreements.get(agreement_id)
        if row is None:
            raise NegotiationFailed("unknown-agreement", f"no agreement {agreement_id!r}")
        agreement = verify_agreement(row.raw, network_id=self.network_id)
        return agreement_view(agreement, state=row.state, role=row.role, reason=row.reason)

    async def terminate(self, agreement_id: str, reason: str) -> dict[str, object]:
        """End an approved agreement from our side and tell the other party (best effort)."""
        row = await self.agreements.get(agreement_id)
        if row is None:
            raise NegotiationFailed("unknown-agreement", f"no agreement {agreement_id!r}")
        if row.state != "approved":
            raise NegotiationFailed("not-approved", f"agreement is {row.state}, not approved")
        if row.role == "provider" and self.provider is not None:
            await self.provider.terminate(agreement_id, reason, notify=True)
        else:
            await self.agreements.set_state(agreement_id, "terminated", reason)
            with trio.move_on_after(NEGOTIATE.timeout):
                try:
                    await self._rr.request(row.peer_id, NEGOTIATE, {"op": "terminate", "agreement_id": agreement_id, "reason": reason})
                except RequestError as exc:
                    log.info("could not tell %s that agreement %s ended: %s", row.peer_id, agreement_id[:12], exc)
        return await self.get_agreement(agreement_id)

    def offers(self, *, subnet: str | None = None) -> list[dict[str, object]]:
        now = now_ms()
        return [
            {"offer_id": o.offer_id, "provider_id": o.provider_id, "subnet": o.subnet, "properties": o.properties,
             "constraints": o.constraints, "created_at_ms": o.created_at_ms, "expires_at_ms": o.expires_at_ms}
            for o in sorted(self.directory.book.live(now), key=lambda o: (o.subnet, o.provider_id, o.offer_id))
            if subnet is None or o.subnet == subnet
        ]

    def status(self) -> dict[str, object]:
        s = self.directory.stats
        return {
            "network_id": self.network_id,
            "subnets": self.directory.subnets,
            "offers_known": len(self.directory.book),
            "accepted": s.accepted, "replaced": s.replaced, "withdrawn": s.withdrawn,
            "refused": s.refused, "synced": s.synced,
            "anti_entropy": vars(self.directory.anti_entropy.stats).copy(),
            "penalties": self.directory.penalties.snapshot(),
            "demands": len(self.requestor.demands) if self.requestor else 0,
        }
