"""Golem's requestor activity API on two whole nodes in one process and the real Docker engine:
a bare-string activity, Golem exe-scripts (deploy/start, run with captured output), results
cumulative from index 0, a non-zero exit as an Error result, state, usage, destroy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.golem.golem_api import Golem, agreement_via_golem, two_nodes
from yagna.api.golem.activity import GolemScriptError, translate

CAPTURE = {"stdout": {"stream": {}}, "stderr": {"stream": {}}}


async def _run(req: Golem, activity_id: str, script: list[dict[str, Any]]) -> list[dict[str, Any]]:
    batch = await req.call("POST", f"/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(script)})
    assert isinstance(batch, str)
    seen: list[dict[str, Any]] = []
    with trio.fail_after(60):
        while not (seen and seen[-1].get("isBatchFinished")):
            got = await req.call("GET", f"/activity-api/v1/activity/{activity_id}/exec/{batch}", params={"timeout": 3})
            assert [r["index"] for r in got] == list(range(len(got)))  # cumulative from index 0
            assert got[: len(seen)] == [{**r, "eventDate": g["eventDate"]} for r, g in zip(seen, got, strict=False)]
            seen = got
            if seen and seen[-1]["result"] == "Error":
                break
    return seen


async def test_golem_exe_scripts_run_in_our_containers(tmp_path: Path, image_id: str) -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p, r, req = await two_nodes(nursery, tmp_path, client)
        agreement_id = await agreement_via_golem(req, p.node_id, r.node_id, task_package="local/busybox:1")
        activity_id = await req.call("POST", "/activity-api/v1/activity", 201, content=json.dumps(agreement_id))
        assert isinstance(activity_id, str)

        init = await _run(req, activity_id, [{"deploy": {}}, {"start": {"args": []}}])
        assert [x["result"] for x in init] == ["Ok", "Ok"] and init[-1]["isBatchFinished"]
        assert (await req.call("GET", f"/activity-api/v1/activity/{activity_id}/state"))["state"] == ["Ready", None]

        done = await _run(req, activity_id, [{"run": {"entry_point": "/bin/sh", "args": ["-c", "echo hello; echo oops >&2"],
                                                      "capture": CAPTURE}}])
        assert done[0]["result"] == "Ok" and done[0]["stdout"] == "hello\n" and done[0]["stderr"] == "oops\n"

        # yapapi's stream_output=True: the same results as server-sent runtime events
        batch = await req.call("POST", f"/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(
            [{"run": {"entry_point": "/bin/sh", "args": ["-c", "echo one; sleep 0.3; echo two >&2; exit 4"]}}])})
        async with client.stream("GET", f"{r.api_url}/activity-api/v1/activity/{activity_id}/exec/{batch}",
                                 headers={**req.headers, "Accept": "text/event-stream"}) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            sse = "".join([chunk async for chunk in resp.aiter_text()])
        events = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
        assert all(line == "event: runtime" for line in sse.splitlines() if line.startswith("event:"))
        kinds = [next(iter(e["kind"])) for e in events]
        assert kinds[0] == "started" and kinds[-1] == "finished" and {"stdout", "stderr"} <= set(kinds)
        assert "".join(e["kind"]["stdout"] for e in events if "stdout" in e["kind"]) == "one\n"
        assert events[-1]["kind"]["finished"]["return_code"] == 4

        failed = await _run(req, activity_id, [{"run": {"entry_point": "/bin/sh", "args": ["-c", "exit 3"]}}])
        assert failed[0]["result"] == "Error" and "code 3" in failed[0]["message"]

        usage = await req.call("GET", f"/activity-api/v1/activity/{activity_id}/usage")
        assert len(usage["currentUsage"]) == 2 and isinstance(usage["timestamp"], int)
        bad = await req.call("POST", f"/activity-api/v1/activity/{activity_id}/exec", 400,
                             json={"text": json.dumps([{"transfer": {"from": "gftp://x/y", "to": "container:/a"}}])})
        assert "gftp published" in bad["message"]
        await req.call("DELETE", f"/activity-api/v1/activity/{activity_id}")
        assert (await req.call("GET", f"/activity-api/v1/activity/{activity_id}/state"))["state"][0] == "Terminated"
        await req.call("POST", "/activity-api/v1/activity", 400, json={"not": "a string"})
        await req.call("POST", "/activity-api/v1/activity", 404, content=json.dumps("0" * 64))
        nursery.cancel_scope.cancel()


def test_translation_of_golem_commands() -> None:
    script = [{"deploy": {}}, {"start": {"args": []}},
              {"run": {"entry_point": "/bin/sh", "args": ["-c", "date"], "capture": CAPTURE}}, {"terminate": {}}]
    assert translate(script, "local/busybox:1") == [
        {"deploy": {"image": "local/busybox:1"}}, {"start": {}}, {"run": {"argv": ["/bin/sh", "-c", "date"]}},
        {"terminate": {}}]
    package = "hash:sha3:" + "ab" * 28 + ":http://x/y.gvmi"
    assert translate([{"deploy": {}}], package) == [{"deploy": {"package": package}}]
    for bad, pkg in (([{"deploy": {}}], None),
                     ([{"run": {"entry_point": 5}}], "x"), ([{"sign": {}}], "x"), ([], "x"), ("[]", "x"),
            ([{"transfer": {"from": "gftp://n/h", "to": "container:/golem/input/a"}}], "x")):
        with pytest.raises(GolemScriptError):
            translate(bad, pkg)
