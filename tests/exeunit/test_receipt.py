"""Result receipts: signed by the provider, bound to network/agreement/activity/batch, matched to the results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.receipt import ReceiptInvalid, check_results, open_receipt, rows_of, seal_receipt
from yagna.core.identity import NodeKey

PROVIDER = NodeKey.generate()
IDS = {"network_id": "net", "agreement_id": "a" * 64, "activity_id": "act", "batch_id": "b1"}
RESULTS = [
    {"index": 0, "command": "deploy", "exit_code": None, "stdout": ""},
    {"index": 1, "command": "run", "exit_code": 0, "stdout": "42\n"},
    {"index": 2, "command": "transfer_out", "exit_code": None, "stdout": "", "sha256": "f" * 64},
    None,
]


def sealed(results: list = RESULTS, key: NodeKey = PROVIDER) -> bytes:  # type: ignore[type-arg]
    return seal_receipt(key, rows=rows_of(results), **IDS)


def test_round_trip_and_results_match() -> None:
    receipt = open_receipt(sealed(), provider=PROVIDER.node_id, **IDS)
    assert [r.index for r in receipt.rows] == [0, 1, 2] and receipt.rows[2].file_sha256 == "f" * 64
    check_results(receipt, RESULTS)


def test_tampered_results_do_not_match() -> None:
    receipt = open_receipt(sealed(), provider=PROVIDER.node_id, **IDS)
    changed = [dict(r) if r else r for r in RESULTS]
    changed[1]["stdout"] = "43\n"  # type: ignore[index]
    with pytest.raises(ReceiptInvalid):
        check_results(receipt, changed)


@pytest.mark.parametrize("field", sorted(IDS))
def test_bound_to_every_id(field: str) -> None:
    with pytest.raises(ReceiptInvalid):
        open_receipt(sealed(), provider=PROVIDER.node_id, **{**IDS, field: "other"})


def test_signed_by_someone_else_is_refused() -> None:
    with pytest.raises(ReceiptInvalid):
        open_receipt(sealed(key=NodeKey.generate()), provider=PROVIDER.node_id, **IDS)


@given(st.binary(max_size=512))
def test_garbage_raises_only_receipt_invalid(data: bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        open_receipt(data, provider=PROVIDER.node_id, **IDS)
