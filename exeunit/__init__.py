"""exeunit package (see docs/ARCHITECTURE.md)."""
