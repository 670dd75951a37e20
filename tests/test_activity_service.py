"""The exe-unit service on the in-memory network twin, with real SQLite stores and the real Docker engine.

A provider and a requestor (market + activity services) reach an agreement,
then drive activities through the requestor side. The provider's runtime is
the real :class:`~exeunit.docker_runtime.DockerRuntime`, wrapped where a test
needs the provider to lack an image (both sides share this machine's engine).
The same flows run across real processes in ``e2e/test_exeunit.py``.
"""

from __future__ import annotations

import time

import contextlib
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from exeunit.runtime import LABEL_NODE
from market.capacity import Capacity
from market.presets import Preset
from yagna.activity_service import ActivityConfig, ActivityFailed, ActivityService
from yagna.activity_service.protocol import ACTIVITY
from yagna.core.identity import NodeKey
from yagna.market_service import MarketConfig, MarketService
from yagna.net.errors import RemoteError
from yagna.net.memory import MemoryHub
from yagna.store import Store

NET = "test-net"
ROOT = Path(__file__).resolve().parent.parent
PRESET = Preset(name="small", threads=1, mem_gib=0.25, storage_gib=0.25)


def _docker():  # type: ignore[no-untyped-def]
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        if os.environ.get("CI"):
            pytest.fail("no Docker engine reachable; CI must run the exe-unit tests for real")
        pytest.skip("no Docker engine reachable")


@pytest.fixture(scope="module")
def image_id() -> str:
    _docker()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image.sh")], capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


class HidingRuntime:
    """The real runtime, except that ``hidden`` images look absent until loaded (as on another machine)."""

    def __init__(self, real: Any, hidden: set[str], gate: trio.Event | None = None) -> None:
        self._real = real
        self.hidden = hidden
        self.loaded: list[str] = []
        self.gate = gate
        """If set, the start-up clean-up (``leftovers``) waits for it."""
        self.events: list[str] = []

    async def leftovers(self, node_id: str) -> Any:
        if self.gate is not None:
            self.events.append("clean-up waits")
            await self.gate.wait()
        found = await self._real.leftovers(node_id)
        self.events.append("clean-up done")
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def has_image(self, image_id: str) -> bool:
        return image_id not in self.hidden and await self._real.has_image(image_id)

    async def load_image(self, archive_path: str, expected_id: str) -> None:
        await self._real.load_image(archive_path, expected_id)
        self.hidden.discard(expected_id)
        self.loaded.append(expected_id)


class Pair:
    def __init__(self, prov: ActivityService, req: ActivityService, agreement_id: str, runtime: HidingRuntime,
                 prov_market: MarketService, req_net: Any, prov_id: str, req_market: MarketService) -> None:
        self.prov, self.req, self.agreement_id, self.runtime = prov, req, agreement_id, runtime
        self.req_market = req_market
        self.prov_market, self.req_net, self.prov_id = prov_market, req_net, prov_id

    async def run(self, script: list[dict[str, Any]], activity_id: str | None = None, *,
                  agreement_id: str | None = None) -> tuple[str, dict[str, Any]]:
        assert self.req.requestor is not None
        if activity_id is None:
            activity_id = (await self.req.requestor.create(agreement_id or self.agreement_id))["activity_id"]
        batch = await self.req.requestor.exec(activity_id, script)
        result = await self.req.requestor.wait(activity_id, batch["batch_id"], 60)
        assert result["done"], result
        return activity_id, result


