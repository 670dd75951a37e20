"""Settlement on an EVM chain: the compiled contracts and EIP-712 vouchers (pure parts).

The contracts (``contracts/src``: an ERC-20 test token and ``PaymentChannels``) are compiled by
``contracts/build.js`` into :mod:`payments.evm.artifacts` (committed; the daemon never needs
Node). Everything here that needs eth-account or web3 imports it lazily, so that a node on the
test-network ledger never loads them (start-up time, docs/decisions.md).
"""
