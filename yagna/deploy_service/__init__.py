"""Deployments: long-running services from a manifest, on the requestor\x27s side (docs/services.md)."""
