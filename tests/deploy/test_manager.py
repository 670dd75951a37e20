"""The deployment manager's logic (yagna/deploy_service/manager.py) against fakes of the market,
activity and payment services, on trio's autojump clock. e2e/test_services.py runs the real thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import trio

from market.pricing import LinearPricing
from yagna.core.errors import YagnaError
from yagna.deploy_service.manager import DeployConfig, DeployError, DeploymentManager

MANIFEST = """\
version: "2.0"
services:
  web:
    image: local/busybox:1
    command: ["httpd", "-f", "-p", "8080"]
    expose:
      - port: 8080
        to: [{global: true}]
profiles:
  compute:
    web:
      resources: {cpu: {units: 1}, memory: {size: 64Mi}, storage: {size: 64Mi}}
  placement:
    dc:
      attributes: {region: eu}
      pricing:
        web: {denom: tglm, amount: 2}
deployment:
  web:
    dc: {profile: web, count: 2}
"""
PRICE = {**LinearPricing(start_fee=0, per_cpu_sec=10, per_duration_sec=1).to_properties(), "golem.inf.cpu.threads": 1}


class Failed(YagnaError):
    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        super().__init__(message or code)


@dataclass
class _Demand:
    demand_id: str


class FakeMarket:
    def __init__(self, providers: list[str]) -> None:
        self.providers = providers
        self.requestor = self
        self.demands: dict[str, tuple[dict[str, Any], str]] = {}
        self.terminated: list[tuple[str, str]] = []
        self.asked: list[set[str]] = []
        self._n = 0

    async def create_demand(self, props: dict[str, Any], constraints: str, **_: Any) -> _Demand:
        self._n += 1
        demand = _Demand(f"d{self._n}")
        self.demands[demand.demand_id] = (props, constraints)
        return demand

    def delete_demand(self, demand_id: str) -> None:
        del self.demands[demand_id]

    async def negotiate(self, demand_id: str, *, count: int, config: Any, timeout: float) -> dict[str, Any]:
        self.asked.append(set(config.deny))
        for p in self.providers:
            if p not in config.deny:
                self._n += 1
                return {"agreements": [{"agreement_id": f"a{self._n}-{p}", "provider_id": p, "offer_properties": PRICE}],
                        "failures": []}
        return {"agreements": [], "failures": [{"provider_id": "none", "code": "no-offer"}]}

    async def terminate(self, agreement_id: str, reason: str) -> dict[str, Any]:
        self.terminated.append((agreement_id, reason))
        return {}


class FakeActivity:
    def __init__(self) -> None:
        self.dead: set[str] = set()
        self.acts: dict[str, str] = {}  # activity -> provider
        self.destroyed: list[str] = []
        self.events_script: list[dict[str, Any]] | None = None

    async def create(self, agreement_id: str) -> dict[str, Any]:
        provider = agreement_id.split("-", 1)[1]
        activity_id = f"act-{agreement_id}"
        self.acts[activity_id] = provider
        return {"activity_id": activity_id}

    async def exec(self, activity_id: str, script: list[dict[str, Any]]) -> dict[str, Any]:
        assert [next(iter(c)) for c in script] == ["deploy", "start", "serve"]
        assert script[0]["deploy"]["ports"] == [8080]
        return {"batch_id": f"b-{activity_id}"}

    async def state(self, activity_id: str) -> dict[str, Any]:
        await trio.sleep(0.01)
        if self.acts[activity_id] in self.dead:
            await trio.sleep(30)  # a vanished peer: requests time out
        return {"state": "running", "batches": [], "service": {"running": True, "tunnel_ready": True, "restarts": 0,
                                                                "healthy": True}}

    async def events(self, activity_id: str, batch_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        if self.events_script is not None:
            return self.events_script
        await trio.sleep(timeout)
        return []

    async def destroy(self, activity_id: str) -> dict[str, Any]:
        self.destroyed.append(activity_id)
        return {}


class FakePayments:
    def __init__(self) -> None:
        self.deposit_caps: dict[str, int] = {}
        self.signed: dict[str, int] = {}
        self.deposits: dict[str, int] = {}
        self.top_ups: list[tuple[str, int]] = []

    def live(self, agreement_id: str) -> dict[str, Any] | None:
        if agreement_id not in self.deposit_caps:
            return None
        deposit = self.deposits.get(agreement_id, self.deposit_caps[agreement_id])
        return {"signed": self.signed.get(agreement_id, 0), "asked": self.signed.get(agreement_id, 0), "deposit": deposit}

    async def top_up(self, agreement_id: str, amount: int) -> dict[str, Any]:
        self.top_ups.append((agreement_id, amount))
        self.deposits[agreement_id] = self.deposits.get(agreement_id, self.deposit_caps[agreement_id]) + amount
        return {"agreement_id": agreement_id, "deposit": str(self.deposits[agreement_id]), "provider_told": True}


@pytest.fixture
async def world(nursery: trio.Nursery) -> tuple[DeploymentManager, FakeMarket, FakeActivity, FakePayments]:
    market, activity, payments = FakeMarket(["p1", "p2", "p3"]), FakeActivity(), FakePayments()
    manager = DeploymentManager(market=market, activity=activity, payments=payments, rr=None,
                                config=DeployConfig(ready_timeout_s=5, watch_s=1, lost_after_s=3))
    await nursery.start(manager.run)
    return manager, market, activity, payments


async def _running(manager: DeploymentManager, deployment_id: str) -> list[dict[str, Any]]:
    with trio.fail_after(30):
        while True:
            replicas = manager.view(manager.get(deployment_id))["replicas"]
            if all(r["state"] == "running" for r in replicas):
                return replicas  # type: ignore[no-any-return]
            await trio.sleep(0.1)


async def test_replicas_lease_different_providers_and_keep_their_ports(world: Any, autojump_clock: Any) -> None:
    manager, market, activity, payments = world
    dep = await manager.create(MANIFEST, source="app.yaml")
    replicas = await _running(manager, dep["deployment_id"])
    assert len({r["provider_id"] for r in replicas}) == 2
    ports = [r["ports"][0]["local_port"] for r in replicas]
    assert all(p > 0 for p in ports) and ports[0] != ports[1]
    props, constraints = next(iter(market.demands.values())) if market.demands else ({}, "")
    assert not market.demands  # every placement's demand is deleted after it
    for rep in manager.get(dep["deployment_id"]).replicas:
        assert rep.ports[0].listener.target is not None
        assert rep.ports[0].listener.target.provider_id == rep.provider_id
        # the lease's deposit is capped to an hour's worst case: 1 thread x (10 + 1) per second
        assert payments.deposit_caps[rep.agreement_id] == 11 * 3600


async def test_the_demand_carries_the_profile_and_the_placement(world: Any, autojump_clock: Any) -> None:
    manager, market, *_ = world
    seen: list[tuple[dict[str, Any], str]] = []
    original = market.create_demand

    async def spy(props: dict[str, Any], constraints: str, **kw: Any) -> Any:
        seen.append((dict(props), constraints))
        return await original(props, constraints, **kw)

    market.create_demand = spy
    dep = await manager.create(MANIFEST, source="app.yaml", payment_interval_s=2)
    await _running(manager, dep["deployment_id"])
    props, constraints = seen[0]
    assert "(golem.inf.cpu.threads>=1)" in constraints and "(region=eu)" in constraints
    assert "(golem.inf.mem.gib>=0.062500)" in constraints
    assert props["golem.com.scheme.payu.debit-note.interval-sec?"] == 2
    assert props["yagna.deploy.placement"] != seen[1][0]["yagna.deploy.placement"]  # one demand per placement


async def test_a_vanished_provider_is_replaced_behind_the_same_port(world: Any, autojump_clock: Any) -> None:
    manager, market, activity, _ = world
    dep = await manager.create(MANIFEST, source="app.yaml")
    before = await _running(manager, dep["deployment_id"])
    victim, port = before[0]["provider_id"], before[0]["ports"][0]["local_port"]
    activity.dead.add(victim)
    t0 = trio.current_time()
    with trio.fail_after(60):
        while True:
            r0 = manager.view(manager.get(dep["deployment_id"]))["replicas"][0]
            if r0["state"] == "running" and r0["provider_id"] != victim:
                break
            await trio.sleep(0.1)
    assert trio.current_time() - t0 < 10  # the failover bound (fake time: detection is 1 s polls, 3 s of silence)
    assert r0["ports"][0]["local_port"] == port and r0["failovers"] == 1
    assert r0["provider_id"] not in (victim, before[1]["provider_id"])
    assert any(a.endswith(victim) and "lost" in why for a, why in market.terminated)
    assert victim in market.asked[-1]  # not asked again
    lines = (await manager.logs(dep["deployment_id"]))["lines"]
    assert any("replica lost on p" in line["text"] and "empty volumes" in line["text"] for line in lines)


async def test_a_log_pump_ends_when_the_log_ends_with_dropped_output(world: Any, autojump_clock: Any) -> None:
    """A destroyed activity's cleared log answers at once with a 'dropped' marker, forever: the pump
    used to ask again at once, without a checkpoint, and froze the daemon."""
    manager, _, activity, _ = world
    dep = await manager.create(MANIFEST, source="app.yaml")
    await _running(manager, dep["deployment_id"])
    activity.events_script = [{"seq": 3, "kind": "dropped", "from_seq": 4, "first_kept": 9}]
    d = manager.get(dep["deployment_id"])
    with trio.fail_after(5):
        await manager._pump_logs(d, d.replicas[0], "act-x", "b-x")


async def test_a_lease_is_topped_up_as_its_deposit_runs_low(world: Any, autojump_clock: Any) -> None:
    manager, _, _, payments = world
    dep = await manager.create(MANIFEST, source="app.yaml")
    replicas = await _running(manager, dep["deployment_id"])
    aid = replicas[0]["agreement_id"]
    payments.signed[aid] = payments.deposit_caps[aid] * 7 // 10  # 70 % spent
    with trio.fail_after(10):
        while not payments.top_ups:
            await trio.sleep(0.1)
    await trio.sleep(5)
    assert payments.top_ups == [(aid, 11 * 3600)]  # once: 40 % of the new deposit is signed
    funded = await manager.fund(dep["deployment_id"], 0.5)
    assert [f["replica"] for f in funded["funded"]] == ["web-0", "web-1"]


async def test_bad_input_is_refused_with_a_code(world: Any, autojump_clock: Any) -> None:
    manager, *_ = world
    with pytest.raises(DeployError) as bad:
        await manager.create(MANIFEST.replace("count: 2", "count: two"), source="app.yaml")
    assert bad.value.code == "bad-manifest" and "app.yaml:" in str(bad.value)
    with pytest.raises(DeployError) as port:
        await manager.create(MANIFEST, source="app.yaml", ports={("web", 9999): 18000})
    assert port.value.code == "bad-port"
    with pytest.raises(DeployError) as high:  # replica 1 would need 65536
        await manager.create(MANIFEST, source="app.yaml", ports={("web", 8080): 65535})
    assert high.value.code == "bad-port" and "past 65535" in str(high.value)
    with pytest.raises(DeployError) as unknown:
        await manager.close("nope")
    assert unknown.value.code == "unknown-deployment"


async def test_close_releases_every_replica(world: Any, autojump_clock: Any) -> None:
    manager, market, activity, _ = world
    dep = await manager.create(MANIFEST, source="app.yaml")
    replicas = await _running(manager, dep["deployment_id"])
    closed = await manager.close(dep["deployment_id"])
    assert closed["state"] == "closed" and all(r["state"] == "closed" for r in closed["replicas"])
    assert {a for a, _ in market.terminated} == {r["agreement_id"] for r in replicas}
    assert set(activity.destroyed) == {r["activity_id"] for r in replicas}
    d = manager.get(dep["deployment_id"])
    assert all(b.listener.target is None for r in d.replicas for b in r.ports)


async def test_a_port_in_use_is_refused_and_leaves_nothing(world: Any, autojump_clock: Any) -> None:
    import socket

    manager, *_ = world
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(10), pytest.raises(DeployError) as refused:
            await manager.create(MANIFEST, source="app.yaml", ports={("web", 8080): port - 1})
    assert refused.value.code == "port-in-use" and str(port) in str(refused.value)
    assert manager.list() == []


async def test_logs_tail_then_follow_from_the_end(world: Any, autojump_clock: Any) -> None:
    manager, *_ = world
    dep = await manager.create(MANIFEST, source="app.yaml")
    await _running(manager, dep["deployment_id"])
    page = await manager.logs(dep["deployment_id"], tail=0)
    assert page["lines"] == [] and page["last_seq"] > 0 and not page["closed"]
    await manager.close(dep["deployment_id"])
    end = await manager.logs(dep["deployment_id"], after=page["last_seq"], timeout=30)
    assert end["closed"] and any("closing" in line["text"] for line in end["lines"])
