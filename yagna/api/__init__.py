"""The node's REST API (FastAPI app + hypercorn trio server)."""
