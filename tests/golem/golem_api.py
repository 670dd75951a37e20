"""Helpers for tests of Golem's REST API: the bodies yapapi 0.13.1 sends, a small client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import trio

from yagna.config import NodeConfig
from yagna.node import Node, NodeInfo

PLATFORM = "erc20-holesky-tglm"


def yapapi_demand(node_id: str, task_package: str | None = None) -> dict[str, Any]:
    """hello.py's demand as captured (clauses separated by newline + tab)."""
    return {
        "properties": {
            "golem.srv.comp.expiration": int(time.time() * 1000) + 15 * 60_000,
            "golem.srv.caps.multi-activity": True,
            "golem.node.debug.subnet": "public",
            f"golem.com.payment.platform.{PLATFORM}.address": node_id,
            "golem.com.payment.protocol.version": "3",
            "golem.srv.comp.task_package": task_package or "hash:sha3:" + "ab" * 28 + ":http://registry.invalid/x.gvmi",
            "golem.srv.comp.vm.package_format": "gvmkit-squash",
        },
        "constraints": (f"(&(golem.node.debug.subnet=public)\n\t(golem.com.payment.platform.{PLATFORM}.address=*)"
                        "\n\t(golem.com.payment.protocol.version>1)\n\t(golem.com.pricing.model=linear)"
                        "\n\t(&(golem.inf.mem.gib>=0.01)\n\t(golem.inf.cpu.threads>=1)\n\t(golem.runtime.name=vm)))"),
    }


class Golem:
    def __init__(self, info: NodeInfo, data_dir: Path, client: httpx.AsyncClient) -> None:
        self.root = info.api_url
        self.headers = {"Authorization": f"Bearer {(data_dir / 'app-key').read_text().strip()}"}
        self.client = client

    async def call(self, method: str, path: str, status: int | tuple[int, ...] = 200, **kw: Any) -> Any:
        resp = await self.client.request(method, f"{self.root}{path}", headers=self.headers, timeout=30, **kw)
        assert resp.status_code in ((status,) if isinstance(status, int) else status), (path, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    async def events(self, sub: str, want: str, state: str | None = None) -> dict[str, Any]:
        with trio.fail_after(20):
            while True:
                for ev in await self.call("GET", f"/market-api/v1/demands/{sub}/events", params={"timeout": 2, "maxEvents": 10}):
                    assert "eventType" in ev and "eventDate" in ev
                    if ev["eventType"] == want and (state is None or ev["proposal"]["state"] == state):
                        return ev  # type: ignore[no-any-return]


async def agreement_via_golem(req: Golem, provider_id: str, requestor_id: str, task_package: str | None = None,
                              extra: dict[str, Any] | None = None) -> str:
    """Subscribe, counter the provider's Initial proposal, sign on its Draft: the agreement id."""
    first = yapapi_demand(requestor_id, task_package)
    first["properties"].update(extra or {})
    sub = await req.call("POST", "/market-api/v1/demands", 201, json=first)
    with trio.fail_after(20):
        while True:
            offer = (await req.events(sub, "ProposalEvent", "Initial"))["proposal"]
            if offer["issuerId"] == provider_id:
                break
    demand = yapapi_demand(requestor_id, task_package)
    demand["properties"].update(extra or {})
    demand["properties"]["golem.com.payment.chosen-platform"] = PLATFORM
    await req.call("POST", f"/market-api/v1/demands/{sub}/proposals/{offer['proposalId']}", json=demand)
    draft = (await req.events(sub, "ProposalEvent", "Draft"))["proposal"]
    return str(await req.call("POST", "/market-api/v1/agreements", (200, 201), json={"proposalId": draft["proposalId"]}))


async def two_nodes(nursery: trio.Nursery, tmp_path: Path, client: httpx.AsyncClient, *,
                    fund: str | None = "10") -> tuple[NodeInfo, NodeInfo, Golem]:
    """A provider and a requestor (bootstrapped to it) in this process; the requestor funded."""
    p: NodeInfo = await nursery.start(Node(NodeConfig(tmp_path / "p", api_port=0, role="provider", max_threads=1)).run)
    r: NodeInfo = await nursery.start(
        Node(NodeConfig(tmp_path / "r", api_port=0, role="requestor", bootstrap=[p.p2p_addrs[0]])).run)
    req = Golem(r, tmp_path / "r", client)
    if fund is not None:
        await client.post(f"{r.api_url}/api/v1/payment/fund", json={"amount": fund}, headers=req.headers)
    return p, r, req

