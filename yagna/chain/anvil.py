"""A local EVM chain: anvil (Foundry), pinned in ``contracts/package-lock.json`` (``make setup``).

:class:`Anvil` starts one on 127.0.0.1 with a port the kernel picks (``--port 0``; the chosen
port is read from its ``Listening on`` line, which ``--silent`` would hide), and stops exactly
that process, by PID, at the end. anvil slows down as its chain grows (the lab report:
295 -> 103 tx/s over three runs), so tests start a fresh one per session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]
PINNED = REPO / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
LISTENING = re.compile(rb"Listening on 127\.0\.0\.1:(\d+)")
DEV_MNEMONIC = "test test test test test test test test test test test junk"
"""anvil's default: accounts with 10,000 ETH each, keys known to everyone (local chains only)."""


class AnvilError(RuntimeError):
    """anvil is missing or did not start."""


def find_anvil() -> str:
    """``$YAGNA_ANVIL``, else the pinned npm package, else ``anvil`` on the PATH."""
    for candidate in (os.environ.get("YAGNA_ANVIL"), str(PINNED), shutil.which("anvil")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AnvilError("anvil is not installed: run `make setup` (it installs the pinned npm package "
                     "@foundry-rs/anvil-linux-amd64 into contracts/node_modules), or set YAGNA_ANVIL")


class Anvil:
    """``with Anvil() as chain: chain.rpc_url``; the process is killed on exit."""

    def __init__(self, *, chain_id: int = 31337, accounts: int = 20, block_time: float | None = None,
                 start_timeout: float = 15.0, extra: list[str] | None = None) -> None:
        self.chain_id = chain_id
        self.args = [find_anvil(), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id),
                     "--mnemonic", DEV_MNEMONIC, "--accounts", str(accounts), "--prune-history", "50"]
        if block_time is not None:
            self.args += ["--block-time", str(block_time)]
        self.args += extra or []
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Anvil:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        seen = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen = (seen + line)[-4000:]
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                # keep draining its output so a full pipe never blocks it
                import threading

                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise AnvilError(f"anvil did not start: {seen.decode(errors='replace')[-1000:]}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
