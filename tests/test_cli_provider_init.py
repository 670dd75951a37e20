"""``yagna provider init`` (non-interactive and prompted) and ``yagna provider doctor``."""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from exeunit.docker import selfcheck
from market.capacity import machine_capacity
from yagna.cli.main import cli
from yagna.cli.provider_init import price_hint

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CONTRACT = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from yagna import settings

    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    for name in ("YAGNA_DATA_DIR", "YAGNA_CONFIG", "YAGNA_API_URL", "YAGNA_APPKEY"):
        monkeypatch.delenv(name, raising=False)


def init(data_dir: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "provider", "init", *args], env=env, input=input)


def written(data_dir: Path) -> dict[str, object]:
    return tomllib.loads((data_dir / "config.toml").read_text())


def test_yes_caps_capacity_at_the_machine_and_writes_the_config(tmp_path: Path) -> None:
    machine = machine_capacity(tmp_path)
    r = init(tmp_path, "--yes", "--no-docker-check", "--max-threads", "100000", "--max-mem-gib", "1.5",
             "--max-storage-gib", "3", "--threads", "64", "--price-cpu-hour", "0.05", "--price-hour", "0.01",
             "--subnet", "lab")
    assert r.exit_code == 0, r.output
    assert f"capped at what this machine has: {machine.threads} threads (asked for 100000)" in r.output
    assert f"this machine: {machine.threads} threads" in r.output
    assert "no node is running, so no hint is available" in r.output
    assert f"next: yagna service run --data-dir {tmp_path}" in r.output
    got = written(tmp_path)
    assert got["node"] == {"role": "provider"}
    assert got["market"] == {"subnets": ["lab"]}
    assert got["provider"] == {"max_threads": machine.threads, "max_mem_gib": 1.5, "max_storage_gib": 3.0,
                               "preset": got["provider"]["preset"]}  # type: ignore[index]
    preset = got["provider"]["preset"]  # type: ignore[index]
    assert preset == {"name": "default", "threads": machine.threads, "mem_gib": 1.0, "storage_gib": 2.0,
                      "price_cpu_hour": "0.05", "price_hour": "0.01", "start_fee": "0"}
    assert got["payment"] == {"driver": "testnet-ledger"}
    # the daemon's view of it: the preset it will create at start
    from yagna import settings

    config = settings.node_config(settings.load(tmp_path, env={}), tmp_path)
    assert config.provider_preset is not None and config.provider_preset.subnet == "lab"


def test_run_again_changes_only_what_is_given(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# hand-written\n[net]\nmax_peers = 16  # mine\n")
    assert init(tmp_path, "--yes", "--no-docker-check", "--max-threads", "1").exit_code == 0
    r = init(tmp_path, "--yes", "--no-docker-check", "--fixed-price-hour", "0.2")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "config.toml").read_text()
    assert text.startswith("# hand-written\n[net]\nmax_peers = 16  # mine\n")
    preset = written(tmp_path)["provider"]["preset"]  # type: ignore[index]
    assert preset["fixed_price_hour"] == "0.2" and "price_cpu_hour" not in preset
    assert written(tmp_path)["provider"]["max_threads"] == 1  # type: ignore[index]


def test_erc20_needs_its_chain(tmp_path: Path) -> None:
    r = init(tmp_path, "--yes", "--no-docker-check", "--payment-driver", "erc20", "--rpc-url", "http://127.0.0.1:8545")
    assert r.exit_code != 0 and "the erc20 payment driver needs --token" in str(r.exception)
    assert not (tmp_path / "config.toml").exists()
    r = init(tmp_path, "--yes", "--no-docker-check", "--payment-driver", "erc20", "--rpc-url", "http://127.0.0.1:8545",
             "--token", TOKEN, "--contract", CONTRACT)
    assert r.exit_code == 0, r.output
    assert written(tmp_path)["payment"] == {"driver": "erc20", "rpc_url": "http://127.0.0.1:8545", "token": TOKEN,
                                            "contract": CONTRACT}


