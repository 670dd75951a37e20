"""Settlement on an EVM chain: the compiled contracts and EIP-712 vouchers (pure parts).

The contracts (``contracts/src``: an ERC-20 test token and ``PaymentChannels``) are compiled by
``contracts/build.js`` into :mod:`payments.evm.artifacts` (committed; the daemon never needs
Node). Everything here that needs eth-account or web3 imports it lazily, so that a node on the
test-network ledger never loads them (start-up time, docs/decisions.md).
"""

import sys

_loaded = False


def load_eth() -> None:
    """Import eth-account (and py_ecc under it) with the interpreter's recursion limit kept.

    py_ecc raises the limit to 100,000 when imported, for the whole process. CPython's C
    stack does not hold that many frames, so deep recursion (json or CBOR decoding of a
    hostile nested message) would overflow the C stack and kill the node (a segfault in CI's
    fuzz tests) instead of raising RecursionError. Every module of ours that needs eth-account
    calls this first; once imported, the modules are cached and the limit stays ours.
    """
    global _loaded
    if _loaded:
        return
    limit = sys.getrecursionlimit()
    try:
        import eth_account  # noqa: F401
        import eth_account.messages  # noqa: F401
    finally:
        sys.setrecursionlimit(limit)
    _loaded = True
