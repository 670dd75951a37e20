"""The SDK's service API (requestor_sdk.services) against a fake daemon.

The fake daemon is the real thing above the network: the REST routes (``yagna.api.deploy_routes``)
and the real :class:`~yagna.deploy_service.manager.DeploymentManager`, served in process through
``httpx.ASGITransport``; below them a fake market (providers that always bid), fake activities
(a service that runs, prints a line and reports its health as told) and fake payments. The local
port listeners are real (bound on 127.0.0.1). Time is trio's autojump clock.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio
from fastapi import FastAPI

import requestor_sdk.client
from requestor_sdk import (
    DaemonLocation, DaemonNotFound, DeployFailed, DeploymentEnded, LogLine, NoSuchEndpoint, NotHealthy, PortMap,
    ReplicaStatus, SdkError, Services,
)
from yagna.api import deploy_routes
from yagna.core.errors import YagnaError
from yagna.deploy_service.manager import DeployConfig, DeploymentManager

UNIT = 10**18
LOCATION = DaemonLocation(api_url="http://yagna.test", app_key="k")


GLOBAL_8080 = "      - port: 8080\n        as: 80\n        to:\n          - global: true\n"


def manifest(count: int = 1, *, ports: str = GLOBAL_8080, extra: str = "") -> str:
    return f"""\
version: "2.0"
services:
  web:
    image: local/busybox:1
    command: ["httpd", "-f", "-p", "8080"]
    expose:
{ports}{extra}
profiles:
  compute:
    small:
      resources:
        cpu: {{units: 0.5}}
        memory: {{size: 64Mi}}
        storage: {{size: 64Mi}}
  placement:
    dc:
      pricing:
        web: {{denom: tglm, amount: 1}}
deployment:
  web:
    dc:
      profile: small
      count: {count}
