"""Import FastAPI without its OpenAPI models until the schema is asked for.

``fastapi.params`` imports ``fastapi.openapi.models`` (~60 pydantic models of
the OpenAPI 3.1 document) for one type annotation, and ``fastapi.applications``
imports ``fastapi.openapi.utils`` for ``get_openapi``, which runs only when
``GET /api/v1/openapi.json`` or ``/docs`` is served. That was about a third of
``import fastapi`` (docs/decisions.md, "Start-up: a lean FastAPI import"). Building
the routes imported ``pydantic.v1`` (~20 ms) to check that no parameter is a v1 model.
:func:`install` (called by :mod:`yagna.api.app` before it imports FastAPI)
registers stand-ins (:mod:`yagna.stand_ins`): ``Example`` is an
annotation-only class, ``get_openapi`` loads the real modules on its first
call. The API and its schema are unchanged (``tests/api/test_lean_fastapi.py``).
:func:`install_server` (called by :mod:`yagna.api.server`) does the same for
hypercorn's HTTP/2 and WebSocket protocols, loaded by the first such connection.
"""

from __future__ import annotations


from yagna import stand_ins

# fastapi.dependencies.utils imports fastapi.security.oauth2, whose package
# __init__ imports every security scheme.
DEFERRED_PACKAGES = ("fastapi.security",)

DEFERRED_MODULES: dict[str, dict[str, str]] = {
    # params, param_functions: ``openapi_examples: dict[str, Example] | None``;
    # security.base and security.oauth2: annotations, and the default argument
    # ``flows=OAuthFlows()`` of OAuth2 (built for real on first use).
    "fastapi.openapi.models": {"Example": "type", "SecurityBase": "type", "OAuth2": "type",
                               "OAuthFlows": "lazytype"},
    # applications: building the schema for /openapi.json.
    "fastapi.openapi.utils": {"get_openapi": "call"},
    # _compat.shared: every route parameter is checked against ``pydantic.v1.BaseModel`` to refuse v1
    # models; importing pydantic.v1 for that cost ~20 ms. None is a v1 model while pydantic.v1.main is
    # not loaded (any other name of pydantic.v1 loads the real package).
    "pydantic.v1": {"BaseModel": "absenttype:pydantic.v1.main"},
}

# hypercorn.protocol imports its HTTP/2 protocol (h2, priority, hpack) and its WebSocket stream (wsproto)
# for every server; our clients speak HTTP/1.1. An HTTP/2 connection (prior knowledge or an h2c upgrade)
# or a WebSocket upgrade constructs the class, which loads the real module then (~50 ms at start).
SERVER_MODULES: dict[str, dict[str, str]] = {
    "hypercorn.protocol.h2": {"H2Protocol": "call"},
    "hypercorn.protocol.ws_stream": {"WSStream": "call"},
    # hypercorn.typing: ``import h2.events`` for two annotations (~13 ms).
    "h2.events": {},
}

HEAVY = ("fastapi.openapi.models", "fastapi.openapi.utils", "pydantic.v1", "hypercorn.protocol.h2",
         "hypercorn.protocol.ws_stream", "h2.events", "h2.connection", "wsproto")

def install() -> None:
    """Register the stand-ins; a no-op once done or if FastAPI is already imported."""
    stand_ins.install_once("fastapi", DEFERRED_PACKAGES, DEFERRED_MODULES)


def install_server() -> None:
    """Register hypercorn's stand-ins (:data:`SERVER_MODULES`); a no-op once done or if its protocols are imported."""
    stand_ins.install_once("hypercorn.protocol", (), SERVER_MODULES)