@contextlib.asynccontextmanager
async def pair(tmp_path: Path, *, hidden: set[str] = frozenset(), save_image: Callable[..., Any] | None = None,
               keepalive_s: float = 30.0, gate: trio.Event | None = None) -> AsyncIterator[Pair]:
    from exeunit.docker_runtime import DockerRuntime

    real = DockerRuntime(extra_labels={"network.yagna.test-session": os.environ["YAGNA_TEST_SESSION"]})
    runtime = HidingRuntime(real, set(hidden), gate)
    hub = MemoryHub()
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        services = {}
        for name, sells in (("prov", True), ("req", False)):
            key = NodeKey.generate()
            net = hub.node(key.node_id)
            store = await stack.enter_async_context(Store.open_ctx(tmp_path / f"{name}.db"))
            market = MarketService(key=key, config=MarketConfig(network_id=NET, provider=sells, requestor=not sells,
                                                                capacity=Capacity(2, 1.0, 10.0)),
                                   rr=net.rr, gossip=net.gossip, peers=net.peers, store=store)
            activity = ActivityService(
                node_id=key.node_id,
                config=ActivityConfig(network_id=NET, provider=sells, requestor=not sells,
                                      work_dir=tmp_path / name / "exeunit", keepalive_s=keepalive_s,
                                      agreement_check_s=0.2),
                rr=net.rr, store=store, runtime=runtime if sells else real, key=key,
            )
            if not sells and save_image is not None:
                activity.requestor._save_image = save_image  # type: ignore[union-attr]
            await nursery.start(net.peers.run)
            await nursery.start(market.run)
            await nursery.start(activity.run)
            services[name] = (key, net, market, activity)
        pkey, _, pmarket, pact = services["prov"]
        _, rnet, rmarket, ract = services["req"]
        await pmarket.provider.create_preset(PRESET)  # type: ignore[union-attr]
        with trio.fail_after(5):
            while len(rmarket.directory.book) < 1:
                await trio.sleep(0.01)
        demand = await rmarket.requestor.create_demand({}, "")  # type: ignore[union-attr]
        result = await rmarket.requestor.negotiate(demand.demand_id)  # type: ignore[union-attr]
        agreement_id = result["agreements"][0]["agreement_id"]
        try:
            yield Pair(pact, ract, agreement_id, runtime, pmarket, rnet, pkey.node_id, rmarket)
        finally:
            nursery.cancel_scope.cancel()
    leftovers = _docker().containers.list(all=True, filters={"label": f"{LABEL_NODE}={pkey.node_id}"}, ignore_removed=True)
    assert leftovers == [], "containers left behind"


async def test_deploy_run_and_files_round_trip(tmp_path: Path, image_id: str) -> None:
    data = tmp_path / "in.bin"
    data.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several chunks
    out = tmp_path / "got" / "out.bin"
    async with pair(tmp_path) as p:
        activity_id, result = await p.run([
            {"deploy": {"image": "local/busybox:1"}}, {"start": {}},
            {"transfer_in": {"from": str(data), "to": "/work/in/in.bin"}},
            {"run": {"argv": ["sh", "-c", "cp /work/in/in.bin /work/out/out.bin; echo copied; id -u"]}},
            {"transfer_out": {"from": "/work/out/out.bin", "to": str(out)}},
        ])
        assert result["error"] is None
        run = result["results"][3]
        assert run["exit_code"] == 0 and run["stdout"] == "copied\n1000\n"
        assert out.exists(), result["results"][4]
        assert out.read_bytes() == data.read_bytes()
        assert result["results"][4]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
        # The provider signed what it produced; the requestor checked the receipt against the results.
        assert result["receipt_verified"] is True and result["receipt"]
        assert run["stdout_sha256"] == hashlib.sha256(b"copied\n1000\n").hexdigest()
        state = await p.req.requestor.state(activity_id)  # type: ignore[union-attr]
        assert state["state"] == "ready" and state["usage"]["golem.usage.duration_sec"] > 0
        await p.req.requestor.destroy(activity_id)  # type: ignore[union-attr]


async def test_provider_is_ready_before_its_engine_clean_up_and_activities_wait_for_it(tmp_path: Path,
                                                                                       image_id: str) -> None:
    """Start-up (issue 12): the Docker clean-up of a previous run no longer delays readiness,
    and an activity created meanwhile waits for it (never racing the removal of orphans)."""
    gate = trio.Event()
    async with pair(tmp_path, gate=gate) as p:  # the provider came up with its clean-up still held
        assert p.runtime.events == ["clean-up waits"]
        req = p.req.requestor
        assert req is not None
        created: list[str] = []

        async def create() -> None:
            created.append((await req.create(p.agreement_id))["activity_id"])
            p.runtime.events.append("activity created")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            with trio.move_on_after(1.0):  # had it not waited, the activity would exist by now
                while not created:
                    await trio.sleep(0.01)
            assert not created
            gate.set()
        assert p.runtime.events == ["clean-up waits", "clean-up done", "activity created"]
        await req.destroy(created[0])


