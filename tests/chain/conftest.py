"""A fresh anvil per test session (its throughput falls as its chain grows)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yagna.chain.anvil import Anvil


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as chain:
        yield chain


@pytest.fixture(scope="session")
def chain(anvil: Anvil):  # type: ignore[no-untyped-def]
    from web3 import Web3

    from .evm import Chain

    return Chain(Web3(Web3.HTTPProvider(anvil.rpc_url)))
