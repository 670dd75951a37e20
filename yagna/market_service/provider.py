"""The provider's side of the market: presets -> offers, negotiation, agreements.

Offers come from the provider's presets and the capacity it is willing to
sell (the machine's, capped by settings). Each agreement reserves its
preset's resources in a :class:`~market.capacity.CapacityLedger`; a preset
whose resources no longer fit has its offer withdrawn, and re-offered once an
agreement ends. So a provider runs several agreements at once, up to its
capacity, and never sells what it does not have.

Each incoming negotiation runs through the table-driven
:class:`~market.negotiation.Negotiation` and the acceptance
:class:`~market.policy.Policy` chain; a refusal carries a code and a message
the requestor can show. The agreement the requestor proposes must be exactly
the body we would build from the negotiated proposals (we rebuild it and
compare bytes), signed by the requestor; only then do we sign, store it
durably, and answer.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from market.agreement import AgreementInvalid, build_agreement, cosign, sign_agreement, verify_agreement
from market.capacity import Capacity, CapacityLedger
from market.errors import MarketError
from market.matching import Demand, Offer, matches
from market.negotiation import (
    Approve,
    Counter,
    LocalProtocolError,
    Negotiation,
    NegotiationError,
    Propose,
    ProposeAgreement,
    Reject,
    Role,
)
from market.offers import SignedDemand, SignedOffer, make_offer, make_withdrawal
from market.offer_book import reannounce_at
from market.policy import NO_CAPACITY, Policy, PolicyConfig, ProposalContext, Rejection
from market.presets import OFFER_CONSTRAINTS, Preset, offer_properties
from market.properties import INF_CPU_THREADS, INF_MEM_GIB, INF_STORAGE_GIB, SRV_COMP_EXPIRATION
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey, verify
from yagna.core.wire import decode
from yagna.net.errors import RequestError, RequestRejected
from yagna.net.reqresp import Request
from yagna.market_service.offers import OfferDirectory, now_ms
from yagna.market_service.protocol import NEGOTIATE, PROPOSAL, field, nid, reject
from yagna.store.market_repos import Agreements, Presets
from yagna.store.repos import Settings

POLICY_SETTING = "provider.policy"

log = logging.getLogger("yagna.market.provider")

COUNTER_TTL_MS = 60_000
"""How long our counter-proposal stays open for the requestor to propose an agreement."""
MAX_NEGOTIATIONS = 10_000
MAX_NEGOTIATIONS_PER_REQUESTOR = 256


class PresetNotFound(MarketError):
    pass


class PresetExists(MarketError):
    pass


@dataclass
class _Open:
    negotiation: Negotiation
    offer: SignedOffer
    preset: str
    nid: str


@dataclass
class ActiveAgreement:
    agreement_id: str
    requestor_id: str
    preset: str
    expires_at_ms: int | None
    needs: Capacity


class ProviderMarket:
    def __init__(
        self,
        *,
        key: NodeKey,
        network_id: str,
        directory: OfferDirectory,
        rr,  # type: ignore[no-untyped-def]
        presets: Presets,
        agreements: Agreements,
        capacity: Capacity,
        policy: Policy,
        node_name: str,
        offer_ttl_ms: int = 30 * 60 * 1000,
        default_preset: Preset | None = None,
        managed_preset: Preset | None = None,
        settings: Settings | None = None,
        clock_ms: Callable[[], int] = now_ms,
        payment_platforms: Mapping[str, str] | None = None,
        capabilities: Mapping[str, object] | None = None,
    ) -> None:
        self._key = key
        self.payment_platforms = dict(payment_platforms or {})
        self.capabilities = dict(capabilities or {})
        self.node_id = key.node_id
        self.network_id = network_id
        self._dir = directory
        self._rr = rr
        self._presets_repo = presets
        self._agreements = agreements
        self.ledger = CapacityLedger(capacity)
        self.policy = policy
        self.node_name = node_name
        self.offer_ttl_ms = offer_ttl_ms
        self._default_preset = default_preset
        self._managed_preset = managed_preset
        """The config file's preset (``[provider.preset]``): created or updated at start."""
        self._settings = settings
        self._clock_ms = clock_ms
        self.presets: dict[str, Preset] = {}
        self.current: dict[str, SignedOffer] = {}
        """The live offer of each preset that fits."""
        self._own: dict[str, tuple[str, SignedOffer]] = {}
        """Every unexpired, unwithdrawn offer of ours, by id -> (preset name, offer)."""
        self._open: OrderedDict[tuple[str, str], _Open] = OrderedDict()
        self.active: dict[str, ActiveAgreement] = {}
        self._lock = trio.Lock()
        self._demands_send, self._demands_recv = trio.open_memory_channel[SignedDemand](256)
        self._seen_demands: OrderedDict[str, None] = OrderedDict()
        self._wake = trio.Event()
        directory.on_demand(self._on_demand)

    # -- service ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._settings is not None:
            stored_policy = await self._settings.get(POLICY_SETTING)
            if stored_policy is not None:
                try:
                    self.policy = Policy(PolicyConfig.from_json(json.loads(stored_policy)))
                except (MarketError, ValueError) as exc:
                    log.error("the stored acceptance policy is invalid, using the defaults: %s", exc)
        for stored in await self._presets_repo.list():
            try:
                self.presets[stored.name] = Preset.from_json(stored.body)
            except MarketError as exc:
                log.error("preset %s in the database is invalid and is skipped: %s", stored.name, exc)
        await self._apply_managed_preset()
        if not self.presets and self._default_preset is not None:
            await self._presets_repo.create(self._default_preset.name, self._default_preset.to_json())
            self.presets[self._default_preset.name] = self._default_preset
            log.info("created the default preset %r", self._default_preset.name)
        for row in await self._agreements.list(role="provider", state="approved"):
            try:
                agreement = verify_agreement(row.raw, network_id=self.network_id)
            except AgreementInvalid as exc:  # pragma: no cover - we verified it before storing
                log.error("stored agreement %s does not verify: %s", row.agreement_id, exc)
                continue
            self._activate(agreement.agreement_id, agreement.requestor_id, agreement.offer_properties,
                           agreement.terms, agreement.demand_properties)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._auction_loop)
            await self._sync_offers()
            nursery.start_soon(self._housekeeping)
            task_status.started()

    # -- presets ---------------------------------------------------------------------
    async def _apply_managed_preset(self) -> None:
        """Store the config file's preset under its name, unless the database holds it already as it is."""
        preset = self._managed_preset
        if preset is None or self.presets.get(preset.name) == preset:
            return
        if preset.name in self.presets:
            await self._presets_repo.update(preset.name, preset.to_json())
            log.info("updated preset %r from the config file", preset.name)
        else:
            await self._presets_repo.create(preset.name, preset.to_json())
            log.info("created preset %r from the config file", preset.name)
        self.presets[preset.name] = preset

    async def create_preset(self, preset: Preset) -> Preset:
        async with self._lock:
            if not await self._presets_repo.create(preset.name, preset.to_json()):
                raise PresetExists(f"a preset named {preset.name!r} exists; update it or choose another name")
            self.presets[preset.name] = preset
        await self._sync_offers()
        return preset

    async def update_preset(self, name: str, preset: Preset) -> Preset:
        async with self._lock:
            if name not in self.presets:
                raise PresetNotFound(f"no preset named {name!r}")
            if not await self._presets_repo.update(name, preset.to_json()):
                raise PresetNotFound(f"no preset named {name!r}")
            self.presets[name] = preset
            await self._withdraw_preset(name)  # new terms: a new offer
        await self._sync_offers()
        return preset

    async def delete_preset(self, name: str) -> None:
        async with self._lock:
            if name not in self.presets:
                raise PresetNotFound(f"no preset named {name!r}")
            await self._presets_repo.delete(name)
            del self.presets[name]
            await self._withdraw_preset(name)

    async def set_policy(self, config: PolicyConfig) -> None:
        """Replace the acceptance policy (it applies to the next proposal) and keep it for restarts."""
        if self._settings is not None:
            await self._settings.set(POLICY_SETTING, json.dumps(config.to_json(), sort_keys=True))
        self.policy = Policy(config)
        log.info("acceptance policy updated")

    def set_capacity(self, total: Capacity) -> None:
        self.ledger.set_total(total)
        self._wake.set()

    # -- offers ----------------------------------------------------------------------
    async def _sync_offers(self) -> None:
        """Offer every preset that fits in the free capacity; withdraw those that do not."""
        async with self._lock:
            for name, preset in sorted(self.presets.items()):
                fits = self.ledger.fits(preset.needs())
                if fits and name not in self.current:
                    await self._publish(name, preset)
                elif not fits and name in self.current:
                    await self._withdraw_preset(name)

    async def _publish(self, name: str, preset: Preset) -> None:
        now = self._clock_ms()
        sealed = make_offer(
            self._key,
            network_id=self.network_id,
            subnet=preset.subnet,
            properties=offer_properties(preset, node_name=self.node_name, payment_platforms=self.payment_platforms,
                                        capabilities=self.capabilities),
            constraints=OFFER_CONSTRAINTS,
            created_at_ms=now,
            expires_at_ms=now + self.offer_ttl_ms,
        )
        await self._dir.join(preset.subnet)
        await self._dir.join_demands(preset.subnet)
        # Into our own book first: a publish is only queued, and our validator
        # sees it later (as a duplicate then).
        offer = self._dir.take_offer(preset.subnet, sealed, source="own")
        if offer is None:
            log.error("our own offer for preset %s was refused by our own book", name)
            return
        await self._dir.publish(preset.subnet, sealed)
        self.current[name] = offer
        self._own[offer.offer_id] = (name, offer)
        log.info("offering preset %s as %s in subnet %s", name, offer.offer_id[:12], preset.subnet)

    async def _withdraw_preset(self, name: str) -> None:
        offer = self.current.pop(name, None)
        # every live offer of this preset goes, not only the current one
        for oid, (preset_name, own) in list(self._own.items()):
            if preset_name == name:
                del self._own[oid]
                sealed = make_withdrawal(self._key, network_id=self.network_id, offer_id=oid, at_ms=self._clock_ms())
                self._dir.take_withdrawal(sealed)
                await self._dir.publish(own.subnet, sealed)
        if offer is not None:
            log.info("withdrew the offer of preset %s", name)

    async def _housekeeping(self) -> None:
        while True:
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()
            now = self._clock_ms()
            for oid, (_name, own) in list(self._own.items()):
                if own.expires_at_ms <= now:
                    del self._own[oid]
            async with self._lock:
                for name, offer in list(self.current.items()):
                    if now >= reannounce_at(offer) and name in self.presets:
                        # a re-announcement replaces the old copy in every book;
                        # the old id stays negotiable until it expires
                        del self.current[name]
                        await self._publish(name, self.presets[name])
            for aid, active in list(self.active.items()):
                if active.expires_at_ms is not None and active.expires_at_ms <= now:
                    await self.terminate(aid, "expired", notify=True)
            for key, item in list(self._open.items()):
                item.negotiation.expire_if_due(now)
                if item.negotiation.finished:
                    del self._open[key]
            await self._sync_offers()

    # -- reverse auction ----------------------------------------------------------------
    def _on_demand(self, demand: SignedDemand) -> None:
        if demand.requestor_id == self.node_id or demand.demand_id in self._seen_demands:
            return
        self._seen_demands[demand.demand_id] = None
        while len(self._seen_demands) > 4096:
            self._seen_demands.popitem(last=False)
        try:
            self._demands_send.send_nowait(demand)
        except trio.WouldBlock:
            log.warning("too many demands at once; demand %s not answered", demand.demand_id[:12])

    async def _auction_loop(self) -> None:
        limiter = trio.CapacityLimiter(16)
        async with trio.open_nursery() as nursery:
            async for demand in self._demands_recv:
                wanted = demand.as_demand()
                for offer in list(self.current.values()):
                    if offer.subnet == demand.subnet and matches(offer.as_offer(), wanted):
                        nursery.start_soon(self._answer, demand, offer, limiter)

    async def _answer(self, demand: SignedDemand, offer: SignedOffer, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            try:
                await self._rr.request(demand.requestor_id, PROPOSAL, {"demand_id": demand.demand_id, "offer": offer.raw})
            except RequestError as exc:
                log.debug("answering demand %s failed: %s", demand.demand_id[:12], exc)

    # -- negotiation (requests from requestors) -------------------------------------------
    async def handle(self, request: Request) -> object:
        msg = request.payload
        if not isinstance(msg, dict):
            raise RequestRejected("bad-request", "a negotiation message is a map")
        op = msg.get("op")
        if op == "counter":
            return await self._on_counter(request.peer, msg)
        if op == "propose_agreement":
            return await self._on_propose_agreement(request.peer, msg)
        if op == "reject":
            return self._on_reject(request.peer, msg)
        raise RequestRejected("bad-request", f"unknown op {op!r:.40}")

    async def _on_counter(self, requestor: str, msg: dict) -> object:  # type: ignore[type-arg]
        n = nid(msg)
        offer_id = field(msg, "offer_id", str)
        props = field(msg, "properties", dict)
        constraints = field(msg, "constraints", str)
        expires = field(msg, "expires_at_ms", int)
        if (requestor, n) in self._open:
            raise RequestRejected("illegal-move", "this negotiation id is already in use")
        own = self._own.get(offer_id)
        if own is None:
            return reject("offer-unknown", "this offer was withdrawn, replaced by newer terms, or has expired")
        preset_name, offer = own
        if len(self._open) >= MAX_NEGOTIATIONS or sum(1 for r, _ in self._open if r == requestor) >= MAX_NEGOTIATIONS_PER_REQUESTOR:
            return reject("busy", "too many open negotiations; try again later")
        now = self._clock_ms()
        neg = Negotiation(Role.PROVIDER, requestor_id=requestor, provider_id=self.node_id)
        neg.send(Propose(offer.properties, offer.constraints, offer.expires_at_ms), now_ms=now)
        try:
            neg.receive(Counter(props, constraints, expires), now_ms=now)
        except NegotiationError as exc:
            return reject("illegal-move", str(exc))
        rejection = self.policy.check(ProposalContext(requestor, props, offer.properties, now))
        preset = self.presets.get(preset_name)
        if rejection is None and (preset is None or not self.ledger.fits(preset.needs())):
            rejection = Rejection(NO_CAPACITY, "all the capacity of this preset is committed to other agreements")
        if rejection is not None:
            neg.send(Reject(rejection.code), now_ms=now)
            return reject(rejection.code, rejection.message)
        counter = Counter(self.policy.counter_properties(offer.properties, props), offer.constraints, now + COUNTER_TTL_MS)
        try:
            neg.send(counter, now_ms=now)
        except LocalProtocolError as exc:
            neg.send(Reject("no-match"), now_ms=now)
            return reject("no-match", f"our terms do not satisfy your constraints: {exc}")
        self._open[(requestor, n)] = _Open(neg, offer, preset_name, n)
        return {
            "move": "counter",
            "properties": dict(counter.properties),
            "constraints": counter.constraints,
            "expires_at_ms": counter.expires_at_ms,
        }

    async def _on_propose_agreement(self, requestor: str, msg: dict) -> object:  # type: ignore[type-arg]
        n = nid(msg)
        valid_until = field(msg, "valid_until_ms", int)
        body = field(msg, "body", bytes)
        signature = field(msg, "signature", bytes)
        item = self._open.get((requestor, n))
        if item is None:
            return reject("unknown-negotiation", "no open negotiation with this id (expired or never started)")
        neg = item.negotiation
        now = self._clock_ms()
        try:
            neg.receive(ProposeAgreement(valid_until), now_ms=now)
        except NegotiationError as exc:
            return reject("illegal-move", str(exc))
        demand = neg.proposals[Role.REQUESTOR]
        ours = neg.proposals[Role.PROVIDER]
        try:
            expected = build_agreement(
                network_id=self.network_id,
                offer_id=item.offer.offer_id,
                demand=Demand(requestor, demand.properties, demand.constraints),
                offer=Offer(self.node_id, ours.properties, ours.constraints),
                valid_until_ms=valid_until,
            )
        except AgreementInvalid as exc:
            neg.send(Reject("agreement-invalid"), now_ms=now)
            return reject("agreement-invalid", str(exc))
        if body != expected:
            neg.send(Reject("agreement-mismatch"), now_ms=now)
            return reject("agreement-mismatch", "the agreement is not the one these proposals produce")
        try:
            verify(requestor, body, signature)
        except WireError:
            neg.send(Reject("bad-signature"), now_ms=now)
            return reject("bad-signature", "the requestor's signature does not verify")
        preset = self.presets.get(item.preset)
        needs = preset.needs() if preset is not None else _needs_of(ours.properties)
        agreement_id = _aid(body)
        async with self._lock:
            if not self.ledger.reserve(agreement_id, needs):
                neg.send(Reject(NO_CAPACITY), now_ms=now)
                return reject(NO_CAPACITY, "the capacity was committed to another agreement meanwhile")
            neg.send(Approve(), now_ms=now)
            ours_sig = sign_agreement(self._key, body)
            raw = cosign(body, signature, ours_sig)
            agreement = verify_agreement(raw, network_id=self.network_id)
            try:
                await self._agreements.insert(
                    agreement_id=agreement.agreement_id, role="provider", peer_id=requestor,
                    offer_id=item.offer.offer_id, demand_id=None, state="approved", raw=raw,
                )
            except BaseException:
                self.ledger.release(agreement_id)
                raise
            self.active[agreement_id] = ActiveAgreement(
                agreement_id, requestor, item.preset, _expiration(agreement.terms, agreement.demand_properties), needs
            )
        del self._open[(requestor, n)]
        log.info("approved agreement %s with %s (preset %s)", agreement_id[:12], requestor, item.preset)
        self._wake.set()
        return {"move": "approve", "signature": ours_sig}

    def _on_reject(self, requestor: str, msg: dict) -> object:  # type: ignore[type-arg]
        n = nid(msg)
        reason = field(msg, "reason", str)[:200] or "rejected"
        item = self._open.pop((requestor, n), None)
        if item is not None:
            try:
                item.negotiation.receive(Reject(reason), now_ms=self._clock_ms())
            except NegotiationError:
                pass
        return {}

    # -- agreements ------------------------------------------------------------------
    def _activate(self, agreement_id: str, requestor: str, offer_props, terms, demand_props) -> None:  # type: ignore[no-untyped-def]
        preset = str(offer_props.get("yagna.preset", ""))
        needs = _needs_of(offer_props)
        self.ledger.reserve(agreement_id, needs)
        self.active[agreement_id] = ActiveAgreement(agreement_id, requestor, preset, _expiration(terms, demand_props), needs)

    async def terminate(self, agreement_id: str, reason: str, *, notify: bool) -> bool:
        """End an approved agreement of ours; free its capacity; tell the requestor if ``notify``."""
        active = self.active.pop(agreement_id, None)
        if active is None:
            return False
        self.ledger.release(agreement_id)
        await self._agreements.set_state(agreement_id, "terminated", reason)
        log.info("agreement %s terminated: %s", agreement_id[:12], reason)
        self._wake.set()
        if notify:
            with trio.move_on_after(NEGOTIATE.timeout):
                try:
                    await self._rr.request(active.requestor_id, NEGOTIATE,
                                           {"op": "terminate", "agreement_id": agreement_id, "reason": reason})
                except RequestError as exc:
                    log.info("could not tell %s that agreement %s ended: %s", active.requestor_id, agreement_id[:12], exc)
        return True

    def status(self) -> dict[str, object]:
        return {
            "capacity": _cap_json(self.ledger.total),
            "committed": _cap_json(self.ledger.used()),
            "free": _cap_json(self.ledger.free()),
            "presets": [
                {**p.to_json(), "offer_id": self.current[n].offer_id if n in self.current else None}
                for n, p in sorted(self.presets.items())
            ],
            "active_agreements": len(self.active),
            "open_negotiations": len(self._open),
            "policy": self.policy.config.to_json(),
        }


def _aid(body: bytes) -> str:
    """The agreement id inside a body we built ourselves."""
    return str(decode(body)[1])  # type: ignore[index]


def _needs_of(props) -> Capacity:  # type: ignore[no-untyped-def]
    return Capacity(int(props.get(INF_CPU_THREADS, 1)), float(props.get(INF_MEM_GIB, 0)), float(props.get(INF_STORAGE_GIB, 0)))


def _expiration(terms, demand_props) -> int | None:  # type: ignore[no-untyped-def]
    value = terms.get(SRV_COMP_EXPIRATION, demand_props.get(SRV_COMP_EXPIRATION))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cap_json(c: Capacity) -> dict[str, object]:
    return {"threads": c.threads, "mem_gib": c.mem_gib, "storage_gib": c.storage_gib}


__all__ = ["ActiveAgreement", "PresetExists", "PresetNotFound", "ProviderMarket"]