async def test_output_is_streamed_while_the_command_runs(tmp_path: Path, image_id: str) -> None:
    async with pair(tmp_path) as p:
        req = p.req.requestor
        assert req is not None
        activity_id = (await req.create(p.agreement_id))["activity_id"]
        batch = await req.exec(activity_id, [
            {"deploy": {"image": image_id}}, {"start": {}},
            {"run": {"argv": ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done"]}},
        ])
        seen: list[tuple[str, str]] = []
        after = 0
        while not any(kind == "finished" and idx == 2 for kind, idx in seen):  # type: ignore[comparison-overlap]
            for e in await req.events(activity_id, batch["batch_id"], after, 5):
                after = e["seq"]
                seen.append((e["kind"], e.get("data", e.get("index"))))
        outputs = [i for i, (kind, _) in enumerate(seen) if kind == "stdout"]
        finished = next(i for i, (kind, idx) in enumerate(seen) if kind == "finished" and idx == 2)
        assert "".join(seen[i][1] for i in outputs) == "".join(f"line {i}\n" for i in range(1, 6))
        assert len(outputs) >= 3, seen  # line by line, not one chunk at the end
        assert max(outputs) < finished
        await req.destroy(activity_id)


async def test_missing_image_is_fetched_from_the_requestor_and_verified(tmp_path: Path, image_id: str) -> None:
    async with pair(tmp_path, hidden={image_id}) as p:
        _, result = await p.run([{"deploy": {"image": "local/busybox:1"}}, {"start": {}},
                                 {"run": {"argv": ["echo", "ok"]}}, {"terminate": {}}])
        assert result["error"] is None and result["results"][2]["stdout"] == "ok\n"
        assert p.runtime.loaded == [image_id]


async def test_tampered_image_archive_is_refused(tmp_path: Path, image_id: str) -> None:
    from exeunit.docker_runtime import DockerRuntime

    async def save_tampered(ref: str, dest: Path) -> str:
        got = await DockerRuntime().save_image(ref, str(dest))
        _flip_config_byte(dest)
        return got

    async with pair(tmp_path, hidden={image_id}, save_image=save_tampered) as p:
        activity_id, result = await p.run([{"deploy": {"image": "local/busybox:1"}}, {"start": {}}])
        deploy = result["results"][0]
        assert deploy["error"] and "image" in deploy["error"].lower()
        assert result["results"][1] is None  # not run
        assert p.runtime.loaded == []
        assert (await p.req.requestor.state(activity_id))["state"] == "failed"  # type: ignore[union-attr]


def _flip_config_byte(archive: Path) -> None:
    """Change one byte inside the image's config JSON (its sha256 is the image id)."""
    import io
    import json
    import tarfile

    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    manifest = json.loads(next(data for m, data in members if m.name == "manifest.json"))
    config_name = manifest[0]["Config"]
    with tarfile.open(archive, "w") as tar:
        for m, data in members:
            if m.name == config_name:
                data = data.replace(b'"architecture":"amd64"', b'"architecture":"arm64"', 1)  # type: ignore[union-attr]
                assert data is not None
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)


async def test_transfer_with_wrong_hash_or_too_large_is_refused(tmp_path: Path, image_id: str) -> None:
    real, other = tmp_path / "real.txt", tmp_path / "other.txt"
    real.write_text("the promised content\n")
    other.write_text("something else entirely\n")
    promised = hashlib.sha256(real.read_bytes()).hexdigest()
    async with pair(tmp_path) as p:
        activity_id, _ = await p.run([{"deploy": {"image": image_id}}, {"start": {}}])
        # A requestor that promises one file and serves another: refused on arrival.
        p.req.blobs.offer_file(p.prov_id, f"file:{promised}", other)
        rr = p.req_net.rr
        batch = await rr.request(p.prov_id, ACTIVITY, {"op": "exec", "activity_id": activity_id, "script": [
            {"transfer_in": {"to": "/work/in/x", "sha256": promised, "size": other.stat().st_size}}]})
        reply = await _wait_done(rr, p.prov_id, activity_id, batch["batch_id"])
        assert "hash-mismatch" in reply["results"][0]["error"]
        # More than the agreement's storage: refused before anything is fetched.
        batch = await rr.request(p.prov_id, ACTIVITY, {"op": "exec", "activity_id": activity_id, "script": [
            {"transfer_in": {"to": "/work/in/y", "sha256": promised, "size": 10 * 2**30}}]})
        reply = await _wait_done(rr, p.prov_id, activity_id, batch["batch_id"])
        assert "too-large" in reply["results"][0]["error"]
        # The activity is still usable and nothing was written.
        _, result = await p.run([{"run": {"argv": ["ls", "/work/in"]}}], activity_id)
        assert result["results"][0]["stdout"] == ""
        await p.req.requestor.destroy(activity_id)  # type: ignore[union-attr]


async def _wait_done(rr: Any, prov: str, activity_id: str, batch_id: str) -> dict[str, Any]:
    """Read a batch over the wire; its results come in its ``finished`` events."""
    after, results = 0, {}
    with trio.fail_after(30):
        while True:
            reply = await rr.request(prov, ACTIVITY, {"op": "events", "activity_id": activity_id, "batch_id": batch_id,
                                                      "after": after, "wait_ms": 2000})
            after = max([after] + [e["seq"] for e in reply["events"]])
            results.update({e["index"]: e["result"] for e in reply["events"] if e["kind"] == "finished"})
            if reply["done"]:
                return {**reply, "results": [results.get(i) for i in range(max(results, default=-1) + 1)]}


async def test_illegal_moves_and_strangers_change_nothing(tmp_path: Path, image_id: str) -> None:
    async with pair(tmp_path) as p:
        req = p.req.requestor
        assert req is not None
        # run before deploy: refused by the state machine, the activity stays "new".
        activity_id, result = await p.run([{"run": {"argv": ["true"]}}])
        assert "illegal-transition" in result["results"][0]["error"]
        assert (await req.state(activity_id))["state"] == "new"
        # Another node cannot drive or read it, nor create one on our agreement.
        other = p.req_net.hub.node(NodeKey.generate().node_id)  # type: ignore[attr-defined]
        for msg in ({"op": "state", "activity_id": activity_id},
                    {"op": "exec", "activity_id": activity_id, "script": [{"start": {}}]},
                    {"op": "create", "agreement_id": p.agreement_id}):
            with pytest.raises(RemoteError) as exc:
                await other.rr.request(p.prov_id, ACTIVITY, msg)
            assert exc.value.code in ("unknown-activity", "unknown-agreement")
        # Garbage is a coded error, not a crash.
        for msg in ({"op": "exec", "activity_id": activity_id, "script": "rm -rf /"}, {"op": "nope", "activity_id": 5}):
            with pytest.raises(RemoteError) as exc:
                await p.req_net.rr.request(p.prov_id, ACTIVITY, msg)
            assert exc.value.code in ("bad-script", "bad-request")
        with pytest.raises(ActivityFailed) as failed:
            await req.exec("nope", [])
        assert failed.value.code == "unknown-activity"
        # One live activity per agreement: a second one would oversell its resources.
        with pytest.raises(ActivityFailed) as failed:
            await req.create(p.agreement_id)
        assert failed.value.code == "agreement-busy"
        await req.destroy(activity_id)
        await req.destroy((await req.create(p.agreement_id))["activity_id"])  # after it: fine


async def test_activity_ends_with_its_agreement(tmp_path: Path, image_id: str) -> None:
    async with pair(tmp_path) as p:
        req = p.req.requestor
        assert req is not None
        activity_id = (await req.create(p.agreement_id))["activity_id"]
        await req.exec(activity_id, [{"deploy": {"image": image_id}}, {"start": {}},
                                     {"run": {"argv": ["sleep", "600"]}}])
        with trio.fail_after(20):
            while (await req.state(activity_id))["state"] != "running":
                await trio.sleep(0.05)
        await p.prov_market.terminate(p.agreement_id, "provider-done")
        with trio.fail_after(20):
            while (await req.state(activity_id))["state"] != "terminated":
                await trio.sleep(0.1)
        assert "agreement" in (await req.state(activity_id))["reason"]



async def test_activities_of_two_agreements_run_at_once(tmp_path: Path, image_id: str) -> None:
    async with pair(tmp_path) as p:
        # A second agreement with the same provider (its capacity holds two of the preset).
        demand = await p.req_market.requestor.create_demand({}, "")  # type: ignore[union-attr]
        with trio.fail_after(10):
            while not (result := await p.req_market.requestor.negotiate(demand.demand_id))["agreements"]:  # type: ignore[union-attr]
                await trio.sleep(0.1)
        agreements = [p.agreement_id, result["agreements"][0]["agreement_id"]]
        assert agreements[0] != agreements[1]
        stamps: dict[str, list[float]] = {}

        async def one(agreement_id: str) -> None:
            _, result = await p.run([{"deploy": {"image": image_id}}, {"start": {}},
                                     {"run": {"argv": ["sh", "-c", "date +%s; sleep 1.5; date +%s"]}},
                                     {"terminate": {}}], agreement_id=agreement_id)
            stamps[agreement_id] = [float(x) for x in result["results"][2]["stdout"].split()]

        async with trio.open_nursery() as nursery:
            for agreement_id in agreements:
                nursery.start_soon(one, agreement_id)
        (a0, a1), (b0, b1) = stamps[agreements[0]], stamps[agreements[1]]
        assert a0 < b1 and b0 < a1  # overlapped: each began before the other ended
        rows = await p.prov.provider.list()  # type: ignore[union-attr]
        assert {r["agreement_id"] for r in rows} == set(agreements)
        assert {r["state"] for r in rows} == {"terminated"}


async def test_usage_is_billed_while_the_container_is_being_removed(tmp_path: Path, image_id: str) -> None:
    """Regression: between leaving the live set and storing its final usage, an activity billed as zero."""
    async with pair(tmp_path) as p:
        req, prov = p.req.requestor, p.prov.provider
        assert req is not None and prov is not None
        activity_id, _ = await p.run([{"deploy": {"image": image_id}}, {"start": {}},
                                      {"run": {"argv": ["sh", "-c", "timeout 1 sh -c 'while :; do :; done'; true"]}}])
        real_remove = p.runtime._real.remove
        removing = trio.Event()

        async def slow_remove(container_id: str) -> None:
            removing.set()
            await trio.sleep(1.0)
            await real_remove(container_id)

        p.runtime.remove = slow_remove  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(req.destroy, activity_id)
            await removing.wait()
            duration_ms, cpu_ms, _, count = await prov.usage_for_agreement(p.agreement_id)
        # billed, not zero (how much CPU a 1 s busy loop gets depends on the machine's load)
        assert count == 1 and duration_ms > 500 and cpu_ms > 0, (duration_ms, cpu_ms)


async def test_a_removal_cancelled_midway_still_finishes(tmp_path: Path, image_id: str) -> None:
    """Regression: a provider cancelled while removing a container left its work volume behind."""
    async with pair(tmp_path) as p:
        req, prov = p.req.requestor, p.prov.provider
        assert req is not None and prov is not None
        activity_id, _ = await p.run([{"deploy": {"image": image_id}}, {"start": {}}])
        real_remove = p.runtime._real.remove
        removing = trio.Event()

        async def slow_remove(container_id: str) -> None:
            removing.set()
            await trio.sleep(0.5)  # the cancellation lands here
            await real_remove(container_id)

        p.runtime.remove = slow_remove  # type: ignore[method-assign]
        running = prov._live[activity_id]
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(prov._end, running, "test")
                await removing.wait()
                scope.cancel()
        import docker

        engine = docker.from_env()
        label = {"label": f"network.yagna.activity={activity_id}"}
        assert engine.containers.list(all=True, filters=label, ignore_removed=True) == []
        assert engine.volumes.list(filters=label) == []


async def test_destroy_ends_only_that_activitys_tasks(tmp_path: Path, image_id: str) -> None:
    """Each activity's tasks run in its own cancel scope, on both sides: destroying one leaves the other running."""
    async with pair(tmp_path) as p:
        req, prov = p.req.requestor, p.prov.provider
        assert req is not None and prov is not None
        demand = await p.req_market.requestor.create_demand({}, "")  # type: ignore[union-attr]
        with trio.fail_after(10):
            while not (result := await p.req_market.requestor.negotiate(demand.demand_id))["agreements"]:  # type: ignore[union-attr]
                await trio.sleep(0.1)
        ids, batches = [], []
        for agreement_id in (p.agreement_id, result["agreements"][0]["agreement_id"]):
            activity_id = (await req.create(agreement_id))["activity_id"]
            batch = await req.exec(activity_id, [{"deploy": {"image": image_id}}, {"start": {}},
                                                 {"run": {"argv": ["sh", "-c", "yes | head -c 300000; sleep 600"]}}])
            ids.append(activity_id)
            batches.append(batch["batch_id"])
        with trio.fail_after(20):
            while {(await req.state(a))["state"] for a in ids} != {"running"}:
                await trio.sleep(0.05)
        await req.destroy(ids[0])
        with trio.fail_after(20):
            done = await req.wait(ids[0], batches[0], 20)
        run = (done["results"] or [None] * 3)[2]
        assert done["done"] and (done["error"] is not None or run["error"] or run["exit_code"] != 0), done  # cut short
        mine = prov._ended[ids[0]]
        ended_batch = mine.batches[batches[0]]
        assert ended_batch.done and ended_batch.buffered_bytes == 0  # its events were dropped with it
        with pytest.raises(RemoteError) as exc:  # and a reader is told so, not answered "done" without them
            await p.req_net.rr.request(p.prov_id, ACTIVITY, {"op": "events", "activity_id": ids[0],
                                                             "batch_id": batches[0], "after": 0, "wait_ms": 0})
        assert exc.value.code == "events-dropped"
        with trio.fail_after(10):
            while mine.nursery is not None:  # its task scope is over
                await trio.sleep(0.05)
        # The other one is untouched: still running its command, its output still kept for its reader.
        other = prov._live[ids[1]]
        assert not other.batches[batches[1]].done and other.nursery is not None
        assert (await req.state(ids[1]))["state"] == "running"
        seen, after = [], 0
        with trio.fail_after(20):
            while "stdout" not in seen:
                for e in await req.events(ids[1], batches[1], after, 5):
                    after, seen = max(after, e["seq"]), [*seen, e["kind"]]
        assert "batch_done" not in seen
        await req.destroy(ids[1])


async def test_six_megabytes_of_0xff_on_stdout_keep_their_result(tmp_path: Path, image_id: str) -> None:
    """Issue 11 row 11: the batch failed with ``internal: response too large`` and its results were lost."""
    import base64

    async with pair(tmp_path) as p:
        _, result = await p.run([{"deploy": {"image": image_id}}, {"start": {}},
                                 {"run": {"argv": ["sh", "-c", "head -c 6000000 /dev/zero | tr '\\000' '\\377'; exit 4"]}},
                                 {"terminate": {}}])
        assert result["error"] is None, result["error"]
        run = result["results"][2]
        assert run["exit_code"] == 4
        assert base64.b64decode(run["stdout_b64"]) == b"\xff" * 64 * 1024
        assert run["stdout_dropped"] == 6_000_000 - 64 * 1024 and run["stdout_truncated"]
        assert result["receipt_verified"] is True


async def test_a_poll_waiting_when_its_batch_is_dropped_is_told_so(tmp_path: Path, image_id: str) -> None:
    """A destroy can end a batch and discard its events while a long poll waits on them, before the poll
    runs again: the poll used to answer "done" with the receipt and no events, so the requestor saw a
    receipt its results did not match (every `deploy close`). It is told the events were dropped."""
    from exeunit.activity import Batch
    from exeunit.commands import Run
    from exeunit.messages import GetEvents
    from yagna.net.errors import RequestRejected

    async with pair(tmp_path) as p:
        req, prov = p.req.requestor, p.prov.provider
        assert req is not None and prov is not None
        activity_id = (await req.create(p.agreement_id))["activity_id"]
        batch_id = (await req.exec(activity_id, [{"deploy": {"image": image_id}}, {"start": {}},
                                                 {"run": {"argv": ["sleep", "600"]}}]))["batch_id"]
        with trio.fail_after(20):
            while (await req.state(activity_id))["state"] != "running":
                await trio.sleep(0.05)
        running = prov._live[activity_id]
        batch = Batch("b-test", (Run(argv=["true"]),))  # a batch of its own: no runner touches it
        batch.begin(0, now=time.time())
        running.batches[batch.batch_id] = batch
        answers: list[object] = []

        async def poll() -> None:
            try:
                answers.append(await prov._events(running, GetEvents(activity_id, batch.batch_id, batch.last_seq,
                                                                     20000)))
            except RequestRejected as exc:
                answers.append(exc.code)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.sleep(0.5)  # the poll waits
                # What a destroy does, with no checkpoint between: the batch ends, then its events go.
                batch.finish(0, now=time.time(), error="cancelled: destroyed")
                batch.close("destroyed")
                batch.discard()
                running.wake()
        assert answers == ["events-dropped"], answers
        await req.destroy(activity_id)
