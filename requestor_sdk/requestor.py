"""The requestor: a pool of agreements that runs tasks, verified, within a budget.

::

    async with Requestor(image="local/busybox:1", budget="1", max_providers=3) as r:
        results = await r.run(tasks, redundancy=2)

Structure (all structured concurrency, one nursery per :meth:`Requestor.run`):

- a **recruiter** task negotiates agreements (``POST /market/demands/{id}/negotiate``,
  the daemon's strategy with our price caps and deny list) while tasks need a
  provider the pool lacks, up to ``max_providers``, and starts one
- **worker** task per agreement (a *slot*): it keeps one activity deployed and
  runs one exe-script per task on it (upload, run, download), streaming the
  output as events. A worker whose provider vanishes drops its agreement
  (terminated); an idle worker gives its slot back after ``idle_s``.

A task runs on ``redundancy`` distinct providers; :mod:`requestor_sdk.verify`
decides which result wins. Every outcome is reported to the daemon's
reputation record. A task is only started when the :class:`~requestor_sdk.budget.Budget`
says its worst case fits.

Teardown (success, error, ``Ctrl-C``/cancellation) is shielded and bounded:
activities destroyed, agreements terminated (the daemon then invoices and
pays), and the signed amounts read back to compute costs.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from requestor_sdk.budget import Budget, Pricing, parse_tokens, tokens
from requestor_sdk.client import Api
from requestor_sdk.errors import ApiError, DaemonUnreachable, SdkError
from requestor_sdk.funding import ensure_funds
from requestor_sdk.local_node import find_node
from requestor_sdk.locate import DaemonLocation
from requestor_sdk.tasks import (
    Attempt, AttemptFinished, AttemptStarted, BudgetStopped, Event, MarketNote, Output, ProviderJoined,
    ProviderLeft, Spend, Task, TaskFinished, TaskResult,
)
from requestor_sdk.verify import Decision, decide, default_max_results, result_digest

log = logging.getLogger("requestor_sdk")

__all__ = ["InsufficientFunds", "Market", "Requestor"]

_VANISHED_CODES = {"provider-unreachable", "unknown-activity", "unknown-agreement", "not-approved", "bad-reply",
                   "terminated", "activity-gone"}
_CLEAN = "rm -rf /work/in/* /work/in/.[!.]* /work/out/* /work/out/.[!.]* 2>/dev/null; true"


class InsufficientFunds(SdkError):
    """The requestor's free balance cannot back another agreement's deposit."""


@dataclass(frozen=True)
class Market:
    """Which providers to use, at what price.

    Prices are decimal token strings: ``max_price_cpu_hour`` per CPU-hour,
    ``max_price_hour`` per hour of activity life, ``max_start_fee`` once per
    agreement. ``constraints`` is an LDAP filter on offers (``docs/market.md``).
    Providers with ``bad_disagreements`` or more lost votes and a reputation
    below ``bad_reputation`` (``GET /reputation``) are denied too.
    """

    constraints: str = ""
    subnet: str = "public"
    max_price_cpu_hour: str | None = None
    max_price_hour: str | None = None
    max_start_fee: str | None = None
    deny: frozenset[str] = frozenset()
    expiration_s: int = 3600
    negotiate_timeout_s: float = 10.0
    find_timeout_s: float = 60.0
    """A task that needs a provider none of the pool can serve fails after this long without a new one."""
    bad_reputation: float = 0.2
    bad_disagreements: int = 2

    def strategy(self, deny: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"deny": sorted(deny)}
        if self.max_price_cpu_hour is not None:
            out["max_per_cpu_sec"] = tokens(_per_second(self.max_price_cpu_hour, "max_price_cpu_hour"))
        if self.max_price_hour is not None:
            out["max_per_duration_sec"] = tokens(_per_second(self.max_price_hour, "max_price_hour"))
        if self.max_start_fee is not None:
            out["max_start_fee"] = tokens(parse_tokens(self.max_start_fee, "max_start_fee"))
        return out


def _per_second(hourly: str, what: str) -> int:
    """An hourly price as a per-second cap in base units (rounded down: a cap never lets more through)."""
    return parse_tokens(hourly, what) // 3600


EventSink = Callable[[Event], None] | trio.MemorySendChannel[Event]


@dataclass(eq=False)
class _Slot:
    """One agreement in the pool (one provider), with at most one live activity."""

    agreement_id: str
    provider_id: str
    pricing: Pricing
    activity_id: str | None = None
    busy: bool = False
    used: bool = False
    """The activity ran a task already (its /work needs cleaning before the next)."""
    retired: str | None = None


@dataclass(eq=False)
class _TaskState:
    task: Task
    k: int
    max_results: int
    retries: int
    results: list[tuple[str, str]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)
    failures: int = 0
    result: TaskResult | None = None
    decision: Decision | None = None
    work: Path | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def need(self) -> int:
        if self.done:
            return 0
        decision = self.decision or decide(self.results, self.k, self.max_results)
        room = self.max_results - len(self.results) - len(self.running)
        return max(0, min(decision.needed - len(self.running), room))


class Requestor:
    """A batch requestor on a local daemon; use as ``async with Requestor(...) as r``.

    ``budget`` (decimal tokens) is never exceeded: see :mod:`requestor_sdk.budget`.
    The node: ``location``, else ``data_dir``, else :func:`~requestor_sdk.local_node.find_node`
    (``YAGNA_API_URL`` + ``YAGNA_APPKEY``, ``YAGNA_DATA_DIR``, the default data dir, the devnet's requestor).
    ``fund``: on a test network, a free balance below the budget is topped up on entry
    (:attr:`funded`; said by a :class:`~requestor_sdk.tasks.MarketNote`); ``False`` to never fund.
    ``work_dir`` receives downloaded outputs (``<work_dir>/<task id>/``; a
    temporary folder per attempt under ``<work_dir>/.attempts/``); without it, a temporary
    folder made on entry and removed on exit (read the outputs inside the ``async with`` block).
    ``on_event`` is a callable (called synchronously, keep it quick) or a
    trio memory channel (sent to with back-pressure; the caller reads it).
    """

    def __init__(self, *, image: str, budget: str | int, max_providers: int = 3, market: Market | None = None,
                 data_dir: Path | str | None = None, location: DaemonLocation | None = None,
                 work_dir: Path | str | None = None, on_event: EventSink | None = None,
                 idle_s: float = 5.0, transfer_margin_s: float = 20.0, deploy_margin_s: float = 60.0,
                 settle_timeout_s: float = 20.0, teardown_timeout_s: float = 20.0, fund: bool = True) -> None:
        if max_providers < 1:
            raise SdkError("max_providers must be >= 1")
        self.image = image
        self.limit = parse_tokens(budget, "budget")
        self.max_providers = max_providers
        self.market = market or Market()
        self._work_dir = Path(work_dir).absolute() if work_dir is not None else None
        self._own_work_dir = False
        self.fund = fund
        self.funded = 0
        """Base units funded on entry (test networks, free balance below the budget), else 0."""
        self._notes: list[str] = []
        self._data_dir = data_dir
        self._location = location
        self._on_event = on_event
        self.idle_s = idle_s
        self.transfer_margin_s = transfer_margin_s
        self.deploy_margin_s = deploy_margin_s
        self.settle_timeout_s = settle_timeout_s
        self.teardown_timeout_s = teardown_timeout_s
        self.budget = Budget(self.limit, tail_s=idle_s + 10.0)
        self.api: Api | None = None
        self.demand_id: str | None = None
        self.slots: list[_Slot] = []
        self.agreements: dict[str, _Slot] = {}
        """Every agreement this requestor held (also the dropped ones), for costs."""
        self.paid: dict[str, int] = {}
        """Agreement id -> base units signed to its provider (after teardown: final)."""
        self.stopped: str | None = None
        """Why no more tasks are taken (budget), if so."""
        self._gone: set[str] = set()
        self._last_note = ""
        self._results: list[_TaskState] = []
        self._changed = trio.Event()
        self._clock = time.monotonic

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def work_dir(self) -> Path:
        """Where outputs are downloaded (a temporary folder between entry and exit when none was given)."""
        if self._work_dir is None:
            raise SdkError("the Requestor's temporary work dir exists only inside `async with Requestor(...)`")
        return self._work_dir

    async def __aenter__(self) -> Requestor:
        location = self._location or find_node(self._data_dir)
        self.api = Api(location)
        try:
            if self.fund:
                self.funded, free = await ensure_funds(self.api, self.limit)
                if self.funded:
                    self._notes.append(f"funded {tokens(self.funded)} test tokens (no value): the free balance "
                                       f"({tokens(free)}) was below the budget ({tokens(self.limit)})")
            demand = await self.api.create_demand(properties={}, constraints=self.market.constraints,
                                                  subnet=self.market.subnet, expiration_s=self.market.expiration_s)
        except BaseException:
            await self.api.aclose()
            self.api = None
            raise
        self.demand_id = str(demand["demand_id"])
        if self._work_dir is None:
            self._work_dir, self._own_work_dir = Path(tempfile.mkdtemp(prefix="yagna-requestor-")), True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Destroy activities, terminate agreements, read the signed amounts (shielded, bounded); idempotent."""
        if self.api is None:
            return
        api = self.api
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.teardown_timeout_s):
                async with trio.open_nursery() as nursery:
                    for slot in list(self.slots):
                        nursery.start_soon(self._drop, slot, "requestor-done", False)
                if self.demand_id is not None:
                    try:
                        await api.delete_demand(self.demand_id)
                    except ApiError:
                        pass
            with trio.move_on_after(self.settle_timeout_s):
                await self._settle()
            self._assign_costs()
            await api.aclose()
            self.api = None
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir, self._own_work_dir = None, False

    def results(self) -> list[TaskResult]:
        """Results of every task given to :meth:`run` so far (after an interruption too: unfinished ones failed)."""
        return [st.result for st in self._results if st.result is not None]

    def interrupt(self, reason: str) -> None:
        """Take no more tasks; unfinished ones fail with ``reason`` (then cancel :meth:`run` to stop at once)."""
        self.stopped = self.stopped or reason
        self._touch()

    @property
    def spent(self) -> int:
        """Base units signed to providers by this requestor's agreements (final after :meth:`close`)."""
        return sum(self.paid.values())

    # -- events --------------------------------------------------------------------------------
    async def _emit(self, event: Event) -> None:
        sink = self._on_event
        if sink is None:
            return
        if isinstance(sink, trio.MemorySendChannel):
            await sink.send(event)
        else:
            sink(event)

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_change(self, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            await self._changed.wait()
            return True
        return False

    # -- running tasks -------------------------------------------------------------------------
    async def run(self, tasks: Sequence[Task], *, redundancy: int = 1, retries: int = 2,
                  max_results: int | None = None) -> list[TaskResult]:
        """Run every task; returns one result per task, in order (failed ones too, with a reason).

        ``redundancy`` = distinct providers per task (majority wins);
        ``retries`` = failed attempts (provider errors, timeouts, missing
        receipts) tolerated per task before it fails; ``max_results`` bounds
        the results gathered on disagreement (default ``2k + 1``).
        """
        if self.api is None:
            raise SdkError("use the Requestor as `async with Requestor(...) as r:` before run()")
        if redundancy < 1:
            raise SdkError("redundancy must be >= 1")
        ids = [t.id for t in tasks]
        if len(set(ids)) != len(ids):
            raise SdkError("task ids must be unique")
        bound = max_results if max_results is not None else default_max_results(redundancy)
        states = [_TaskState(t, redundancy, bound, retries) for t in tasks]
        self._results.extend(states)
        self.stopped = None
        while self._notes:  # what happened on entry (funding), told once
            await self._emit(MarketNote(self._notes.pop(0)))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._recruit, states, nursery)
                nursery.start_soon(self._watch_payments, states)
                for slot in list(self.slots):
                    nursery.start_soon(self._worker, slot, states)
        except BaseExceptionGroup as group:
            # One SDK error (our daemon gone, no funds): raise it as itself, not wrapped in a group.
            errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
            if len(errors) == 1 and isinstance(errors[0], SdkError):
                raise errors[0] from None
            raise
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.teardown_timeout_s):
                async with trio.open_nursery() as nursery:
                    for slot in list(self.slots):
                        nursery.start_soon(self._end_activity, slot)
            for st in states:
                if st.result is None:
                    self._finish(st, "failed", self.stopped or "cancelled before it finished")
        return [st.result for st in states if st.result is not None]

    def _all_done(self, states: list[_TaskState]) -> bool:
        return all(st.done for st in states)

    def _pick(self, states: list[_TaskState], provider: str) -> _TaskState | None:
        for st in states:
            if st.need() > 0 and provider not in st.tried:
                return st
        return None

    # -- the recruiter -------------------------------------------------------------------------
    async def _recruit(self, states: list[_TaskState], nursery: trio.Nursery) -> None:
        assert self.api is not None and self.demand_id is not None
        starved_since: float | None = None
        backoff = 0.5
        while not self._all_done(states) and self.stopped is None:
            live = [s for s in self.slots if s.retired is None]
            pool = {s.provider_id for s in live}
            # Tasks none of the pool can serve (redundancy, retries elsewhere) ...
            wanted = [st for st in states if st.need() > 0 and not any(p not in st.tried for p in pool)]
            # ... and more waiting work than idle slots: both call for new providers.
            backlog = sum(st.need() for st in states) - sum(1 for s in live if not s.busy)
            more = max(backlog, max((st.need() for st in wanted), default=0))
            free = self.max_providers - len(live)
            if not wanted and (backlog <= 0 or free <= 0):
                starved_since = None
                await self._wait_change(2.0)
                continue
            starved_since = starved_since if starved_since is not None else self._clock()
            if free > 0 and more > 0:
                count = min(free, more)
                deny = set(self.market.deny) | pool | self._gone | await self._bad_providers()
                # Providers every wanted task has already had are of no use.
                seen = {p for st in states for p in st.tried}
                deny |= {p for p in seen if all(p in st.tried for st in wanted)}
                got = await self._negotiate(count, deny)
                for slot in got:
                    nursery.start_soon(self._worker, slot, states)
                if got:
                    starved_since, backoff = None, 0.5
                    self._touch()
                    continue
            if wanted and self._clock() - starved_since > self.market.find_timeout_s and not any(st.running for st in wanted):
                for st in wanted:
                    if st.need() > 0 and not st.running and not any(p not in st.tried for p in pool):
                        have = len(st.results)
                        self._finish(st, "failed", self._starved_reason(st, have))
                        await self._emit(TaskFinished(st.result))  # type: ignore[arg-type]
                starved_since = None
                self._touch()
                continue
            await self._wait_change(backoff)
            backoff = min(backoff * 2, 5.0)

    def _starved_reason(self, st: _TaskState, have: int) -> str:
        tried = len(st.tried)
        last = next((a.error for a in reversed(st.attempts) if a.error), None)
        why = f"; last error: {last}" if last else ""
        return (f"no provider found to run it (needs {st.need()} more distinct provider(s) after {tried} tried, "
                f"{have} result(s); none found within {self.market.find_timeout_s:g} s){why}")

    async def _bad_providers(self) -> set[str]:
        assert self.api is not None
        try:
            rows = await self.api.reputation()
        except ApiError:
            return set()
        m = self.market
        return {str(r["provider_id"]) for r in rows
                if int(r.get("disagreements") or 0) >= m.bad_disagreements and float(r.get("reputation", 1)) < m.bad_reputation}

    async def _negotiate(self, count: int, deny: set[str]) -> list[_Slot]:
        assert self.api is not None and self.demand_id is not None
        try:
            reply = await self.api.negotiate(self.demand_id, count=count, timeout_s=self.market.negotiate_timeout_s,
                                             strategy=self.market.strategy(deny))
        except DaemonUnreachable:
            raise
        except ApiError as exc:
            await self._emit(MarketNote(f"negotiation failed: {exc}"))
            return []
        slots = []
        for a in reply.get("agreements") or []:
            agreement_id, provider = str(a["agreement_id"]), str(a["provider_id"])
            try:
                pricing = Pricing.from_offer(a.get("offer_properties") or {})
            except SdkError as exc:
                await self._emit(MarketNote(f"agreement with {provider} refused: {exc}"))
                await self._terminate(agreement_id, "unusable-pricing")
                continue
            slot = _Slot(agreement_id, provider, pricing)
            self.slots.append(slot)
            self.agreements[agreement_id] = slot
            self.budget.add_agreement(agreement_id, pricing)
            cpu_h, h = pricing.hourly()
            await self._emit(ProviderJoined(provider, agreement_id, cpu_h, h, tokens(pricing.start_fee)))
            slots.append(slot)
        if not slots:
            fails = reply.get("failures") or []
            text = "; ".join(f"{f.get('provider_id', '?')[:16]}: {f.get('code')}" for f in fails[:5]) or "no matching offer"
            if text != self._last_note:  # say it once, not at every retry
                self._last_note = text
                await self._emit(MarketNote(f"no new agreement ({text})"))
        return slots

    async def _terminate(self, agreement_id: str, reason: str) -> None:
        assert self.api is not None
        try:
            await self.api.terminate_agreement(agreement_id, reason)
        except ApiError as exc:
            log.info("terminate %s: %s", agreement_id, exc)

    # -- a worker --------------------------------------------------------------------------------
    async def _worker(self, slot: _Slot, states: list[_TaskState]) -> None:
        reason = "idle"
        try:
            while self.stopped is None and not self._all_done(states) and slot.retired is None:
                st = self._pick(states, slot.provider_id)
                if st is None:
                    if not await self._wait_change(self.idle_s):
                        reason = "idle: no task it can run"
                        break
                    continue
                seconds = st.task.timeout + self.transfer_margin_s + (0 if slot.activity_id else self.deploy_margin_s)
                reservation = self.budget.reserve(slot.agreement_id, seconds, self._clock())
                if reservation is None:
                    if self.budget.running() > 0:
                        if not await self._wait_change(self.idle_s):
                            reason = "idle: waiting for budget"
                            break
                        continue
                    await self._stop_for_budget(states, slot, st, seconds)
                    reason = "budget exhausted"
                    break
                st.running.add(slot.provider_id)
                st.tried.add(slot.provider_id)
                slot.busy = True
                self._touch()
                try:
                    attempt, vanished = await self._attempt(slot, st)
                finally:
                    self.budget.release(reservation)
                    st.running.discard(slot.provider_id)
                    slot.busy = False
                await self._record(st, attempt)
                self._touch()
                if vanished:
                    reason = f"vanished: {attempt.error}"
                    self._gone.add(slot.provider_id)
                    break
        except trio.Cancelled:
            reason = f"stopped: {self.stopped}" if self.stopped else "cancelled"
            raise
        finally:
            if reason == "idle" and self._all_done(states):
                reason = "all tasks done"
            with trio.CancelScope(shield=True), trio.move_on_after(self.teardown_timeout_s):
                await self._drop(slot, reason, True)
            self._touch()

    async def _stop_for_budget(self, states: list[_TaskState], slot: _Slot, st: _TaskState, seconds: float) -> None:
        now = self._clock()
        cost = self.budget.task_cost(slot.agreement_id, seconds)
        self.stopped = (f"budget: the next task could cost up to {tokens(cost)} (provider {slot.provider_id[:16]}, "
                        f"{seconds:g} s worst case) and {tokens(self.budget.exposure(now))} of the budget of "
                        f"{tokens(self.limit)} is committed; no more tasks were started")
        await self._emit(BudgetStopped(self.stopped))
        for other in states:
            if not other.done and not other.running:
                self._finish(other, "failed", self.stopped)
                await self._emit(TaskFinished(other.result))  # type: ignore[arg-type]
        self._touch()

    async def _end_activity(self, slot: _Slot) -> None:
        if slot.activity_id is None or self.api is None:
            return
        activity_id, slot.activity_id = slot.activity_id, None
        try:
            await self.api.destroy_activity(activity_id)
        except ApiError as exc:
            log.info("destroy %s: %s", activity_id, exc)
        finally:
            self.budget.activity_ended(slot.agreement_id, self._clock())

    async def _drop(self, slot: _Slot, reason: str, announce: bool) -> None:
        """Remove a slot from the pool: its activity destroyed, its agreement terminated."""
        if slot.retired is not None:
            return
        slot.retired = reason
        await self._end_activity(slot)
        await self._terminate(slot.agreement_id, "requestor-done" if not reason.startswith("vanished") else "provider-failed")
        if slot in self.slots:
            self.slots.remove(slot)
        if announce:
            await self._emit(ProviderLeft(slot.provider_id, slot.agreement_id, reason))

    # -- one attempt -----------------------------------------------------------------------------
    def _script(self, slot: _Slot, st: _TaskState, dest: Path) -> tuple[list[dict[str, Any]], int]:
        t = st.task
        script: list[dict[str, Any]] = []
        if slot.used and (t.inputs or t.outputs):
            # A reused container: no file of an earlier task may pass for this one's input or output.
            # (A task with neither reads and returns only stdout: skip the extra exec, ~75 ms.)
            script.append({"run": {"argv": ["sh", "-c", _CLEAN], "timeout": 30}})
        for name, local in t.inputs.items():
            script.append({"transfer_in": {"from": str(Path(local).absolute()), "to": f"/work/in/{name}"}})
        run_index = len(script)
        script.append({"run": {"argv": list(t.argv), "env": dict(t.env), "timeout": t.timeout}})
        for name in t.outputs:
            script.append({"transfer_out": {"from": f"/work/out/{name}", "to": str(dest / name)}})
        return script, run_index

    async def _attempt(self, slot: _Slot, st: _TaskState) -> tuple[Attempt, bool]:
        """Run ``st`` once on ``slot``; returns the attempt and whether the provider vanished."""
        assert self.api is not None
        api, t = self.api, st.task
        attempt = Attempt(slot.provider_id, slot.agreement_id)
        st.attempts.append(attempt)
        dest = self.work_dir / ".attempts" / t.id / f"{len(st.attempts)}-{slot.provider_id[-8:]}"
        await self._emit(AttemptStarted(t.id, slot.provider_id))
        start = self._clock()
        deadline = t.timeout + self.transfer_margin_s + (0 if slot.activity_id else self.deploy_margin_s)
        vanished = False
        try:
            with trio.move_on_after(deadline) as scope:
                vanished = await self._execute(slot, st, attempt, dest)
            if scope.cancelled_caught:
                attempt.outcome, attempt.error = "timeout", f"no result within {deadline:g} s; the activity was removed"
                await self._end_activity(slot)
        except DaemonUnreachable:
            raise
        except ApiError as exc:
            attempt.outcome, attempt.error = "failure", str(exc)
            if exc.code == "insufficient-funds":
                raise InsufficientFunds(
                    f"the requestor cannot back a deposit for provider {slot.provider_id}: {exc}; "
                    "add funds (test network: yagna payment fund --amount 10)") from None
            vanished = exc.code in _VANISHED_CODES or exc.status >= 500 or exc.status == 404
        except trio.Cancelled:
            attempt.outcome, attempt.error = "cancelled", "cancelled"
            raise
        finally:
            attempt.seconds = self._clock() - start
        return attempt, vanished

    async def _execute(self, slot: _Slot, st: _TaskState, attempt: Attempt, dest: Path) -> bool:
        assert self.api is not None
        api, t = self.api, st.task
        script, run_index = self._script(slot, st, dest)
        if slot.activity_id is None:
            self.budget.activity_started(slot.agreement_id, self._clock())
            try:
                slot.activity_id = await api.create_activity(slot.agreement_id)
            except BaseException:
                self.budget.activity_ended(slot.agreement_id, self._clock())
                raise
            slot.used = False
            script, run_index = self._script(slot, st, dest)
            script = [{"deploy": {"image": self.image}}, {"start": {}}, *script]
            run_index += 2
        activity_id = slot.activity_id
        batch_id = await api.exec(activity_id, script)
        slot.used = True
        after, finished = 0, False
        while not finished:
            for event in await api.events(activity_id, batch_id, after, 10.0):
                after = max(after, int(event.get("seq", after)))
                kind = event.get("kind")
                if kind in ("stdout", "stderr") and event.get("data"):
                    await self._emit(Output(t.id, slot.provider_id, kind, str(event["data"])))
                finished = finished or kind == "batch_done"
        reply = await api.wait_batch(activity_id, batch_id, 10.0)
        return self._judge(reply, run_index, t, attempt, slot)

    def _judge(self, reply: dict[str, Any], run_index: int, t: Task, attempt: Attempt, slot: _Slot) -> bool:
        """Read a finished batch into ``attempt``; returns whether the provider is to be dropped."""
        results: list[dict[str, Any] | None] = list(reply.get("results") or [])
        error = reply.get("error")
        if error:
            attempt.outcome, attempt.error = "failure", f"batch lost: {error}"
            return any(code in str(error) for code in _VANISHED_CODES)
        first_error = next(((i, r) for i, r in enumerate(results[:run_index]) if r and r.get("error")), None)
        if first_error is not None:
            i, r = first_error
            attempt.outcome, attempt.error = "failure", f"{r.get('command', i)} failed: {r.get('error')}"
            return r.get("command") in ("deploy", "start")
        run = results[run_index] if run_index < len(results) else None
        if run is None:
            attempt.outcome, attempt.error = "failure", "the command did not run"
            return False
        attempt.exit_code = run.get("exit_code")
        attempt.stdout, attempt.stderr = run.get("stdout") or "", run.get("stderr") or ""
        attempt.stdout_sha256 = run.get("stdout_sha256")
        if run.get("timed_out"):
            attempt.outcome, attempt.error = "timeout", f"the command was killed after its timeout of {t.timeout:g} s"
            return False
        if run.get("oom_killed"):
            attempt.outcome, attempt.error = "failure", "the command was killed: out of memory (the agreement's limit)"
            return False
        if run.get("error"):
            attempt.outcome, attempt.error = "failure", f"run failed: {run['error']}"
            return False
        if attempt.exit_code == 0:
            for offset, name in enumerate(t.outputs, start=run_index + 1):
                out = results[offset] if offset < len(results) else None
                if out is None or out.get("error") or not out.get("local_path"):
                    why = (out or {}).get("error") or "not produced"
                    attempt.outcome, attempt.error = "failure", f"output {name}: {why}"
                    return False
                attempt.outputs[name] = str(out.get("sha256"))
                attempt.files[name] = Path(str(out["local_path"]))
        if not reply.get("receipt_verified"):
            attempt.outcome, attempt.error = "failure", "the provider's signed receipt is missing or does not match"
            return False
        attempt.receipt_verified = True
        attempt.digest = result_digest(attempt.exit_code, attempt.stdout_sha256 or "", attempt.outputs)
        attempt.outcome = "success"
        return False

    # -- votes, reputation, results --------------------------------------------------------------
    async def _record(self, st: _TaskState, attempt: Attempt) -> None:
        t = st.task
        latency = attempt.seconds * 1000
        if attempt.outcome != "success":
            st.failures += 1
            await self._report(attempt.provider_id, "timeout" if attempt.outcome == "timeout" else "failure", latency)
            await self._emit(AttemptFinished(t.id, attempt.provider_id, attempt.outcome, attempt.error or ""))
            if not st.done and st.failures > st.retries and not st.running:
                self._finish(st, "failed", f"failed on {st.failures} attempt(s) (retries: {st.retries}); "
                                           f"last: {attempt.error}")
                await self._emit(TaskFinished(st.result))  # type: ignore[arg-type]
            return
        assert attempt.digest is not None
        if st.done:  # a late redundant result: judge it against the accepted one
            accepted = st.decision.digest if st.decision else None
            outcome = "success" if accepted == attempt.digest else "disagreement"
            if outcome == "disagreement":
                attempt.outcome = "disagreement"
            await self._report(attempt.provider_id, outcome, latency)
            await self._emit(AttemptFinished(t.id, attempt.provider_id, attempt.outcome, "late result"))
            return
        st.results.append((attempt.provider_id, attempt.digest))
        st.decision = decision = decide(st.results, st.k, st.max_results)
        await self._emit(AttemptFinished(t.id, attempt.provider_id, "success", decision.reason))
        if decision.state == "pending":
            if st.failures > st.retries and not st.running:
                self._finish(st, "failed", f"{decision.reason}, but {st.failures} attempt(s) failed "
                                           f"(retries: {st.retries})")
                await self._emit(TaskFinished(st.result))  # type: ignore[arg-type]
            return
        if decision.state == "failed":
            for a in st.attempts:
                if a.digest is not None:
                    await self._report(a.provider_id, "disagreement", a.seconds * 1000)
            self._finish(st, "failed", f"results disagree: {decision.reason}")
        else:
            for a in st.attempts:
                if a.digest is None or a.outcome not in ("success", "disagreement"):
                    continue
                if a.digest == decision.digest:
                    await self._report(a.provider_id, "success", a.seconds * 1000)
                else:
                    a.outcome = "disagreement"
                    await self._report(a.provider_id, "disagreement", a.seconds * 1000)
                    await self._emit(AttemptFinished(t.id, a.provider_id, "disagreement",
                                                     f"its result lost the vote ({decision.reason})"))
            winner = next(a for a in st.attempts if a.digest == decision.digest)
            self._accept(st, winner, decision)
        await self._emit(TaskFinished(st.result))  # type: ignore[arg-type]

    async def _report(self, provider: str, outcome: str, latency_ms: float) -> None:
        assert self.api is not None
        try:
            await self.api.record_outcome(provider, outcome, latency_ms)
        except DaemonUnreachable:
            raise
        except ApiError as exc:
            log.warning("cannot record %s for %s: %s", outcome, provider, exc)

    def _accept(self, st: _TaskState, winner: Attempt, decision: Decision) -> None:
        t = st.task
        folder = self.work_dir / t.id
        files: dict[str, Path] = {}
        if winner.files:
            folder.mkdir(parents=True, exist_ok=True)
            for name, path in winner.files.items():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                files[name] = target
        ok = winner.exit_code == 0
        reason = None if ok else f"the command exited with {winner.exit_code}" + (
            f" (agreed by {len(decision.winners)} providers)" if len(decision.winners) > 1 else "")
        st.result = TaskResult(
            task=t, status="ok" if ok else "failed", reason=reason, exit_code=winner.exit_code,
            stdout=winner.stdout, stderr=winner.stderr, stdout_sha256=winner.stdout_sha256, outputs=files,
            output_sha256=dict(winner.outputs), providers=decision.winners, attempts=st.attempts,
            verification=decision.reason)
        self._touch()

    def _finish(self, st: _TaskState, status: str, reason: str) -> None:
        if st.result is None:
            st.result = TaskResult(task=st.task, status="failed", reason=reason, attempts=st.attempts,
                                   verification=st.decision.reason if st.decision else "")
            self._touch()

    # -- money -------------------------------------------------------------------------------
    async def _watch_payments(self, states: list[_TaskState]) -> None:
        """Every few seconds: signed amounts into the budget, and a spend event."""
        while not self._all_done(states) and self.stopped is None:
            await self._read_paid()
            now = self._clock()
            await self._emit(Spend(self.budget.committed(now), self.budget.exposure(now), self.limit))
            await self._wait_change(3.0)
            await trio.sleep(0.5)

    async def _read_paid(self) -> list[dict[str, Any]]:
        assert self.api is not None
        try:
            status = await self.api.payment_status()
        except ApiError:
            return []
        rows = [r for r in status.get("agreements") or [] if r.get("agreement_id") in self.agreements
                and r.get("role") == "requestor"]
        for r in rows:
            units = int(r.get("paid_units") or 0)
            self.paid[str(r["agreement_id"])] = units
            self.budget.signed(str(r["agreement_id"]), units)
        return rows

    async def _settle(self) -> None:
        """Wait until every agreement's channel is closed (final amounts signed); bounded by the caller."""
        while True:
            rows = await self._read_paid()
            open_ = [r for r in rows if r.get("state") not in ("closed", "settled")]
            if not open_:
                return
            await trio.sleep(0.1)

    def _assign_costs(self) -> None:
        """Split each agreement's signed amount over its attempts in proportion to their run time."""
        by_agreement: dict[str, list[Attempt]] = {}
        for st in self._results:
            for a in st.attempts:
                a.cost = 0
                by_agreement.setdefault(a.agreement_id, []).append(a)
        for agreement_id, attempts in by_agreement.items():
            paid = self.paid.get(agreement_id, 0)
            total = sum(a.seconds for a in attempts)
            if paid <= 0:
                continue
            if total <= 0:
                attempts[0].cost = paid
                continue
            shares = [math.floor(paid * a.seconds / total) for a in attempts]
            shares[max(range(len(attempts)), key=lambda i: attempts[i].seconds)] += paid - sum(shares)
            for a, s in zip(attempts, shares, strict=True):
                a.cost = s
