"""The in-memory test-network ledger passes the driver conformance suite (each party on its own
ledger, as nodes are) and the ledger extras (one ledger holding every account)."""

from __future__ import annotations

import itertools
import time

import pytest

from payments.testnet_ledger import MemoryLedger
from tests.payments.driver_conformance import DriverConformance, Parties, Party
from tests.payments.ledger_conformance import LedgerConformance


def ledger_parties(make) -> Parties:  # type: ignore[no-untyped-def]
    ids = itertools.count(1)

    async def expiry() -> int:
        return int(time.time()) + 3600

    return Parties(Party(make(), "payer-a"), Party(make(), "payee-b"), Party(make(), "payer-c"),
                   new_id=lambda: f"ch-{next(ids)}", expiry=expiry)


class TestMemoryLedger(DriverConformance):
    @pytest.fixture
    def parties(self) -> Parties:
        return ledger_parties(MemoryLedger)


class TestMemoryLedgerExtras(LedgerConformance):
    @pytest.fixture
    def driver(self) -> MemoryLedger:
        return MemoryLedger()
