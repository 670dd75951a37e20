"""The provider side of activities: run exe-scripts of agreed requestors in containers.

Each activity is one container (see :mod:`exeunit.runtime`), created by
``deploy`` with the limits of the agreement, and one batch runs at a time per
activity; activities of different agreements run at once. A batch runs in this
service's nursery (never fire-and-forget); its events are kept in an
:class:`exeunit.activity.Batch` that the requestor long-polls.

Guarantees:

- only the requestor of an approved agreement may create, drive or read its
  activities; an activity of an ended agreement is terminated;
- an activity whose requestor was silent for ``keepalive_s`` is terminated
  (a requestor killed with ``kill -9`` leaves nothing running);
- on start, containers labelled with our node id that no live activity owns
  are removed, and their activities reported terminated;
- a failed command ends its batch: later commands are reported ``skipped``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

import trio

from exeunit.activity import Activity, Batch, Event, State
from exeunit.commands import (
    CacheRestore,
    CacheSave,
    Command,
    Deploy,
    Run,
    Serve,
    Start,
    Terminate,
    TransferIn,
    TransferOut,
)
from exeunit.errors import ExeUnitError, ImageError, RuntimeFailure, ScriptError, TransferRefused
from exeunit.image_gc import ImageCollector
from exeunit.limits import limits_from_agreement
from exeunit.messages import (
    MAX_EVENTS_PER_PAGE,
    PAGE_BYTES,
    WAIT_MS_MAX,
    ActivityCreated,
    BatchStarted,
    Create,
    Destroy,
    Destroyed,
    Exec,
    GetEvents,
    GetState,
    StateReply,
    decode_request,
    events_page_to_wire,
)
from exeunit.runtime import (
    LABEL_ACTIVITY, LABEL_AGREEMENT, LABEL_NODE, ContainerLimits, ContainerSpec, Runtime, TunnelMounts, VolumeMount,
)
from exeunit.receipt import rows_of, seal_receipt
from exeunit.staging import Staging
from exeunit.transfer import sha256_file
from market.agreement import verify_agreement
from yagna.activity_service.blobs import BlobServer, fetch_blob, open_blob
from yagna.activity_service.job_caches import JobCaches
from yagna.activity_service.packages import Packages
from yagna.activity_service.services import ServiceRunner, ServiceState
from yagna.activity_service.tunnel import SocketDir, TunnelRefused, TunnelServer
from yagna.core.identity import NodeKey
from yagna.net.errors import RequestError, RequestRejected
from yagna.store.activity_repos import Activities
from yagna.store.market_repos import Agreements

log = logging.getLogger("yagna.activity.provider")

MAX_BATCHES_KEPT = 32
"""Finished batches kept per activity for late readers."""
COALESCE_S = 0.1
"""How long an events poll holds progress-only news for more (output or the batch's end answer at once)."""

WorkGuard = Callable[[str], Awaitable["str | None"]]
"""agreement id -> None if work may start, else the reason it may not."""

MAX_ENDED_KEPT = 256
"""Ended activities kept in memory so their requestors can still read the last events."""
EVENTS_KEPT_AFTER_END_S = 60.0
"""An ended activity's undelivered events are kept this long for its requestor, then dropped.
With one batch's events kept per activity (an exec drops those of the batches before it), a
peer's undelivered output costs a provider at most 4 MiB per live activity of its agreements,
plus the same per activity ended in the last minute."""


@dataclass
class _Running:
    activity: Activity
    requestor_id: str
    limits: ContainerLimits
    container_id: str | None = None
    last_contact: float = dc_field(default_factory=time.monotonic)
    batches: dict[str, Batch] = dc_field(default_factory=dict)
    lock: trio.Lock = dc_field(default_factory=trio.Lock)
    changed: trio.Event = dc_field(default_factory=trio.Event)
    started_at: float = dc_field(default_factory=time.time)
    paused_at: float | None = None
    """Monotonic time of a payment pause in progress (the container is frozen, the meter stops)."""
    paused_total: float = 0.0
    final_usage: dict[str, Any] | None = None
    """Usage read just before the container was removed (billing must not see a gap)."""
    ended_mono: float | None = None
    """When it left the live set (its events are dropped :data:`EVENTS_KEPT_AFTER_END_S` later)."""
    scope: trio.CancelScope = dc_field(default_factory=trio.CancelScope)
    """Of the activity's own tasks (its batches): cancelled when it is destroyed or ended."""
    nursery: trio.Nursery | None = None
    ports: tuple[int, ...] = ()
    """Exposed by its deploy (a service): reachable through the tunnel once ``serve`` runs."""
    socket_dir: SocketDir | None = None
    image_id: str | None = None
    service: ServiceState | None = None
    volumes: list[tuple[str, Path, int]] = dc_field(default_factory=list)
    """Persistent volumes: (name, host directory, size in bytes)."""

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class ProviderActivities:
    def __init__(
        self,
        *,
        node_id: str,
        network_id: str,
        rr,  # type: ignore[no-untyped-def]
        blobs: BlobServer,
        runtime: Runtime,
        activities: Activities,
        agreements: Agreements,
        staging: Path,
        keepalive_s: float = 30.0,
        agreement_check_s: float = 2.0,
        key: NodeKey | None = None,
        faults: frozenset[str] = frozenset(),
        tunnels: Path | None = None,
        forwarder: Callable[[], Path | None] | None = None,
        caches: JobCaches | None = None,
    ) -> None:
        """``tunnels``: where services' socket directories go (default: beside ``staging``);
        ``forwarder``: finds the static forwarder binary (default: :func:`exeunit.forwarder.find_binary`);
        ``caches``: pipelines' caches (default: ``caches/`` beside ``staging``, default bounds)."""
        self.node_id = node_id
        self._key = key
        self._faults = faults
        self._receipts: dict[str, bytes] = {}
        self.work_guard: WorkGuard | None = None
        """Set by the payment service: refuses work on an agreement without an open channel."""
        self._network_id = network_id
        self._rr = rr
        self._blobs = blobs
        self._runtime = runtime
        self._rows = activities
        self._agreements = agreements
        self._staging = staging
        self.staged = Staging(staging, on_drop=blobs.withdraw_owner)  # results kept until fetched (bounded)
        self.images = ImageCollector(runtime, node_id)  # images loaded from requestors, collected
        self.packages = Packages(self._import_gvmi, staging, has_image=runtime.has_image, on_imported=self.images.loaded,
                                 finder=self._find_gvmi)
        """Golem VM packages (``deploy {package}``): downloaded, verified, imported, collected like images."""
        self._tunnels = tunnels if tunnels is not None else staging.parent / "tunnels"
        self._volumes = self._tunnels.parent / "volumes"
        self.caches = caches if caches is not None else JobCaches(staging.parent / "caches")
        if forwarder is None:
            from exeunit.forwarder import find_binary

            forwarder = find_binary
        self._find_forwarder: Callable[[], Path | None] = forwarder
        self.tunnel = TunnelServer(rr, self._socket_for)
        self.keepalive_s = keepalive_s
        self._check_s = agreement_check_s
        self._live: dict[str, _Running] = {}
        self._ended: OrderedDict[str, _Running] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self._engine_clean = trio.Event()
        """Set once containers, volumes and images a previous run left are gone: activities wait for it."""

    # -- lifecycle --------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.staged.open()  # empties what a previous run left
        await self.caches.open()  # pipelines' caches are kept across restarts
        for left in (self._tunnels, self._volumes):  # sockets and volumes of services before a restart
            await trio.to_thread.run_sync(shutil.rmtree, left, True)
        await self._end_previous_activities()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # The engine's clean-up (~90 ms of Docker API calls) runs after the node is ready;
                # a new activity waits for it, so it never races the removal of orphan volumes.
                nursery.start_soon(self._clean_engine_then_collect_images)
                nursery.start_soon(self._housekeeping)
                nursery.start_soon(self.staged.run)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for running in list(self._live.values()):
                    await self._end(running, "provider shut down")

    async def _end_previous_activities(self) -> None:
        """Activities we ran before a restart are over: their rows say so."""
        for row in await self._rows.list(role="provider", live=True):
            await self._rows.update(row.activity_id, state="terminated", reason="provider restarted")
            log.info("activity %s was left running by a previous run; terminated", row.activity_id)

    async def engine_cleaned(self) -> None:
        """Wait until the start-up clean-up (leftover containers, volumes, collected images) is done."""
        await self._engine_clean.wait()

    async def _clean_engine_then_collect_images(self) -> None:
        try:
            await self._clean_up_engine()
            await self.images.collect(at_start=True)
        finally:
            self._engine_clean.set()
        await self.images.run()

    async def _clean_up_engine(self) -> None:
        """Containers and work volumes of activities before a restart go."""
        try:
            for container_id, labels in await self._runtime.leftovers(self.node_id):
                await self._runtime.remove(container_id)
                log.info("removed leftover container %s of activity %s", container_id[:12], labels.get(LABEL_ACTIVITY))
            for volume in await self._runtime.remove_orphan_volumes(self.node_id):
                log.info("removed orphan work volume %s", volume)
        except ExeUnitError as exc:  # e.g. no engine yet: the node still starts, deploys will say why
            log.warning("cannot clean up containers left by a previous run: %s", exc)

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(self._check_s)
            now = time.monotonic()
            for running in list(self._live.values()):
                act = running.activity
                row = await self._agreements.get(act.agreement_id)
                if row is None or row.state != "approved":
                    await self._end(running, f"agreement {row.state if row else 'gone'}")
                elif now - running.last_contact > self.keepalive_s:
                    await self._end(running, f"requestor silent for {self.keepalive_s:g} s")
                    for batch in running.batches.values():
                        batch.discard()  # its reader is gone
                else:
                    continue
                running.scope.cancel()  # a batch still running ends now (its runner closes it)
            for running in self._ended.values():  # late readers had their time
                if running.ended_mono is not None and now - running.ended_mono > EVENTS_KEPT_AFTER_END_S:
                    for batch in running.batches.values():
                        batch.discard()

    async def _end(self, running: _Running, reason: str) -> None:
        """Remove the container and record the end (idempotent)."""
        act = running.activity
        if running.final_usage is None:  # read while the container exists; billing reads it from here on
            running.final_usage = await self._usage(running) or {}
        usage = running.final_usage or None
        self._live.pop(act.activity_id, None)
        self._ended[act.activity_id] = running
        if running.ended_mono is None:
            running.ended_mono = time.monotonic()
        while len(self._ended) > MAX_ENDED_KEPT:
            self._ended.popitem(last=False)
        if running.container_id is not None:
            # Once started, a removal finishes (container and work volume) even if we are being
            # cancelled: half a removal leaves a volume behind. Bounded.
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                try:
                    await self._runtime.remove(running.container_id)
                except ExeUnitError as exc:
                    log.warning("cannot remove container of %s: %s", act.activity_id, exc)
        if running.socket_dir is not None:
            running.socket_dir.close()
            await trio.to_thread.run_sync(shutil.rmtree, running.socket_dir.path, True)
        if running.volumes:  # the container is gone: its persistent volumes go with the activity
            await trio.to_thread.run_sync(shutil.rmtree, self._volumes / act.activity_id, True)
        if running.service is not None:
            running.service.running = running.service.tunnel_ready = False
        self.staged.retire(act.activity_id)  # its results stay fetchable a little longer
        act.apply(Event.TERMINATE, reason=reason, now=time.time())  # a no-op on an activity that failed
        await self._rows.update(act.activity_id, state=act.state.value, reason=act.reason or reason, usage=usage)
        for batch in running.batches.values():
            if batch.current is None:  # a command in progress is finished (then closed) by its runner
                batch.close(reason)
        running.wake()
        log.info("activity %s %s: %s", act.activity_id, act.state.value, reason)

    async def _usage(self, running: _Running) -> dict[str, Any] | None:
        if running.container_id is None:
            return None
        try:
            return (await self._runtime.usage(running.container_id)).golem_vector()
        except ExeUnitError:
            return None

    # -- protocol --------------------------------------------------------------------
    async def handle(self, peer: str, payload: object) -> object:
        """Decode, ask the core, store, answer; a malformed request is a coded rejection."""
        try:
            req = decode_request(payload)
        except ExeUnitError as exc:  # MessageInvalid (bad-message) or ScriptError (bad-script)
            code = "bad-script" if isinstance(exc, ScriptError) else "bad-request"
            raise RequestRejected(code, str(exc)) from None
        if isinstance(req, Create):
            return (await self._create(peer, req.agreement_id)).to_wire()
        running = self._mine(peer, req.activity_id)
        if running is None:
            row = await self._rows.get(req.activity_id)
            if row is not None and row.peer_id == peer and isinstance(req, (GetState, Destroy)):
                state = _stored_state(row.state)
                return StateReply(state, row.reason, row.usage).to_wire()
            raise RequestRejected("unknown-activity", "no such activity of yours")
        running.last_contact = time.monotonic()
        act = running.activity
        if isinstance(req, Exec):
            if act.finished:
                raise RequestRejected("activity-ended", f"the activity is {act.state.value}: {act.reason}")
            if running.paused_at is not None:
                raise RequestRejected("payment-paused", "the activity is paused until the payments due arrive")
            return self._exec(running, req.script).to_wire()
        if isinstance(req, GetEvents):
            return await self._events(running, req)
        if isinstance(req, GetState):
            service = running.service.report() if running.service is not None else None
            return StateReply(act.state, act.reason, await self._usage(running), service).to_wire()
        if not act.finished:
            await self._end(running, "destroyed by the requestor")
        await self.staged.drop(act.activity_id)  # the requestor has what it wanted
        for batch in running.batches.values():
            batch.discard()  # nobody will read them now
        running.scope.cancel()
        row = await self._rows.get(act.activity_id)
        return Destroyed(act.state, row.usage if row else None).to_wire()

    def _mine(self, peer: str, activity_id: str) -> _Running | None:
        running = self._live.get(activity_id) or self._ended.get(activity_id)
        return running if running is not None and running.requestor_id == peer else None

    async def _create(self, peer: str, agreement_id: str) -> ActivityCreated:
        await self._engine_clean.wait()  # only in the first ~0.1 s after start: the engine's clean-up
        row = await self._agreements.get(agreement_id)
        if row is None or row.role != "provider" or row.peer_id != peer:
            raise RequestRejected("unknown-agreement", "no agreement with this id between us")
        if row.state != "approved":
            raise RequestRejected("not-approved", f"the agreement is {row.state}")
        busy = [r for r in self._live.values() if r.activity.agreement_id == agreement_id]
        if busy:
            # An agreement sells one container's worth of resources: activities run one after another.
            raise RequestRejected("agreement-busy", f"activity {busy[0].activity.activity_id} of this agreement is still "
                                                    "live; destroy it first")
        if self.work_guard is not None and (why := await self.work_guard(agreement_id)) is not None:
            raise RequestRejected("payment-required", why)
        agreement = verify_agreement(row.raw, network_id=self._network_id)
        try:
            limits = limits_from_agreement(dict(agreement.offer_properties))
        except ExeUnitError as exc:
            raise RequestRejected("bad-agreement", str(exc)) from None
        activity_id = secrets.token_hex(16)
        activity = Activity(activity_id, agreement_id, peer, created_at=time.time())
        await self._rows.insert(activity_id=activity_id, agreement_id=agreement_id, role="provider",
                                peer_id=peer, state=activity.state.value)
        running = _Running(activity, peer, limits)
        self._live[activity_id] = running
        assert self._nursery is not None
        await self._nursery.start(self._activity_tasks, running)
        log.info("activity %s created for agreement %s", activity_id, agreement_id[:12])
        return ActivityCreated(activity_id, self.keepalive_s)

    async def _activity_tasks(self, running: _Running, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The activity's own nursery: its batches run here, and a destroy cancels only them."""
        with running.scope:
            try:
                async with trio.open_nursery() as nursery:
                    running.nursery = nursery
                    task_status.started()
                    while not (running.activity.finished and all(b.done for b in running.batches.values())):
                        await running.changed.wait()
            finally:
                running.nursery = None

    def _exec(self, running: _Running, commands: tuple[Command, ...]) -> BatchStarted:
        if any(not b.done for b in running.batches.values()):
            raise RequestRejected("busy", "a batch is still running in this activity")
        if running.nursery is None:
            raise RequestRejected("activity-ended", "the activity has ended")
        batch_id = secrets.token_hex(8)
        batch = Batch(batch_id, commands)
        running.batches[batch_id] = batch
        for old in list(running.batches)[:-MAX_BATCHES_KEPT]:
            del running.batches[old]
        for earlier in running.batches.values():
            if earlier is not batch:  # done, and the requestor moved on: what it did not read is gone
                earlier.discard()
        running.nursery.start_soon(self._run_batch, running, batch)
        return BatchStarted(batch_id)

    async def _events(self, running: _Running, req: GetEvents) -> dict[str, Any]:
        batch = running.batches.get(req.batch_id)
        if batch is None:
            raise RequestRejected("unknown-batch", "no such batch")
        if batch.discarded and req.after < batch.last_seq:
            raise RequestRejected("events-dropped", "this batch's events were dropped: its activity was destroyed or "
                                                    "ended a while ago, or a later batch started")
        batch.ack(req.after)  # one reader (our requestor): what it has needs no keeping
        after = req.after
        with trio.move_on_after(min(req.wait_ms, WAIT_MS_MAX) / 1000):
            while not batch.done and not batch.events_after(after, 1):
                await running.changed.wait()
            # Only progress events (started/finished) so far: hold them briefly so that a short
            # command's start, end and the batch's end go back in one answer, not three round trips.
            with trio.move_on_after(COALESCE_S):
                while not batch.done and not any(e["kind"] in ("stdout", "stderr")
                                                 for e in batch.events_after(after, 1000)):
                    await running.changed.wait()
        if batch.discarded and req.after < batch.last_seq:  # dropped while this poll waited (a destroy)
            raise RequestRejected("events-dropped", "this batch's events were dropped: its activity was destroyed "
                                                    "or ended a while ago, or a later batch started")
        events = batch.events_after(after, MAX_EVENTS_PER_PAGE, max_bytes=PAGE_BYTES)
        done = batch.done and (not events or events[-1]["seq"] >= batch.last_seq)
        return events_page_to_wire(events, done=done, receipt=self._receipts.get(batch.batch_id) if done else None)

    # -- running a batch ----------------------------------------------------------------
    async def _run_batch(self, running: _Running, batch: Batch) -> None:
        reason = None
        try:
            async with running.lock:
                for index, cmd in enumerate(batch.commands):
                    if running.activity.activity_id not in self._live:
                        reason = running.activity.reason or "activity ended"
                        break
                    batch.begin(index, now=time.time())
                    running.wake()
                    try:
                        running.activity.check_command(cmd)
                        result = await self._command(running, batch, index, cmd)
                    except (ExeUnitError, RequestError) as exc:
                        code = getattr(exc, "code", None) or type(exc).__name__
                        result = batch.finish(index, now=time.time(), error=f"{code}: {exc}")
                    running.wake()
                    if running.activity.finished and running.activity.activity_id in self._live:
                        await self._end(running, running.activity.reason or "failed")  # deploy/start failed
                    if result.get("error") or result.get("exit_code") not in (None, 0) or result.get("timed_out"):
                        reason = f"command {index} ({cmd.kind}) failed; the rest were not run"
                        break
        finally:
            # Also when the activity's tasks are cancelled (destroyed, ended): the batch ends with
            # a result for the command in progress, a reason and a receipt. No await below.
            if batch.current is not None:
                why = running.activity.reason or "activity ended"
                batch.finish(batch.current, now=time.time(), error=f"cancelled: {why}")
                reason = reason or f"cancelled: {why}"
            batch.close(reason)
            if self._key is not None:
                self._receipts[batch.batch_id] = seal_receipt(
                    self._key, network_id=self._network_id, agreement_id=running.activity.agreement_id,
                    activity_id=running.activity.activity_id, batch_id=batch.batch_id, rows=rows_of(batch.results))
                while len(self._receipts) > MAX_ENDED_KEPT * MAX_BATCHES_KEPT:
                    self._receipts.pop(next(iter(self._receipts)))
            running.wake()

    async def _command(self, running: _Running, batch: Batch, index: int, cmd: Command) -> dict[str, Any]:
        """Run one command and finish it in ``batch``; raise an ExeUnitError to fail it."""
        act = running.activity
        if isinstance(cmd, Deploy):
            try:
                image_id = cmd.image
                if cmd.package is not None:
                    image_id = await self.packages.ensure(cmd.package, max_bytes=running.limits.storage_bytes + 2**30)
                else:
                    await self._ensure_image(running, cmd.image)
                volumes = self.packages.volumes.get(image_id, []) if cmd.package is not None else []
                tunnel = await self._tunnel_mounts(running, cmd.ports) if cmd.ports else None
                storage = await self._volume_mounts(running, cmd.volumes) if cmd.volumes else ()
                spec = ContainerSpec(image_id=image_id, limits=running.limits, env=dict(cmd.env),
                                     work_dirs=tuple("vol/" + v.strip("/") for v in volumes), tunnel=tunnel,
                                     volumes=storage,
                                     labels={LABEL_NODE: self.node_id, LABEL_ACTIVITY: act.activity_id,
                                             LABEL_AGREEMENT: act.agreement_id})
                running.image_id = image_id
                running.container_id = await self._runtime.create(spec)
            except ExeUnitError as exc:
                act.apply(Event.DEPLOY_FAILED, reason=str(exc), now=time.time())
                await self._rows.update(act.activity_id, state=act.state.value, reason=act.reason)
                raise
            act.apply(Event.DEPLOY_OK, now=time.time())
            await self._rows.update(act.activity_id, state=act.state.value, container_id=running.container_id)
            return batch.finish(index, now=time.time())
        if isinstance(cmd, Terminate):
            await self._end(running, "terminate command")
            return batch.finish(index, now=time.time())
        container = running.container_id
        assert container is not None  # check_command: every other command needs a deployed container
        if isinstance(cmd, Start):
            try:
                await self._runtime.start(container)
            except ExeUnitError as exc:
                act.apply(Event.START_FAILED, reason=str(exc), now=time.time())
                await self._rows.update(act.activity_id, state=act.state.value, reason=act.reason)
                raise
            running.started_at = time.time()
            act.apply(Event.START_OK, now=time.time())
            await self._rows.update(act.activity_id, state=act.state.value)
            return batch.finish(index, now=time.time())
        if isinstance(cmd, Run):
            act.apply(Event.RUN_BEGIN, now=time.time())

            async def on_output(kind: str, data: bytes) -> None:
                batch.output(index, kind, data)
                running.wake()

            try:
                res = await self._runtime.exec(container, list(cmd.argv), env=dict(cmd.env), workdir=cmd.workdir,
                                               timeout_s=cmd.timeout_s, on_output=on_output)
                if "wrong-results" in self._faults:  # test only: a provider that lies about its work
                    batch.output(index, "stdout", b"(wrong)\n")
            finally:
                if act.state is State.RUNNING:
                    act.apply(Event.RUN_END, now=time.time())
            error = None
            if res.timed_out:
                error = f"timeout: killed after {cmd.timeout_s:g} s"
            elif res.oom_killed:
                error = f"out-of-memory: killed at the agreement's limit of {running.limits.memory_bytes // 2**20} MiB"
            return batch.finish(index, now=time.time(), exec_result=res, error=error)
        if isinstance(cmd, Serve):
            act.apply(Event.RUN_BEGIN, now=time.time())
            try:
                return await self._serve(running, batch, index, cmd)
            finally:
                if act.state is State.RUNNING:
                    act.apply(Event.RUN_END, now=time.time())
        if isinstance(cmd, (TransferIn, TransferOut, CacheRestore, CacheSave)):
            act.apply(Event.RUN_BEGIN, now=time.time())  # one command at a time works in the container
            try:
                if isinstance(cmd, CacheRestore):
                    return await self._cache_restore(running, batch, index, cmd)
                if isinstance(cmd, CacheSave):
                    return await self._cache_save(running, batch, index, cmd)
                return await self._transfer(running, batch, index, cmd)
            finally:
                if act.state is State.RUNNING:
                    act.apply(Event.RUN_END, now=time.time())
        raise ScriptError(f"unsupported command {type(cmd).__name__}")

    async def _transfer(self, running: _Running, batch: Batch, index: int, cmd: TransferIn | TransferOut) -> dict[str, Any]:
        container = running.container_id
        assert container is not None
        if isinstance(cmd, TransferIn):
            if cmd.size > running.limits.storage_bytes:
                raise TransferRefused("too-large", f"{cmd.size} bytes is over the agreement's storage of {running.limits.storage_bytes}")
            # Streamed from the requestor into the container as it arrives (no staging file). The
            # upload's last byte waits for the sha256 check; a failed one is removed from /work (a work
            # volume keeps what was extracted of a cut archive).
            t0 = time.monotonic()
            async with open_blob(self._rr, running.requestor_id, f"file:{cmd.sha256}",
                                 max_size=cmd.size, expected_size=cmd.size) as blob:
                started = False
                try:
                    async with self._runtime.upload(container, cmd.dest, blob.size) as upload:
                        started = True  # the path is a valid /work path
                        digest = await blob.copy(upload.write)
                        if digest != cmd.sha256:
                            raise TransferRefused("hash-mismatch",
                                                  f"{cmd.dest}: got sha256 {digest}, expected {cmd.sha256}")
                except BaseException:
                    if started:
                        with trio.CancelScope(shield=True), trio.move_on_after(10):
                            await self._remove_partial(container, cmd.dest)
                    raise
            size = blob.size
            log.info("transfer_in %s: %d bytes in %.0f ms", cmd.dest, size, (time.monotonic() - t0) * 1000)
            return batch.finish(index, now=time.time(), file=(digest, size))
        t0 = time.monotonic()
        hashed = hashlib.sha256()  # hashed while it is copied out (one pass)
        out = await self.staged.take_out(self._runtime, container, cmd.src, running.activity.activity_id,
                                         max_bytes=running.limits.storage_bytes, digest=hashed)
        digest = hashed.hexdigest()
        size = await trio.to_thread.run_sync(lambda: out.stat().st_size)
        if "wrong-results" in self._faults:  # test only: a provider that lies about its work
            await trio.to_thread.run_sync(_corrupt, out)
            digest, size = await trio.to_thread.run_sync(sha256_file, out)
        log.info("transfer_out %s: %d bytes staged and hashed in %.0f ms", cmd.src, size, (time.monotonic() - t0) * 1000)
        await self._blobs.offer_staged(running.requestor_id, f"file:{digest}", out, owner=running.activity.activity_id,
                                       on_gone=self.staged.remove)
        return batch.finish(index, now=time.time(), file=(digest, size))

    # -- pipeline caches ----------------------------------------------------------------
    async def _cache_restore(self, running: _Running, batch: Batch, index: int, cmd: CacheRestore) -> dict[str, Any]:
        """The requestor's own cache under ``cmd.key`` into the container (exit code 1 when there is none)."""
        container = running.container_id
        assert container is not None
        entry = self.caches.lookup(running.requestor_id, cmd.key)
        if entry is not None and entry.size > running.limits.storage_bytes:
            entry = None  # it would not fit this agreement: as good as none
        src = None
        if entry is not None:
            try:
                src = await trio.to_thread.run_sync(open, self.caches.path_of(running.requestor_id, cmd.key), "rb")
            except OSError:
                entry = None  # removed by hand: a miss
        if entry is None or src is None:
            batch.output(index, "stderr", b"no cache for this key on this provider\n")
            return batch.finish(index, now=time.time(), exit_code=1)
        t0 = time.monotonic()
        digest = hashlib.sha256()
        try:
            size = await trio.to_thread.run_sync(lambda: os.fstat(src.fileno()).st_size)
            started = False
            try:
                async with self._runtime.upload(container, cmd.dest, size) as upload:
                    started = True

                    def copy() -> None:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            upload.write([chunk])

                    await trio.to_thread.run_sync(copy)
            except BaseException:
                if started:
                    with trio.CancelScope(shield=True), trio.move_on_after(10):
                        await self._remove_partial(container, cmd.dest)
                raise
        finally:
            src.close()
        await self.caches.touch(entry)
        log.info("cache_restore %s: %d bytes in %.0f ms", cmd.dest, size, (time.monotonic() - t0) * 1000)
        return batch.finish(index, now=time.time(), exit_code=0, file=(digest.hexdigest(), size))

    async def _cache_save(self, running: _Running, batch: Batch, index: int, cmd: CacheSave) -> dict[str, Any]:
        """A file of ``/work/out`` becomes the requestor's cache under ``cmd.key`` (bounded; oldest evicted)."""
        container = running.container_id
        assert container is not None
        limit = min(running.limits.storage_bytes, self.caches.per_requestor_bytes)
        partial = await trio.to_thread.run_sync(self.caches.partial_path, running.requestor_id)
        digest = hashlib.sha256()
        try:
            size = await self._runtime.get_file(container, cmd.src, str(partial), max_bytes=limit, digest=digest)
            entry = await self.caches.commit(running.requestor_id, cmd.key, partial, size)
        except ValueError as exc:
            raise TransferRefused("too-large", str(exc)) from None
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.caches.discard(partial)
            raise
        return batch.finish(index, now=time.time(), exit_code=0, file=(digest.hexdigest(), entry.size))

    # -- services ----------------------------------------------------------------------
    async def _tunnel_mounts(self, running: _Running, ports: tuple[int, ...]) -> TunnelMounts:
        forwarder = self._find_forwarder()
        if forwarder is None:
            raise RuntimeFailure("this provider cannot expose ports: its port forwarder is not built "
                                 "(run `make setup`, or `python -m exeunit.forwarder`)", code="no-forwarder")
        socket_dir = await trio.to_thread.run_sync(SocketDir, self._tunnels / running.activity.activity_id)
        running.socket_dir, running.ports = socket_dir, ports
        return TunnelMounts(socket_dir=str(socket_dir.path), forwarder=str(forwarder))

    async def _volume_mounts(self, running: _Running, volumes: tuple[dict[str, object], ...]) -> tuple[VolumeMount, ...]:
        total = sum(int(v["size"]) for v in volumes)  # type: ignore[call-overload]
        if total > running.limits.storage_bytes:
            raise RuntimeFailure(f"the volumes ask for {total} bytes, over the agreement's storage of "
                                 f"{running.limits.storage_bytes}", code="too-large")
        mounts = []
        for v in volumes:
            path, size = str(v["path"]), int(v["size"])  # type: ignore[call-overload]
            if v["persistent"]:
                host = self._volumes / running.activity.activity_id / str(v["name"])
                await trio.to_thread.run_sync(_writable_dir, host)
                running.volumes.append((str(v["name"]), host, size))
                mounts.append(VolumeMount(path, size, str(host)))
            else:
                mounts.append(VolumeMount(path, size))
        return tuple(mounts)

    async def _serve(self, running: _Running, batch: Batch, index: int, cmd: Serve) -> dict[str, Any]:
        """Keep the service alive until the activity ends (this command finishes only then)."""
        container = running.container_id
        assert container is not None and running.image_id is not None
        if running.service is not None:
            raise ScriptError("this activity serves already; one serve per activity")
        health = dict(cmd.health) if cmd.health else None
        if health is not None:
            port = int(health.get("tcp") or health.get("http"))  # type: ignore[call-overload]
            if port not in running.ports:
                raise ScriptError(f"the health check's port {port} is not among the ports the deploy exposed "
                                  f"({', '.join(map(str, running.ports)) or 'none'})", field="health")
        default = await self._runtime.image_command(running.image_id)
        argv = list(cmd.argv) or ((default.entrypoint + list(cmd.args)) if cmd.args else default.argv)
        if not argv:
            raise ScriptError("the image has no entrypoint or command of its own: give serve an argv", field="argv")
        workdir = cmd.workdir or default.workdir or "/"
        running.service = ServiceState(ports=running.ports, health=health)

        async def emit(kind: str, data: bytes) -> None:
            batch.output(index, kind, data)
            running.wake()

        runner = ServiceRunner(self._runtime, container, running.service, emit=emit, socket_dir=running.socket_dir,
                               volumes=running.volumes)
        await runner.run(argv, dict(cmd.env), workdir)
        return batch.finish(index, now=time.time(), error=running.service.stopped or "the service's container is gone")

    async def _socket_for(self, peer: str, activity_id: str, port: int) -> Path:
        running = self._live.get(activity_id)
        if running is None or running.requestor_id != peer:
            raise TunnelRefused("unknown-activity", "no live activity of yours with this id")
        running.last_contact = time.monotonic()
        if port not in running.ports or running.socket_dir is None:
            raise TunnelRefused("no-port", f"port {port} is not exposed by this activity")
        if running.paused_at is not None:
            raise TunnelRefused("payment-paused", "the service is paused until the payments due arrive")
        if running.service is None or not running.service.tunnel_ready:
            raise TunnelRefused("service-down", "the service's tunnel is not up (not serving yet, or restarting)")
        return running.socket_dir.socket(port)

    async def _remove_partial(self, container: str, path: str) -> None:
        try:
            res = await self._runtime.exec(container, ["rm", "-f", "--", path], env={}, workdir="/work", timeout_s=5)
            if res.exit_code:
                log.warning("could not remove the failed upload %s: exit %s", path, res.exit_code)
        except Exception as exc:  # noqa: BLE001 - the transfer already failed; that error is the one reported
            log.warning("could not remove the failed upload %s: %r", path, exc)

    async def _import_gvmi(self, path: str, sha3: str, *, max_bytes: int) -> str:
        importer = getattr(self._runtime, "import_gvmi", None)
        if importer is None:
            raise ImageError("this provider's runtime cannot run Golem VM packages")
        return await importer(path, sha3, self.node_id, max_bytes=max_bytes)  # type: ignore[no-any-return]

    async def _find_gvmi(self, sha3: str) -> tuple[str, list[str]] | None:
        finder = getattr(self._runtime, "find_gvmi", None)
        return await finder(sha3, self.node_id) if finder is not None else None  # type: ignore[no-any-return]

    async def _ensure_image(self, running: _Running, image_id: str) -> None:
        if await self._runtime.has_image(image_id):
            await self.images.present(image_id)
            return
        archive = self._staging / f"image-{secrets.token_hex(8)}.tar"
        try:
            try:
                await fetch_blob(self._rr, running.requestor_id, f"image:{image_id}", archive,
                                 max_size=running.limits.storage_bytes + 2**30)
            except TransferRefused as exc:
                raise ImageError(f"image {image_id} is not here and the requestor could not send it: {exc}") from None
            await self._runtime.load_image(str(archive), image_id)
            await self.images.loaded(image_id)
        finally:
            archive.unlink(missing_ok=True)

    # -- payments ------------------------------------------------------------------------------
    async def usage_for_agreement(self, agreement_id: str) -> tuple[int, int, int, int]:
        """``(duration_ms, cpu_ms, peak_memory_bytes, activities)`` over every activity of the agreement.

        Duration excludes payment pauses (the meter stops while the container is frozen).
        """
        duration = cpu = peak = count = 0
        for row in await self._rows.list(role="provider", agreement_id=agreement_id):
            running = self._live.get(row.activity_id) or self._ended.get(row.activity_id)
            usage: dict[str, Any] | None
            if running is not None and running.final_usage is not None:
                usage = running.final_usage
            elif running is not None and row.activity_id in self._live:
                usage = await self._usage(running)
            else:
                usage = row.usage
            count += 1
            if not usage:
                continue
            paused = running.paused_total if running is not None else 0.0
            if running is not None and running.paused_at is not None:
                paused += time.monotonic() - running.paused_at
            duration += max(0, int((usage["golem.usage.duration_sec"] - paused) * 1000))
            cpu += int(usage["golem.usage.cpu_sec"] * 1000)
            peak = max(peak, int(usage["golem.usage.gib"] * 2**30))
        return duration, cpu, peak, count

    async def pause_agreement(self, agreement_id: str, reason: str) -> int:
        """Freeze every live container of the agreement; returns how many were paused."""
        n = 0
        for running in list(self._live.values()):
            if running.activity.agreement_id != agreement_id or running.paused_at is not None:
                continue
            running.paused_at = time.monotonic()
            if running.container_id is not None:
                try:
                    await self._runtime.pause(running.container_id)
                except ExeUnitError as exc:
                    log.warning("cannot pause %s: %s", running.activity.activity_id, exc)
            n += 1
            log.info("activity %s paused: %s", running.activity.activity_id, reason)
        return n

    async def resume_agreement(self, agreement_id: str) -> int:
        n = 0
        for running in list(self._live.values()):
            if running.activity.agreement_id != agreement_id or running.paused_at is None:
                continue
            if running.container_id is not None:
                try:
                    await self._runtime.unpause(running.container_id)
                except ExeUnitError as exc:
                    log.warning("cannot resume %s: %s", running.activity.activity_id, exc)
            running.paused_total += time.monotonic() - running.paused_at
            running.paused_at = None
            n += 1
        return n

    # -- status ----------------------------------------------------------------------------
    def containers(self) -> dict[str, int]:
        """Containers of live activities now: ``running`` and ``paused`` (by payments); in memory (metrics)."""
        with_container = [r for r in self._live.values() if r.container_id is not None]
        paused = sum(r.paused_at is not None for r in with_container)
        return {"running": len(with_container) - paused, "paused": paused}

    async def list(self) -> list[dict[str, Any]]:
        out = []
        for row in await self._rows.list(role="provider", limit=200):
            running = self._live.get(row.activity_id)
            usage = await self._usage(running) if running else row.usage
            out.append({"activity_id": row.activity_id, "agreement_id": row.agreement_id, "requestor_id": row.peer_id,
                        "state": running.activity.state.value if running else row.state,
                        "reason": running.activity.reason if running else row.reason, "usage": usage,
                        "container_id": row.container_id})
        return out


def _writable_dir(path: Path) -> None:
    """A volume's directory: writable by the container's user (its 0700 parents keep others out)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)


def _stored_state(value: str) -> State:
    try:
        return State(value)
    except ValueError:  # a row of ours in a shape we no longer write
        return State.TERMINATED


def _corrupt(path: Path) -> None:
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([(first[0] ^ 0xFF) if first else 0x58]))
