"""The node's REST API (FastAPI app + hypercorn trio server)."""

# First: FastAPI's OpenAPI models load when the schema is first asked for.
from yagna.api.lean_fastapi import install as _install_lean_fastapi

_install_lean_fastapi()
