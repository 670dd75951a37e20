"""The requestor side of activities: drive exe-scripts on a provider, mirror their events, move files.

The REST form of a script is the wire form plus local paths, which only this
side understands::

    {"deploy": {"image": "local/busybox:1" | "sha256:...", "env": {...}}}
    {"transfer_in": {"from": "/local/file", "to": "/work/in/x"}}
    {"transfer_out": {"from": "/work/out/y", "to": "/local/dest"}}

``deploy`` names the image by id on the wire (resolved here when a name is
given) and the image is offered to the provider as a blob in case it lacks
it; ``transfer_in`` hashes the local file and offers it as ``file:<sha256>``;
``transfer_out`` results are downloaded when the batch ends, checked against
the sha256 the provider reported, and written to ``to`` atomically.

A pump task per batch long-polls the provider's events into a local
:class:`EventLog` that REST clients long-poll in turn. A keep-alive task pings
the provider for every open activity, so a provider whose requestor vanished
(``kill -9``) stops its containers after ``keepalive_s``. Each activity's tasks
(its keep-alive and its pumps) run in the activity's own cancel scope: its
failure or destroy ends only them.

Every answer of a provider is decoded by :mod:`exeunit.messages`; a malformed
one fails that batch (events) or that activity (state, destroy) with the code
``bad-reply``, never the node.

Output is bytes end to end. The REST form shows it as text (invalid UTF-8
replaced) *and* as base64 of the exact bytes: events carry ``data`` and
``data_b64``, results ``stdout``/``stdout_b64`` and ``stderr``/``stderr_b64``;
``stdout_sha256`` is the SHA-256 of the exact bytes (what the provider signs).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, TypeVar

import trio

from exeunit.activity import TERMINAL, State
from exeunit.commands import parse_script, script_to_wire
from exeunit.errors import ExeUnitError, ImageError, ScriptError, TransferRefused
from exeunit.messages import (
    BatchEvent,
    CommandResult,
    Create,
    Destroy,
    EventKind,
    Exec,
    GetEvents,
    GetState,
    MessageInvalid,
    Request,
    decode_created,
    decode_destroyed,
    decode_events_page,
    decode_started,
    decode_state,
    encode_request,
    result_to_wire,
)
from exeunit.receipt import ReceiptInvalid, check_results, open_receipt, stdout_digest
from exeunit.transfer import sha256_file
from yagna.activity_service.blobs import BlobServer, fetch_blob
from yagna.activity_service.events import EventLog
from yagna.activity_service.protocol import ACTIVITY, WAIT_MS_MAX
from yagna.net.errors import RemoteError, RequestError
from yagna.store.activity_repos import Activities
from yagna.store.market_repos import Agreements

log = logging.getLogger("yagna.activity.requestor")

ImageResolver = Callable[[str], Awaitable[str]]
ImageSaver = Callable[[str, str], Awaitable[str]]
"""``(image ref, destination path) -> image id`` (:meth:`exeunit.runtime.Runtime.save_image`)."""
_R = TypeVar("_R")

MAX_BATCHES_KEPT = 32
"""Batches kept per activity (the oldest finished ones go first)."""
MAX_ENDED_KEPT = 64
"""Ended activities kept in memory (their rows stay in the store)."""
MAX_UNREAD_BYTES = 64 * 1024 * 1024
"""Events of finished batches nobody has read, over all activities: past it the oldest batches' go.
(A running batch's own log is bounded by ``events.MAX_BYTES``.)"""


class ActivityFailed(ExeUnitError):
    """A request to the provider failed; ``code`` says why (the provider's code when it answered).

    ``bad-reply``: the provider answered with a malformed message.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


_Entry = BatchEvent | dict[str, Any]
"""What a batch's log keeps: the provider's events, and our own ``batch_done``."""


def _render(entry: _Entry) -> dict[str, Any]:
    return entry if isinstance(entry, dict) else event_view(entry)


def _cost(entry: _Entry) -> int:
    return entry.cost if isinstance(entry, BatchEvent) else 64


@dataclass
class _Batch:
    batch_id: str
    activity_id: str
    downloads: dict[int, Path]
    commands: int = 0
    log: EventLog[_Entry] = dc_field(default_factory=lambda: EventLog(_render, _cost))
    results: list[dict[str, Any] | None] | None = None
    """Wire-form results (output as bytes), filled from ``finished`` events."""
    partial: list[dict[str, Any] | None] = dc_field(default_factory=list)
    """The results known so far while the batch runs (Golem's API polls them cumulatively)."""
    done: bool = False
    error: str | None = None
    done_event: trio.Event = dc_field(default_factory=trio.Event)
    receipt: bytes | None = None
    receipt_verified: bool = False
    """The provider's signed receipt matched the results we got (see :mod:`exeunit.receipt`)."""


@dataclass
class _Activity:
    activity_id: str
    agreement_id: str
    provider_id: str
    state: State = State.NEW
    reason: str | None = None
    ping_s: float = 10.0
    """Keep-alive period: a third of what the provider said it tolerates."""
    created_mono: float = dc_field(default_factory=time.monotonic)
    ended_mono: float | None = None
    """Our own clock of the activity's life: what the payment side checks debit notes against."""
    usage: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    """The provider's last report on a ``serve`` command (running, restarts, health, tunnel)."""
    batches: dict[str, _Batch] = dc_field(default_factory=dict)
    scope: trio.CancelScope = dc_field(default_factory=trio.CancelScope)
    """Of the activity's own tasks (keep-alive, pumps)."""
    nursery: trio.Nursery | None = None

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL

    def set_state(self, state: State, reason: str | None) -> None:
        self.state, self.reason = state, reason
        if state in TERMINAL and self.ended_mono is None:
            self.ended_mono = time.monotonic()


class RequestorActivities:
    def __init__(
        self,
        *,
        rr,  # type: ignore[no-untyped-def]
        blobs: BlobServer,
        activities: Activities,
        agreements: Agreements,
        staging: Path,
        resolve_image: ImageResolver | None = None,
        save_image: ImageSaver | None = None,
        keepalive_s: float = 10.0,
        network_id: str = "testnet",
    ) -> None:
        self._network_id = network_id
        self._rr = rr
        self._blobs = blobs
        self._rows = activities
        self._agreements = agreements
        self._staging = staging
        self._resolve_image = resolve_image
        self._save_image = save_image
        self.keepalive_s = keepalive_s
        self._acts: OrderedDict[str, _Activity] = OrderedDict()
        self._forgotten: dict[str, tuple[int, int]] = {}
        """Agreement id -> (ms, activities) of ended activities no longer kept in memory."""
        self._nursery: trio.Nursery | None = None
        self.max_unread_bytes = MAX_UNREAD_BYTES
        self.before_create: Callable[[str], Awaitable[None]] | None = None
        """Set by the payment service: opens the agreement's payment channel before the first activity."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._staging.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for row in await self._rows.list(role="requestor", live=True):
                act = _Activity(row.activity_id, row.agreement_id, row.peer_id, _stored_state(row.state), row.reason)
                self._acts[row.activity_id] = act
                await nursery.start(self._activity_tasks, act)
            task_status.started()
            await trio.sleep_forever()

    async def _activity_tasks(self, act: _Activity, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The activity's own nursery: its keep-alive, then its pumps until they end (or a destroy)."""
        with act.scope:
            try:
                async with trio.open_nursery() as nursery:
                    act.nursery = nursery
                    task_status.started()
                    await self._keepalive(act)
            finally:
                act.nursery = None

    # -- requests ----------------------------------------------------------------
    async def _call(self, provider: str, req: Request, decode: Callable[[object], _R]) -> _R:
        """Ask the provider and decode its answer; every failure is an :class:`ActivityFailed`."""
        try:
            reply = await self._rr.request(provider, ACTIVITY, encode_request(req))
        except RemoteError as exc:
            raise ActivityFailed(exc.code, exc.message) from exc
        except RequestError as exc:
            raise ActivityFailed("provider-unreachable", f"provider {provider}: {exc}") from exc
        try:
            return decode(reply)
        except MessageInvalid as exc:
            op = encode_request(req)["op"]
            raise ActivityFailed("bad-reply", f"provider {provider} answered {op!r} with a malformed message: {exc}") \
                from None

    def _get(self, activity_id: str) -> _Activity:
        act = self._acts.get(activity_id)
        if act is None:
            raise ActivityFailed("unknown-activity", f"no activity {activity_id!r}")
        return act

    async def create(self, agreement_id: str) -> dict[str, Any]:
        row = await self._agreements.get(agreement_id)
        if row is None or row.role != "requestor":
            raise ActivityFailed("unknown-agreement", f"no agreement {agreement_id!r} where we are the requestor")
        if row.state != "approved":
            raise ActivityFailed("not-approved", f"agreement is {row.state}, not approved")
        if self.before_create is not None:
            await self.before_create(agreement_id)
        created = await self._call(row.peer_id, Create(agreement_id), decode_created)
        activity_id = created.activity_id
        if activity_id in self._acts:
            raise ActivityFailed("bad-reply", f"provider {row.peer_id} gave an activity id already in use")
        await self._rows.insert(activity_id=activity_id, agreement_id=agreement_id, role="requestor",
                                peer_id=row.peer_id, state=State.NEW.value)
        act = _Activity(activity_id, agreement_id, row.peer_id, ping_s=max(0.5, created.keepalive_s / 3))
        self._acts[activity_id] = act
        assert self._nursery is not None
        await self._nursery.start(self._activity_tasks, act)
        return self.view(activity_id)

    async def exec(self, activity_id: str, script: list[Any]) -> dict[str, Any]:
        act = self._get(activity_id)
        if act.ended or act.nursery is None:
            raise ActivityFailed("activity-ended", f"the activity is {act.state.value}: {act.reason}")
        wire, downloads = await self._to_wire(act, script)
        started = await self._call(act.provider_id, Exec(activity_id, tuple(parse_script(wire))), decode_started)
        if started.batch_id in act.batches:
            raise ActivityFailed("bad-reply", f"provider {act.provider_id} gave a batch id already in use")
        if act.nursery is None:  # ended while we asked
            raise ActivityFailed("activity-ended", f"the activity is {act.state.value}: {act.reason}")
        batch = _Batch(started.batch_id, activity_id, downloads, commands=len(wire))
        act.batches[batch.batch_id] = batch
        for old in [b for b in act.batches.values() if b.done][: max(0, len(act.batches) - MAX_BATCHES_KEPT)]:
            del act.batches[old.batch_id]
        act.nursery.start_soon(self._pump, act, batch)
        return {"activity_id": activity_id, "batch_id": batch.batch_id}

    async def _to_wire(self, act: _Activity, script: list[Any]) -> tuple[list[Any], dict[int, Path]]:
        """The REST form -> the wire form; offers local files and images to the provider."""
        if not isinstance(script, list):
            raise ScriptError("a script is a list of commands")
        wire: list[Any] = []
        downloads: dict[int, Path] = {}
        for index, cmd in enumerate(script):
            if not (isinstance(cmd, dict) and len(cmd) == 1):
                raise ScriptError("each command is a map with one key", index=index)
            (name, args), = cmd.items()
            if not isinstance(args, dict):
                raise ScriptError("arguments must be a map", index=index, field=name)
            if name == "deploy" and "package" in args:
                wire.append({"deploy": args})  # a Golem VM package: the provider downloads it by its URL
            elif name == "deploy":
                wire.append({"deploy": {**args, "image": await self._image_for(act, args.get("image"), index)}})
            elif name == "transfer_in":
                local = _local_path(args.get("from"), index, "from")
                try:
                    digest, size = await trio.to_thread.run_sync(sha256_file, local)
                except OSError as exc:
                    raise ScriptError(f"cannot read {local}: {exc.strerror}", index=index, field="from") from None
                self._blobs.offer_file(act.provider_id, f"file:{digest}", local)
                wire.append({"transfer_in": {"to": args.get("to"), "sha256": digest, "size": size}})
            elif name == "transfer_out":
                downloads[index] = _local_path(args.get("to"), index, "to")
                wire.append({"transfer_out": {"from": args.get("from")}})
            else:
                wire.append(cmd)
        return script_to_wire(parse_script(wire)), downloads

    async def _image_for(self, act: _Activity, ref: object, index: int) -> str:
        if not isinstance(ref, str) or not ref:
            raise ScriptError("an image name or id is required", index=index, field="image")
        if self._resolve_image is None:
            if not ref.startswith("sha256:"):
                raise ScriptError("this node has no container engine to resolve image names; give the image id",
                                  index=index, field="image")
            return ref
        try:
            image_id = await self._resolve_image(ref)
        except ImageError as exc:
            if ref.startswith("sha256:"):
                return ref  # the provider may have it; we cannot serve it
            raise ScriptError(str(exc), index=index, field="image") from None
        if self._save_image is not None:
            save, dest = self._save_image, self._staging / f"image-{image_id.split(':')[-1]}.tar"

            async def make() -> Path:
                if not dest.exists():
                    await save(image_id, str(dest))
                return dest

            self._blobs.offer_lazy(act.provider_id, f"image:{image_id}", make)
        return image_id

    # -- the pump --------------------------------------------------------------------
    async def _pump(self, act: _Activity, batch: _Batch) -> None:
        after, failures = 0, 0
        results: list[dict[str, Any] | None] = [None] * batch.commands
        batch.partial = results
        try:
            while True:
                try:
                    page = await self._call(
                        act.provider_id, GetEvents(act.activity_id, batch.batch_id, after, WAIT_MS_MAX // 2),
                        lambda reply: decode_events_page(reply, after=after))
                except ActivityFailed as exc:
                    failures += 1
                    if exc.code != "provider-unreachable" or failures * 5 > max(self.keepalive_s * 3, 30):
                        raise
                    await trio.sleep(1.0)
                    continue
                failures = 0
                for event in page.events:
                    if event.result is not None:
                        if event.result.index >= batch.commands:
                            raise ActivityFailed("bad-reply", f"provider {act.provider_id} sent a result for command "
                                                              f"{event.result.index} of a {batch.commands}-command script")
                        results[event.result.index] = result_to_wire(event.result)
                    batch.log.append(event.seq, event)
                    after = event.seq
                self._trim_logs()
                if page.done:
                    batch.results = results
                    self._check_receipt(act, batch, page.receipt)
                    break
            await self._download(act, batch)
        except ActivityFailed as exc:
            batch.error = f"{exc.code}: {exc}"
            log.warning("batch %s on %s lost: %s", batch.batch_id, act.provider_id, exc)
        finally:
            if batch.results is None and batch.error is None:  # cancelled: the activity ended first
                batch.error = f"activity-ended: the activity ended before the batch ({act.reason or act.state.value})"
            batch.done = True
            batch.log.append(batch.log.last_seq + 1, {"kind": "batch_done", "error": batch.error})
            batch.log.close()
            batch.done_event.set()

    def _trim_logs(self) -> None:
        """Keep the unread events of finished batches within :attr:`max_unread_bytes` (oldest go first)."""
        batches = [b for a in self._acts.values() for b in a.batches.values()]
        total = sum(b.log.bytes for b in batches)
        for batch in batches:
            if total <= self.max_unread_bytes:
                return
            if batch.done and batch.log.bytes:
                total -= batch.log.bytes
                batch.log.clear()
                total += batch.log.bytes  # its end stays

    def _check_receipt(self, act: _Activity, batch: _Batch, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            receipt = open_receipt(raw, provider=act.provider_id, network_id=self._network_id,
                                   agreement_id=act.agreement_id, activity_id=act.activity_id, batch_id=batch.batch_id)
            check_results(receipt, batch.results or [])
        except ReceiptInvalid as exc:
            log.warning("batch %s from %s: %s", batch.batch_id, act.provider_id, exc)
            return
        batch.receipt, batch.receipt_verified = raw, True

    async def _download(self, act: _Activity, batch: _Batch) -> None:
        for index, dest in batch.downloads.items():
            result = batch.results[index] if batch.results and index < len(batch.results) else None
            if not result or result.get("error") or not isinstance(result.get("sha256"), str):
                continue
            size = int(result.get("size") or 0)
            part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                t0 = time.monotonic()
                digest, _ = await fetch_blob(self._rr, act.provider_id, f"file:{result['sha256']}", part,
                                             max_size=size, expected_size=size)
                log.info("transfer_out to %s: %d bytes fetched in %.0f ms", dest, size, (time.monotonic() - t0) * 1000)
                if digest != result["sha256"]:
                    raise TransferRefused("hash-mismatch", f"got sha256 {digest}, the provider said {result['sha256']}")
                part.replace(dest)
                result["local_path"] = str(dest)
            except (TransferRefused, RequestError, OSError) as exc:
                part.unlink(missing_ok=True)
                result["error"] = f"download failed: {exc}"

    # -- reading -----------------------------------------------------------------------
    async def events(self, activity_id: str, batch_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        """Events after ``after``; the reader has those up to it, so they are forgotten (one reader per batch)."""
        batch = self._batch(activity_id, batch_id)
        batch.log.ack(after)
        return await batch.log.wait_after(after, timeout)

    async def wait(self, activity_id: str, batch_id: str, timeout: float) -> dict[str, Any]:
        batch = self._batch(activity_id, batch_id)
        with trio.move_on_after(timeout):
            await batch.done_event.wait()
        return self.batch_view(batch)

    def _batch(self, activity_id: str, batch_id: str) -> _Batch:
        batch = self._get(activity_id).batches.get(batch_id)
        if batch is None:
            raise ActivityFailed("unknown-batch", f"no batch {batch_id!r} in activity {activity_id!r}")
        return batch

    def progress(self, activity_id: str, batch_id: str) -> tuple[list[dict[str, Any] | None], bool, str | None]:
        """``(results so far in wire form, done, error)`` of a batch (Golem's cumulative polling)."""
        batch = self._batch(activity_id, batch_id)
        return list(batch.results if batch.results is not None else batch.partial), batch.done, batch.error

    @staticmethod
    def batch_view(batch: _Batch) -> dict[str, Any]:
        results = None if batch.results is None else [None if r is None else result_view(r) for r in batch.results]
        return {"batch_id": batch.batch_id, "activity_id": batch.activity_id, "done": batch.done,
                "error": batch.error, "results": results,
                "receipt": base64.b64encode(batch.receipt).decode() if batch.receipt else None,
                "receipt_verified": batch.receipt_verified}

    async def state(self, activity_id: str) -> dict[str, Any]:
        act = self._get(activity_id)
        if not act.ended:
            await self._refresh(act)
        return self.view(activity_id)

    async def _refresh(self, act: _Activity) -> None:
        try:
            reply = await self._call(act.provider_id, GetState(act.activity_id), decode_state)
        except ActivityFailed as exc:
            if exc.code == "bad-reply":
                await self._end(act, State.FAILED, str(exc))
            elif exc.code == "unknown-activity":
                await self._end(act, State.TERMINATED, "the provider no longer knows it")
            raise
        act.usage = reply.usage
        act.service = reply.service
        if reply.state is not act.state:
            act.set_state(reply.state, reply.reason)
            await self._rows.update(act.activity_id, state=reply.state.value, reason=reply.reason, usage=act.usage)
            if act.ended:  # its pumps still read the batch's last events; the keep-alive stops
                self._forget_old()

    async def _end(self, act: _Activity, state: State, reason: str) -> None:
        """Record that the activity ended and stop its tasks (a no-op on an ended one)."""
        if act.ended:
            return
        act.set_state(state, reason)
        log.log(logging.WARNING if state is State.FAILED else logging.INFO, "activity %s on %s %s: %s",
                act.activity_id, act.provider_id, state.value, reason)
        with trio.CancelScope(shield=True):
            await self._rows.update(act.activity_id, state=state.value, reason=reason, usage=act.usage)
        act.scope.cancel()  # its tasks stop; its pumps report their batches lost
        self._forget_old()

    def _forget_old(self) -> None:
        """Keep at most :data:`MAX_ENDED_KEPT` ended activities in memory (their clock is kept for payments)."""
        ended = [a for a in self._acts.values() if a.ended]
        for old in ended[: max(0, len(ended) - MAX_ENDED_KEPT)]:
            ms, count = self._forgotten.get(old.agreement_id, (0, 0))
            self._forgotten[old.agreement_id] = (ms + _life_ms(old, time.monotonic()), count + 1)
            for batch in old.batches.values():
                batch.log.clear()
            del self._acts[old.activity_id]

    def view(self, activity_id: str) -> dict[str, Any]:
        act = self._get(activity_id)
        return {"activity_id": act.activity_id, "agreement_id": act.agreement_id, "provider_id": act.provider_id,
                "state": act.state.value, "reason": act.reason, "usage": act.usage, "service": act.service,
                "batches": [self.batch_view(b) for b in act.batches.values()]}

    def elapsed_for_agreement(self, agreement_id: str) -> tuple[int, int]:
        """``(milliseconds of activity life summed, activities)`` by our own clock."""
        now = time.monotonic()
        acts = [a for a in self._acts.values() if a.agreement_id == agreement_id]
        ms, count = self._forgotten.get(agreement_id, (0, 0))
        return ms + sum(_life_ms(a, now) for a in acts), count + len(acts)

    def list(self) -> list[dict[str, Any]]:
        return [self.view(a) for a in self._acts]

    async def destroy(self, activity_id: str) -> dict[str, Any]:
        act = self._get(activity_id)
        if not act.ended:
            try:
                reply = await self._call(act.provider_id, Destroy(activity_id), decode_destroyed)
                act.usage = reply.usage if reply.usage is not None else act.usage
                reason = "destroyed by the requestor"
            except ActivityFailed as exc:
                reason = f"provider not told: {exc}"
            await self._end(act, State.TERMINATED, reason)
        for batch in act.batches.values():
            batch.log.clear()  # nobody reads a destroyed activity's events; its results stay
        act.scope.cancel()
        return self.view(activity_id)

    async def _keepalive(self, act: _Activity) -> None:
        """Ping the provider every ``ping_s`` while the activity lives (``state`` is the keep-alive)."""
        while not act.ended:
            await trio.sleep(act.ping_s)
            with trio.move_on_after(act.ping_s):
                try:
                    await self._refresh(act)
                except ActivityFailed as exc:
                    if exc.code not in ("bad-reply", "unknown-activity"):
                        log.info("keep-alive of %s failed: %s", act.activity_id, exc)


def _life_ms(act: _Activity, now: float) -> int:
    return int(((act.ended_mono or now) - act.created_mono) * 1000)


def _stored_state(value: str) -> State:
    try:
        return State(value)
    except ValueError:  # written by an older version from a provider's unchecked answer
        return State.TERMINATED


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def event_view(event: BatchEvent) -> dict[str, Any]:
    """The REST form of a provider's event: output as text and as base64 of the exact bytes."""
    out: dict[str, Any] = {"index": event.index, "kind": event.kind.value}
    if event.kind in (EventKind.STDOUT, EventKind.STDERR):
        out["data"] = _text(event.data)
        out["data_b64"] = base64.b64encode(event.data).decode()
    elif event.result is not None:
        out["result"] = result_view(result_to_wire(event.result))
    elif event.kind is EventKind.DROPPED:
        out["from_seq"], out["bytes"] = event.from_seq, event.dropped_bytes
    elif event.kind is EventKind.DONE:
        out["reason"] = event.reason
    return out


def result_view(result: dict[str, Any]) -> dict[str, Any]:
    """The REST form of a wire result (output as bytes): text, base64 of the exact bytes, and its digest."""
    out = dict(result)
    for stream in ("stdout", "stderr"):
        data = result.get(stream) or b""
        out[stream] = _text(data)
        out[f"{stream}_b64"] = base64.b64encode(data).decode()
    out["stdout_sha256"] = stdout_digest(result.get("stdout") or b"")
    return out


def _local_path(value: object, index: int, name: str) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ScriptError("must be an absolute local path", index=index, field=name)
    return Path(value)