def test_bad_values_are_refused(tmp_path: Path) -> None:
    r = init(tmp_path, "--yes", "--no-docker-check", "--price-cpu-hour", "cheap")
    assert r.exit_code != 0 and "provider.preset.price_cpu_hour must be an amount of tokens" in str(r.exception)
    r = init(tmp_path, "--yes", "--no-docker-check", "--fixed-price-hour", "1", "--price-hour", "1")
    assert r.exit_code != 0 and "--fixed-price-hour replaces" in str(r.exception)
    assert not (tmp_path / "config.toml").exists()


def test_interactive_asks_and_asks_again_on_a_bad_answer(tmp_path: Path) -> None:
    answers = ["1", "lots", "1", "4", "edge", "0.04", "0.002", "0", "testnet-ledger"]
    r = init(tmp_path, "--no-docker-check", input="\n".join(answers) + "\n")
    assert r.exit_code == 0, r.output
    assert "CPU threads to sell" in r.output and "Error: must be a number of GiB" in r.output
    got = written(tmp_path)
    assert got["provider"]["max_threads"] == 1 and got["provider"]["max_mem_gib"] == 1.0  # type: ignore[index]
    assert got["market"] == {"subnets": ["edge"]}
    assert got["provider"]["preset"]["price_cpu_hour"] == "0.04"  # type: ignore[index]


def _closed_socket(tmp_path: Path) -> str:
    path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nothing listens
    return f"unix://{path}"


def test_unreachable_docker_says_what_to_fix_and_writes_nothing(tmp_path: Path) -> None:
    host = _closed_socket(tmp_path)
    r = init(tmp_path / "d", "--yes", env={"DOCKER_HOST": host})
    assert r.exit_code != 0
    message = str(r.exception)
    assert f"Docker is not running: nothing answers on {host[7:]}" in message
    assert "fix: start it: sudo systemctl enable --now docker" in message and "nothing was written" in message
    assert not (tmp_path / "d" / "config.toml").exists()
    r = CliRunner().invoke(cli, ["provider", "doctor", "--json"], env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.exit_code == 1 and '"problem": "Docker is not running: no socket at' in r.output


def test_a_forbidden_socket_names_the_group() -> None:
    err = selfcheck.fix_for(ConnectionError(PermissionError(13, "Permission denied")), "unix:///var/run/docker.sock",
                            user="alice")
    assert err.problem == "permission denied on /var/run/docker.sock"
    assert err.fix.startswith("add user alice to group docker: sudo usermod -aG docker alice")


def test_price_hint_is_the_median_of_other_offers() -> None:
    def offer(pid: str, cpu_sec: int, dur_sec: int, start: int, subnet: str = "public") -> dict[str, object]:
        return {"provider_id": pid, "subnet": subnet, "properties": {
            "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
            "golem.com.pricing.model.linear.coeffs": [cpu_sec, dur_sec, start]}}

    unit = 10**18 // 3600  # 1 token per hour, per second (floored)
    offers = [offer("me", 100 * unit, 0, 0), offer("a", unit, 0, 0), offer("b", 2 * unit, unit, 5),
              offer("c", 3 * unit, 0, 0), offer("d", 9 * unit, 0, 0, subnet="other"), {"provider_id": "e"}]
    hint = price_hint(offers, me="me", subnet="public")
    assert hint is not None and hint["offers"] == 3
    assert hint["price_cpu_hour"].startswith("1.99999") and hint["lowest_cpu_hour"].startswith("0.99999")
    assert price_hint([], me="me") is None


def _engine_or_skip() -> None:
    try:
        selfcheck.check_engine()
    except selfcheck.DockerCheckFailed as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the Docker engine must be reachable: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


def test_doctor_starts_the_hardened_container_and_removes_it(tmp_path: Path) -> None:
    _engine_or_skip()
    r = CliRunner().invoke(cli, ["provider", "doctor"])
    assert r.exit_code == 0, r.output
    assert "ok  hardened container:" in r.output and "uid 1000, read-only root, writable /work; removed" in r.output
    import docker

    left = docker.from_env().api.containers(all=True, filters={"label": selfcheck.LABEL_PROBE})
    assert left == []
