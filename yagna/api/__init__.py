"""The node's REST API (FastAPI app + hypercorn trio server)."""

# First: FastAPI's OpenAPI models load when the schema is first asked for, hypercorn's HTTP/2 and
# WebSocket protocols with the first such connection (yagna.api.lean_fastapi).
from yagna.api.lean_fastapi import install as _install_lean_fastapi
from yagna.api.lean_fastapi import install_server as _install_lean_server

_install_lean_fastapi()
_install_lean_server()
