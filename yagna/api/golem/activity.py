"""Golem's requestor activity API (``/activity-api/v1``) as a translation onto our exe-unit.

``POST /activity`` takes a bare JSON string (the agreement id) and answers one (the activity
id). Golem's exe-script (``{"text": "<JSON list>"}``) is translated command by command:
``deploy {}`` deploys the agreement's task package (``golem.srv.comp.task_package``),
``start`` starts it, ``run {entry_point, args, capture}`` runs ``[entry_point, *args]``,
``terminate`` ends it. Results are polled cumulatively from index 0 (yapapi slices from its
last index) with captured stdout/stderr whatever the capture mode; a command that exits non-zero
is an ``Error`` result, as in Golem.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import trio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from exeunit.commands import VOLUME_DIR
from exeunit.errors import ScriptError
from yagna.activity_service.requestor import ActivityFailed
from yagna.api.auth import Auth
from yagna.api.golem.common import golem_error, iso, json_string
from yagna.api.golem.gftp_routes import urls as gftp_urls

router = APIRouter(prefix="/activity-api/v1", tags=["golem activity"])

TASK_PACKAGE = "golem.srv.comp.task_package"
MAX_SCRIPT_TEXT = 256 * 1024
MAX_POLL_S = 60.0
_STATES = {"new": "Initialized", "deployed": "Deployed", "ready": "Ready", "running": "Ready",
           "terminated": "Terminated", "failed": "Terminated"}


class GolemScriptError(ValueError):
    """A Golem exe-script command this node cannot translate (the message says which and why)."""


def _requestor(request: Request) -> Any:
    activity = request.app.state.node.activity
    return activity.requestor if activity is not None else None


async def _agreement_id(request: Request) -> str | None:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return None
    if isinstance(body, dict):  # newer clients: {"agreementId": ..., "requestorPubKey": ...}
        body = body.get("agreementId")
    return body if isinstance(body, str) and body else None


@router.post("/activity", status_code=201)
async def golem_create_activity(request: Request, _: Auth) -> Response:
    requestor = _requestor(request)
    if requestor is None:
        return golem_error(400, "this node does not buy (it runs as a provider only)")
    agreement_id = await _agreement_id(request)
    if agreement_id is None:
        return golem_error(400, 'the body is the agreement id as a JSON string ("...")')
    try:
        created = await requestor.create(agreement_id)
    except ActivityFailed as exc:
        return golem_error(404 if exc.code == "unknown-agreement" else 409, str(exc))
    except Exception as exc:  # PaymentRequired and the like: the deposit could not be locked
        code = getattr(exc, "code", None)
        if code is None:
            raise
        return golem_error(409, str(exc))
    return json_string(str(created["activity_id"]), 201)


@router.delete("/activity/{activity_id}")
async def golem_destroy_activity(activity_id: str, request: Request, _: Auth) -> Any:
    try:
        await _requestor(request).destroy(activity_id)
    except ActivityFailed as exc:
        return golem_error(404, str(exc))
    return None


def _container_path(url: object, index: int) -> str:
    """``container:/golem/output/x`` -> ``/work/vol/golem/output/x``: a Golem image's volumes are
    linked into the container's work directory (exeunit/gvmi.py)."""
    if not isinstance(url, str) or not url.startswith("container:/"):
        raise GolemScriptError(f"command {index}: transfer needs a container:/... path on one side")
    return VOLUME_DIR + "/" + url.removeprefix("container:").lstrip("/")


