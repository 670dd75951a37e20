"""``yagna run``'s own logic without a network: options, the live stream, exit codes (e2e/test_run.py: real)."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from requestor_sdk import Attempt, AttemptFinished, Output, Task, TaskResult
from yagna.cli.main import cli
from yagna.cli.run_cmd import (
    EXIT_TIMEOUT, EXIT_YAGNA, LiveOutput, exit_code_for, parse_download, parse_env, parse_upload,
)

A, B, C = "12D3KooWA", "12D3KooWB", "12D3KooWC"
TASK = Task("run", ["true"])


def test_upload_names(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("x")
    assert parse_upload(str(f)) == ("data.txt", f)
    assert parse_upload(f"{f}:other.txt") == ("other.txt", f)
    assert parse_upload(f"{f}:/work/in/sub/y.txt") == ("sub/y.txt", f)
    for bad in (f"{f}:/etc/passwd", f"{f}:../x", f"{f}:/work/in", str(tmp_path / "missing")):
        with pytest.raises(click.BadParameter):
            parse_upload(bad)


def test_download_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_download("r.txt") == ("r.txt", tmp_path / "r.txt")
    assert parse_download("/work/out/a/r.txt") == ("a/r.txt", tmp_path / "r.txt")
    assert parse_download("r.txt:got.txt") == ("r.txt", tmp_path / "got.txt")
    assert parse_download("r.txt:dir/") == ("r.txt", tmp_path / "dir" / "r.txt")
    (tmp_path / "existing").mkdir()
    assert parse_download("r.txt:existing") == ("r.txt", tmp_path / "existing" / "r.txt")
    for bad in ("/work/in/r.txt", "../r.txt", "/work/out/"):
        with pytest.raises(click.BadParameter):
            parse_download(bad)


def test_env() -> None:
    assert parse_env(("A=1", "B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(click.BadParameter):
        parse_env(("NOVALUE",))


def _result(*attempts: Attempt, exit_code: int | None = None, providers: tuple[str, ...] = (),
            stdout: str = "") -> TaskResult:
    return TaskResult(TASK, status="ok" if exit_code == 0 else "failed", reason=None if providers else "why",
                      exit_code=exit_code, providers=providers, attempts=list(attempts), stdout=stdout)


def test_exit_codes() -> None:
    ok = Attempt(A, "g1", outcome="success", exit_code=7)
    assert exit_code_for(_result(ok, exit_code=0, providers=(A,))) == (0, None)
    assert exit_code_for(_result(ok, exit_code=7, providers=(A,))) == (7, None)
    timeout = Attempt(B, "g2", outcome="timeout")
    assert exit_code_for(_result(ok, timeout)) == (EXIT_TIMEOUT, "why")
    assert exit_code_for(_result(timeout, Attempt(C, "g3", outcome="disagreement"))) == (EXIT_YAGNA, "why")
    assert exit_code_for(_result()) == (EXIT_YAGNA, "why")
    assert exit_code_for(None) == (EXIT_YAGNA, "the command did not run")


def test_live_output_streams_one_provider_and_replays_the_accepted_result() -> None:
    out, err, said = io.StringIO(), io.StringIO(), []
    live = LiveOutput(out, err, said.append)
    live(Output("run", A, "stdout", "a1\n"))
    live(Output("run", B, "stdout", "b1\n"))  # a second provider's output is not interleaved
    live(Output("run", A, "stderr", "a-err\n"))
    assert out.getvalue() == "a1\n" and err.getvalue() == "a-err\n"
    live(AttemptFinished("run", A, "failure", "provider vanished"))
    assert "does not count" in said[-1]
    live(Output("run", B, "stdout", "b2\n"))  # B was already half-way: not streamed from its middle
    live(Output("run", C, "stdout", "c1\n"))  # C starts after A failed: streamed
    assert out.getvalue() == "a1\nc1\n" and live.provider == C
    live.replay(_result(exit_code=0, providers=(C,), stdout="c1\n"))
    assert out.getvalue() == "a1\nc1\n"  # what was streamed is the accepted result: nothing more
    live.replay(_result(exit_code=0, providers=(A, B), stdout="right\n"))
    assert out.getvalue().endswith("right\n") and "accepted result" in said[-1]


def test_usage_errors_exit_2_before_anything_is_bought(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["run", "img"], ["run", "img", "--timeout", "soon", "--", "true"],
                 ["run", "img", "--budget", "-1", "--", "true"], ["run", "img", "--env", "X", "--", "true"],
                 ["run", "img", "--upload", str(tmp_path / "nope"), "--", "true"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)


def test_no_node_is_exit_125_with_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    for var in ("YAGNA_DATA_DIR", "YAGNA_API_URL", "YAGNA_APPKEY"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(cli, ["run", "--data-dir", str(tmp_path / "none"), "img", "--", "true"])
    assert result.exit_code == EXIT_YAGNA
    assert "no node is running with data dir" in result.output and "yagna service run" in result.output
