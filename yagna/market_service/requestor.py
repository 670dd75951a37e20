"""The requestor's side of the market: demands, proposals, negotiation, agreements.

A demand is matched at once against every offer the node already knows (its
offer book is kept current by gossip and catch-up), then against each new
offer as it arrives. It is also published, signed, on the subnet's demand
topic: providers whose offers match answer it directly with their signed
offer (the reverse auction), so a requestor never waits for a re-broadcast.

Every proposal, withdrawal, rejection and agreement becomes an *event* with
a sequence number in the demand's bounded log, which the REST API serves
(``?after=N`` with a long-poll timeout) for the SDK.

Negotiation: the requestor counters a provider's offer with its demand, the
provider counters back (echoing the negotiable terms it accepts, or refusing
with a coded reason), the requestor proposes the agreement it has built and
signed, and the provider's answer carries its signature. Both sides then
hold the same co-signed document. :meth:`RequestorMarket.negotiate` does all
of it for the best providers by :class:`market.strategy.Strategy`, recording
each outcome in the node's own provider records (its reputation source) so a
failing provider cools down instead of being retried forever.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from market.agreement import AgreementInvalid, build_agreement, cosign, sign_agreement, verify_agreement
from market.constraints import parse
from market.errors import MarketError
from market.matching import Demand, Offer, matches
from market.negotiation import Approve, Counter, Negotiation, NegotiationError, Propose, ProposeAgreement, Reject, Role
from market.offers import SignedOffer, make_demand
from market.properties import (
    COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC,
    COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC,
    SRV_COMP_EXPIRATION,
    validate_properties,
)
from market.strategy import Candidate, ProviderRecord, Strategy, StrategyConfig, record_outcome
from yagna.core.envelope import content_id
from yagna.core.identity import NodeKey
from yagna.core.wire import decode
from yagna.net.errors import RemoteError, RequestError, RequestRejected, RequestTimeout
from yagna.net.reqresp import Request
from yagna.market_service.offers import OfferDirectory, now_ms
from yagna.market_service.protocol import NEGOTIATE, PROPOSAL, field as msg_field
from yagna.store.market_repos import Agreements, ProviderRecords

log = logging.getLogger("yagna.market.requestor")

MAX_EVENTS = 10_000
MAX_DEMANDS = 256
DEFAULT_EXPIRATION_S = 30 * 60
PROPOSE_VALID_MS = 30_000
DEFAULT_DEBIT_NOTE_INTERVAL_S = 120
DEFAULT_PAYMENT_TIMEOUT_S = 120


class DemandNotFound(MarketError):
    pass


class NegotiationFailed(MarketError):
    """A negotiation step did not succeed; ``code`` says why (shown to the user)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class _Talk:
    negotiation: Negotiation
    nid: str
    offer: SignedOffer


