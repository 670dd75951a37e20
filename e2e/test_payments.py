"""Payments across processes with real containers: crash safety on both sides.

- ``kill -9`` of the provider right after it acknowledged a voucher: after a
  restart the voucher is there, and it is redeemed when the agreement ends.
- ``kill -9`` of the requestor mid-agreement: the provider pauses, terminates
  after the payment timeout with a coded reason, and redeems what it holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2e.daemons import Daemon, paid_sleeper, run_cli, wait_until

TERMS = ["--property", "golem.com.scheme.payu.debit-note.interval-sec?=1",
         "--property", "golem.com.scheme.payu.payment-timeout-sec?=2"]


def _setup(tmp_path: Path, daemons: list[Daemon], terms: list[str] = TERMS) -> tuple[Daemon, Daemon, str, str]:
    return paid_sleeper(tmp_path, daemons, terms)


def _row(d: Daemon, agreement_id: str) -> dict:  # type: ignore[type-arg]
    status = json.loads(run_cli("payment", "status", "--json", data_dir=d.data_dir).stdout)
    return next(r for r in status["agreements"] if r["agreement_id"] == agreement_id)


def test_provider_killed_after_ack_keeps_a_redeemable_voucher(tmp_path: Path, daemons: list[Daemon],
                                                              test_image: str) -> None:
    prov, req, agreement_id, _ = _setup(tmp_path, daemons)
    wait_until(lambda: _row(req, agreement_id)["acked_seq"] >= 2, timeout=30, what="two vouchers acknowledged")
    prov.kill()
    acked = _row(req, agreement_id)["acked_seq"]
    prov.start()
    row = _row(prov, agreement_id)
    assert row["best_seq"] >= acked and row["paid_units"] > 0, row  # nothing acknowledged was lost
    held = row["paid_units"]
    run_cli("market", "terminate", agreement_id, data_dir=req.data_dir)
    wait_until(lambda: _row(prov, agreement_id)["state"] == "closed", timeout=30, what="provider settles")
    earned = json.loads(run_cli("payment", "status", "--json", data_dir=prov.data_dir).stdout)["balance"]["earned_units"]
    assert earned >= held > 0
    wait_until(lambda: _row(req, agreement_id)["state"] == "closed", timeout=30, what="requestor settles")
    spent = json.loads(run_cli("payment", "status", "--json", data_dir=req.data_dir).stdout)["balance"]
    assert spent["spent_units"] == earned and spent["locked_units"] == 0


def test_requestor_killed_is_cut_off_and_the_provider_redeems(tmp_path: Path, daemons: list[Daemon],
                                                              test_image: str) -> None:
    prov, req, agreement_id, _ = _setup(tmp_path, daemons)
    wait_until(lambda: _row(prov, agreement_id)["paid_units"] > 0, timeout=30, what="paid at least once")
    req.kill()
    wait_until(lambda: _row(prov, agreement_id)["state"] == "closed", timeout=40, what="provider gives up and settles")
    agreements = json.loads(run_cli("market", "agreements", "--json", data_dir=prov.data_dir).stdout)
    mine = next(a for a in agreements if a["agreement_id"] == agreement_id)
    assert mine["state"] == "terminated" and "not-paid" in mine["reason"], mine
    status = json.loads(run_cli("payment", "status", "--json", data_dir=prov.data_dir).stdout)
    row = next(r for r in status["agreements"] if r["agreement_id"] == agreement_id)
    assert status["balance"]["earned_units"] == row["paid_units"] > 0
    invoices = json.loads(run_cli("payment", "invoices", "--json", data_dir=prov.data_dir).stdout)
    assert [i["status"] for i in invoices if i["agreement_id"] == agreement_id] == ["settled"]


PATIENT_TERMS = ["--property", "golem.com.scheme.payu.debit-note.interval-sec?=1",
                 "--property", "golem.com.scheme.payu.payment-timeout-sec?=30"]


def test_restarted_requestor_pays_for_the_whole_run(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    """Issue 11 row 12: after kill -9 and a restart, the requestor's clock began again (paid 21.1e12 of 44.8e12)."""
    prov, req, agreement_id, _ = _setup(tmp_path, daemons, PATIENT_TERMS)
    wait_until(lambda: _row(req, agreement_id)["acked_seq"] >= 5, timeout=60, what="vouchers")
    req.kill()
    req.start()  # the provider's container ran on meanwhile
    wait_until(lambda: _row(req, agreement_id)["acked_seq"] >= 10, timeout=60, what="vouchers after restart")
    run_cli("market", "terminate", agreement_id, data_dir=req.data_dir)
    wait_until(lambda: _row(prov, agreement_id)["state"] == "closed", timeout=30, what="provider settles")
    invoices = json.loads(run_cli("payment", "invoices", "--json", data_dir=prov.data_dir).stdout)
    inv = next(i for i in invoices if i["agreement_id"] == agreement_id)
    earned = json.loads(run_cli("payment", "status", "--json", data_dir=prov.data_dir).stdout)["balance"]["earned_units"]
    assert inv["status"] == "paid" and earned == inv["amount_units"], (inv, earned)