def translate(commands: object, task_package: str | None,
              gftp: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Golem's exe-script commands -> ours; :class:`GolemScriptError` names what cannot run here.

    ``gftp``: the URLs our ``gftp`` minted (yagna/api/golem/gftp_routes.py), for ``transfer``."""
    if not isinstance(commands, list) or not commands:
        raise GolemScriptError("an exe-script is a non-empty JSON list of commands")
    out: list[dict[str, Any]] = []
    for index, cmd in enumerate(commands):
        if not (isinstance(cmd, dict) and len(cmd) == 1):
            raise GolemScriptError(f"command {index}: each command is a map with one key")
        (name, args), = cmd.items()
        args = args if isinstance(args, dict) else {}
        if name == "deploy":
            if not task_package:
                raise GolemScriptError(f"command {index}: deploy needs the agreement's {TASK_PACKAGE}")
            if task_package.startswith("hash:"):  # a Golem VM image: the provider downloads and checks it
                out.append({"deploy": {"package": task_package}})
            else:  # a container image name (ours, or `vm.repo(image_url=...)` pointing at one)
                out.append({"deploy": {"image": task_package}})
        elif name == "start":
            out.append({"start": {}})
        elif name == "run":
            entry, rest = args.get("entry_point"), args.get("args", [])
            if not isinstance(entry, str) or not entry or not isinstance(rest, list) \
                    or not all(isinstance(a, str) for a in rest):
                raise GolemScriptError(f"command {index}: run needs entry_point (a string) and args (strings)")
            out.append({"run": {"argv": [entry, *rest]}})
        elif name == "terminate":
            out.append({"terminate": {}})
        elif name == "transfer":
            src, dst = args.get("from"), args.get("to")
            known = gftp or {}
            if isinstance(src, str) and src in known and known[src].kind == "publish":
                out.append({"transfer_in": {"from": known[src].path, "to": _container_path(dst, index)}})
            elif isinstance(dst, str) and dst in known and known[dst].kind == "receive":
                out.append({"transfer_out": {"from": _container_path(src, index), "to": known[dst].path}})
            else:
                raise GolemScriptError(f"command {index}: transfer between {str(src)[:80]!r} and {str(dst)[:80]!r}: "
                                       "one side must be a URL this node's gftp published (in) or receives (out)")
        else:
            raise GolemScriptError(f"command {index}: {str(name)[:40]!r} is not supported by this node")
    return out


@router.post("/activity/{activity_id}/exec")
async def exec_script(activity_id: str, body: dict[str, Any], request: Request, _: Auth) -> Response:
    requestor = _requestor(request)
    text = body.get("text")
    if not isinstance(text, str) or len(text) > MAX_SCRIPT_TEXT:
        return golem_error(400, f'the body is {{"text": "<JSON list of commands>"}} (at most {MAX_SCRIPT_TEXT} characters)')
    try:
        view = requestor.view(activity_id)
    except ActivityFailed as exc:
        return golem_error(404, str(exc))
    try:
        agreement = await request.app.state.node.market.get_agreement(view["agreement_id"])
        package = agreement["demand_properties"].get(TASK_PACKAGE)
        script = translate(json.loads(text), package if isinstance(package, str) else None, gftp_urls(request))
    except (ValueError, GolemScriptError) as exc:
        return golem_error(400, str(exc))
    try:
        started = await requestor.exec(activity_id, script)
        _remember_script(request, str(started["batch_id"]), json.loads(text))
    except ScriptError as exc:
        return golem_error(400, str(exc))
    except ActivityFailed as exc:
        return golem_error(409 if exc.code == "activity-ended" else 500, str(exc))
    return json_string(str(started["batch_id"]))


def _result(r: dict[str, Any], finished: bool) -> dict[str, Any]:
    error = r.get("error")
    code = r.get("exit_code")
    ok = not error and (code in (None, 0))
    out: dict[str, Any] = {"index": int(r["index"]), "eventDate": iso(), "result": "Ok" if ok else "Error",
                           "stdout": (r.get("stdout") or b"").decode("utf-8", "replace"),
                           "stderr": (r.get("stderr") or b"").decode("utf-8", "replace"),
                           "isBatchFinished": finished}
    if not ok:
        out["message"] = str(error) if error else f"ExeScript command exited with code {code}"
    return out


@router.get("/activity/{activity_id}/exec/{batch_id}")
async def results(activity_id: str, batch_id: str, request: Request, _: Auth,
                  timeout: float = Query(0.0, ge=0), commandIndex: int | None = Query(None, ge=0)) -> Any:  # noqa: N803
    """Results so far, cumulative from index 0; waits up to ``timeout`` s for the next one. With
    ``Accept: text/event-stream`` (yapapi's ``stream_output=True``): the batch's runtime events as
    server-sent events, until it ends."""
    requestor = _requestor(request)
    try:
        done_before = requestor.progress(activity_id, batch_id)
    except ActivityFailed as exc:
        return golem_error(404, str(exc))
    if "text/event-stream" in request.headers.get("accept", ""):
        commands = _scripts(request).get(batch_id, [])
        return StreamingResponse(_runtime_events(requestor, activity_id, batch_id, commands), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})
    deadline = trio.current_time() + min(timeout, MAX_POLL_S)
    count = _finished(done_before[0])
    while True:
        got, done, error = requestor.progress(activity_id, batch_id)
        if _finished(got) > count or done or trio.current_time() >= deadline:
            break
        await trio.sleep(0.05)
    n = _finished(got)
    if not done:  # the last result only with the batch's end, and a download's only once its file is here
        n = min(n, len(got) - 1, *(i for i, r in enumerate(got[:n]) if r and r.get("command") == "transfer_out"))
    out = [_result(r, done and i == n - 1 and error is None) for i, r in enumerate(got[:n]) if r is not None]
    if done and error is not None and n < len(got):  # the batch broke off: its next command failed
        out.append({"index": n, "eventDate": iso(), "result": "Error", "message": error, "isBatchFinished": True})
    if commandIndex is not None:
        out = [r for r in out if r["index"] == commandIndex]
    return out


MAX_SCRIPTS_KEPT = 1024


def _scripts(request: Request) -> dict[str, list[Any]]:
    table = getattr(request.app.state, "golem_scripts", None)
    if table is None:
        table = request.app.state.golem_scripts = {}
    return table  # type: ignore[no-any-return]


def _remember_script(request: Request, batch_id: str, commands: list[Any]) -> None:
    """The Golem commands of a batch, for its runtime events (``started`` names its command)."""
    table = _scripts(request)
    table[batch_id] = commands
    while len(table) > MAX_SCRIPTS_KEPT:
        del table[next(iter(table))]


async def _runtime_events(requestor: Any, activity_id: str, batch_id: str,
                          commands: list[Any]) -> AsyncIterator[bytes]:
    """Our batch's events as Golem's ``runtime`` events: started, stdout, stderr, finished."""
    after = 0
    while True:
        try:
            events = await requestor.events(activity_id, batch_id, after, 5.0)
        except ActivityFailed:
            return
        for ev in events:
            after = max(after, int(ev.get("seq", after)))
            kind = ev.get("kind")
            if kind == "batch_done":
                return
            body: dict[str, Any] | None = None
            if kind == "started":
                index = int(ev.get("index", 0))
                body = {"started": {"command": commands[index] if index < len(commands) else {"run": {}}}}
            elif kind in ("stdout", "stderr"):
                body = {kind: ev.get("data", "")}
            elif kind == "finished":
                r = ev.get("result") or {}
                code = r.get("exit_code")
                body = {"finished": {"return_code": code if isinstance(code, int) else (0 if not r.get("error") else -1),
                                     "message": r.get("error")}}
            if body is not None:
                yield f"event: runtime\ndata: {json.dumps({'index': ev.get('index', 0), 'kind': body})}\n\n".encode()


def _finished(results: list[dict[str, Any] | None]) -> int:
    """How many results are known from index 0 without a gap."""
    n = 0
    while n < len(results) and results[n] is not None:
        n += 1
    return n


@router.get("/activity/{activity_id}/state")
async def state(activity_id: str, request: Request, _: Auth) -> Any:
    requestor = _requestor(request)
    try:
        view = await requestor.state(activity_id)
    except ActivityFailed as exc:
        if exc.code != "unknown-activity":
            try:
                view = requestor.view(activity_id)
            except ActivityFailed:
                return golem_error(404, str(exc))
        else:
            return golem_error(404, str(exc))
    out: dict[str, Any] = {"state": [_STATES.get(str(view["state"]), "Unresponsive"), None]}
    if view.get("reason"):
        out["reason"] = str(view["reason"])[:200]
    return out


@router.get("/activity/{activity_id}/usage")
async def usage(activity_id: str, request: Request, _: Auth) -> Any:
    try:
        view = await _requestor(request).state(activity_id)
    except ActivityFailed as exc:
        return golem_error(404, str(exc))
    u = view.get("usage") or {}  # Golem's usage vector, as the offers list it: cpu seconds, duration seconds
    return {"currentUsage": [float(u.get("golem.usage.cpu_sec", 0.0)), float(u.get("golem.usage.duration_sec", 0.0))],
            "timestamp": int(time.time())}
