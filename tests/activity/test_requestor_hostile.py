"""The requestor side of activities against providers that answer wrongly (issue 11 rows 2, 3, 10, 11).

A fake provider on the in-memory network twin answers the activity protocol
as a test tells it to; the requestor runs with a real SQLite store. Whatever
the provider answers, the requestor's ``run`` task (what the node's root
nursery holds) keeps running and the failure is reported on that activity or
batch only.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from exeunit.activity import MAX_EVENT_DATA_BYTES, Batch
from exeunit.commands import Run
from exeunit.messages import MAX_EVENTS_PER_PAGE, PAGE_BYTES, events_page_to_wire
from exeunit.runtime import ExecResult
from yagna.activity_service import ActivityFailed
from yagna.activity_service.blobs import BlobServer
from yagna.activity_service.events import MAX_BYTES, MAX_EVENTS
from yagna.activity_service.protocol import ACTIVITY
from yagna.activity_service.requestor import RequestorActivities
from yagna.net.errors import RequestRejected
from yagna.net.memory import MemoryHub
from yagna.net.reqresp import Request
from yagna.store import Store
from yagna.store.activity_repos import Activities
from yagna.store.market_repos import Agreements

SCRIPT = [{"run": {"argv": ["true"]}}]
Answer = Callable[[dict[str, Any]], Awaitable[object]]


class FakeProvider:
    """Answers ``create``/``exec``/``destroy`` honestly; ``state`` and ``events`` as a test says."""

    def __init__(self) -> None:
        self.state: Answer = self._state
        self.events: Answer = self._no_events
        self.created = 0
        self.destroyed: list[str] = []

    async def handle(self, request: Request) -> object:
        msg = request.payload
        assert isinstance(msg, dict)
        op = msg["op"]
        if op == "create":
            self.created += 1
            return {"activity_id": f"act{self.created}", "keepalive_s": 1.5}  # pinged every 0.5 s
        if op == "exec":
            return {"batch_id": "b1"}
        if op == "state":
            return await self.state(msg)
        if op == "events":
            return await self.events(msg)
        if op == "destroy":
            self.destroyed.append(msg["activity_id"])
            return {"state": "terminated", "usage": None}
        raise RequestRejected("bad-request", op)

    @staticmethod
    async def _state(msg: dict[str, Any]) -> object:
        return {"state": "ready", "reason": None, "usage": {"golem.usage.duration_sec": 1.0}}

    @staticmethod
    async def _no_events(msg: dict[str, Any]) -> object:
        await trio.sleep(0.2)
        return {"events": [], "done": False, "receipt": None}


class World:
    def __init__(self, req: RequestorActivities, provider: FakeProvider, provider_id: str, agreements: Agreements,
                 run_scope: trio.CancelScope) -> None:
        self.req, self.provider, self.provider_id, self.agreements = req, provider, provider_id, agreements
        self.run_scope = run_scope
        self._n = 0

    async def agreement(self) -> str:
        self._n += 1
        agreement_id = f"agr{self._n}"
        await self.agreements.insert(agreement_id=agreement_id, role="requestor", peer_id=self.provider_id,
                                     offer_id="o", demand_id=None, state="approved", raw=b"x")
        return agreement_id

    async def activity(self) -> str:
        return str((await self.req.create(await self.agreement()))["activity_id"])


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    hub = MemoryHub()
    prov_net, req_net = hub.node("provider"), hub.node("requestor")
    provider = FakeProvider()
    prov_net.rr.register(ACTIVITY, provider.handle)
    async with Store.open_ctx(tmp_path / "req.db") as store:
        agreements = Agreements(store)
        req = RequestorActivities(rr=req_net.rr, blobs=BlobServer(req_net.rr), activities=Activities(store),
                                  agreements=agreements, staging=tmp_path / "staging", keepalive_s=10.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(req.run)  # stands for the node's root: anything escaping fails the test
            yield World(req, provider, "provider", agreements, nursery.cancel_scope)
            nursery.cancel_scope.cancel()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.05)


# -- row 2: a malformed state answer --------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    ["a", "list"],                                          # the report: a list
    {"state": "dancing"},                                   # a state we do not know
    {"state": "ready", "usage": ["x"]},                     # usage not a map
    {"state": "ready", "usage": {"golem.usage.duration_sec": -1.0}},
    {"state": "ready", "reason": 5},
    {"state": 7},
])
async def test_a_malformed_state_answer_fails_that_activity_only(tmp_path: Path, answer: object) -> None:
    async with world(tmp_path) as w:
        good = await w.activity()
        bad = await w.activity()

        async def state(msg: dict[str, Any]) -> object:
            return answer if msg["activity_id"] == bad else await FakeProvider._state(msg)

        w.provider.state = state
        # The keep-alive meets the answer within a ping (0.5 s): it fails that activity, nothing else.
        await _until(lambda: _is(w.req.view(bad)["state"], "failed"))
        view = w.req.view(bad)
        assert "malformed" in view["reason"] and "'state'" in view["reason"]
        with pytest.raises(ActivityFailed) as failed:
            await w.req.exec(bad, SCRIPT)
        assert failed.value.code == "activity-ended"
        # The other activity and the node carry on: keep-alives still answered, work still accepted.
        await trio.sleep(1.2)
        assert (await w.req.state(good))["state"] == "ready"
        assert (await w.req.exec(good, SCRIPT))["batch_id"] == "b1"
        assert not w.run_scope.cancel_called
        row = await w.req._rows.get(bad)
        assert row is not None and row.state == "failed"


async def test_a_malformed_state_answer_on_the_api_path_is_a_coded_error(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        activity_id = await w.activity()

        async def state(msg: dict[str, Any]) -> object:
            return ["a", "list"]

        w.provider.state = state
        with pytest.raises(ActivityFailed) as failed:
            await w.req.state(activity_id)
        assert failed.value.code == "bad-reply"
        assert w.req.view(activity_id)["state"] == "failed"


async def _is(value: object, want: object) -> bool:
    return value == want


# -- row 3: malformed events ------------------------------------------------------------------------


def _ok_result(index: int = 0) -> dict[str, Any]:
    return {"index": index, "command": "run", "exit_code": 0, "stdout": b"", "stderr": b"",
            "started_at": 1.0, "finished_at": 2.0, "error": None}


@pytest.mark.parametrize("page", [
    {"events": [{"seq": "x", "index": 0, "kind": "started"}], "done": False},           # the report
    {"events": [{"seq": 1.5, "index": 0, "kind": "started"}], "done": False},
    {"events": [{"seq": 2, "index": 0, "kind": "started"}, {"seq": 1, "index": 0, "kind": "started"}], "done": False},
    {"events": [{"seq": 0, "index": 0, "kind": "started"}], "done": False},
    {"events": [{"seq": 1, "index": 0, "kind": "stdout", "data": "text, not bytes"}], "done": False},
    {"events": [{"seq": 1, "index": 0, "kind": "stdout", "data": b"x" * (MAX_EVENT_DATA_BYTES + 1)}], "done": False},
    {"events": [{"seq": 1, "index": 0, "kind": "finished", "result": "ok"}], "done": True},
    {"events": [{"seq": 1, "index": 5, "kind": "finished", "result": _ok_result(5)}], "done": True},  # no command 5
    {"events": [{"seq": 1, "index": 0, "kind": "finished", "result": _ok_result(1)}], "done": True},
    {"events": [{"seq": 1, "index": 0, "kind": "teleported"}], "done": False},
    {"events": {"seq": 1}, "done": False},
    {"events": [], "done": "yes"},
    {"events": [], "done": True, "receipt": "not bytes"},
    "garbage",
])
async def test_malformed_events_fail_that_batch_only(tmp_path: Path, page: object) -> None:
    async with world(tmp_path) as w:
        activity_id = await w.activity()

        async def events(msg: dict[str, Any]) -> object:
            return page

        w.provider.events = events
        batch_id = (await w.req.exec(activity_id, SCRIPT))["batch_id"]
        with trio.fail_after(10):
            view = await w.req.wait(activity_id, batch_id, 10)
        assert view["done"] and view["error"].startswith("bad-reply:"), view
        events_seen = await w.req.events(activity_id, batch_id, 0, 0)
        assert events_seen[-1]["kind"] == "batch_done" and events_seen[-1]["error"] == view["error"]
        # The activity is still usable and the node is up.
        w.provider.events = FakeProvider._no_events
        assert (await w.req.state(activity_id))["state"] == "ready"
        assert not w.run_scope.cancel_called


@pytest.mark.parametrize("op,answer", [("create", {"activity_id": 5}), ("create", []),
                                       ("exec", {"batch_id": ""}), ("destroy", {"state": None})])
async def test_other_malformed_answers_are_coded_errors(tmp_path: Path, op: str, answer: object) -> None:
    async with world(tmp_path) as w:
        activity_id = None if op == "create" else await w.activity()
        honest = w.provider.handle

        async def handle(request: Request) -> object:
            return answer if request.payload["op"] == op else await honest(request)  # type: ignore[index]

        w.provider.handle = handle  # type: ignore[method-assign]
        w.req._rr._hub._get("provider").rr.register(ACTIVITY, handle)
        if op == "create":
            with pytest.raises(ActivityFailed) as failed:
                await w.activity()
            assert failed.value.code == "bad-reply"
        elif op == "exec":
            assert activity_id is not None
            with pytest.raises(ActivityFailed) as failed:
                await w.req.exec(activity_id, SCRIPT)
            assert failed.value.code == "bad-reply"
        else:
            assert activity_id is not None
            view = await w.req.destroy(activity_id)  # ended here either way; the user is told
            assert view["state"] == "terminated" and "malformed" in view["reason"]
        assert not w.run_scope.cancel_called


# -- row 10: floods are bounded, delivered events evicted, destroyed activities forgotten ------------------


async def test_a_flood_is_bounded_evicted_once_read_and_dropped_on_destroy(tmp_path: Path) -> None:
    chunk = b"\xff" * MAX_EVENT_DATA_BYTES

    async with world(tmp_path) as w:
        activity_id = await w.activity()

        async def flood(msg: dict[str, Any]) -> object:  # a provider that never stops writing
            after = msg["after"]
            return {"events": [{"seq": after + i + 1, "index": 0, "kind": "stdout", "data": chunk} for i in range(30)],
                    "done": False, "receipt": None}

        w.provider.events = flood
        batch_id = (await w.req.exec(activity_id, SCRIPT))["batch_id"]
        batch = w.req._batch(activity_id, batch_id)
        await _until(lambda: _is(batch.log.last_seq > 600, True))  # about 40 MB offered
        assert batch.log.bytes <= MAX_BYTES and len(batch.log) <= MAX_EVENTS
        assert batch.log.dropped > 0
        # A reader that fell behind is told what it missed, then reads on.
        got = await w.req.events(activity_id, batch_id, 0, 1)
        assert got[0]["kind"] == "dropped" and got[1]["kind"] == "stdout"
        assert base64.b64decode(got[1]["data_b64"]) == chunk and got[1]["data"] == "\ufffd" * len(chunk)
        # What it has read is forgotten at its next read.
        last = got[-1]["seq"]
        await w.req.events(activity_id, batch_id, last, 0)
        assert all(seq > last for seq, _, _ in batch.log._events)
        await w.req.destroy(activity_id)
        assert batch.log.bytes <= 64 and len(batch.log) <= 1  # only the batch's end is kept
        await _until(lambda: _is(batch.done, True))
        assert batch.error is not None and "activity-ended" in batch.error
        assert w.provider.destroyed == [activity_id]


async def test_a_flood_with_many_tiny_events_is_bounded_by_count(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        activity_id = await w.activity()

        async def flood(msg: dict[str, Any]) -> object:
            after = msg["after"]
            return {"events": [{"seq": after + i + 1, "index": 0, "kind": "stdout", "data": b"z"}
                               for i in range(MAX_EVENTS_PER_PAGE)], "done": False, "receipt": None}

        w.provider.events = flood
        batch_id = (await w.req.exec(activity_id, SCRIPT))["batch_id"]
        batch = w.req._batch(activity_id, batch_id)
        await _until(lambda: _is(batch.log.last_seq > 3 * MAX_EVENTS, True))
        assert len(batch.log) <= MAX_EVENTS
        await w.req.destroy(activity_id)


# -- row 11: binary output past the reply limit ----------------------------------------------------


async def test_six_megabytes_of_invalid_utf8_come_back_paged_with_the_exit_code(tmp_path: Path) -> None:
    size = 6 * 1000 * 1000
    async with world(tmp_path) as w:
        activity_id = await w.activity()
        batch = Batch("b1", [Run(argv=["flood"])])
        batch.begin(0, now=0.0)
        for offset in range(0, size, 100_000):  # written before anyone reads: the provider's buffer overflows
            batch.output(0, "stdout", b"\xff" * min(100_000, size - offset))
        batch.finish(0, now=1.0, exec_result=ExecResult(exit_code=7, stdout=b"", stderr=b"",
                                                        started_at=0.0, finished_at=1.0))
        batch.close()
        pages: list[int] = []

        async def events(msg: dict[str, Any]) -> object:  # the provider's paging, as ProviderActivities does it
            batch.ack(msg["after"])
            page = batch.events_after(msg["after"], MAX_EVENTS_PER_PAGE, max_bytes=PAGE_BYTES)
            pages.append(len(page))
            done = not page or page[-1]["seq"] >= batch.last_seq
            return events_page_to_wire(page, done=done, receipt=None)

        w.provider.events = events
        batch_id = (await w.req.exec(activity_id, SCRIPT))["batch_id"]
        data, dropped, after, done = b"", 0, 0, False
        with trio.fail_after(20):
            while not done:
                for event in await w.req.events(activity_id, batch_id, after, 5):
                    after = max(after, event["seq"])
                    if event["kind"] == "stdout":
                        data += base64.b64decode(event["data_b64"])
                    elif event["kind"] == "dropped":
                        assert "bytes" in event, event  # a requestor-side drop would lose the count
                        dropped += event["bytes"]
                    done = done or event["kind"] == "batch_done"
        assert len(pages) >= 3  # more than 4 MiB kept on the provider: it took several answers
        assert set(data) == {0xFF} and dropped > 0 and len(data) + dropped == size
        view = await w.req.wait(activity_id, batch_id, 1)
        assert view["error"] is None
        result = view["results"][0]
        assert result["exit_code"] == 7
        assert base64.b64decode(result["stdout_b64"]) == b"\xff" * 64 * 1024
        assert result["stdout_truncated"] and result["stdout_dropped"] == size - 64 * 1024
        assert result["stdout"] == "\ufffd" * 64 * 1024


async def test_unread_events_of_finished_batches_are_bounded_in_all(tmp_path: Path) -> None:
    chunk = b"o" * MAX_EVENT_DATA_BYTES
    async with world(tmp_path) as w:
        w.req.max_unread_bytes = 2 * 1024 * 1024
        activity_id = await w.activity()
        batch_ids = iter(range(100))

        async def exec_answer(msg: dict[str, Any]) -> object:
            return {"batch_id": f"b{next(batch_ids)}"}

        async def events(msg: dict[str, Any]) -> object:  # 1 MiB of output, the result, the end: in one page
            out: list[dict[str, Any]] = [{"seq": i + 1, "index": 0, "kind": "stdout", "data": chunk} for i in range(16)]
            out += [{"seq": 17, "index": 0, "kind": "finished", "result": _ok_result()},
                    {"seq": 18, "index": None, "kind": "done", "reason": None}]
            return {"events": out, "done": True}

        honest = w.provider.handle

        async def handle(request: Request) -> object:
            msg = request.payload
            assert isinstance(msg, dict)
            return await (exec_answer(msg) if msg["op"] == "exec" else honest(request))

        w.req._rr._hub._get("provider").rr.register(ACTIVITY, handle)
        w.provider.events = events
        ids = []
        for _ in range(6):  # nobody reads their events, only waits for them
            batch_id = (await w.req.exec(activity_id, SCRIPT))["batch_id"]
            assert (await w.req.wait(activity_id, batch_id, 5))["error"] is None
            ids.append(batch_id)
        logs = [w.req._batch(activity_id, b).log for b in ids]
        assert sum(log.bytes for log in logs) <= 2 * 1024 * 1024
        assert logs[-1].bytes > 1024 * 1024 and logs[0].bytes <= 64  # the newest kept, the oldest cleared
        first = await w.req.events(activity_id, ids[0], 0, 0)
        assert [e["kind"] for e in first] == ["dropped", "batch_done"]  # a late reader is told, and learns the end
        await w.req.destroy(activity_id)