"""


# -- the fake world under the manager ---------------------------------------------------------------
@dataclass
class FakeProvider:
    provider_id: str
    healthy: bool | None = True


@dataclass
class FakeActivity:
    activity_id: str
    provider: FakeProvider
    batch_id: str = ""
    destroyed: trio.Event = field(default_factory=trio.Event)


class FakeNet:
    """What the manager's market, activity and payment services see: providers that bid and run."""

    def __init__(self, providers: list[FakeProvider]) -> None:
        self.providers = providers
        self.agreements: dict[str, FakeProvider] = {}
        self.activities: dict[str, FakeActivity] = {}
        self.terminated: list[str] = []
        self.scripts: list[list[dict[str, Any]]] = []
        self.demands = 0
        self.market = SimpleNamespace(requestor=self, terminate=self.terminate)
        self.deposit_caps: dict[str, int] = {}

    # market (requestor side)
    async def create_demand(self, props: dict[str, Any], constraints: str, **_: Any) -> Any:
        self.demands += 1
        return SimpleNamespace(demand_id=f"demand-{self.demands}")

    async def negotiate(self, demand_id: str, *, count: int, config: Any, timeout: float) -> dict[str, Any]:
        await trio.sleep(0.05)
        # the bid of the provider with the fewest agreements so far (spreads replicas like distinct bids would)
        for p in sorted(self.providers, key=lambda p: list(self.agreements.values()).count(p)):
            if p.provider_id not in config.deny:
                agreement_id = f"agreement-{len(self.agreements) + 1}"
                self.agreements[agreement_id] = p
                return {"agreements": [{"agreement_id": agreement_id, "provider_id": p.provider_id,
                                        "offer_properties": {}}]}
        return {"agreements": [], "failures": [{"provider_id": "prov-x", "code": "over-price-cap"}]}

    def delete_demand(self, demand_id: str) -> None:
        pass

    async def terminate(self, agreement_id: str, reason: str) -> None:
        self.terminated.append(agreement_id)

    # activity (requestor side)
    async def create(self, agreement_id: str) -> dict[str, Any]:
        activity_id = f"activity-{len(self.activities) + 1}"
        self.activities[activity_id] = FakeActivity(activity_id, self.agreements[agreement_id])
        return {"activity_id": activity_id}

    async def exec(self, activity_id: str, script: list[dict[str, Any]]) -> dict[str, Any]:
        self.scripts.append(script)
        self.activities[activity_id].batch_id = f"batch-{activity_id}"
        return {"batch_id": f"batch-{activity_id}"}

    async def state(self, activity_id: str) -> dict[str, Any]:
        a = self.activities[activity_id]
        if a.destroyed.is_set():
            raise YagnaError("unknown-activity")
        return {"state": "ready", "batches": [{"batch_id": a.batch_id, "done": False}],
                "service": {"running": True, "tunnel_ready": True, "restarts": 0, "healthy": a.provider.healthy}}

    async def events(self, activity_id: str, batch_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        a = self.activities[activity_id]
        if after == 0:
            return [{"seq": 1, "kind": "stdout", "data": f"web started on {a.provider.provider_id}\n"}]
        with trio.move_on_after(timeout):
            await a.destroyed.wait()
            raise YagnaError("activity-ended")
        return []

    async def destroy(self, activity_id: str) -> None:
        self.activities[activity_id].destroyed.set()

    # payments (requestor side)
    def live(self, agreement_id: str) -> dict[str, Any]:
        return {"asked": UNIT // 40, "signed": UNIT // 50}

    def live_activities(self) -> list[str]:
        return [a.activity_id for a in self.activities.values() if not a.destroyed.is_set()]


class _Keys:
    async def check(self, token: str) -> object:
        return object() if token == "k" else None


@dataclass
class FakeDaemon:
    net: FakeNet
    manager: DeploymentManager

    def deployment(self, deployment_id: str) -> Any:
        return self.manager.deployments[deployment_id]


@pytest.fixture
def providers() -> list[FakeProvider]:
    return [FakeProvider("prov-a"), FakeProvider("prov-b")]


@pytest.fixture
async def daemon(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch,
                 providers: list[FakeProvider]) -> FakeDaemon:
    net = FakeNet(providers)
    manager = DeploymentManager(market=net.market, activity=net, payments=net, rr=None,
                                config=DeployConfig(watch_s=1.0, ready_timeout_s=10.0, find_timeout_s=2.0))
    await nursery.start(manager.run)
    app = FastAPI()
    deploy_routes.install(app)
    app.state.node = SimpleNamespace(app_keys=_Keys(), deployments=manager)
    # The SDK's client over the app in process: its own httpx, with the ASGI transport underneath.
    shim = SimpleNamespace(AsyncClient=functools.partial(httpx.AsyncClient, transport=httpx.ASGITransport(app=app)),
                           HTTPError=httpx.HTTPError)
    monkeypatch.setattr(requestor_sdk.client, "httpx", shim)
    return FakeDaemon(net, manager)


def free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return int(port)
        except OSError:
            continue
    raise AssertionError("no free pair of ports")


# -- deploy, wait, status, endpoints -------------------------------------------------------------------
async def test_deploy_wait_healthy_status_endpoints_and_close_on_exit(daemon: FakeDaemon, autojump_clock: Any) -> None:
    base = free_port_pair()
    async with Services(location=LOCATION, poll_s=0.2) as services:
        dep = await services.deploy(manifest(2), ports={("web", 8080): base}, payment_interval_s=1)
        # The answer is immediate (replicas being placed) and already knows the local ports.
        assert dep.last.active and not dep.last.ready
        assert dep.endpoint("web", 8080) == f"http://127.0.0.1:{base}"
        assert dep.endpoint("web", replica=1) == f"http://127.0.0.1:{base + 1}"
        assert dep.port("web", 8080, replica=1) == PortMap(8080, base + 1) == (8080, base + 1)
        t0 = trio.current_time()
        status = await dep.wait_healthy(timeout=30)
        assert trio.current_time() - t0 < 10
        assert status.ready and status.state == "active" and status.deployment_id == dep.deployment_id
        assert [(r.service, r.replica, r.name) for r in status.replicas] == [("web", 0, "web-0"), ("web", 1, "web-1")]
        r0, r1 = status.replicas
        assert isinstance(r0, ReplicaStatus) and r0.state == "running" and r0.healthy is True
        assert {r0.provider_id, r1.provider_id} == {"prov-a", "prov-b"}
        assert r0.ports == (PortMap(8080, base),) and r1.ports[0].local_port == base + 1
        assert (r0.restarts, r0.failovers) == (0, 0) and r0.running_since is not None
        assert r0.cost == "0.025" and r0.paid == "0.02" and r0.cost_units == UNIT // 40
        assert status.cost == "0.05" and status.paid == "0.04"
        assert status.notes and "tunnel" in status.notes[0]  # `to: global` is through the requestor for now
        assert [d.deployment_id for d in await services.list()] == [dep.deployment_id]
        assert daemon.deployment(dep.deployment_id).payment_interval_s == 1
        assert daemon.net.scripts[0][-1]["serve"]["health"] == {"tcp": 8080}
        assert len(daemon.net.live_activities()) == 2
    # Leaving the block closed it: containers gone, agreements ended.
    assert daemon.deployment(dep.deployment_id).state == "closed"
    assert dep.closed and dep.last.state == "closed" and all(r.state == "closed" for r in dep.last.replicas)
    assert daemon.net.live_activities() == []
    assert sorted(daemon.net.terminated) == sorted(daemon.net.agreements)


async def test_deploy_from_a_path_and_free_ports(daemon: FakeDaemon, tmp_path: Path, autojump_clock: Any) -> None:
    app = tmp_path / "app.yaml"
    app.write_text(manifest())
    async with Services(location=LOCATION) as services:
        for m in (app, str(app)):
            dep = await services.deploy(m)
            assert dep.last.source == str(app)
            assert dep.port("web").local_port > 0  # any free port, bound at once
        assert len(await services.list()) == 2
    assert all(d.state == "closed" for d in daemon.manager.deployments.values())


# -- wait_healthy's failures ---------------------------------------------------------------------------
@pytest.mark.parametrize("providers", [[]])
async def test_wait_healthy_timeout_names_replicas_and_why(daemon: FakeDaemon, autojump_clock: Any) -> None:
    async with Services(location=LOCATION, poll_s=0.5) as services:
        dep = await services.deploy(manifest(2))
        t0 = trio.current_time()
        with pytest.raises(NotHealthy) as caught:
            await dep.wait_healthy(timeout=10)
        assert 10 <= trio.current_time() - t0 < 11
    err = caught.value
    message = str(err)
    assert f"deployment {dep.deployment_id}: 2 of 2 replica(s) not ready after 10 s" in message
    assert "web-0 " in message and "web-1 " in message
    # The daemon's reason for each, also for a replica negotiating again at the time-out (the one seen earlier).
    for name in ("web-0", "web-1"):
        part = message.split(f"{name} ", 1)[1]
        assert part.startswith(("pending (no provider took the lease (prov-x: over-price-cap))",
                                "negotiating (earlier: no provider took the lease (prov-x: over-price-cap))")), message
    assert f"yagna deploy logs {dep.deployment_id}" in message
    assert [r.name for r in err.waiting] == ["web-0", "web-1"] and err.status.deployment_id == dep.deployment_id
    assert isinstance(err, SdkError)


@pytest.mark.parametrize("providers", [[FakeProvider("prov-a"), FakeProvider("prov-b", healthy=False)]])
async def test_wait_healthy_names_only_the_unhealthy_replica(daemon: FakeDaemon, autojump_clock: Any) -> None:
    async with Services(location=LOCATION) as services:
        dep = await services.deploy(manifest(2))
        with pytest.raises(NotHealthy) as caught:
            await dep.wait_healthy(timeout=10)
    (bad,) = caught.value.waiting
    good = next(r for r in caught.value.status.replicas if r is not bad)
    assert bad.provider_id == "prov-b" and bad.state == "running" and bad.healthy is False and not bad.ready
    assert good.ready
    message = str(caught.value)
    assert "1 of 2 replica(s) not ready" in message
    assert f"{bad.name} running, but its health check fails" in message and good.name not in message


async def test_wait_healthy_on_a_closed_deployment_raises_at_once(daemon: FakeDaemon, autojump_clock: Any) -> None:
    async with Services(location=LOCATION) as services:
        dep = await services.deploy(manifest())
        final = await dep.close()
        assert final.state == "closed" and await dep.close() is final  # idempotent
        t0 = trio.current_time()
        with pytest.raises(DeploymentEnded, match=f"deployment {dep.deployment_id} is closed"):
            await dep.wait_healthy(timeout=60)
        assert trio.current_time() - t0 < 1


# -- endpoints -----------------------------------------------------------------------------------------
async def test_endpoint_lookup_errors(daemon: FakeDaemon, autojump_clock: Any) -> None:
    two_ports = "      - port: 8080\n      - port: 8443\n"
    worker = """\
  worker:
    image: local/busybox:1
    command: ["sleep", "3600"]
"""
    text = manifest(2, ports=two_ports, extra=worker).replace(
        "deployment:\n", "deployment:\n  worker:\n    dc:\n      profile: small\n")
    async with Services(location=LOCATION) as services:
        dep = await services.deploy(text)
        assert dep.endpoint("web", 8443, replica=1).startswith("http://127.0.0.1:")
        cases = [
            (("api", 80), {}, "has no service 'api' (its services: web, worker)"),
            (("web", 9999), {}, "service 'web' exposes no port 9999 (it exposes 8080, 8443"),
            (("web",), {}, "service 'web' exposes ports 8080, 8443: say which one"),
            (("web", 8080), {"replica": 2}, "has 2 replica(s), numbered from 0; there is no replica 2"),
            (("worker",), {}, "service 'worker' exposes no port"),
        ]
        for args, kwargs, message in cases:
            with pytest.raises(NoSuchEndpoint) as caught:
                dep.endpoint(*args, **kwargs)  # type: ignore[arg-type]
            assert message in str(caught.value)
            assert isinstance(caught.value, LookupError)


# -- deploy's errors -----------------------------------------------------------------------------------
async def test_deploy_errors_are_typed_and_early(daemon: FakeDaemon, tmp_path: Path, autojump_clock: Any) -> None:
    async with Services(location=LOCATION) as services:
        # the manifest, checked here first: its line and key, nothing asked of the daemon
        with pytest.raises(DeployFailed) as caught:
            await services.deploy(manifest().replace("- port: 8080", "- port: 8080\n        proto: udp"),
                                  source="app.yaml")
        assert caught.value.code == "bad-manifest" and caught.value.status == 0
        assert caught.value.line == 8 and caught.value.key == "services.web.expose[0].proto"
        assert str(caught.value).startswith("app.yaml:8: services.web.expose[0].proto:")
        with pytest.raises(DeployFailed, match="ports: the manifest has no service 'web' exposing port 80 "
                                               r"\(service 'web' exposes 8080\)") as caught:
            await services.deploy(manifest(), ports={("web", 80): 18080})
        assert caught.value.code == "bad-port"
        with pytest.raises(DeployFailed, match="must be 1 to 65534") as caught:
            await services.deploy(manifest(2), ports={("web", 8080): 65535})
        with pytest.raises(DeployFailed, match="payment_interval_s must be 1 to 3600") as caught:
            await services.deploy(manifest(), payment_interval_s=0)
        with pytest.raises(DeployFailed, match="cannot read the manifest") as caught:
            await services.deploy(tmp_path / "missing.yaml")
        assert daemon.manager.deployments == {}
        assert services.deployments == []


async def test_deploy_refused_by_the_daemon(daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                            autojump_clock: Any) -> None:
    monkeypatch.setattr(daemon.manager, "_nursery", None)  # as if its deployment service were not running
    async with Services(location=LOCATION) as services:
        with pytest.raises(DeployFailed) as caught:
            await services.deploy(manifest())
    assert (caught.value.code, caught.value.status) == ("not-running", 503)
    assert "the deployment service is not running" in str(caught.value)


async def test_deploy_refused_for_a_local_port_in_use(daemon: FakeDaemon, autojump_clock: Any) -> None:
    async with Services(location=LOCATION) as services:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(DeployFailed) as caught:
                await services.deploy(manifest(), ports={("web", 8080): port})
        assert caught.value.code == "port-in-use" and caught.value.status == 409
        assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)
        assert services.deployments == []


async def test_no_daemon_and_use_outside_the_block(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotFound):
        async with Services(data_dir=tmp_path / "nothing"):
            pass
    with pytest.raises(SdkError, match="async with Services"):
        await Services(location=LOCATION).deploy(manifest())


# -- logs ----------------------------------------------------------------------------------------------
async def test_logs_follow_until_close_and_pages(daemon: FakeDaemon, autojump_clock: Any) -> None:
    async with Services(location=LOCATION) as services:
        dep = await services.deploy(manifest())
        await dep.wait_healthy(timeout=30)
        followed: list[LogLine] = []

        async def follow() -> None:
            async for line in dep.logs(follow=True):
                followed.append(line)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await trio.sleep(40)  # more than one long-poll of the follower
                assert any(line.text == "web started on prov-a" for line in followed)
                await dep.close()
                # the nursery ends only if the follower stops by itself at the close
        texts = [(line.source, line.stream, line.text) for line in followed]
        assert ("web-0", "stdout", "web started on prov-a") in texts
        assert any(src == "web-0" and stream == "yagna" and text.startswith("serving: 127.0.0.1:")
                   for src, stream, text in texts)
        assert texts[-1] == ("deployment", "yagna", "closing: closed by the requestor")
        assert [line.seq for line in followed] == list(range(1, len(followed) + 1))

        # After the close: the whole log, its tail, one service's lines; each stops by itself.
        assert [line async for line in dep.logs()] == followed
        assert [line async for line in dep.logs(tail=2)] == followed[-2:]
        assert [line async for line in dep.logs(tail=0, follow=True)] == []
        assert [line async for line in dep.logs(service="db")] == [ln for ln in followed if ln.service is None]
        assert followed[0].service in ("web", None)


async def test_logs_follow_stops_when_the_deployment_failed(daemon: FakeDaemon, autojump_clock: Any) -> None:
    # A deployment that failed inside the daemon never reports its log `closed`; the follower stops anyway.
    async with Services(location=LOCATION) as services:
        dep = await services.deploy(manifest())
        await dep.wait_healthy(timeout=30)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                lines: list[LogLine] = []

                async def follow() -> None:
                    async for line in dep.logs(follow=True):
                        lines.append(line)

                nursery.start_soon(follow)
                await trio.sleep(1)
                daemon.deployment(dep.deployment_id).state = "failed"
        assert lines and lines[0].seq == 1
        daemon.deployment(dep.deployment_id).state = "active"  # so that the exit can close it


# -- closing -------------------------------------------------------------------------------------------
async def test_close_on_error_on_cancellation_and_keep(daemon: FakeDaemon, autojump_clock: Any) -> None:
    ids: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Services(location=LOCATION) as services:
            ids.append((await services.deploy(manifest())).deployment_id)
            raise RuntimeError("boom")
    with trio.move_on_after(5) as scope:
        async with Services(location=LOCATION) as services:
            dep = await services.deploy(manifest())
            ids.append(dep.deployment_id)
            await dep.wait_healthy(timeout=60)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    with trio.CancelScope() as already:  # a deploy already cancelled: it runs, then the close
        already.cancel()
        async with Services(location=LOCATION) as services:
            ids.append((await services.deploy(manifest())).deployment_id)
            await trio.sleep(1)
    assert len(ids) == 3 and all(daemon.deployment(i).state == "closed" for i in ids)

    async with Services(location=LOCATION) as services:
        kept = await services.deploy(manifest(), keep=True)
    assert daemon.deployment(kept.deployment_id).state == "active" and not kept.closed
    async with Services(location=LOCATION) as services:  # attach to it later (and, keep=False, close it)
        again = await services.attach(kept.deployment_id, keep=False)
        assert again.last.deployment_id == kept.deployment_id
        with pytest.raises(SdkError, match="not a deployment id"):
            await services.attach("../payment")
    assert daemon.deployment(kept.deployment_id).state == "closed"
    assert daemon.net.live_activities() == []
