"""The in-memory test-network ledger passes the driver conformance suite."""

from __future__ import annotations

import pytest

from payments.testnet_ledger import MemoryLedger
from tests.payments.driver_conformance import DriverConformance


class TestMemoryLedger(DriverConformance):
    @pytest.fixture
    def driver(self) -> MemoryLedger:
        return MemoryLedger()
