"""py_ecc (under eth-account) raises the process's recursion limit to 100,000 on import; ours is
kept, or deep recursion in a decoder overflows the C stack (a segfault in CI's fuzz tests)."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_chain_code_keeps_the_recursion_limit() -> None:
    code = (
        "import sys\n"
        "before = sys.getrecursionlimit()\n"
        "from payments.evm import voucher\n"
        "from payments.evm.voucher import VoucherDomain\n"
        "voucher.sign(b'\\x01' * 32, VoucherDomain(1, '0x' + '11' * 20), b'\\x00' * 32, 5)\n"
        "from yagna.chain.account import SettlementAccount\n"
        "SettlementAccount.from_key(b'\\x01' * 32)\n"
        "import web3\n"
        "assert sys.getrecursionlimit() == before, (before, sys.getrecursionlimit())\n"
        "import json\n"
        "try:\n"
        "    json.loads('[' * 200000 + ']' * 200000)\n"
        "except RecursionError:\n"
        "    print('recursion-error')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "recursion-error"


def test_this_process_kept_its_limit_too() -> None:
    assert sys.getrecursionlimit() < 10_000
