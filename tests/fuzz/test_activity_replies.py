"""Fuzz the activity client: a hostile provider answers create, exec, events, state and destroy
with garbage; the requestor raises only :class:`ActivityFailed` and its batch pumps and keep-alive
stay up (issue 11 rows 2 and 3). See ``test_replies.py`` for the set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from yagna.activity_service.protocol import ACTIVITY
from yagna.activity_service.requestor import ActivityFailed

from .strategies import FUZZ
from .test_activity_messages import PAGE
from .test_protocols import HEX, World, world
from .test_replies import Rogue, _replies


ACTIVITY_REPLIES: dict[str, list[dict[str, object]]] = {
    "create": [{"activity_id": "a" * 32, "keepalive_s": 30.0}],
    "exec": [{"batch_id": "b1"}],
    "events": [PAGE, {"events": [], "done": False, "receipt": None}],
    "state": [{"state": "ready", "reason": None, "usage": {"golem.usage.duration_sec": 1.0}}],
    "destroy": [{"state": "terminated", "usage": None}],
}
"""Valid answers of the activity protocol (``exeunit.messages``) to start the mutations from."""


async def _activity(w: World, n: int) -> None:
    requestor = w.req.activity.requestor
    assert requestor is not None
    try:
        activity_id = (await requestor.create(w.agreement_id))["activity_id"]
    except ActivityFailed:
        return
    try:
        batch = await requestor.exec(activity_id, [{"deploy": {"image": "sha256:" + HEX}}, {"start": {}},
                                                   {"run": {"argv": ["echo", str(n)]}}])
        await requestor.wait(activity_id, batch["batch_id"], 2.0)
        requestor.view(activity_id)
    except ActivityFailed:
        pass
    for call in (requestor.state, requestor.destroy):
        try:
            await call(activity_id)
        except ActivityFailed:
            pass


async def test_activity_client_survives_garbage_replies(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        rogue = Rogue()
        w.prov.tap._rr.register(ACTIVITY, rogue)  # the provider turns hostile
        token = trio.lowlevel.current_trio_token()
        count = iter(range(10**9))

        @FUZZ
        @given(_replies(ACTIVITY_REPLIES), st.text(alphabet="0123456789abcdef", min_size=1, max_size=8))
        def one(replies: dict[str, Any], suffix: str) -> None:
            n = next(count)
            replies = dict(replies)
            for op in ("create", "exec"):  # fresh ids, so that each example is a new activity and batch
                if isinstance(replies[op], dict):
                    key = "activity_id" if op == "create" else "batch_id"
                    if isinstance(replies[op].get(key), str):
                        replies[op] = {**replies[op], key: f"{replies[op][key]}-{n}-{suffix}"[:128]}
            rogue.replies = replies
            trio.from_thread.run(_activity, w, n, trio_token=token)

        await trio.to_thread.run_sync(one)
        await trio.sleep(0.5)  # the keep-alive pings what is still open, with the last garbage
