"""The devnet's local chain: anvil on 127.0.0.1, the test token and the channel contract.

``yagna devnet up`` (unless ``--chain none``) starts anvil as a background process of its own
(it outlives the command, like the nodes), deploys ``TestToken`` and ``PaymentChannels`` with a
visible 2 % protocol fee to anvil's second dev account, and records it all in
``root/chain.json``; every node then runs ``--payment-driver erc20`` against it and is funded
with test tokens and gas through its own ``payment fund``. ``down`` stops anvil only if its
command line is still the one recorded (a recycled pid is never killed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from yagna.core.errors import YagnaError

CHAIN_ID = 31337
FEE_BPS = 200
"""The devnet's protocol fee: 2 %, so that fees are seen and tested (0 is the contract's default)."""


class ChainStartError(YagnaError):
    """The local chain could not be started or the contracts deployed (the message says why)."""


@dataclass
class DevChain:
    pid: int
    rpc_url: str
    chain_id: int
    token: str
    contract: str
    fee_recipient: str
    fee_bps: int
    log_file: str

    def node_args(self) -> list[str]:
        return ["--payment-driver", "erc20", "--rpc-url", self.rpc_url, "--token", self.token,
                "--contract", self.contract]


def load(root: Path) -> DevChain | None:
    try:
        return DevChain(**json.loads((root / "chain.json").read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ChainStartError(f"cannot read {root / 'chain.json'}: {exc}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(root: Path, *, timeout: float = 20.0) -> DevChain:
    """Start anvil in its own session (logs in ``root/anvil.log``), deploy, record ``chain.json``."""
    import trio

    from yagna.chain.anvil import DEV_MNEMONIC, AnvilError, find_anvil

    try:
        binary = find_anvil()
    except AnvilError as exc:
        raise ChainStartError(f"{exc} (run `make setup`, or use --chain none for the test-network ledger)") from None
    port = _free_port()
    log_file = root / "anvil.log"
    with open(log_file, "ab") as log:
        proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID),
                                 "--mnemonic", DEV_MNEMONIC, "--accounts", "2", "--prune-history", "50"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    chain = DevChain(proc.pid, f"http://127.0.0.1:{port}", CHAIN_ID, "", "", "", FEE_BPS, str(log_file))
    try:
        chain.token, chain.contract, chain.fee_recipient = trio.run(_deploy, chain.rpc_url, timeout, proc)
    except BaseException:
        stop_pid(proc.pid, binary)
        raise
    tmp = root / "chain.json.tmp"
    tmp.write_text(json.dumps(asdict(chain), indent=2))
    os.replace(tmp, root / "chain.json")
    return chain


async def _deploy(rpc_url: str, timeout: float, proc: subprocess.Popen[bytes]) -> tuple[str, str, str]:
    import trio

    from payments.evm import load_eth
    from yagna.chain.channels import all_errors, deploy_local
    from yagna.chain.rpc import Rpc, RpcError, TxSender

    load_eth()
    from eth_account import Account

    from yagna.chain.anvil import DEV_MNEMONIC

    rpc = Rpc(rpc_url)
    try:
        with trio.move_on_after(timeout) as waited:
            while True:
                if proc.poll() is not None:
                    raise ChainStartError(f"anvil exited with {proc.returncode} during start-up (see its log)")
                try:
                    await rpc.chain_id()
                    break
                except RpcError:
                    await trio.sleep(0.05)
        if waited.cancelled_caught:
            raise ChainStartError(f"anvil did not answer on {rpc_url} within {timeout:.0f} s")
        Account.enable_unaudited_hdwallet_features()
        deployer, fee = (Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in (0, 1))
        token, contract = await deploy_local(TxSender(rpc, bytes(deployer.key), errors=all_errors()),
                                             fee_recipient=str(fee.address), fee_bps=FEE_BPS)
        return token, contract, str(fee.address)
    finally:
        await rpc.aclose()


def stop(root: Path, grace: float = 5.0) -> bool:
    chain = load(root)
    if chain is None:
        return False
    from yagna.chain.anvil import AnvilError, find_anvil

    try:
        binary = find_anvil()
    except AnvilError:
        binary = "anvil"
    stopped = stop_pid(chain.pid, binary, grace)
    (root / "chain.json").unlink(missing_ok=True)
    return stopped


def running(chain: DevChain) -> bool:
    return _is_anvil(chain.pid)


def _is_anvil(pid: int, binary: str = "anvil") -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and (os.path.basename(argv[0].decode(errors="replace")) == "anvil"
                           or argv[0].decode(errors="replace") == binary) and b"--chain-id" in argv


def stop_pid(pid: int, binary: str, grace: float = 5.0) -> bool:
    if not _is_anvil(pid, binary):
        return False
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
        except ChildProcessError:
            if not _is_anvil(pid, binary):
                return True
        time.sleep(0.05)
    if _is_anvil(pid, binary):
        os.kill(pid, signal.SIGKILL)
    return True