@dataclass
class DemandState:
    demand_id: str
    subnet: str
    properties: dict[str, object]
    constraints: str
    raw: bytes
    created_at_ms: int
    expires_at_ms: int
    proposals: dict[str, SignedOffer] = field(default_factory=dict)
    talks: dict[str, _Talk] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    events: deque[dict[str, object]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    seq: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def demand(self) -> Demand:
        return Demand(issuer="", properties=self.properties, constraints=self.constraints)

    def emit(self, kind: str, **data: object) -> None:
        self.seq += 1
        self.events.append({"seq": self.seq, "type": kind, "at_ms": int(time.time() * 1000), **data})
        self.changed.set()
        self.changed = trio.Event()

    def view(self) -> dict[str, object]:
        return {
            "demand_id": self.demand_id,
            "subnet": self.subnet,
            "properties": self.properties,
            "constraints": self.constraints,
            "created_at_ms": self.created_at_ms,
            "expires_at_ms": self.expires_at_ms,
            "proposals": len(self.proposals),
            "last_seq": self.seq,
        }


def proposal_view(offer: SignedOffer) -> dict[str, object]:
    return {
        "offer_id": offer.offer_id,
        "provider_id": offer.provider_id,
        "subnet": offer.subnet,
        "properties": offer.properties,
        "constraints": offer.constraints,
        "expires_at_ms": offer.expires_at_ms,
    }


class RequestorMarket:
    def __init__(
        self,
        *,
        key: NodeKey,
        network_id: str,
        directory: OfferDirectory,
        rr,  # type: ignore[no-untyped-def]
        agreements: Agreements,
        records: ProviderRecords,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._key = key
        self.node_id = key.node_id
        self.network_id = network_id
        self._dir = directory
        self._rr = rr
        self._agreements = agreements
        self._records = records
        self._clock_ms = clock_ms
        self.demands: dict[str, DemandState] = {}
        directory.on_offer(self._on_offer)
        directory.on_removed(self._on_removed)
        rr.register(PROPOSAL, self._on_auction_proposal)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(1.0)
            now = self._clock_ms()
            for demand_id, state in list(self.demands.items()):
                if state.expires_at_ms <= now:
                    del self.demands[demand_id]
                    state.emit("demand-expired")

    # -- demands ---------------------------------------------------------------------
    async def create_demand(
        self,
        properties: Mapping[str, object],
        constraints: str,
        *,
        subnet: str = "public",
        expiration_s: int = DEFAULT_EXPIRATION_S,
        ttl_s: int = 3600,
    ) -> DemandState:
        """Validate, sign and publish a demand; match it against the known offers at once.

        Raises :class:`~market.errors.ConstraintSyntaxError` (with the position)
        or :class:`~market.errors.PropertyError` for bad input.
        """
        constraints = constraints.strip() or "()"  # no constraints: Golem's empty filter
        parse(constraints)
        now = self._clock_ms()
        props: dict[str, object] = dict(validate_properties(dict(properties)))
        props.setdefault(SRV_COMP_EXPIRATION, now + expiration_s * 1000)
        # Golem's SDK states the payment terms too; a term binds only when both sides state it
        props.setdefault(COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC, DEFAULT_DEBIT_NOTE_INTERVAL_S)
        props.setdefault(COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC, DEFAULT_PAYMENT_TIMEOUT_S)
        if len(self.demands) >= MAX_DEMANDS:
            raise NegotiationFailed("too-many-demands", f"at most {MAX_DEMANDS} demands at once; delete some first")
        sealed = make_demand(
            self._key, network_id=self.network_id, subnet=subnet, properties=props,
            constraints=constraints, created_at_ms=now, expires_at_ms=now + ttl_s * 1000,
        )
        state = DemandState(content_id(sealed), subnet, props, constraints, sealed, now, now + ttl_s * 1000)
        self.demands[state.demand_id] = state
        await self._dir.join(subnet)
        for offer in self._dir.book.match(Demand(self.node_id, props, constraints), now, subnet=subnet):
            self._propose(state, offer, "book")
        await self._dir.publish_demand(subnet, sealed)
        log.info("demand %s in %s: %d proposals from known offers", state.demand_id[:12], subnet, len(state.proposals))
        return state

    def get(self, demand_id: str) -> DemandState:
        state = self.demands.get(demand_id)
        if state is None:
            raise DemandNotFound(f"no demand {demand_id!r} (expired, deleted, or never created)")
        return state

    def delete_demand(self, demand_id: str) -> None:
        state = self.get(demand_id)
        del self.demands[demand_id]
        state.emit("demand-deleted")

    async def events(self, demand_id: str, after: int, timeout: float) -> list[dict[str, object]]:
        """Events after ``after``; waits up to ``timeout`` s for the first one."""
        state = self.get(demand_id)
        if state.seq <= after and timeout > 0:
            with trio.move_on_after(timeout):
                await state.changed.wait()
        # seqs are consecutive and the deque keeps the newest: the ones after `after` are its tail
        new = state.seq - max(after, 0)
        if new <= 0:
            return []
        events = list(state.events)
        return events[-new:] if new < len(events) else events

    def _propose(self, state: DemandState, offer: SignedOffer, source: str) -> None:
        if offer.offer_id in state.proposals or offer.provider_id == self.node_id:
            return
        state.proposals[offer.offer_id] = offer
        state.emit("proposal", source=source, **proposal_view(offer))

    def _on_offer(self, offer: SignedOffer, source: str) -> None:
        for state in self.demands.values():
            if offer.subnet == state.subnet and matches(offer.as_offer(), Demand(self.node_id, state.properties, state.constraints)):
                self._propose(state, offer, source)

    def _on_removed(self, offer_id: str) -> None:
        for state in self.demands.values():
            if state.proposals.pop(offer_id, None) is not None:
                state.emit("proposal-withdrawn", offer_id=offer_id)

    async def _on_auction_proposal(self, request: Request) -> object:
        msg = request.payload
        if not isinstance(msg, dict):
            raise RequestRejected("bad-request", "expected a map")
        demand_id = msg_field(msg, "demand_id", str)
        raw = msg_field(msg, "offer", bytes)
        state = self.demands.get(demand_id)
        if state is None:
            raise RequestRejected("unknown-demand", "no such open demand here")
        offer = self._dir.take_offer(state.subnet, raw, source="auction")
        if offer is None or offer.provider_id != request.peer:
            raise RequestRejected("offer-refused", "the offer is invalid, expired, over a cap, or not yours")
        if matches(offer.as_offer(), Demand(self.node_id, state.properties, state.constraints)):
            self._propose(state, offer, "auction")
        return {}

    # -- negotiation -------------------------------------------------------------------
    async def counter(self, demand_id: str, offer_id: str, *, properties: Mapping[str, object] | None = None,
                      constraints: str | None = None) -> dict[str, object]:
        """Counter ``offer_id`` with the demand (optionally changed); return the provider's answer."""
        state = self.get(demand_id)
        offer = state.proposals.get(offer_id) or self._dir.book.get(offer_id)
        if offer is None:
            raise NegotiationFailed("offer-unknown", "no such live offer (withdrawn, replaced or expired)")
        props = dict(properties) if properties is not None else dict(state.properties)
        text = constraints if constraints is not None else state.constraints
        now = self._clock_ms()
        neg = Negotiation(Role.REQUESTOR, requestor_id=self.node_id, provider_id=offer.provider_id)
        neg.receive(Propose(offer.properties, offer.constraints, offer.expires_at_ms), now_ms=now)
        mine = Counter(props, text, min(state.expires_at_ms, now + 5 * 60_000))
        try:
            neg.send(mine, now_ms=now)
        except NegotiationError as exc:
            raise NegotiationFailed("no-match", str(exc)) from None
        nid = secrets.token_hex(16)
        state.attempts[offer.provider_id] = state.attempts.get(offer.provider_id, 0) + 1
        started = time.monotonic()
        reply = await self._ask(offer.provider_id, {
            "op": "counter", "nid": nid, "offer_id": offer.offer_id,
            "properties": props, "constraints": text, "expires_at_ms": mine.expires_at_ms,
        })
        latency = (time.monotonic() - started) * 1000
        if reply.get("move") == "reject":
            code, message = str(reply.get("code") or "rejected")[:64], str(reply.get("message", ""))[:500]
            try:
                neg.receive(Reject(code), now_ms=self._clock_ms())
            except NegotiationError:
                pass  # a refusal past the deadline still ends this attempt (it raised out of counter())
            state.emit("rejected", offer_id=offer_id, provider_id=offer.provider_id, code=code, message=message)
            await self._record(offer.provider_id, "rejection", latency)
            raise NegotiationFailed(code, message)
        try:
            theirs = Counter(msg_field(reply, "properties", dict), msg_field(reply, "constraints", str),
                             msg_field(reply, "expires_at_ms", int))
            neg.receive(theirs, now_ms=self._clock_ms())
        except (NegotiationError, RequestRejected) as exc:
            await self._record(offer.provider_id, "failure", latency)
            raise NegotiationFailed("bad-counter", f"the provider's counter-proposal is invalid: {exc}") from None
        state.talks[offer_id] = _Talk(neg, nid, offer)
        await self._record(offer.provider_id, None, latency)
        return {"state": "countered", "offer_id": offer_id, "provider_id": offer.provider_id,
                "properties": dict(theirs.properties), "constraints": theirs.constraints,
                "expires_at_ms": theirs.expires_at_ms, "terms": neg.settled_terms()}

    async def propose_agreement(self, demand_id: str, offer_id: str, *, valid_for_ms: int = PROPOSE_VALID_MS) -> dict[str, object]:
        """Build, sign and propose the agreement on the last counter; return it approved (or raise)."""
        state = self.get(demand_id)
        talk = state.talks.get(offer_id)
        if talk is None:
            raise NegotiationFailed("not-countered", "counter this proposal first; the provider must answer it")
        neg = talk.negotiation
        now = self._clock_ms()
        valid_until = now + valid_for_ms
        try:
            neg.send(ProposeAgreement(valid_until), now_ms=now)
        except NegotiationError as exc:
            raise NegotiationFailed("illegal-move", str(exc)) from None
        mine, theirs = neg.proposals[Role.REQUESTOR], neg.proposals[Role.PROVIDER]
        body = build_agreement(
            network_id=self.network_id, offer_id=talk.offer.offer_id,
            demand=Demand(self.node_id, mine.properties, mine.constraints),
            offer=Offer(talk.offer.provider_id, theirs.properties, theirs.constraints),
            valid_until_ms=valid_until,
        )
        signature = sign_agreement(self._key, body)
        agreement_id = str(decode(body)[1])  # type: ignore[index]
        started = time.monotonic()
        try:
            reply = await self._ask(talk.offer.provider_id, {
                "op": "propose_agreement", "nid": talk.nid, "valid_until_ms": valid_until,
                "body": body, "signature": signature,
            })
        finally:
            if state.talks.get(offer_id) is talk:  # a concurrent negotiation may have moved on already
                del state.talks[offer_id]
        latency = (time.monotonic() - started) * 1000
        if reply.get("move") != "approve":
            code, message = str(reply.get("code", "rejected")), str(reply.get("message", ""))
            state.emit("agreement-rejected", offer_id=offer_id, provider_id=talk.offer.provider_id, code=code, message=message)
            await self._record(talk.offer.provider_id, "rejection", latency)
            raise NegotiationFailed(code, message)
        theirs_sig = reply.get("signature")
        try:
            if not isinstance(theirs_sig, bytes):
                raise AgreementInvalid("no provider signature")
            raw = cosign(body, signature, theirs_sig)
            agreement = verify_agreement(raw, network_id=self.network_id)
            neg.receive(Approve(), now_ms=self._clock_ms())
        except (AgreementInvalid, NegotiationError) as exc:
            await self._record(talk.offer.provider_id, "failure", latency)
            raise NegotiationFailed("bad-approval", f"the provider's approval does not verify: {exc}") from None
        await self._agreements.insert(
            agreement_id=agreement_id, role="requestor", peer_id=agreement.provider_id,
            offer_id=agreement.offer_id, demand_id=demand_id, state="approved", raw=raw,
        )
        await self._record(talk.offer.provider_id, "success", latency)
        state.emit("agreement", agreement_id=agreement_id, provider_id=agreement.provider_id, offer_id=offer_id, state="approved")
        log.info("agreement %s approved by %s", agreement_id[:12], agreement.provider_id)
        return agreement_view(agreement, state="approved", role="requestor")

    async def negotiate(self, demand_id: str, *, count: int = 1, config: StrategyConfig | None = None,
                        timeout: float = 10.0) -> dict[str, object]:
        """Get up to ``count`` approved agreements from the best-ranked proposals.

        Each provider is tried at most once per call and the strategy's per-demand
        attempt limit and cool-down apply, so a failing provider is not retried forever.
        """
        state = self.get(demand_id)
        strategy = Strategy(config or StrategyConfig())
        records = {k: ProviderRecord(**v) for k, v in (await self._records.all()).items()}
        candidates = [Candidate(o.offer_id, o.provider_id, o.properties) for o in state.proposals.values()
                      if o.expires_at_ms > self._clock_ms()]
        ranked, dropped = strategy.rank(candidates, records, state.attempts, self._clock_ms())
        agreements: list[dict[str, object]] = []
        failures: list[dict[str, object]] = [
            {"offer_id": d.candidate.offer_id, "provider_id": d.candidate.provider_id, "code": d.code, "message": d.message}
            for d in dropped
        ]
        tried: set[str] = set()
        with trio.move_on_after(timeout):
            for item in ranked:
                if len(agreements) >= count:
                    break
                c = item.candidate
                if c.provider_id in tried:
                    continue
                tried.add(c.provider_id)
                try:
                    await self.counter(demand_id, c.offer_id)
                    agreements.append(await self.propose_agreement(demand_id, c.offer_id))
                except NegotiationFailed as exc:
                    failures.append({"offer_id": c.offer_id, "provider_id": c.provider_id, "code": exc.code, "message": exc.message})
        return {"agreements": agreements, "failures": failures}

    async def _ask(self, provider: str, msg: dict[str, object]) -> dict[str, object]:
        try:
            reply = await self._rr.request(provider, NEGOTIATE, msg)
        except RequestTimeout:
            await self._record(provider, "timeout", None)
            raise NegotiationFailed("timeout", f"provider {provider} did not answer in time") from None
        except RemoteError as exc:
            await self._record(provider, "failure", None)
            raise NegotiationFailed(exc.code, exc.message) from None
        except RequestError as exc:
            await self._record(provider, "failure", None)
            raise NegotiationFailed("unreachable", f"provider {provider} is unreachable: {exc}") from None
        if not isinstance(reply, dict):
            await self._record(provider, "failure", None)
            raise NegotiationFailed("bad-reply", "the provider's reply is not a map")
        return reply

    async def record(self, provider: str, outcome: str, latency_ms: float | None = None) -> dict[str, object]:
        """A task outcome reported by the SDK (success, failure, timeout, disagreement); returns the record."""
        await self._record(provider, outcome, latency_ms)
        return (await self.reputation(provider))[0]

    async def reputation(self, provider: str | None = None) -> list[dict[str, object]]:
        """The node's own record of each provider it used, best first, with the score the strategy uses."""
        rows = await self._records.all()
        out = []
        for node_id, fields in rows.items():
            if provider is not None and node_id != provider:
                continue
            record = ProviderRecord(**fields)
            out.append({"provider_id": node_id, **fields, "reputation": round(record.reputation, 4)})
        return sorted(out, key=lambda r: (-float(r["reputation"]), str(r["provider_id"])))  # type: ignore[arg-type]

    async def _record(self, provider: str, outcome: str | None, latency_ms: float | None) -> None:
        """Update the node's own record of ``provider`` (None: latency only)."""
        now = self._clock_ms()

        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            record = ProviderRecord(**current) if current else ProviderRecord()
            if outcome is None:
                if latency_ms is not None:
                    record.latency_ms = latency_ms if record.latency_ms is None else 0.7 * record.latency_ms + 0.3 * latency_ms
            else:
                record = record_outcome(record, outcome, now, latency_ms=latency_ms)  # type: ignore[arg-type]
            return record.__dict__

        await self._records.update(provider, change)  # one transaction: concurrent outcomes all count


def agreement_view(agreement, *, state: str, role: str, reason: str | None = None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "agreement_id": agreement.agreement_id,
        "role": role,
        "state": state,
        "reason": reason,
        "requestor_id": agreement.requestor_id,
        "provider_id": agreement.provider_id,
        "offer_id": agreement.offer_id,
        "terms": dict(agreement.terms),
        "offer_properties": dict(agreement.offer_properties),
        "demand_properties": dict(agreement.demand_properties),
        "offer_constraints": agreement.offer_constraints,
        "demand_constraints": agreement.demand_constraints,
        "valid_until_ms": agreement.valid_until_ms,
        "document": base64.b64encode(agreement.raw).decode(),
    }
