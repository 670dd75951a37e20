"""``yagna dashboard``: open the node's dashboard through a one-time login link."""

from __future__ import annotations

import os
import sys
from typing import Any

import click


def _has_gui() -> bool:
    """Whether a graphical browser can open here (on a server over ssh, Python would start a text one)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("dashboard")
@click.option("--print", "print_only", is_flag=True, help="Only print the link; open no browser.")
@click.pass_obj
def dashboard(obj: Any, print_only: bool) -> None:
    """Open the node's dashboard in a browser (a login link that works once, for 60 s)."""
    client = obj.client()
    link = client.call("POST", "/dashboard/login-token")
    url = f"{client.location.api_url.rstrip('/')}{link['path']}"
    if print_only:
        click.echo(url)
        return
    import webbrowser

    opened = _has_gui() and webbrowser.open(url)
    life = f"works once, within {link['expires_in_s']:.0f} s"
    if opened:
        click.echo(f"opened the dashboard in a browser; the login link ({life}):\n{url}")
    else:
        from urllib.parse import urlsplit

        port = urlsplit(url).port
        click.echo(f"no browser to open here; open this login link ({life}) in a browser on this machine:\n{url}\n"
                   f"(from another machine, forward the port first: ssh -L {port}:127.0.0.1:{port} <this machine>)")
