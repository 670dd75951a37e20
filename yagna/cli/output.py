"""How read commands print: JSON with ``--json``, else the text made for people."""

from __future__ import annotations

import json
from typing import Any

import click


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(text if text is not None else data)
