"""market package (see docs/ARCHITECTURE.md)."""
