"""Golem's requestor market API on two whole nodes in one process, with the bodies yapapi 0.13.1
sends (reference/golem-rest-compat.md): subscription, Initial proposals with Golem's properties,
counter -> Draft, agreement, confirm, wait, flat terminate -> a fresh Initial, 404 when dropped."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.golem.golem_api import PLATFORM, Golem, yapapi_demand
from yagna.config import NodeConfig
from yagna.node import Node, NodeInfo


async def test_a_yapapi_shaped_negotiation(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p: NodeInfo = await nursery.start(Node(NodeConfig(tmp_path / "p", api_port=0, role="provider", max_threads=1)).run)
        r: NodeInfo = await nursery.start(
            Node(NodeConfig(tmp_path / "r", api_port=0, role="requestor", bootstrap=[p.p2p_addrs[0]])).run)
        req = Golem(r, tmp_path / "r", client)
        assert (await req.call("GET", "/me"))["identity"] == r.node_id
        unauth = await client.get(f"{r.api_url}/me")
        assert unauth.status_code == 401

        sub = await req.call("POST", "/market-api/v1/demands", 201, json=yapapi_demand(r.node_id))
        assert isinstance(sub, str)  # a bare JSON string
        initial = await req.events(sub, "ProposalEvent", "Initial")
        offer = initial["proposal"]
        assert offer["issuerId"] == p.node_id and isinstance(offer["proposalId"], str)
        props = offer["properties"]
        assert props[f"golem.com.payment.platform.{PLATFORM}.address"] and props["golem.com.payment.protocol.version"] == "3"
        assert props["golem.srv.caps.multi-activity"] is True
        assert props["golem.runtime.name"] == "vm"  # it runs Golem VM packages (in its hardened containers)
        coeffs = props["golem.com.pricing.model.linear.coeffs"]  # tokens, as Golem's strategy reads them
        assert len(coeffs) == len(props["golem.com.usage.vector"]) + 1 and all(isinstance(c, float) for c in coeffs)
        assert coeffs[-1] <= 1.0

        demand = yapapi_demand(r.node_id)
        demand["properties"]["golem.com.payment.chosen-platform"] = PLATFORM
        ours = await req.call("POST", f"/market-api/v1/demands/{sub}/proposals/{offer['proposalId']}", json=demand)
        assert isinstance(ours, str)
        draft = (await req.events(sub, "ProposalEvent", "Draft"))["proposal"]
        assert draft["prevProposalId"] == ours and draft["issuerId"] == p.node_id

        agreement_id = await req.call("POST", "/market-api/v1/agreements", (200, 201),
                                      json={"proposalId": draft["proposalId"], "validTo": "2099-01-01T00:00:00Z"})
        assert isinstance(agreement_id, str)
        a = await req.call("GET", f"/market-api/v1/agreements/{agreement_id}")
        assert a["offer"]["providerId"] == p.node_id and a["demand"]["requestorId"] == r.node_id
        assert {"properties", "constraints", "offerId", "timestamp"} <= set(a["offer"])
        assert {"properties", "constraints", "demandId", "timestamp"} <= set(a["demand"])
        assert a["state"] == "Approved" and a["validTo"]
        await req.call("POST", f"/market-api/v1/agreements/{agreement_id}/confirm", 204)
        await req.call("POST", f"/market-api/v1/agreements/{agreement_id}/wait", 204, params={"timeout": 15})

        await req.call("POST", f"/market-api/v1/agreements/{agreement_id}/terminate",
                       json={"message": "Work cancelled", "golem.requestor.code": "Cancelled"})
        assert (await req.call("GET", f"/market-api/v1/agreements/{agreement_id}"))["state"] == "Terminated"
        again = (await req.events(sub, "ProposalEvent", "Initial"))["proposal"]
        assert again["issuerId"] == p.node_id and again["proposalId"] != offer["proposalId"]  # fresh, for a retry

        await req.call("POST", f"/market-api/v1/demands/{sub}/proposals/nope", 404, json=demand)
        await req.call("DELETE", f"/market-api/v1/demands/{sub}", 204)
        gone = await req.call("GET", f"/market-api/v1/demands/{sub}/events", 404)
        assert "message" in gone
        bad = await req.call("POST", "/market-api/v1/demands", 400, json={"properties": {}, "constraints": "(a>="})
        assert "message" in bad
        nursery.cancel_scope.cancel()
