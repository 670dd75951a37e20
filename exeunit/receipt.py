"""Result receipts: the provider's signed statement of what a batch produced.

Sealed by the provider with domain ``yagna/receipt/1``; the payload binds the
network, agreement, activity and batch, then one row per command that ran::

    [network_id, agreement_id, activity_id, batch_id,
     [[index, command, exit_code | None, stdout_sha256, file_sha256 | None], ...]]

``stdout_sha256`` is the SHA-256 of the result's stdout tail, the exact bytes
the command wrote (see :class:`exeunit.activity.Batch`; a text given is hashed
as its UTF-8); ``file_sha256`` is set for ``transfer_out``. A requestor
that runs a task on several providers compares these digests; a provider
whose result lost the vote cannot deny what it signed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from exeunit.errors import ExeUnitError
from yagna.core.envelope import open_signed, seal
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey

RECEIPT_DOMAIN = "yagna/receipt/1"
MAX_RECEIPT_SIZE = 64 * 1024


class ReceiptInvalid(ExeUnitError):
    code = "receipt-invalid"


@dataclass(frozen=True)
class ReceiptRow:
    index: int
    command: str
    exit_code: int | None
    stdout_sha256: str
    file_sha256: str | None


@dataclass(frozen=True)
class Receipt:
    network_id: str
    agreement_id: str
    activity_id: str
    batch_id: str
    rows: tuple[ReceiptRow, ...]
    provider: str
    raw: bytes


def stdout_digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def rows_of(results: list[dict[str, Any] | None]) -> list[ReceiptRow]:
    """The receipt rows for a batch's results (commands that did not run have none)."""
    rows = []
    for r in results:
        if r is None:
            continue
        exit_code = r.get("exit_code")
        rows.append(ReceiptRow(int(r["index"]), str(r["command"]), exit_code if isinstance(exit_code, int) else None,
                               stdout_digest(r.get("stdout") or ""),
                               r.get("sha256") if r.get("command") == "transfer_out" and isinstance(r.get("sha256"), str) else None))
    return rows


def seal_receipt(key: NodeKey, *, network_id: str, agreement_id: str, activity_id: str, batch_id: str,
                 rows: list[ReceiptRow]) -> bytes:
    payload = [network_id, agreement_id, activity_id, batch_id,
               [[r.index, r.command, r.exit_code, r.stdout_sha256, r.file_sha256] for r in rows]]
    return seal(key, RECEIPT_DOMAIN, payload)


def open_receipt(raw: bytes, *, provider: str, network_id: str, agreement_id: str, activity_id: str,
                 batch_id: str) -> Receipt:
    """Verify a receipt against what the requestor knows; :class:`ReceiptInvalid` says what is wrong."""
    if not isinstance(raw, bytes) or len(raw) > MAX_RECEIPT_SIZE:
        raise ReceiptInvalid("not a receipt (or too large)")
    try:
        signed = open_signed(raw, domain=RECEIPT_DOMAIN, max_size=MAX_RECEIPT_SIZE, expected_signer=provider)
    except WireError as exc:
        raise ReceiptInvalid(f"not signed by the provider: {exc}") from None
    p = signed.payload
    if not (isinstance(p, list) and len(p) == 5 and all(isinstance(x, str) for x in p[:4]) and isinstance(p[4], list)):
        raise ReceiptInvalid("malformed receipt")
    for name, got, want in (("network", p[0], network_id), ("agreement", p[1], agreement_id),
                            ("activity", p[2], activity_id), ("batch", p[3], batch_id)):
        if got != want:
            raise ReceiptInvalid(f"receipt is for {name} {got!r}, not {want!r}")
    rows = []
    for row in p[4]:
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[0], int) and isinstance(row[1], str)
                and (row[2] is None or isinstance(row[2], int)) and isinstance(row[3], str)
                and (row[4] is None or isinstance(row[4], str))):
            raise ReceiptInvalid("malformed receipt row")
        rows.append(ReceiptRow(*row))
    return Receipt(p[0], p[1], p[2], p[3], tuple(rows), signed.signer, raw)


def check_results(receipt: Receipt, results: list[dict[str, Any] | None]) -> None:
    """The results the requestor holds are the ones the provider signed (else :class:`ReceiptInvalid`).

    ``results`` come from the provider too: a malformed one is :class:`ReceiptInvalid`, never a crash.
    """
    if not isinstance(results, list) or not all(r is None or _well_formed(r) for r in results):
        raise ReceiptInvalid("the provider's results are malformed")
    if tuple(rows_of(results)) != receipt.rows:
        raise ReceiptInvalid("the results do not match the provider's signed receipt")


def _well_formed(result: object) -> bool:
    """What :func:`rows_of` reads of a result has the types it needs."""
    return (isinstance(result, dict) and type(result.get("index")) is int and isinstance(result.get("command"), str)
            and isinstance(result.get("stdout") or b"", (bytes, str)))
