"""The requestor's deployments: services from a manifest, kept placed, reachable and paid.

A deployment (``yagna deploy create app.yaml``) is the manifest's replicas, each one a task of
this manager that goes round one loop (:meth:`DeploymentManager._replica`):

    pending -> negotiating -> deploying -> running -> (provider lost) -> failing-over -> negotiating ...
                                                   -> closed (``deploy close``)

- **Lease.** Each placement is an order in the reverse auction: a fresh demand with the profile's
  size (threads, memory, storage) and the placement's attributes as constraints, the service's
  price cap as a cap on an hour's worst-case cost; the best bid wins (the market's strategy: price,
  then reputation), preferring providers that do not host a sibling replica already. The
  agreement lasts :attr:`DeployConfig.lease_s` (the longest providers accept by default: a day)
  and is paid by the interval through its payment channel; its deposit covers
  :attr:`DeployConfig.deposit_hours` of the worst case, not the lease's whole life.
- **Ports.** Every exposed port of every replica has its own ``127.0.0.1`` listener
  (:class:`~yagna.activity_service.tunnel.PortListener`), bound when the deployment is created
  and kept for its life; a failover points it at the new replica.
- **Keeping it alive.** The provider restarts the process and checks its health; we poll the
  activity's state every :attr:`DeployConfig.watch_s`: a provider that does not answer for
  :attr:`DeployConfig.lost_after_s`, an activity that ended or an agreement that was terminated is
  a lost replica: its agreement is terminated (nothing is paid beyond the last voucher), and it is
  placed again elsewhere, with an empty volume (its log says so).

Deployments live in this daemon's memory: a restart of the requestor's daemon ends them (its
providers stop the containers when its keep-alive stops).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import trio

from market.strategy import StrategyConfig
from yagna.activity_service.tunnel import PortListener, Target
from yagna.core.errors import YagnaError
from yagna.core.money import format_amount, parse_amount
from yagna.deploy_service.logs import LogRing

if TYPE_CHECKING:  # the manifest parser (and PyYAML) loads on the first deployment, not at start-up
    from requestor_sdk.sdl import ComputeProfile, Manifest, ServiceSpec

log = logging.getLogger("yagna.deploy")

MAX_DEPLOYMENTS = 64
TOP_UP_AT_PERCENT = 60
"""A lease's deposit is topped up when what was signed reaches this share of it."""
DEBIT_NOTE_INTERVAL = "golem.com.scheme.payu.debit-note.interval-sec"
PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec"
STATES = ("pending", "negotiating", "deploying", "running", "failing-over", "closing", "closed")


