"""requestor_sdk package (see docs/ARCHITECTURE.md)."""
