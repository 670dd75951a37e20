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
(``kill -9``) stops its containers after ``keepalive_s``.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

import trio

from exeunit.commands import parse_script, script_to_wire
from exeunit.errors import ExeUnitError, ImageError, ScriptError, TransferRefused
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
ImageSaver = Callable[[str, Path], Awaitable[str]]


class ActivityFailed(ExeUnitError):
    """A request to the provider failed; ``code`` says why (the provider's code when it answered)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class _Batch:
    batch_id: str
    activity_id: str
    downloads: dict[int, Path]
    log: EventLog = dc_field(default_factory=EventLog)
    results: list[dict[str, Any]] | None = None
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
    state: str = "new"
    reason: str | None = None
    ping_s: float = 10.0
    """Keep-alive period: a third of what the provider said it tolerates."""
    created_mono: float = dc_field(default_factory=time.monotonic)
    ended_mono: float | None = None
    """Our own clock of the activity's life: what the payment side checks debit notes against."""

    def set_state(self, state: str, reason: str | None) -> None:
        self.state, self.reason = state, reason
        if state in ("terminated", "failed") and self.ended_mono is None:
            self.ended_mono = time.monotonic()
    usage: dict[str, Any] | None = None
    batches: dict[str, _Batch] = dc_field(default_factory=dict)


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
        self._acts: dict[str, _Activity] = {}
        self._nursery: trio.Nursery | None = None
        self.before_create: Callable[[str], Awaitable[None]] | None = None
        """Set by the payment service: opens the agreement's payment channel before the first activity."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._staging.mkdir(parents=True, exist_ok=True)
        for row in await self._rows.list(role="requestor", live=True):
            self._acts[row.activity_id] = _Activity(row.activity_id, row.agreement_id, row.peer_id, row.state, row.reason)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._keepalive)
            task_status.started()
            await trio.sleep_forever()

    # -- requests ----------------------------------------------------------------
    async def _ask(self, provider: str, msg: dict[str, Any]) -> Any:
        try:
            return await self._rr.request(provider, ACTIVITY, msg)
        except RemoteError as exc:
            raise ActivityFailed(exc.code, exc.message) from exc
        except RequestError as exc:
            raise ActivityFailed("provider-unreachable", f"provider {provider}: {exc}") from exc

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
        reply = await self._ask(row.peer_id, {"op": "create", "agreement_id": agreement_id})
        activity_id = reply["activity_id"] if isinstance(reply, dict) and isinstance(reply.get("activity_id"), str) else None
        if not activity_id:
            raise ActivityFailed("bad-reply", "the provider answered without an activity id")
        await self._rows.insert(activity_id=activity_id, agreement_id=agreement_id, role="requestor",
                                peer_id=row.peer_id, state="new")
        keepalive = reply.get("keepalive_s")
        ping_s = max(0.5, float(keepalive) / 3) if isinstance(keepalive, (int, float)) and keepalive > 0 else 10.0
        self._acts[activity_id] = _Activity(activity_id, agreement_id, row.peer_id, ping_s=ping_s)
        return self.view(activity_id)

    async def exec(self, activity_id: str, script: list[Any]) -> dict[str, Any]:
        act = self._get(activity_id)
        wire, downloads = await self._to_wire(act, script)
        reply = await self._ask(act.provider_id, {"op": "exec", "activity_id": activity_id, "script": wire})
        batch_id = reply.get("batch_id") if isinstance(reply, dict) else None
        if not isinstance(batch_id, str):
            raise ActivityFailed("bad-reply", "the provider answered without a batch id")
        batch = _Batch(batch_id, activity_id, downloads)
        act.batches[batch_id] = batch
        assert self._nursery is not None
        self._nursery.start_soon(self._pump, act, batch)
        return {"activity_id": activity_id, "batch_id": batch_id}

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
            if name == "deploy":
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
                    await save(image_id, dest)
                return dest

            self._blobs.offer_lazy(act.provider_id, f"image:{image_id}", make)
        return image_id

    # -- the pump --------------------------------------------------------------------
    async def _pump(self, act: _Activity, batch: _Batch) -> None:
        after, failures = 0, 0
        try:
            while True:
                try:
                    reply = await self._ask(act.provider_id, {"op": "events", "activity_id": act.activity_id,
                                                              "batch_id": batch.batch_id, "after": after,
                                                              "wait_ms": WAIT_MS_MAX // 2})
                except ActivityFailed as exc:
                    failures += 1
                    if exc.code != "provider-unreachable" or failures * 5 > max(self.keepalive_s * 3, 30):
                        raise
                    await trio.sleep(1.0)
                    continue
                failures = 0
                for event in reply.get("events", []):
                    after = max(after, int(event.get("seq", after)))
                    batch.log.append(event)
                if reply.get("done"):
                    batch.results = list(reply.get("results") or [])
                    self._check_receipt(act, batch, reply.get("receipt"))
                    break
            await self._download(act, batch)
        except ActivityFailed as exc:
            batch.error = f"{exc.code}: {exc}"
            log.warning("batch %s on %s lost: %s", batch.batch_id, act.provider_id, exc)
        finally:
            batch.done = True
            batch.log.append({"seq": batch.log.last_seq + 1, "kind": "batch_done", "error": batch.error})
            batch.log.close()
            batch.done_event.set()

    def _check_receipt(self, act: _Activity, batch: _Batch, raw: object) -> None:
        if not isinstance(raw, bytes):
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
            part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                digest, size = await fetch_blob(self._rr, act.provider_id, f"file:{result['sha256']}", part,
                                                max_size=int(result.get("size", 0)), expected_size=int(result.get("size", 0)))
                if digest != result["sha256"]:
                    raise TransferRefused("hash-mismatch", f"got sha256 {digest}, the provider said {result['sha256']}")
                part.replace(dest)
                result["local_path"] = str(dest)
            except (TransferRefused, RequestError, OSError) as exc:
                part.unlink(missing_ok=True)
                result["error"] = f"download failed: {exc}"

    # -- reading -----------------------------------------------------------------------
    async def events(self, activity_id: str, batch_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        batch = self._batch(activity_id, batch_id)
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

    @staticmethod
    def batch_view(batch: _Batch) -> dict[str, Any]:
        results = batch.results
        if results is not None:
            results = [None if r is None else {**r, "stdout_sha256": stdout_digest(r.get("stdout") or "")} for r in results]
        return {"batch_id": batch.batch_id, "activity_id": batch.activity_id, "done": batch.done,
                "error": batch.error, "results": results,
                "receipt": base64.b64encode(batch.receipt).decode() if batch.receipt else None,
                "receipt_verified": batch.receipt_verified}

    async def state(self, activity_id: str) -> dict[str, Any]:
        act = self._get(activity_id)
        if act.state not in ("terminated", "failed"):
            await self._refresh(act)
        return self.view(activity_id)

    async def _refresh(self, act: _Activity) -> None:
        reply = await self._ask(act.provider_id, {"op": "state", "activity_id": act.activity_id})
        state, reason = reply.get("state"), reply.get("reason")
        act.usage = reply.get("usage")
        if state != act.state:
            act.set_state(state, reason)
            await self._rows.update(act.activity_id, state=state, reason=reason, usage=act.usage)

    def view(self, activity_id: str) -> dict[str, Any]:
        act = self._get(activity_id)
        return {"activity_id": act.activity_id, "agreement_id": act.agreement_id, "provider_id": act.provider_id,
                "state": act.state, "reason": act.reason, "usage": act.usage,
                "batches": [self.batch_view(b) for b in act.batches.values()]}

    def elapsed_for_agreement(self, agreement_id: str) -> tuple[int, int]:
        """``(milliseconds of activity life summed, activities)`` by our own clock."""
        now = time.monotonic()
        acts = [a for a in self._acts.values() if a.agreement_id == agreement_id]
        return sum(int(((a.ended_mono or now) - a.created_mono) * 1000) for a in acts), len(acts)

    def list(self) -> list[dict[str, Any]]:
        return [self.view(a) for a in self._acts]

    async def destroy(self, activity_id: str) -> dict[str, Any]:
        act = self._get(activity_id)
        if act.state not in ("terminated", "failed"):
            try:
                reply = await self._ask(act.provider_id, {"op": "destroy", "activity_id": activity_id})
                act.usage = reply.get("usage", act.usage)
                act.set_state("terminated", "destroyed by the requestor")
            except ActivityFailed as exc:
                act.set_state("terminated", f"provider not told: {exc}")
            await self._rows.update(activity_id, state=act.state, reason=act.reason, usage=act.usage)
        return self.view(activity_id)

    async def _keepalive(self) -> None:
        """Ping each open activity about every ``ping_s`` (the loop ticks at the shortest one)."""
        last: dict[str, float] = {}
        while True:
            open_acts = [a for a in self._acts.values() if a.state not in ("terminated", "failed")]
            await trio.sleep(min([a.ping_s for a in open_acts] + [self.keepalive_s]) / 2)
            for act in open_acts:
                if trio.current_time() - last.get(act.activity_id, -1e9) < act.ping_s * 0.9:
                    continue
                last[act.activity_id] = trio.current_time()
                with trio.move_on_after(act.ping_s):
                    try:
                        await self._refresh(act)
                    except ActivityFailed as exc:
                        if exc.code == "unknown-activity":
                            act.set_state("terminated", "the provider no longer knows it")
                            await self._rows.update(act.activity_id, state=act.state, reason=act.reason)
                        else:
                            log.info("keep-alive of %s failed: %s", act.activity_id, exc)


def _local_path(value: object, index: int, name: str) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ScriptError("must be an absolute local path", index=index, field=name)
    return Path(value)