class DeployError(YagnaError):
    """A deployment request we cannot honour (``code``: bad-manifest, port-in-use, unknown-deployment, ...)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code, self.status = code, status
        super().__init__(message)


class _PlacementFailed(Exception):
    pass


@dataclass(frozen=True)
class DeployConfig:
    subnet: str = "public"
    lease_s: int = 24 * 3600
    deposit_hours: float = 1.0
    ready_timeout_s: float = 60.0
    """From the agreement to a running service with its tunnel up; past it, the provider is left."""
    watch_s: float = 1.0
    lost_after_s: float = 3.0
    find_timeout_s: float = 10.0
    """One round of looking for a bid; the replica retries with a back-off after it."""


@dataclass
class PortBinding:
    container_port: int
    listener: PortListener

    def view(self) -> dict[str, Any]:
        return {"container_port": self.container_port, "local_port": self.listener.port,
                "url": f"http://127.0.0.1:{self.listener.port}"}


@dataclass
class Replica:
    deployment_id: str
    service: ServiceSpec
    profile: ComputeProfile
    index: int
    cap_per_hour: int | None
    ports: list[PortBinding] = field(default_factory=list)
    state: str = "pending"
    provider_id: str | None = None
    agreement_id: str | None = None
    activity_id: str | None = None
    batch_id: str | None = None
    restarts: int = 0
    healthy: bool | None = None
    failovers: int = 0
    reason: str | None = None
    running_since: float | None = None
    agreements: list[str] = field(default_factory=list)
    """Every agreement this replica ran under (what it cost is summed over them)."""
    lost: set[str] = field(default_factory=set)
    """Providers it was lost on: not asked again."""
    hourly: int = 0
    """The current lease's worst case per hour (base units): what a top-up adds per hour."""
    top_ups: int = 0
    next_top_up: float = 0.0
    """Trio time before which no automatic top-up is tried again (after one failed)."""
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def name(self) -> str:
        return f"{self.service.name}-{self.index}"

    def set(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason = state, reason
        self.changed.set()
        self.changed = trio.Event()


@dataclass
class Deployment:
    deployment_id: str
    source: str
    manifest: Manifest
    created_at: float
    replicas: list[Replica]
    log: LogRing = field(default_factory=LogRing)
    state: str = "active"
    closed_at: float | None = None
    reason: str | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    nursery: trio.Nursery | None = None
    """Its listeners, replicas and log pumps (cancelled by a close)."""
    done: trio.Event = field(default_factory=trio.Event)
    payment_interval_s: int | None = None
    """Asked of providers as the debit-note interval (negotiable; their presets' otherwise)."""
    placing: trio.Lock = field(default_factory=trio.Lock)
    """Replicas lease one at a time, so each sees the providers its siblings took."""


class DeploymentManager:
    def __init__(self, *, market: Any, activity: Any, payments: Any, rr: Any, config: DeployConfig | None = None) -> None:
        """``market``: the market service (its requestor side and ``terminate``); ``activity``, ``payments``:
        the requestor sides of those services."""
        self._market = market
        self._activity = activity
        self._payments = payments
        self._rr = rr
        self.config = config or DeployConfig()
        self.deployments: dict[str, Deployment] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # -- create -----------------------------------------------------------------------------
    async def create(self, text: str, *, source: str = "manifest", rates: dict[str, Decimal] | None = None,
                     ports: dict[tuple[str, int], int] | None = None,
                     payment_interval_s: int | None = None) -> dict[str, Any]:
        """Parse, bind the local ports, start placing every replica; the view at once (replicas pending)."""
        from requestor_sdk.sdl import ManifestError, parse_manifest

        if self._nursery is None:
            raise DeployError("not-running", "the deployment service is not running", 503)
        if len([d for d in self.deployments.values() if d.state == "active"]) >= MAX_DEPLOYMENTS:
            raise DeployError("too-many-deployments", f"at most {MAX_DEPLOYMENTS} deployments at once; close some first")
        try:
            manifest = parse_manifest(text, source=source, rates=rates or {})
        except ManifestError as exc:
            raise DeployError("bad-manifest", str(exc)) from None
        wanted = dict(ports or {})
        counts = {d.service: 0 for d in manifest.deployments}
        for d in manifest.deployments:
            counts[d.service] += d.count
        for (service, port), local in wanted.items():
            spec = manifest.services.get(service)
            if spec is None or port not in [p.port for p in spec.expose]:
                raise DeployError("bad-port", f"--port {service}:{port}: the manifest has no service {service!r} "
                                              f"exposing port {port}")
            if not 1 <= local or local + counts.get(service, 1) - 1 > 65535:
                raise DeployError("bad-port", f"--port {service}:{port}={local}: its {counts.get(service, 1)} replica(s) "
                                              f"need ports {local} to {local + counts.get(service, 1) - 1}, past 65535")
        for d in manifest.deployments:
            try:
                _volumes(manifest.services[d.service], manifest.profiles[d.profile])
            except KeyError as exc:
                raise DeployError("bad-manifest", f"{source}: services.{d.service}.params.storage mounts volume "
                                                  f"{exc.args[0]!r}, which profile {d.profile!r} does not have") from None
        deployment_id = secrets.token_hex(8)
        replicas: list[Replica] = []
        for d in manifest.deployments:
            placement = manifest.placements[d.placement]
            cap = placement.pricing.get(d.service)
            cap_units = parse_amount(cap.tokens_per_hour) if cap is not None else None
            for i in range(d.count):
                replicas.append(Replica(deployment_id, manifest.services[d.service], manifest.profiles[d.profile],
                                        len([r for r in replicas if r.service.name == d.service]), cap_units))
        dep = Deployment(deployment_id, source, manifest, time.time(), replicas, payment_interval_s=payment_interval_s)
        listeners: list[PortListener] = []
        for rep in replicas:
            for exposed in rep.service.expose:
                base = wanted.get((rep.service.name, exposed.port))
                local = base + rep.index if base else 0
                listener = PortListener(self._rr, local)
                listeners.append(listener)
                rep.ports.append(PortBinding(exposed.port, listener))
        bound = trio.Event()
        failure: list[str] = []

        async def deployment_task() -> None:
            try:
                await run_deployment()
            finally:
                dep.done.set()  # also after a failed bind (an early return)

        async def run_deployment() -> None:
            with dep.scope:
                try:
                    async with trio.open_nursery() as nursery:
                        dep.nursery = nursery
                        for listener in listeners:
                            try:
                                await nursery.start(listener.run)
                            except OSError as exc:
                                failure.append(f"cannot listen on 127.0.0.1:{listener.requested_port}: {exc.strerror}")
                                nursery.cancel_scope.cancel()
                                return
                        bound.set()
                        for rep in replicas:
                            nursery.start_soon(self._replica, dep, rep)
                except Exception as exc:  # noqa: BLE001 - the deployment's boundary: it ends, the node does not
                    log.exception("deployment %s failed", deployment_id)
                    dep.state, dep.reason = "failed", f"internal error: {exc!r}"
                finally:
                    bound.set()
                    with trio.CancelScope(shield=True):
                        await self._release_all(dep)

        self.deployments[deployment_id] = dep
        self._nursery.start_soon(deployment_task)
        await bound.wait()
        if failure:
            await dep.done.wait()
            del self.deployments[deployment_id]
            raise DeployError("port-in-use", failure[0], 409)
        for note in manifest.notes:
            dep.log.add("yagna", "deployment", note)
        log.info("deployment %s: %d replica(s) of %s", deployment_id, len(replicas), source)
        return self.view(dep)

    # -- a replica's life ---------------------------------------------------------------------
    async def _replica(self, dep: Deployment, rep: Replica) -> None:
        """The replica's loop; a bug in it is logged and the replica placed again, never the node's end."""
        while True:
            try:
                await self._replica_loop(dep, rep)
            except Exception as exc:  # noqa: BLE001 - the boundary of a replica's task
                log.exception("deployment %s replica %s: unexpected failure", dep.deployment_id, rep.name)
                dep.log.add("yagna", rep.name, f"internal error: {exc!r}; placing the replica again")
                rep.set("pending", f"internal error: {exc!r}")
                await self._release(rep, "internal error")
                await trio.sleep(5.0)

    async def _replica_loop(self, dep: Deployment, rep: Replica) -> None:
        backoff = 1.0
        while True:
            try:
                await self._place(dep, rep)
            except _PlacementFailed as exc:
                dep.log.add("yagna", rep.name, f"placement failed: {exc}; trying again in {backoff:g} s")
                rep.set("pending", str(exc))
                await self._release(rep, f"placement failed: {exc}")
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            why = await self._watch(rep)
            for binding in rep.ports:
                binding.listener.point(None)
            rep.failovers += 1
            if rep.provider_id:
                rep.lost.add(rep.provider_id)
            dep.log.add("yagna", rep.name, f"replica lost on {rep.provider_id}: {why}; placing it elsewhere "
                                           "(it starts with empty volumes)")
            log.warning("deployment %s replica %s lost on %s: %s", dep.deployment_id, rep.name, rep.provider_id, why)
            rep.set("failing-over", why)
            await self._release(rep, f"replica lost: {why}")

    async def _place(self, dep: Deployment, rep: Replica) -> None:
        rep.set("negotiating")
        async with dep.placing:
            agreement_id, provider_id, props = await self._lease(dep, rep)
            rep.agreement_id, rep.provider_id = agreement_id, provider_id
        rep.agreements.append(agreement_id)
        rep.activity_id = rep.batch_id = None
        rep.restarts, rep.healthy, rep.running_since = 0, None, None
        rep.hourly = self._cap_deposit(agreement_id, props)
        rep.set("deploying")
        dep.log.add("yagna", rep.name, f"leased from {provider_id} (agreement {agreement_id[:12]})")
        try:
            with trio.fail_after(self.config.ready_timeout_s):
                created = await self._activity.create(agreement_id)
                rep.activity_id = str(created["activity_id"])
                started = await self._activity.exec(rep.activity_id, self._script(rep))
                rep.batch_id = str(started["batch_id"])
                assert self._nursery is not None
                await self._wait_ready(dep, rep)
        except trio.TooSlowError:
            raise _PlacementFailed(f"not serving within {self.config.ready_timeout_s:g} s on {provider_id}") from None
        except YagnaError as exc:
            raise _PlacementFailed(f"{getattr(exc, 'code', type(exc).__name__)}: {exc}") from None
        for binding in rep.ports:
            binding.listener.point(Target(provider_id, rep.activity_id, binding.container_port))
        rep.running_since = time.time()
        rep.set("running")
        dep.log.add("yagna", rep.name, "serving: " + (", ".join(
            f"127.0.0.1:{b.listener.port} -> {b.container_port}" for b in rep.ports) or "no ports"))

    def _script(self, rep: Replica) -> list[dict[str, Any]]:
        s = rep.service
        serve: dict[str, Any] = {"env": {}}
        if s.command:
            serve["argv"] = list(s.command) + list(s.args or [])
        elif s.args:
            serve["args"] = list(s.args)
        ports = [p.port for p in s.expose]
        if s.health is not None:
            serve["health"] = dict(s.health)
        elif ports:
            serve["health"] = {"tcp": ports[0]}
        return [{"deploy": {"image": s.image, "env": dict(s.env), "ports": ports, "name": s.image,
                            "volumes": _volumes(rep.service, rep.profile)}},
                {"start": {}}, {"serve": serve}]

    async def _lease(self, dep: Deployment, rep: Replica) -> tuple[str, str, dict[str, Any]]:
        """An approved agreement for the replica (the best bid under its cap), or _PlacementFailed."""
        props, constraints = _demand(rep.profile, dep.manifest, rep)
        # Its own demand per placement: identical demands made in the same millisecond would be one
        # (content-addressed), and two replicas would negotiate on it at once.
        props["yagna.deploy.placement"] = f"{dep.deployment_id}/{rep.name}/{secrets.token_hex(4)}"
        if dep.payment_interval_s is not None:
            props[f"{DEBIT_NOTE_INTERVAL}?"] = dep.payment_interval_s
            props[f"{PAYMENT_TIMEOUT}?"] = max(2, dep.payment_interval_s * 2)
        siblings = {r.provider_id for r in dep.replicas if r is not rep and r.provider_id and r.state != "pending"}
        demand = await self._market.requestor.create_demand(props, constraints, subnet=self.config.subnet,
                                                  expiration_s=self.config.lease_s, ttl_s=600)
        try:
            deadline = trio.current_time() + self.config.find_timeout_s
            failures: list[dict[str, Any]] = []
            rounds = 0
            while trio.current_time() < deadline:
                deny = rep.lost | (siblings if rounds < 3 else set())
                config = StrategyConfig(deny=frozenset(deny), max_estimate=rep.cap_per_hour, expected_duration_s=3600)
                reply = await self._market.requestor.negotiate(demand.demand_id, count=1, config=config, timeout=10.0)
                agreements = reply.get("agreements") or []
                if agreements:
                    a = agreements[0]
                    return str(a["agreement_id"]), str(a["provider_id"]), dict(a.get("offer_properties") or {})
                failures = list(reply.get("failures") or [])
                rounds += 1
                await trio.sleep(min(0.25 * rounds, 1.0))
            why = "; ".join(f"{str(f.get('provider_id', '?'))[:16]}: {f.get('code')}" for f in failures[:4])
            raise _PlacementFailed(f"no provider took the lease ({why or 'no matching offer'})")
        finally:
            self._market.requestor.delete_demand(demand.demand_id)

    def _cap_deposit(self, agreement_id: str, offer_properties: dict[str, Any]) -> int:
        """A lease's deposit covers ``deposit_hours`` of its worst case, not its whole life."""
        from market.pricing import LinearPricing

        try:
            pricing = LinearPricing.from_properties(offer_properties)
            threads = int(offer_properties.get("golem.inf.cpu.threads") or 1)
        except Exception as exc:  # noqa: BLE001 - an odd offer: the payment side applies its own rules
            log.info("cannot read the lease's pricing (%s); deposit left to the payment service", exc)
            return 0
        hours = max(60, int(self.config.deposit_hours * 3600))
        self._payments.deposit_caps[agreement_id] = max(1, pricing.estimate(threads, hours))
        return max(1, pricing.estimate(threads, 3600))

    async def _wait_ready(self, dep: Deployment, rep: Replica) -> None:
        """Until the provider says the service runs and its tunnel is up; the serve batch ending first fails it."""
        assert rep.activity_id is not None and rep.batch_id is not None
        assert dep.nursery is not None
        dep.nursery.start_soon(self._pump_logs, dep, rep, rep.activity_id, rep.batch_id)
        while True:
            view = await self._activity.state(rep.activity_id)
            batch = next((b for b in view.get("batches", []) if b.get("batch_id") == rep.batch_id), None)
            if batch is not None and batch.get("done"):
                raise _PlacementFailed(_batch_error(batch) or "the service's commands ended")
            if view.get("state") in ("terminated", "failed"):
                raise _PlacementFailed(f"the activity {view.get('state')}: {view.get('reason')}")
            service = view.get("service") or {}
            if service.get("running") and (service.get("tunnel_ready") or not rep.ports):
                return
            await trio.sleep(0.1)

    async def _pump_logs(self, dep: Deployment, rep: Replica, activity_id: str, batch_id: str) -> None:
        """The serve command's output into the deployment's log, until its batch ends."""
        after = 0
        while True:
            asked = trio.current_time()
            try:
                events = await self._activity.events(activity_id, batch_id, after, 10.0)
            except YagnaError:
                return
            except Exception:  # noqa: BLE001 - a log pump's failure costs the logs, never the deployment
                log.exception("deployment %s: log pump of %s failed", dep.deployment_id, rep.name)
                return
            moved = False
            for e in events:
                kind = e.get("kind")
                if kind == "dropped":  # output we did not read in time (kept at most so much): skip past it
                    skip_to = int(e.get("first_kept", after + 1)) - 1
                    if skip_to > after:
                        after, moved = skip_to, True
                        dep.log.add("yagna", rep.name, "(some output was dropped)")
                    continue
                if int(e.get("seq", after)) > after:
                    after, moved = int(e["seq"]), True
                if kind in ("stdout", "stderr"):
                    data = base64.b64decode(e["data_b64"]) if "data_b64" in e else str(e.get("data", "")).encode()
                    dep.log.feed(rep.name, str(kind), data)
                elif kind == "batch_done":
                    return
            if not moved and trio.current_time() - asked < 1.0:
                return  # an answer at once with nothing new: the batch's log ended (its activity is gone)
            await trio.lowlevel.checkpoint()

    async def _watch(self, rep: Replica) -> str:
        """Until the replica is lost; why."""
        assert rep.activity_id is not None and rep.agreement_id is not None
        missed_since: float | None = None
        while True:
            await trio.sleep(self.config.watch_s)
            try:
                with trio.fail_after(max(1.0, self.config.lost_after_s)):
                    view = await self._activity.state(rep.activity_id)
                missed_since = None
            except (YagnaError, trio.TooSlowError) as exc:
                code = getattr(exc, "code", "timeout")
                if code in ("unknown-activity", "unknown-agreement", "not-approved", "activity-ended"):
                    return f"the provider ended it ({code})"
                now = trio.current_time()
                missed_since = missed_since if missed_since is not None else now - self.config.watch_s
                if now - missed_since >= self.config.lost_after_s:
                    return f"the provider did not answer for {now - missed_since:.0f} s"
                continue
            if view.get("state") in ("terminated", "failed"):
                return f"the activity {view.get('state')}: {view.get('reason')}"
            service = view.get("service") or {}
            rep.restarts, rep.healthy = int(service.get("restarts") or 0), service.get("healthy")
            await self._keep_funded(rep)

    async def _keep_funded(self, rep: Replica) -> None:
        """A lease has no end: when what we signed nears its deposit, lock more (``deposit_hours`` worth)."""
        live = self._payments.live(rep.agreement_id) if rep.agreement_id else None
        if not live or not rep.hourly or live["signed"] * 100 < live["deposit"] * TOP_UP_AT_PERCENT:
            return
        if trio.current_time() < rep.next_top_up:
            return
        try:
            await self.fund_replica(rep, self.config.deposit_hours)
        except YagnaError:  # said in the log; the provider pauses when the deposit runs out
            rep.next_top_up = trio.current_time() + 30.0

    async def fund_replica(self, rep: Replica, hours: float) -> dict[str, Any] | None:
        """Top the replica's current lease up by ``hours`` of its worst case; None if it has no lease now."""
        if rep.agreement_id is None or not rep.hourly or self._payments.live(rep.agreement_id) is None:
            return None
        amount = max(1, int(rep.hourly * hours))
        dep = self.deployments.get(rep.deployment_id)
        try:
            done: dict[str, Any] = await self._payments.top_up(rep.agreement_id, amount)
        except YagnaError as exc:
            if dep is not None:
                dep.log.add("yagna", rep.name, f"cannot top up the lease's deposit: {exc}")
            raise
        rep.top_ups += 1
        if dep is not None:
            dep.log.add("yagna", rep.name, f"lease deposit topped up by {format_amount(amount)} to {done['deposit']}")
        return done

    async def _release(self, rep: Replica, reason: str) -> None:
        """Destroy the activity and terminate the agreement (best effort, bounded, shielded)."""
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            if rep.activity_id is not None:
                try:
                    await self._activity.destroy(rep.activity_id)
                except YagnaError as exc:
                    log.info("destroy %s: %s", rep.activity_id, exc)
            if rep.agreement_id is not None:
                try:
                    await self._market.terminate(rep.agreement_id, reason)
                except YagnaError as exc:
                    log.info("terminate %s: %s", rep.agreement_id, exc)
        rep.activity_id = rep.batch_id = None

    async def _release_all(self, dep: Deployment) -> None:
        for rep in dep.replicas:
            for binding in rep.ports:
                binding.listener.point(None)
            if rep.state != "closed":
                await self._release(rep, dep.reason or "deployment closed")
                rep.set("closed", dep.reason or "deployment closed")

    # -- close, status, logs ----------------------------------------------------------------------
    async def close(self, deployment_id: str, reason: str = "closed by the requestor") -> dict[str, Any]:
        dep = self.get(deployment_id)
        if dep.state == "active":
            dep.state, dep.reason = "closing", reason
            dep.log.add("yagna", "deployment", f"closing: {reason}")
            dep.scope.cancel()
            with trio.move_on_after(30):
                await dep.done.wait()
            dep.state, dep.closed_at = "closed", time.time()
            log.info("deployment %s closed: %s", deployment_id, reason)
        return self.view(dep)

    async def fund(self, deployment_id: str, hours: float) -> dict[str, Any]:
        """``yagna deploy fund``: top every running replica's lease up by ``hours`` of its worst case."""
        dep = self.get(deployment_id)
        if dep.state != "active":
            raise DeployError("not-active", f"deployment {deployment_id} is {dep.state}", 409)
        funded = []
        for rep in dep.replicas:
            try:
                done = await self.fund_replica(rep, hours)
            except YagnaError as exc:
                raise DeployError(getattr(exc, "code", "payment-error"), f"{rep.name}: {exc}", 402) from None
            if done is not None:
                funded.append({"replica": rep.name, **done})
        return {"deployment_id": deployment_id, "funded": funded}

    def get(self, deployment_id: str) -> Deployment:
        dep = self.deployments.get(deployment_id)
        if dep is None:
            raise DeployError("unknown-deployment", f"no deployment {deployment_id!r}", 404)
        return dep

    def list(self) -> list[dict[str, Any]]:
        return [self.view(d) for d in self.deployments.values()]

    def view(self, dep: Deployment) -> dict[str, Any]:
        return {
            "deployment_id": dep.deployment_id, "source": dep.source, "state": dep.state, "reason": dep.reason,
            "created_at": dep.created_at, "closed_at": dep.closed_at, "notes": list(dep.manifest.notes),
            "replicas": [self._replica_view(r) for r in dep.replicas],
        }

    def _replica_view(self, rep: Replica) -> dict[str, Any]:
        cost = paid = 0
        for agreement_id in rep.agreements:
            live = self._payments.live(agreement_id) or {}
            cost += int(live.get("asked") or 0)
            paid += int(live.get("signed") or 0)
        return {
            "service": rep.service.name, "replica": rep.index, "name": rep.name, "provider_id": rep.provider_id,
            "agreement_id": rep.agreement_id, "activity_id": rep.activity_id, "state": rep.state, "reason": rep.reason,
            "restarts": rep.restarts, "healthy": rep.healthy, "failovers": rep.failovers, "top_ups": rep.top_ups,
            "running_since": rep.running_since, "ports": [b.view() for b in rep.ports],
            "cost": format_amount(cost), "paid": format_amount(paid), "cost_units": cost, "paid_units": paid,
        }

    async def logs(self, deployment_id: str, *, after: int = 0, timeout: float = 0.0, limit: int = 1000,
                   tail: int | None = None) -> dict[str, Any]:
        dep = self.get(deployment_id)
        ended = dep.state in ("closed", "failed")
        if tail is not None and after == 0:
            lines = dep.log.tail(tail)
            last = dep.log.last_seq  # a follower goes on from the end, whatever the tail showed
        else:
            if timeout > 0 and not ended:
                with trio.move_on_after(timeout):
                    while dep.log.last_seq <= after and not dep.done.is_set():
                        await dep.log.wait(after, timeout)
            lines = dep.log.after(after, limit)
            last = lines[-1].seq if lines else max(after, 0)
        ended = dep.state in ("closed", "failed") or dep.done.is_set()
        return {"lines": [line.view() for line in lines], "last_seq": last,
                "closed": ended and last >= dep.log.last_seq}


def _demand(profile: ComputeProfile, manifest: Manifest, rep: Replica) -> tuple[dict[str, Any], str]:
    """Demand properties and constraints for one replica: its profile's size, its placement's attributes."""
    import math

    threads = max(1, math.ceil(profile.cpu_units))
    parts = [f"(golem.inf.cpu.threads>={threads})", f"(golem.inf.mem.gib>={profile.memory_bytes / 2**30:.6f})"]
    storage = sum(v.size_bytes for v in profile.storage)
    if storage:
        parts.append(f"(golem.inf.storage.gib>={storage / 2**30:.6f})")
    placement = next((manifest.placements[d.placement] for d in manifest.deployments if d.service == rep.service.name),
                     None)
    for key, value in (placement.attributes if placement else {}).items():
        parts.append(f"({key}={value})")
    return {}, "(&" + "".join(parts) + ")"


def _volumes(service: ServiceSpec, profile: ComputeProfile) -> list[dict[str, Any]]:
    """The service's mounted storage (``params.storage``) with the profile's sizes; KeyError: an unknown volume."""
    sizes = {v.name: v for v in profile.storage}
    return [{"name": name, "path": path, "size": sizes[name].size_bytes, "persistent": sizes[name].persistent}
            for name, path in service.mounts.items()]


def _batch_error(batch: dict[str, Any]) -> str | None:
    for result in batch.get("results") or []:
        if result and result.get("error"):
            return str(result["error"])
    return batch.get("error")
