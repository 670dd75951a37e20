"""The lean FastAPI import (yagna.api.lean_fastapi): no OpenAPI models at start-up, the same schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

def _run(code: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_daemon_import_leaves_openapi_models_out() -> None:
    got = _run(
        """
        import json
        import yagna.node
        from yagna import stand_ins
        from yagna.api.lean_fastapi import HEAVY
        print(json.dumps(stand_ins.loaded(HEAVY)))
        """
    )
    assert got == []


def test_openapi_document_is_unchanged() -> None:
    """The schema built through the stand-ins equals the one built with FastAPI imported whole."""
    code = """
        import json, sys
        {first}
        from fastapi.openapi.utils import get_openapi
        from yagna.api import app as app_module
        from yagna import stand_ins
        routes = []
        for mod in (app_module.activity_routes, app_module.market_routes, app_module.payment_routes):
            for name in dir(mod):
                obj = getattr(mod, name)
                if type(obj).__name__ == "APIRouter":
                    routes += obj.routes
        doc = get_openapi(title="t", version="1", routes=routes)
        print(json.dumps({{"doc": doc}}))
    """
    lean = _run(code.format(first="import yagna.api"))
    whole = _run(code.format(first="import fastapi.openapi.models, fastapi.security"))
    assert lean["doc"]["paths"], "no routes found"
    assert lean == whole


def test_pydantic_v1_models_are_still_refused_and_usable() -> None:
    """pydantic.v1 is a stand-in until used: a v1 model still derives from the real class and is refused."""
    got = _run(
        """
        import json, sys
        import yagna.api.app
        from yagna import stand_ins
        from fastapi import FastAPI
        before = stand_ins.is_stand_in(sys.modules["pydantic.v1"])
        from pydantic import BaseModel
        from pydantic.v1 import BaseModel as V1Model
        class Old(V1Model):
            x: int
        real = type(Old).__module__, Old(x="3").x, Old.__mro__[1].__module__
        try:
            app = FastAPI()
            @app.post("/old")
            def old(body: Old) -> None: ...
            refused = None
        except Exception as exc:
            refused = type(exc).__name__
        class New(BaseModel):
            y: int
        from fastapi._compat.shared import is_pydantic_v1_model_class
        print(json.dumps({"before": before, "real": real, "refused": refused,
                          "v1": is_pydantic_v1_model_class(Old), "v2": is_pydantic_v1_model_class(New)}))
        """
    )
    assert got == {"before": True, "real": ["pydantic.v1.main", 3, "pydantic.v1.main"], "refused": "PydanticV1NotSupportedError",
                   "v1": True, "v2": False}


def test_http2_and_websocket_upgrades_load_hypercorns_protocols_on_first_use() -> None:
    """hypercorn's HTTP/2 and WebSocket protocols are stand-ins until a client asks for one."""
    got = _run(
        """
        import json, sys
        import httpx, trio
        from yagna import stand_ins
        from yagna.api.lean_fastapi import HEAVY
        from yagna.api.server import ApiServer, bind_api_socket
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/ping")
        async def ping() -> dict:
            return {"ok": True}

        async def main():
            before = stand_ins.loaded(HEAVY)
            api = ApiServer(app, bind_api_socket("127.0.0.1", 0))
            async with trio.open_nursery() as nursery:
                await nursery.start(api.run)
                async with httpx.AsyncClient(http1=False, http2=True) as client:  # HTTP/2, prior knowledge
                    resp = await client.get(api.url + "/ping")
                stream = await trio.open_tcp_stream("127.0.0.1", int(api.url.rsplit(":", 1)[1]))
                await stream.send_all(b"GET /ping HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                                      b"Connection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
                                      b"Sec-WebSocket-Version: 13\\r\\n\\r\\n")
                ws = (await stream.receive_some(4096)).split(b"\\r\\n")[0].decode()
                await stream.aclose()
                api.stop()
            return before, [resp.http_version, resp.json()], ws

        before, h2, ws = trio.run(main)
        print(json.dumps({"before": before, "h2": h2, "ws": ws,
                          "after": sorted(m for m in stand_ins.loaded(HEAVY) if m.startswith("hypercorn"))}))
        """
    )
    assert got == {"before": [], "h2": ["HTTP/2", {"ok": True}], "ws": "HTTP/1.1 403 ",
                   "after": ["hypercorn.protocol.h2", "hypercorn.protocol.ws_stream"]}
