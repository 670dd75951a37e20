"""Golem's requestor payment API on two whole nodes in one process and the real Docker engine:
an allocation on Golem's default test platform, demand decorations, debit notes that wait for
the client's accept (which signs our voucher), the invoice accepted at the end, both sides settled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.golem.golem_api import PLATFORM, Golem, agreement_via_golem, two_nodes
from yagna.config import NodeConfig
from yagna.node import Node, NodeInfo


async def _event(req: Golem, path: str, after: str | None) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            params = {"timeout": 2} if after is None else {"timeout": 2, "afterTimestamp": after}
            got = await req.call("GET", f"/payment-api/v1/{path}", params=params)
            if got:
                return got[0]  # type: ignore[no-any-return]


async def test_debit_notes_are_paid_by_the_clients_accepts(tmp_path: Path, image_id: str) -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p: NodeInfo = await nursery.start(Node(NodeConfig(tmp_path / "p", api_port=0, role="provider", max_threads=1)).run)
        r: NodeInfo = await nursery.start(
            Node(NodeConfig(tmp_path / "r", api_port=0, role="requestor", bootstrap=[p.p2p_addrs[0]])).run)
        req, prov = Golem(r, tmp_path / "r", client), Golem(p, tmp_path / "p", client)
        await client.post(f"{r.api_url}/api/v1/payment/fund", json={"amount": "10"}, headers=req.headers)
        await req.call("POST", "/payment-api/v1/allocations", 400, json={"paymentPlatform": "erc20-polygon-glm",
                                                                         "totalAmount": "1"})
        allocation = await req.call("POST", "/payment-api/v1/allocations", 201, json={
            "allocationId": "", "address": r.node_id, "paymentPlatform": PLATFORM, "totalAmount": "1",
            "spentAmount": "", "remainingAmount": "", "timestamp": "2026-12-04T00:00:00Z",
            "timeout": "2036-12-04T00:00:00Z", "makeDeposit": False})
        assert allocation["allocationId"] and allocation["remainingAmount"] == "1" and allocation["timestamp"]
        deco = await req.call("GET", "/payment-api/v1/demandDecorations",
                              params={"allocationIds": allocation["allocationId"]})
        keys = {d["key"]: d["value"] for d in deco["properties"]}
        assert keys[f"golem.com.payment.platform.{PLATFORM}.address"] and keys["golem.com.payment.protocol.version"] == "3"
        assert f"(golem.com.payment.platform.{PLATFORM}.address=*)" in deco["constraints"]

        agreement_id = await agreement_via_golem(req, p.node_id, r.node_id, task_package="local/busybox:1",
                                                 extra={"golem.com.scheme.payu.debit-note.interval-sec?": 1,
                                                        "golem.com.scheme.payu.payment-timeout-sec?": 30})
        activity_id = await req.call("POST", "/activity-api/v1/activity", 201, content=json.dumps(agreement_id))
        batch = await req.call("POST", f"/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(
            [{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "/bin/sh", "args": ["-c", "sleep 3"]}}])})

        event = await _event(req, "debitNoteEvents", None)
        assert event["eventType"] == "DebitNoteReceivedEvent" and event["eventDate"]
        note = await req.call("GET", f"/payment-api/v1/debitNotes/{event['debitNoteId']}")
        assert note["agreementId"] == agreement_id and note["activityId"] == activity_id
        assert {"debitNoteId", "issuerId", "recipientId", "payeeAddr", "payerAddr", "paymentPlatform", "timestamp",
                "totalAmountDue", "status"} <= set(note)
        paid_before = await _paid(client, p, prov)
        assert paid_before == 0  # nothing is paid until the client accepts
        await req.call("POST", f"/payment-api/v1/debitNotes/{note['debitNoteId']}/accept", json={
            "totalAmountAccepted": note["totalAmountDue"], "allocationId": allocation["allocationId"]})
        with trio.fail_after(15):
            while await _paid(client, p, prov) == 0:
                await trio.sleep(0.1)
        assert (await req.call("GET", f"/payment-api/v1/debitNotes/{note['debitNoteId']}"))["status"] == "ACCEPTED"
        spent = (await req.call("GET", f"/payment-api/v1/allocations/{allocation['allocationId']}"))["spentAmount"]
        assert spent != "0"

        with trio.fail_after(30):
            while not (await req.call("GET", f"/activity-api/v1/activity/{activity_id}/exec/{batch}",
                                      params={"timeout": 2}) or [{}])[-1].get("isBatchFinished"):
                pass
        await req.call("DELETE", f"/activity-api/v1/activity/{activity_id}")
        await req.call("POST", f"/market-api/v1/agreements/{agreement_id}/terminate",
                       json={"message": "done", "golem.requestor.code": "Success"})
        inv_event = await _event(req, "invoiceEvents", None)
        invoice = await req.call("GET", f"/payment-api/v1/invoices/{inv_event['invoiceId']}")
        assert invoice["agreementId"] == agreement_id and float(invoice["amount"]) > 0
        assert {"invoiceId", "issuerId", "payeeAddr", "payerAddr", "paymentPlatform", "timestamp", "amount",
                "status"} <= set(invoice)  # what Golem's client needs to deserialise it
        await req.call("POST", f"/payment-api/v1/invoices/{invoice['invoiceId']}/accept", json={
            "totalAmountAccepted": invoice["amount"], "allocationId": allocation["allocationId"]})
        with trio.fail_after(30):
            while True:
                states = [row["state"] for node, g in ((p, prov), (r, req)) for row in
                          (await client.get(f"{node.api_url}/api/v1/payment/status", headers=g.headers)).json()["agreements"]]
                if states == ["closed", "closed"]:
                    break
                await trio.sleep(0.2)
        prov_status = (await client.get(f"{p.api_url}/api/v1/payment/status", headers=prov.headers)).json()
        assert prov_status["agreements"][0]["reason"] == "paid in full"
        await req.call("DELETE", f"/payment-api/v1/allocations/{allocation['allocationId']}")
        nursery.cancel_scope.cancel()


async def _paid(client: httpx.AsyncClient, p: NodeInfo, prov: Golem) -> int:
    rows = (await client.get(f"{p.api_url}/api/v1/payment/status", headers=prov.headers)).json()["agreements"]
    return sum(int(row["paid_units"]) for row in rows)


async def test_an_agreements_deposit_comes_out_of_the_allocation(tmp_path: Path, image_id: str) -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p, r, req = await two_nodes(nursery, tmp_path, client)
        await req.call("POST", "/payment-api/v1/allocations", 201, json={"paymentPlatform": PLATFORM,
                                                                         "totalAmount": "0.000001"})
        agreement_id = await agreement_via_golem(req, p.node_id, r.node_id, task_package="local/busybox:1")
        activity_id = await req.call("POST", "/activity-api/v1/activity", 201, content=json.dumps(agreement_id))
        channels = (await client.get(f"{r.api_url}/api/v1/payment/channels", headers=req.headers)).json()
        assert [c["deposit_units"] for c in channels] == [10**12]  # capped by the allocation (worst case is more)
        await req.call("DELETE", f"/activity-api/v1/activity/{activity_id}")
        nursery.cancel_scope.cancel()


async def test_a_client_that_never_accepts_falls_to_the_providers_enforcement(tmp_path: Path, image_id: str) -> None:
    """Golem's rule: a debit note the client leaves unaccepted past the payment timeout is unpaid; the
    provider pauses, then ends the agreement (`not-paid`), as for any requestor that stops paying."""
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p, r, req = await two_nodes(nursery, tmp_path, client)
        await req.call("POST", "/payment-api/v1/allocations", 201, json={"paymentPlatform": PLATFORM, "totalAmount": "1"})
        agreement_id = await agreement_via_golem(req, p.node_id, r.node_id, task_package="local/busybox:1",
                                                 extra={"golem.com.scheme.payu.debit-note.interval-sec?": 1,
                                                        "golem.com.scheme.payu.payment-timeout-sec?": 2})
        activity_id = await req.call("POST", "/activity-api/v1/activity", 201, content=json.dumps(agreement_id))
        await req.call("POST", f"/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(
            [{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "/bin/sh", "args": ["-c", "sleep 60"]}}])})
        await _event(req, "debitNoteEvents", None)  # it came; nobody accepts it
        with trio.fail_after(40):
            while (await req.call("GET", f"/market-api/v1/agreements/{agreement_id}"))["state"] != "Terminated":
                await trio.sleep(0.2)
        prov_agreement = (await client.get(f"{p.api_url}/api/v1/market/agreements/{agreement_id}",
                                           headers=Golem(p, tmp_path / "p", client).headers)).json()
        assert "not-paid" in (prov_agreement["reason"] or ""), prov_agreement
        with trio.fail_after(30):  # the provider stops its container; the requestor learns it
            while (await req.call("GET", f"/activity-api/v1/activity/{activity_id}/state"))["state"][0] != "Terminated":
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
