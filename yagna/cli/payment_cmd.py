"""``yagna payment ...``: balances, test-network funding, channels and invoices."""

from __future__ import annotations

from typing import Any

import click

from yagna.cli.output import emit


@click.group()
def payment() -> None:
    """Balances, payment channels and invoices."""


@payment.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def payment_status(obj: Any, as_json: bool) -> None:
    """Balance, locked, spent and earned; per agreement: deposit, best voucher, amount due, state."""
    s = obj.client().call("GET", "/payment/status")
    b = s["balance"]
    lines = [
        f"driver:  {s['driver']}{'  (TEST NETWORK: tokens have no value)' if s['test_network'] else ''}",
        f"account: {s['account']}",
        f"balance: {b['total']}  (free {b['free']}, locked {b['locked']}, spent {b['spent']}, earned {b['earned']})",
    ]
    chain = s.get("chain")
    if chain:
        from yagna.core.money import format_amount

        held = "?" if chain["token_balance"] is None else format_amount(chain["token_balance"])
        lines += [f"chain:   {chain['chain_id']} at {chain['rpc_url']}{'  (local test chain)' if chain.get('test_chain') else ''}",
                  f"address: {chain['account']}  holds {held} of token {chain['token_address']}",
                  f"contract: {chain['contract_address']}"]
        for c in chain.get("channels", []):
            if "error" in c:
                lines.append(f"  channel {c['channel_id'][:18]}: {c['error']}")
                continue
            txs = ", ".join(f"{op} {h[:12]}" for op, h in c["transactions"]) or "-"
            lines.append(f"  channel {c['channel_id'][:18]} {c['state']:7} deposit {c['deposit']} redeemed {c['redeemed']}"
                         f"  tx: {txs}")
    if s["agreements"]:
        lines.append(f"\n{'AGREEMENT':14} {'ROLE':10} {'STATE':9} {'DEPOSIT':>14} {'DUE':>14} {'PAID':>14} {'SEQ':>5}  REASON")
        for a in s["agreements"]:
            lines.append(f"{a['agreement_id'][:12]:14} {a['role']:10} {a['state']:9} {a['deposit']:>14} {a['amount_due']:>14} "
                         f"{a['paid']:>14} {a['best_seq']:>5}  {a['reason'] or ''}")
    emit(s, as_json, "\n".join(lines))


@payment.command("fund")
@click.option("--amount", required=True, help="Test tokens to credit, e.g. 10.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def payment_fund(obj: Any, amount: str, as_json: bool) -> None:
    """Credit test tokens to this node's account: on the test-network ledger, or minted on a local chain
    (devnet). On a chain with real tokens it says which address to send tokens and gas to."""
    b = obj.client().call("POST", "/payment/fund", json={"amount": amount})
    emit(b, as_json, f"funded {amount}: balance {b['total']} (free {b['free']})")


@payment.command("channels")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def payment_channels(obj: Any, as_json: bool) -> None:
    """Payment channels, one per agreement, with their deposit and best voucher."""
    rows = obj.client().call("GET", "/payment/channels")
    lines = [f"{'CHANNEL':18} {'AGREEMENT':14} {'ROLE':6} {'STATE':8} {'DEPOSIT':>14} {'VOUCHER':>14} {'SEQ':>5}  PEER"]
    for c in rows:
        lines.append(f"{c['channel_id'][:16]:18} {c['agreement_id'][:12]:14} {c['role']:6} {c['state']:8} {c['deposit']:>14} "
                     f"{c['best_amount']:>14} {c['best_seq']:>5}  {c['peer_id']}")
    emit(rows, as_json, "\n".join(lines) if rows else "no channels")


@payment.command("invoices")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def payment_invoices(obj: Any, as_json: bool) -> None:
    """Final invoices of ended agreements (issued by providers, paid by requestors)."""
    rows = obj.client().call("GET", "/payment/invoices")
    lines = [f"{'AGREEMENT':14} {'ROLE':10} {'STATUS':9} {'AMOUNT':>14}"]
    for i in rows:
        lines.append(f"{i['agreement_id'][:12]:14} {i['role']:10} {i['status']:9} {i['amount']:>14}")
    emit(rows, as_json, "\n".join(lines) if rows else "no invoices")
