"""The requestor's REST flow the SDK uses, on two whole nodes in one process."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import trio

from market.agreement import verify_agreement
from yagna.config import NodeConfig
from yagna.node import Node, NodeInfo


class Api:
    def __init__(self, info: NodeInfo, data_dir: Path, client: httpx.AsyncClient) -> None:
        self.base = f"{info.api_url}/api/v1"
        self.headers = {"Authorization": f"Bearer {(data_dir / 'app-key').read_text().strip()}"}
        self.client = client

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        resp = await self.client.request(method, f"{self.base}{path}", headers=self.headers, timeout=30, **kwargs)
        assert resp.status_code == status, resp.text
        return resp.json() if resp.content else None


async def test_demand_events_counter_agreement_wait_terminate(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p: NodeInfo = await nursery.start(Node(NodeConfig(tmp_path / "p", api_port=0, role="provider", max_threads=1)).run)
        r: NodeInfo = await nursery.start(
            Node(NodeConfig(tmp_path / "r", api_port=0, role="requestor", bootstrap=[p.p2p_addrs[0]])).run
        )
        prov, req = Api(p, tmp_path / "p", client), Api(r, tmp_path / "r", client)

        bad = await req.call("POST", "/market/demands", 400, json={"constraints": "(golem.inf.mem.gib>=)"})
        assert bad["error"] == "constraint_syntax" and bad["position"] == 20 and bad["expected"]
        await req.call("GET", "/market/demands/nope", 404)
        assert (await prov.call("GET", "/market/demands", 409))["message"].startswith("this node runs as a provider only")

        demand = await req.call("POST", "/market/demands", 201, json={"constraints": "(golem.runtime.name=docker)"})
        events: list[dict[str, Any]] = []
        with trio.fail_after(15):
            while not any(e["type"] == "proposal" for e in events):
                events += await req.call("GET", f"/market/demands/{demand['demand_id']}/events",
                                         params={"after": events[-1]["seq"] if events else 0, "timeout": 5})
        proposal = next(e for e in events if e["type"] == "proposal")
        assert proposal["provider_id"] == p.node_id and proposal["source"] in ("book", "gossip", "sync", "auction")

        path = f"/market/demands/{demand['demand_id']}/proposals"
        assert [o["offer_id"] for o in await req.call("GET", path)] == [proposal["offer_id"]]
        await req.call("POST", f"{path}/{'0' * 64}/counter", 404, json={})
        countered = await req.call("POST", f"{path}/{proposal['offer_id']}/counter", json={})
        assert countered["state"] == "countered"
        assert countered["terms"]["golem.com.scheme.payu.payment-timeout-sec?"] == 120

        agreement = await req.call("POST", "/market/agreements", 201,
                                   json={"demand_id": demand["demand_id"], "offer_id": proposal["offer_id"]})
        assert agreement["state"] == "approved"
        doc = verify_agreement(base64.b64decode(agreement["document"]), network_id="testnet")
        assert (doc.requestor_id, doc.provider_id) == (r.node_id, p.node_id)
        waited = await req.call("POST", f"/market/agreements/{agreement['agreement_id']}/wait")
        assert waited["state"] == "approved"
        status = await prov.call("GET", "/provider/status")
        assert status["active_agreements"] == 1 and status["free"]["threads"] == 0

        # proposing again on the same counter is refused: the negotiation ended with the agreement
        again = await req.call("POST", "/market/agreements", 409,
                               json={"demand_id": demand["demand_id"], "offer_id": proposal["offer_id"]})
        assert again["error"] == "not-countered"

        ended = await req.call("POST", f"/market/agreements/{agreement['agreement_id']}/terminate", json={"reason": "done"})
        assert ended["state"] == "terminated"
        with trio.fail_after(10):
            while (await prov.call("GET", "/provider/status"))["active_agreements"]:
                await trio.sleep(0.05)
        theirs = await prov.call("GET", f"/market/agreements/{agreement['agreement_id']}")
        assert theirs["state"] == "terminated" and theirs["reason"] == "requestor: done"
        await req.call("DELETE", f"/market/demands/{demand['demand_id']}", 204)
        nursery.cancel_scope.cancel()
