"""The activity REST routes over a requestor driving a fake provider: binary output, coded errors, bad queries."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI

from yagna.api import activity_routes

from .test_requestor_hostile import SCRIPT, world


class _Keys:
    async def check(self, token: str) -> object:
        return object() if token == "k" else None


def _app(requestor: Any) -> FastAPI:
    app = FastAPI()
    activity_routes.install(app)
    app.state.node = SimpleNamespace(app_keys=_Keys(), activity=SimpleNamespace(requestor=requestor, provider=None))
    return app


async def test_output_bytes_come_back_exactly_and_garbage_answers_are_502(tmp_path: Path) -> None:
    raw = b"ok \xff\xfe\x00 end"
    async with world(tmp_path) as w:
        activity_id = await w.activity()
        result = {"index": 0, "command": "run", "exit_code": 0, "stdout": raw, "stderr": b"",
                  "started_at": 1.0, "finished_at": 2.0, "error": None}

        async def events(msg: dict[str, Any]) -> object:
            return {"events": [{"seq": 1, "index": 0, "kind": "stdout", "data": raw},
                               {"seq": 2, "index": 0, "kind": "finished", "result": result},
                               {"seq": 3, "index": None, "kind": "done", "reason": None}], "done": True}

        w.provider.events = events
        transport = httpx.ASGITransport(app=_app(w.req))
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     headers={"authorization": "Bearer k"}) as client:
            base = f"/api/v1/activity/{activity_id}"
            batch_id = (await client.post(f"{base}/exec", json={"script": SCRIPT})).json()["batch_id"]
            done = (await client.post(f"{base}/exec/{batch_id}/wait", params={"timeout": 5})).json()
            run = done["results"][0]
            assert base64.b64decode(run["stdout_b64"]) == raw and run["stdout"] == raw.decode(errors="replace")
            got = (await client.get(f"{base}/exec/{batch_id}/events", params={"after": 0})).json()
            assert base64.b64decode(got[0]["data_b64"]) == raw and got[0]["data"] == raw.decode(errors="replace")
            for bad in ("nan", "inf", "-inf"):  # was a 500 (issue 11 row 8)
                for path in (f"{base}/exec/{batch_id}/events", f"{base}/exec/{batch_id}/wait"):
                    method = client.get if path.endswith("events") else client.post
                    assert (await method(path, params={"timeout": bad})).status_code == 422
            assert (await client.get(f"{base}/exec/{batch_id}/events", params={"after": -1})).status_code == 422

            async def state(msg: dict[str, Any]) -> object:
                return ["a", "list"]

            w.provider.state = state
            reply = await client.get(base)
            assert reply.status_code == 502 and reply.json()["error"] == "bad-reply"
            assert (await client.get(base)).json()["state"] == "failed"
