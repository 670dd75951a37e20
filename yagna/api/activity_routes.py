"""REST routes of the exe-unit, requestor side (for the SDK) and provider side (status).

Requestor flow::

    POST   /activity {agreement_id}                          -> the activity (state "new")
    POST   /activity/{id}/exec {script: [...]}               -> {batch_id}
    GET    /activity/{id}/exec/{batch_id}/events?after=N&timeout=S   (long poll: output lines, results)
    POST   /activity/{id}/exec/{batch_id}/wait?timeout=S     -> {done, results, error}
    GET    /activity/{id}                                     -> state and usage (asks the provider)
    DELETE /activity/{id}                                     -> terminated; the container is removed

Script commands (a list of one-key maps)::

    {"deploy": {"image": "local/busybox:1", "env": {}}}   {"start": {}}
    {"run": {"argv": ["sh", "-c", "echo hi"], "env": {}, "workdir": "/work", "timeout": 60}}
    {"transfer_in": {"from": "/local/file", "to": "/work/in/file"}}
    {"transfer_out": {"from": "/work/out/file", "to": "/local/dest"}}
    {"terminate": {}}

A malformed script is a 400 naming the command (``index``) and ``field``.

Output is binary-safe: the provider sends the exact bytes a command wrote.
Here each output event has ``data`` (the bytes as text, invalid UTF-8
replaced by U+FFFD) and ``data_b64`` (the exact bytes, base64); each result
has ``stdout``/``stderr`` as text and ``stdout_b64``/``stderr_b64`` exact,
``stdout_sha256`` of the exact bytes, and ``stdout_dropped``/``stderr_dropped``:
bytes cut before the kept tail (64 KiB per stream per command). A ``dropped``
event says which events a slow reader missed (and, from the provider, how
many ``bytes``). Reading events ``after=N`` tells the node the reader has
every event up to N: they are forgotten (one reader per batch).

Errors: ``bad-reply`` (502) when the provider answered with a malformed
message (the activity or batch failed, the node is fine),
``provider-unreachable`` (502), unknown ids (404), ``activity-ended`` and
the provider's refusals (409).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from exeunit.errors import ScriptError, TransferRefused
from yagna.activity_service.requestor import ActivityFailed
from yagna.api.auth import PREFIX, Auth


router = APIRouter(prefix=PREFIX)


class ActivityIn(BaseModel):
    agreement_id: str = Field(min_length=1, max_length=128)


class ExecIn(BaseModel):
    script: list[Any] = Field(description="exe-script commands, see the module docs", max_length=100)


def _requestor(request: Request):  # type: ignore[no-untyped-def]
    svc = request.app.state.node.activity
    if svc.requestor is None:
        raise HTTPException(409, "this node runs as a provider only; start it with --role requestor or both")
    return svc.requestor


def _provider(request: Request):  # type: ignore[no-untyped-def]
    svc = request.app.state.node.activity
    if svc.provider is None:
        raise HTTPException(409, "this node does not sell; start it with --role provider or both")
    return svc.provider


@router.post("/activity", tags=["activity"], status_code=201)
async def create_activity(body: ActivityIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _requestor(request).create(body.agreement_id)  # type: ignore[no-any-return]


@router.get("/activity", tags=["activity"])
async def list_activities(request: Request, _: Auth) -> list[dict[str, Any]]:
    return _requestor(request).list()  # type: ignore[no-any-return]


@router.get("/activity/{activity_id}", tags=["activity"])
async def get_activity(activity_id: str, request: Request, _: Auth) -> dict[str, Any]:
    return await _requestor(request).state(activity_id)  # type: ignore[no-any-return]


@router.delete("/activity/{activity_id}", tags=["activity"])
async def destroy_activity(activity_id: str, request: Request, _: Auth) -> dict[str, Any]:
    return await _requestor(request).destroy(activity_id)  # type: ignore[no-any-return]


@router.post("/activity/{activity_id}/exec", tags=["activity"], status_code=201)
async def exec_script(activity_id: str, body: ExecIn, request: Request, _: Auth) -> dict[str, Any]:
    return await _requestor(request).exec(activity_id, body.script)  # type: ignore[no-any-return]


@router.get("/activity/{activity_id}/exec/{batch_id}/events", tags=["activity"])
async def batch_events(activity_id: str, batch_id: str, request: Request, _: Auth,
                       after: int = Query(0, ge=0, lt=2**62),
                       timeout: float = Query(0, allow_inf_nan=False)) -> list[dict[str, Any]]:
    return await _requestor(request).events(activity_id, batch_id, after, min(max(timeout, 0.0), 60.0))  # type: ignore[no-any-return]


@router.post("/activity/{activity_id}/exec/{batch_id}/wait", tags=["activity"])
async def batch_wait(activity_id: str, batch_id: str, request: Request, _: Auth,
                     timeout: float = Query(60, allow_inf_nan=False)) -> dict[str, Any]:
    return await _requestor(request).wait(activity_id, batch_id, min(max(timeout, 0.0), 3600.0))  # type: ignore[no-any-return]


@router.get("/provider/activities", tags=["provider"])
async def provider_activities(request: Request, _: Auth) -> list[dict[str, Any]]:
    return await _provider(request).list()  # type: ignore[no-any-return]


_STATUS = {"unknown-activity": 404, "unknown-agreement": 404, "unknown-batch": 404, "provider-unreachable": 502,
           "bad-reply": 502}


def install(app: FastAPI) -> None:
    app.include_router(router)

    @app.exception_handler(ScriptError)
    async def script_error(request: Request, exc: ScriptError) -> JSONResponse:
        return JSONResponse({"error": "bad_script", "message": str(exc), "index": exc.index, "field": exc.field},
                            status_code=400)

    @app.exception_handler(TransferRefused)
    async def transfer_refused(request: Request, exc: TransferRefused) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=400)

    @app.exception_handler(ActivityFailed)
    async def activity_failed(request: Request, exc: ActivityFailed) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=_STATUS.get(exc.code, 409))
