"""`yagna run IMAGE -- CMD` against real daemons and containers.

One network for the module: two honest providers and a third, the cheapest, that lies about its
results (``--test-fault wrong-results``: an extra stdout line, corrupted downloads), so that the
market picks it first and ``--redundancy 2`` must outvote it. Checked: the output streams while the
command runs, a fresh requestor is funded and says so, exit codes pass through (0, 7, 124 for a
timeout), two providers agree and the liar is named, files go in and out with their hashes, and
``--json`` says what ran where and what it cost.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.daemons import YAGNA, Daemon, run_cli, wait_until

IMAGE = "local/busybox:1"


@dataclass
class Net:
    root: Path
    req: Daemon
    honest: list[str]
    liar: str
    boot: str


def _offers_seen(req: Daemon, liar: str) -> bool:
    offers = req.api("GET", "/market/offers")
    cheap = [o for o in offers if o["provider_id"] == liar
             and o["properties"]["golem.com.pricing.model.linear.coeffs"][0] < 10**12]
    return len(offers) == 3 and len(cheap) == 1


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, test_image: str) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("run-net")
    started: list[Daemon] = []
    try:
        for i in range(1, 4):
            args = ["--role", "provider", "--activity-keepalive", "10"]
            args += ["--test-fault", "wrong-results"] if i == 3 else []
            args += ["--bootstrap", started[0].p2p_addr] if started else []
            started.append(Daemon(root / f"prov-{i}", args).start())
        liar = started[2]
        # The liar sells at a twentieth of the price: the market takes it first.
        run_cli("provider", "preset", "update", "default", "--price-cpu-hour", "0.001", "--price-hour", "0.0002",
                data_dir=liar.data_dir)
        req = Daemon(root / "req", ["--role", "requestor", "--bootstrap", started[0].p2p_addr]).start()
        started.append(req)
        wait_until(lambda: _offers_seen(req, liar.node_id), timeout=30, what="every offer, the liar's cheap")
        run_cli("payment", "fund", "--amount", "5", data_dir=req.data_dir)
        yield Net(root, req, [d.node_id for d in started[:2]], liar.node_id, started[0].p2p_addr)
    finally:
        for d in started:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.terminate()
        for d in started:
            d.stop(timeout=15)


def yagna_run(net: Net, *args: str, data_dir: Path | None = None, cwd: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*YAGNA, "run", IMAGE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=_env(data_dir or net.req.data_dir))


def _env(data_dir: Path) -> dict[str, str]:
    import os

    return {**os.environ, "YAGNA_DATA_DIR": str(data_dir)}


def test_output_streams_live_and_a_fresh_requestor_is_funded(net: Net, tmp_path: Path) -> None:
    fresh = Daemon(tmp_path / "fresh", ["--role", "requestor", "--bootstrap", net.boot]).start()
    try:
        wait_until(lambda: _offers_seen(fresh, net.liar), timeout=30, what="the fresh requestor sees the offers")
        proc = subprocess.Popen([*YAGNA, "--data-dir", str(fresh.data_dir), "run", IMAGE, "--",
                                 "sh", "-c", "echo first; sleep 2; echo second"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            lines: list[tuple[float, bytes, bool]] = []  # (when, line, the CLI still running)
            for line in iter(proc.stdout.readline, b""):
                lines.append((time.monotonic(), line, proc.poll() is None))
            err = proc.stderr.read().decode()
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0, err
        text = [line for _, line, _ in lines]
        assert text[:2] == [b"first\n", b"second\n"], (text, err)
        first_at, _, running = lines[0]
        assert running, "the first line arrived only when the CLI had ended"
        assert first_at <= lines[1][0]
        assert "yagna: funded 1 test tokens (no value)" in err and "--no-fund" in err, err
        status = fresh.api("GET", "/payment/status")
        assert 0 < status["balance"]["total_units"] <= 10**18  # funded once, to the budget
    finally:
        fresh.stop(timeout=15)


def test_exit_codes_pass_through(net: Net) -> None:
    ok = yagna_run(net, "-q", "--data-dir", str(net.req.data_dir), "--", "true",  # --data-dir after `run` too
                   data_dir=net.root / "not-a-node")
    assert ok.returncode == 0, ok.stderr
    assert "yagna:" not in ok.stderr  # --quiet: nothing but the command's own output
    seven = yagna_run(net, "--env", "GREETING=hello there", "--", "sh", "-c", "echo \"$GREETING\"; exit 7")
    assert seven.returncode == 7, seven.stderr
    assert seven.stdout.startswith("hello there\n") and "exit code 7" in seven.stderr
    slow = yagna_run(net, "--timeout", "1s", "--retries", "0", "--json", "--", "sleep", "30")
    assert slow.returncode == 124, slow.stderr
    summary = json.loads(slow.stdout)
    assert summary["status"] == "timeout" and summary["exit_code"] == 124 and summary["command_exit_code"] is None
    assert "timeout of 1 s" in summary["error"]


def test_redundancy_2_agrees_on_two_providers_and_names_the_liar(net: Net) -> None:
    proc = yagna_run(net, "--redundancy", "2", "--json", "--", "sh", "-c", "echo verified; echo note >&2")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)  # stdout is the summary alone; the command's output went to stderr
    assert s["status"] == "ok" and s["exit_code"] == s["command_exit_code"] == 0
    assert sorted(s["provider_ids"]) == sorted(net.honest) and s["provider_id"] in net.honest
    assert s["disagreed"] == [net.liar] and s["verification"] == "2 of 3 result(s) agree; 1 disagreed"
    assert {a["provider_id"] for a in s["attempts"]} == {*net.honest, net.liar}
    assert s["stdout_sha256"] == hashlib.sha256(b"verified\n").hexdigest()
    assert "verified\n" in proc.stderr and "note\n" in proc.stderr
    assert 0 < float(s["cost"]) <= 1 and s["cost_units"] > 0 and s["budget"] == "1" and s["seconds"] > 0
    assert s["funded"] is None  # the module's requestor has funds


def test_upload_download_round_trip_with_hashes(net: Net, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(hashlib.sha256(b"seed").digest() * 4000)
    expected = hashlib.sha256(data.read_bytes() * 2).hexdigest()
    script = ("cat /work/in/data.bin /work/in/copy/renamed.bin > /work/out/both.bin && mkdir -p /work/out/sub && "
              "sha256sum /work/out/both.bin | cut -d' ' -f1 > /work/out/sub/sum.txt")
    proc = yagna_run(net, "--redundancy", "2", "--upload", str(data), "--upload", f"{data}:copy/renamed.bin",
                     "--download", "both.bin", "--download", "/work/out/sub/sum.txt:results/", "--json",
                     "--", "sh", "-c", script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    both, total = tmp_path / "both.bin", tmp_path / "results" / "sum.txt"
    assert both.read_bytes() == data.read_bytes() * 2 and total.read_text().strip() == expected
    assert s["downloads"] == [
        {"remote": "/work/out/both.bin", "local": str(both), "sha256": expected, "size": 2 * data.stat().st_size},
        {"remote": "/work/out/sub/sum.txt", "local": str(total),
         "sha256": hashlib.sha256(total.read_bytes()).hexdigest(), "size": total.stat().st_size},
    ]
    assert net.liar not in s["provider_ids"] and len(s["provider_ids"]) == 2  # its corrupted files lost the vote
