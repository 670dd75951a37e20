"""`yagna dashboard`: the link it prints, and when it opens a browser."""

from __future__ import annotations

import webbrowser
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from yagna.cli.dashboard_cmd import dashboard

URL = "http://127.0.0.1:7465/dashboard/login?token=abc"


class _Client:
    location = SimpleNamespace(api_url="http://127.0.0.1:7465/")

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str) -> dict[str, Any]:
        self.calls.append((method, path))
        return {"token": "abc", "path": "/dashboard/login?token=abc", "expires_in_s": 60.0}


def _run(*args: str) -> tuple[str, _Client]:
    client = _Client()
    result = CliRunner().invoke(dashboard, list(args), obj=SimpleNamespace(client=lambda: client))
    assert result.exit_code == 0, result.output
    return result.output, client


def test_print_prints_only_the_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail("no browser with --print"))
    out, client = _run("--print")
    assert out == URL + "\n" and client.calls == [("POST", "/dashboard/login-token")]


def test_no_display_prints_the_link_and_the_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail("no text browser on a server"))
    out, _ = _run()
    assert URL in out and "ssh -L 7465:127.0.0.1:7465" in out and "within 60 s" in out


def test_display_opens_a_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    opened: list[str] = []

    def open_(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", open_)
    out, _ = _run()
    assert opened == [URL] and out.startswith("opened the dashboard") and URL in out
