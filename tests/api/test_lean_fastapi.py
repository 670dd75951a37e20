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
