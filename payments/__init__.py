"""payments package (see docs/ARCHITECTURE.md)."""
