"""Choosing the settlement driver: ``service run --payment-driver erc20 --rpc-url --token --contract``,
``[payment]`` in ``yagna.toml``, and the errors a user gets for what is missing or malformed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from yagna import config_file
from yagna.config import ConfigError, NodeConfig

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CONTRACT = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def test_the_ledger_is_the_default_and_needs_nothing(tmp_path: Path) -> None:
    assert NodeConfig(data_dir=tmp_path).payment_driver == "testnet-ledger"


def test_erc20_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--rpc-url, --token, --contract"):
        NodeConfig(data_dir=tmp_path, payment_driver="erc20")
    with pytest.raises(ConfigError, match="--contract"):
        NodeConfig(data_dir=tmp_path, payment_driver="erc20", rpc_url="http://127.0.0.1:8545", token=TOKEN)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("token", "0x123", "--token must be a 0x address"),
    ("contract", "0x" + "zz" * 20, "--contract must be a 0x address"),
    ("rpc_url", "ws://127.0.0.1:8545", "--rpc-url must be an http"),
])
def test_erc20_refuses_malformed_values(tmp_path: Path, field: str, value: str, message: str) -> None:
    good = {"rpc_url": "http://127.0.0.1:8545", "token": TOKEN, "contract": CONTRACT}
    with pytest.raises(ConfigError, match=message):
        NodeConfig(data_dir=tmp_path, payment_driver="erc20", **{**good, field: value})


def test_unknown_driver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="payment driver must be one of"):
        NodeConfig(data_dir=tmp_path, payment_driver="bitcoin")


def test_payment_section_of_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "yagna.toml"
    path.write_text(f'[payment]\ndriver = "erc20"\nrpc_url = "http://127.0.0.1:8545"\ntoken = "{TOKEN}"\n'
                    f'contract = "{CONTRACT}"\n')
    got = config_file.load(path, required=True).payment
    assert (got.driver, got.rpc_url, got.token, got.contract) == ("erc20", "http://127.0.0.1:8545", TOKEN, CONTRACT)
    path.write_text('[payment]\ndriver = "erc20"\nrpc = "http://x"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[payment\]: rpc"):
        config_file.load(path, required=True)
    path.write_text("[payment]\ntoken = 5\n")
    with pytest.raises(ConfigError, match="payment.token must be a non-empty string"):
        config_file.load(path, required=True)


def test_service_run_with_erc20_and_no_chain_fails_loudly(tmp_path: Path) -> None:
    """A node pointed at a chain that does not answer says so and exits non-zero (never runs on
    without the settlement it was asked for)."""
    proc = subprocess.run([sys.executable, "-m", "yagna", "--data-dir", str(tmp_path / "n"), "service", "run",
                           "--api-port", "0", "--payment-driver", "erc20", "--rpc-url", "http://127.0.0.1:9",
                           "--token", TOKEN, "--contract", CONTRACT], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "cannot reach the chain at http://127.0.0.1:9" in proc.stderr
