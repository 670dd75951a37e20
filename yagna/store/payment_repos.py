"""Payment state: the SQLite test-network ledger and the payment service's repositories.

Money columns are TEXT holding the canonical decimal of a non-negative int of
base units (migration 4 has the CHECKs). An INTEGER column would overflow at
``2**63 - 1`` base units, about 9.2 tokens; Python's ``sqlite3`` even refuses
to bind an int past that. Amounts go in and out of this module as Python
``int`` only, so nothing outside it sees the text. Arithmetic on stored
amounts happens in Python inside one ``Store.transaction`` on the store
thread: read, compute, write, commit, with the write lock held throughout.

Sequence numbers (voucher and debit-note ``seq``) are stored the same way:
the wire allows them up to ``2**64 - 1``, past SQLite's signed INTEGER, and a
payer may jump straight there. Comparisons of stored seqs happen in Python.

Every write here is durable (``synchronous=FULL``): payment state is
acknowledged to a peer only after it is on disk.

- :class:`SqliteLedger` is the daemon's settlement driver for the test
  network (:class:`payments.driver.SettlementDriver`), the persistent twin of
  ``payments.testnet_ledger.MemoryLedger``.
- :class:`PayChannels`, :class:`DebitNotes`, :class:`Invoices` hold the
  voucher protocol's records; the payment service maps them to its own types.
"""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payments.driver import Balance, ChannelInfo, LedgerSettlement, Redemption
from payments.errors import AmountInvalid, DepositMismatch, DepositReused, InsufficientFunds, UnknownChannel
from payments.meter import MeterRecord
from yagna.core.money import MAX_UNITS
from yagna.store.db import Store, where_equal

Clock = Callable[[], float]

__all__ = [
    "DebitNotes",
    "Invoices",
    "PayChannels",
    "SqliteLedger",
    "StoredDebitNote",
    "StoredInvoice",
    "StoredPayChannel",
    "amount_from_db",
    "amount_to_db",
]

# ---------------------------------------------------------------------- amounts


def amount_to_db(value: int, what: str = "amount") -> str:
    """A non-negative int of base units as its canonical decimal text (the column format)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int of base units, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    if value > MAX_UNITS:
        raise ValueError(f"{what} {value} is over the largest amount (2**255 - 1 base units)")
    return str(value)


def amount_from_db(text: str | int) -> int:
    """The inverse of :func:`amount_to_db` (the CHECKs guarantee canonical text)."""
    return int(text)


def _positive(value: int, what: str) -> int:
    """A caller's amount (fund, deposits): out of range is :class:`AmountInvalid` (a typed ``ValueError``)."""
    try:
        amount_to_db(value, what)
    except ValueError as exc:
        raise AmountInvalid(str(exc)) from None
    if value == 0:
        raise AmountInvalid(f"{what} must be > 0")
    return value


def _id(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str, not {value!r}")
    return value


def _seq(value: int) -> str:
    """Sequence numbers are stored like amounts: the wire allows them past SQLite's INTEGER."""
    return amount_to_db(value, "seq")


# ---------------------------------------------------------------------- the ledger


class SqliteLedger(LedgerSettlement):
    """The test-network ledger over ``ledger_accounts`` and ``ledger_channels``.

    Each node runs its own: as a payer it locks deposits out of its funded
    account; as a payee it records the payer's promise (``accept_deposit``) and
    credits what it redeems. On a channel this ledger locked (role ``payer``),
    a redemption moves tokens from the payer (``locked -> spent``) to the
    payee's ``earned``, so a ledger that sees both parties conserves tokens;
    on an accepted channel (role ``payee``) only the payee's ``earned`` moves.

    Every state change is one durable transaction: the balance check and the
    lock happen under SQLite's write lock, so concurrent ``lock_deposit`` calls
    (from one store or from several connections to the file) never lock more
    than the free balance.
    """

    test_network = True

    def __init__(self, store: Store, *, name: str = "testnet-ledger", clock: Clock = time.time) -> None:
        self.name = name
        self._store = store
        self._clock = clock

    # -- reads

    async def balance(self, account: str) -> Balance:
        row = await self._store.fetchone(
            "SELECT funded, locked, spent, earned FROM ledger_accounts WHERE account = ?", (account,)
        )
        return _balance(account, row)

    async def channel(self, channel_id: str) -> ChannelInfo:
        row = await self._store.fetchone(f"SELECT {_LEDGER_CHANNEL_COLUMNS} FROM ledger_channels WHERE channel_id = ?", (channel_id,))
        if row is None:
            raise UnknownChannel(f"no channel {channel_id!r} on the {self.name} ledger")
        return _channel_info(row)

    # -- writes (one durable transaction each)

    async def fund(self, account: str, amount: int) -> Balance:
        _id(account, "account")
        _positive(amount, "amount")
        now = int(self._clock())

        def fn(conn: sqlite3.Connection) -> Balance:
            acct = _Account.load(conn, account)
            if acct.funded + amount > MAX_UNITS:
                raise AmountInvalid(f"funding {amount} would put the account over the largest amount (2**255 - 1 base units)")
            acct.funded += amount
            acct.save(conn, now)
            return acct.balance()

        return await self._store.transaction(fn, durable=True)

    async def lock_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                           expiry: int = 0) -> ChannelInfo:
        for value, what in ((channel_id, "channel id"), (payer, "payer"), (payee, "payee")):
            _id(value, what)
        _positive(amount, "deposit")
        now = int(self._clock())
        name = self.name

        def fn(conn: sqlite3.Connection) -> ChannelInfo:
            if _channel_row(conn, channel_id) is not None:
                raise DepositReused(f"channel id {channel_id!r} was used before; a channel id is never reused")
            acct = _Account.load(conn, payer)
            free = acct.balance().free
            if amount > free:
                raise InsufficientFunds(
                    f"account {payer} has {free} base units free on the {name} ledger, the deposit needs {amount}"
                )
            acct.locked += amount
            acct.save(conn, now)
            _insert_channel(conn, channel_id, payer, payee, amount, "payer", now)
            return ChannelInfo(channel_id, payer, payee, amount, 0, "open")

        return await self._store.transaction(fn, durable=True)

    async def accept_deposit(self, channel_id: str, payer: str, payee: str, amount: int, *,
                             min_expiry: int = 0) -> ChannelInfo:
        for value, what in ((channel_id, "channel id"), (payer, "payer"), (payee, "payee")):
            _id(value, what)
        _positive(amount, "deposit")
        now = int(self._clock())

        def fn(conn: sqlite3.Connection) -> ChannelInfo:
            row = _channel_row(conn, channel_id)
            if row is not None:
                info = _channel_info(row)
                if (info.payer, info.payee, info.deposit) != (payer, payee, amount):
                    raise DepositReused(
                        f"channel id {channel_id!r} is known with other terms (payer {info.payer}, payee "
                        f"{info.payee}, deposit {info.deposit})"
                    )
                return info
            _insert_channel(conn, channel_id, payer, payee, amount, "payee", now)
            return ChannelInfo(channel_id, payer, payee, amount, 0, "open")

        return await self._store.transaction(fn, durable=True)

    async def top_up(self, channel_id: str, amount: int) -> ChannelInfo:
        _positive(amount, "top-up")
        now = int(self._clock())
        name = self.name

        def fn(conn: sqlite3.Connection) -> ChannelInfo:
            row, info = _known_channel(conn, channel_id, name)
            if info.state != "open" or row["role"] != "payer":
                raise DepositMismatch(f"channel {channel_id} is {info.state if info.state != 'open' else 'not ours to top up'}")
            acct = _Account.load(conn, info.payer)
            free = acct.balance().free
            if amount > free:
                raise InsufficientFunds(f"account {info.payer} has {free} base units free on the {name} ledger, "
                                        f"the top-up needs {amount}")
            acct.locked += amount
            acct.save(conn, now)
            deposit = info.deposit + amount
            conn.execute("UPDATE ledger_channels SET deposit = ? WHERE channel_id = ?",
                         (amount_to_db(deposit, "deposit"), channel_id))
            return ChannelInfo(channel_id, info.payer, info.payee, deposit, info.redeemed, "open")

        return await self._store.transaction(fn, durable=True)

    async def accept_top_up(self, channel_id: str, deposit: int) -> ChannelInfo:
        _positive(deposit, "deposit")
        name = self.name

        def fn(conn: sqlite3.Connection) -> ChannelInfo:
            row, info = _known_channel(conn, channel_id, name)
            if info.state != "open" or deposit < info.deposit:
                raise DepositMismatch(f"channel {channel_id} is {info.state} with a deposit of {info.deposit}; "
                                      f"it cannot become {deposit}")
            if row["role"] == "payer":  # our own channel: the top-up moved it already
                return info
            conn.execute("UPDATE ledger_channels SET deposit = ? WHERE channel_id = ?",
                         (amount_to_db(deposit, "deposit"), channel_id))
            return ChannelInfo(channel_id, info.payer, info.payee, deposit, info.redeemed, "open")

        return await self._store.transaction(fn, durable=True)

    async def redeem(self, channel_id: str, cumulative_amount: int, *, close: bool,
                     proof: bytes = b"") -> Redemption:
        amount_to_db(cumulative_amount, "cumulative_amount")
        now = int(self._clock())
        name = self.name

        def fn(conn: sqlite3.Connection) -> Redemption:
            row, info = _known_channel(conn, channel_id, name)
            if info.state == "closed":
                return Redemption(channel_id, 0, 0)
            paid = max(0, min(cumulative_amount, info.deposit) - info.redeemed)
            redeemed = info.redeemed + paid
            released = info.deposit - redeemed if close else 0
            payer_side = row["role"] == "payer"
            if paid:
                if payer_side:
                    payer = _Account.load(conn, info.payer)
                    payer.locked -= paid
                    payer.spent += paid
                    payer.save(conn, now)
                payee = _Account.load(conn, info.payee)
                payee.earned += paid
                payee.save(conn, now)
            if close and payer_side and released:
                payer = _Account.load(conn, info.payer)
                payer.locked -= released
                payer.save(conn, now)
            conn.execute(
                "UPDATE ledger_channels SET redeemed = ?, state = ?, closed_at = ? WHERE channel_id = ?",
                (amount_to_db(redeemed), "closed" if close else "open", now if close else None, channel_id),
            )
            return Redemption(channel_id, paid, released)

        return await self._store.transaction(fn, durable=True)


_LEDGER_CHANNEL_COLUMNS = "channel_id, payer, payee, deposit, redeemed, state, role, created_at, closed_at"


def _channel_row(conn: sqlite3.Connection, channel_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {_LEDGER_CHANNEL_COLUMNS} FROM ledger_channels WHERE channel_id = ?", (channel_id,)
    ).fetchone()
    return row


def _known_channel(conn: sqlite3.Connection, channel_id: str, ledger: str) -> tuple[sqlite3.Row, ChannelInfo]:
    """The channel's row and info; :class:`UnknownChannel` if this ledger never saw it."""
    row = _channel_row(conn, channel_id)
    if row is None:
        raise UnknownChannel(f"no channel {channel_id!r} on the {ledger} ledger")
    return row, _channel_info(row)


def _channel_info(row: sqlite3.Row) -> ChannelInfo:
    return ChannelInfo(
        row["channel_id"], row["payer"], row["payee"], amount_from_db(row["deposit"]),
        amount_from_db(row["redeemed"]), row["state"],
    )


def _insert_channel(
    conn: sqlite3.Connection, channel_id: str, payer: str, payee: str, deposit: int, role: str, now: int
) -> None:
    conn.execute(
        f"INSERT INTO ledger_channels ({_LEDGER_CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, '0', 'open', ?, ?, NULL)",
        (channel_id, payer, payee, amount_to_db(deposit, "deposit"), role, now),
    )


def _balance(account: str, row: sqlite3.Row | None) -> Balance:
    if row is None:
        return Balance(account, 0, 0, 0, 0)
    funded, locked, spent, earned = (amount_from_db(row[k]) for k in ("funded", "locked", "spent", "earned"))
    return Balance(account, funded - spent + earned, locked, spent, earned)


@dataclass(slots=True)
class _Account:
    """One ``ledger_accounts`` row being changed inside a transaction."""

    account: str
    funded: int
    locked: int
    spent: int
    earned: int

    @classmethod
    def load(cls, conn: sqlite3.Connection, account: str) -> _Account:
        row = conn.execute(
            "SELECT funded, locked, spent, earned FROM ledger_accounts WHERE account = ?", (account,)
        ).fetchone()
        if row is None:
            return cls(account, 0, 0, 0, 0)
        return cls(account, *(amount_from_db(row[k]) for k in ("funded", "locked", "spent", "earned")))

    def balance(self) -> Balance:
        return Balance(self.account, self.funded - self.spent + self.earned, self.locked, self.spent, self.earned)

    def save(self, conn: sqlite3.Connection, now: int) -> None:
        if self.locked < 0 or self.locked > self.balance().total:
            raise AssertionError(f"ledger invariant broken for {self.account}: locked {self.locked} of {self.balance()}")
        values = (
            amount_to_db(self.funded, "funded"), amount_to_db(self.locked, "locked"),
            amount_to_db(self.spent, "spent"), amount_to_db(self.earned, "earned"),
        )
        conn.execute(
            "INSERT INTO ledger_accounts (account, funded, locked, spent, earned, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(account) DO UPDATE SET funded = excluded.funded, locked = excluded.locked,"
            " spent = excluded.spent, earned = excluded.earned, updated_at = excluded.updated_at",
            (self.account, *values, now),
        )


# ---------------------------------------------------------------------- pay channels


@dataclass(frozen=True, slots=True)
class StoredPayChannel:
    channel_id: str
    agreement_id: str
    role: str
    """``payer`` or ``payee``."""
    peer_id: str
    terms: bytes
    """Canonical CBOR of the channel terms."""
    deposit: int
    state: str
    """``open``, ``closing`` or ``closed``."""
    best_seq: int
    """Payee: seq of the best voucher; payer: seq of the last signed one. 0: none yet."""
    best_amount: int
    best_voucher: bytes | None
    acked_seq: int
    """Payer: the highest seq the payee acknowledged."""
    due: int
    """Payee: the last amount due sent in a debit note."""
    paid: int
    """Payee: counted as paid, ``min(best_amount, deposit)``."""
    evidence: bytes | None
    reason: str | None
    created_at: int
    updated_at: int


_PAY_COLUMNS = (
    "channel_id, agreement_id, role, peer_id, terms, deposit, state, best_seq, best_amount, best_voucher,"
    " acked_seq, due, paid, evidence, reason, created_at, updated_at"
)


class PayChannels:
    """The voucher protocol's channel records (one per agreement), as this node sees them.

    The sequence guard runs in the same transaction as the write:
    :meth:`save_signed` and :meth:`save_best` only move forward (``seq >
    best_seq``) and return False otherwise, so a payer can never store two
    amounts for one seq, and a late, lower voucher never overwrites a better one.
    """

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def insert(
        self, channel_id: str, agreement_id: str, role: str, peer_id: str, terms: bytes, deposit: int
    ) -> StoredPayChannel:
        """A new open channel. :class:`~yagna.store.ConstraintError` if the channel or agreement has one."""
        now = int(self._clock())
        await self._store.execute(
            f"INSERT INTO pay_channels ({_PAY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'open', '0', '0', NULL, '0', '0', '0',"
            " NULL, NULL, ?, ?)",
            (channel_id, agreement_id, role, peer_id, bytes(terms), amount_to_db(deposit, "deposit"), now, now),
            durable=True,
        )
        return StoredPayChannel(
            channel_id, agreement_id, role, peer_id, bytes(terms), deposit, "open", 0, 0, None, 0, 0, 0, None, None, now, now
        )

    async def get(self, channel_id: str) -> StoredPayChannel | None:
        row = await self._store.fetchone(f"SELECT {_PAY_COLUMNS} FROM pay_channels WHERE channel_id = ?", (channel_id,))
        return _pay_channel(row) if row else None

    async def by_agreement(self, agreement_id: str) -> StoredPayChannel | None:
        row = await self._store.fetchone(f"SELECT {_PAY_COLUMNS} FROM pay_channels WHERE agreement_id = ?", (agreement_id,))
        return _pay_channel(row) if row else None

    async def list(
        self, *, role: str | None = None, state: str | None = None, limit: int = 1000
    ) -> builtins.list[StoredPayChannel]:
        where, params = where_equal(role=role, state=state)
        rows = await self._store.fetchall(
            f"SELECT {_PAY_COLUMNS} FROM pay_channels {where} ORDER BY created_at DESC, channel_id LIMIT ?",
            (*params, limit),
        )
        return [_pay_channel(r) for r in rows]

    async def totals(self) -> dict[tuple[str, str], dict[str, int]]:
        """Per ``(role, state)``: ``channels`` and the sums of ``deposit``, ``due``, ``paid``, ``best_amount``,
        over every channel (metrics). Summed here, exactly: the columns are decimal text, which SQL's SUM
        would round through a float. Reads no blobs."""
        rows = await self._store.fetchall("SELECT role, state, deposit, due, paid, best_amount FROM pay_channels", ())
        out: dict[tuple[str, str], dict[str, int]] = {}
        for r in rows:
            t = out.setdefault((r["role"], r["state"]), dict.fromkeys(("channels", "deposit", "due", "paid", "best_amount"), 0))
            t["channels"] += 1
            for column in ("deposit", "due", "paid", "best_amount"):
                t[column] += amount_from_db(r[column])
        return out

    async def save_best(self, channel_id: str, seq: int, amount: int, raw: bytes, paid: int) -> bool:
        """Payee: keep a verified voucher as the best. Durable: acknowledge only after this returns.

        False (nothing written) if the channel is unknown or ``seq`` is not above the stored best.
        """
        return await self._advance(channel_id, seq, amount, raw, paid)

    async def save_signed(self, channel_id: str, seq: int, amount: int, raw: bytes, *,
                          meter: MeterRecord | None = None) -> bool:
        """Payer: record a voucher durably BEFORE sending it.

        False (nothing written; do not send) if the channel is unknown or ``seq``
        was already used: one seq never carries two amounts. ``meter``, if given,
        is stored in the same transaction (one commit per paid note).
        """
        return await self._advance(channel_id, seq, amount, raw, None, meter)

    async def _advance(self, channel_id: str, seq: int, amount: int, raw: bytes, paid: int | None,
                       meter: MeterRecord | None = None) -> bool:
        params = (
            _seq(seq), amount_to_db(amount), bytes(raw), None if paid is None else amount_to_db(paid, "paid"),
            int(self._clock()), channel_id,
        )

        def fn(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT best_seq FROM pay_channels WHERE channel_id = ?", (channel_id,)).fetchone()
            if row is None or amount_from_db(row[0]) >= seq:
                return False
            conn.execute(
                "UPDATE pay_channels SET best_seq = ?, best_amount = ?, best_voucher = ?, paid = COALESCE(?, paid),"
                " updated_at = ? WHERE channel_id = ?",
                params,
            )
            if meter is not None:
                conn.execute(
                    "UPDATE pay_channels SET meter_ms = ?, meter_at = ?, meter_live = ?, meter_acts = ?"
                    " WHERE channel_id = ?",
                    (meter.ms, meter.at_ms, int(meter.live), meter.activities, channel_id),
                )
            return True

        return await self._store.transaction(fn, durable=True)

    async def set_acked(self, channel_id: str, seq: int) -> bool:
        """Payer: the payee acknowledged ``seq`` (never moves back). False if the channel is unknown."""
        text, now = _seq(seq), int(self._clock())

        def fn(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT acked_seq FROM pay_channels WHERE channel_id = ?", (channel_id,)).fetchone()
            if row is None:
                return False
            if amount_from_db(row[0]) < seq:
                conn.execute(
                    "UPDATE pay_channels SET acked_seq = ?, updated_at = ? WHERE channel_id = ?", (text, now, channel_id)
                )
            return True

        return await self._store.transaction(fn, durable=True)

    async def set_due(self, channel_id: str, due: int) -> bool:
        """Payee: the amount due sent in the last debit note.

        Not durable (``synchronous=NORMAL``: it survives a killed process, not a power cut):
        the claim itself is the durably stored debit note, and the next note recomputes it.
        """
        changed = await self._store.execute(
            "UPDATE pay_channels SET due = ?, updated_at = ? WHERE channel_id = ?",
            (amount_to_db(due, "due"), int(self._clock()), channel_id),
        )
        return changed > 0

    async def set_state(self, channel_id: str, state: str, reason: str | None = None) -> bool:
        """``open`` / ``closing`` / ``closed``; a ``None`` reason keeps the one stored."""
        changed = await self._store.execute(
            "UPDATE pay_channels SET state = ?, reason = COALESCE(?, reason), updated_at = ? WHERE channel_id = ?",
            (state, reason, int(self._clock()), channel_id),
            durable=True,
        )
        return changed > 0

    async def get_meter(self, channel_id: str) -> MeterRecord | None:
        """Payer: the own meter stored with the channel; ``None`` if the channel is unknown."""
        row = await self._store.fetchone(
            "SELECT meter_ms, meter_at, meter_live, meter_acts FROM pay_channels WHERE channel_id = ?", (channel_id,)
        )
        if row is None:
            return None
        return MeterRecord(row["meter_ms"], row["meter_at"], bool(row["meter_live"]), row["meter_acts"])

    async def set_meter(self, channel_id: str, meter: MeterRecord) -> bool:
        """Payer: store the own meter. Not durable (``synchronous=NORMAL``): a killed process keeps it;
        it is an estimate, rewritten every few seconds, not money."""
        changed = await self._store.execute(
            "UPDATE pay_channels SET meter_ms = ?, meter_at = ?, meter_live = ?, meter_acts = ? WHERE channel_id = ?",
            (meter.ms, meter.at_ms, int(meter.live), meter.activities, channel_id),
        )
        return changed > 0

    async def set_deposit(self, channel_id: str, deposit: int, terms: bytes) -> bool:
        """A topped-up channel: its new deposit and the terms that carry it."""
        changed = await self._store.execute(
            "UPDATE pay_channels SET deposit = ?, terms = ?, updated_at = ? WHERE channel_id = ?",
            (amount_to_db(deposit, "deposit"), bytes(terms), int(self._clock()), channel_id),
            durable=True,
        )
        return changed > 0

    async def set_evidence(self, channel_id: str, evidence: bytes) -> bool:
        """Keep the proof of an equivocation or a decrease (canonical CBOR of both vouchers)."""
        changed = await self._store.execute(
            "UPDATE pay_channels SET evidence = ?, updated_at = ? WHERE channel_id = ?",
            (bytes(evidence), int(self._clock()), channel_id),
            durable=True,
        )
        return changed > 0


def _pay_channel(row: sqlite3.Row) -> StoredPayChannel:
    return StoredPayChannel(
        channel_id=row["channel_id"],
        agreement_id=row["agreement_id"],
        role=row["role"],
        peer_id=row["peer_id"],
        terms=bytes(row["terms"]),
        deposit=amount_from_db(row["deposit"]),
        state=row["state"],
        best_seq=amount_from_db(row["best_seq"]),
        best_amount=amount_from_db(row["best_amount"]),
        best_voucher=None if row["best_voucher"] is None else bytes(row["best_voucher"]),
        acked_seq=amount_from_db(row["acked_seq"]),
        due=amount_from_db(row["due"]),
        paid=amount_from_db(row["paid"]),
        evidence=None if row["evidence"] is None else bytes(row["evidence"]),
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# ---------------------------------------------------------------------- debit notes


@dataclass(frozen=True, slots=True)
class StoredDebitNote:
    agreement_id: str
    seq: int
    raw: bytes
    amount_due: int
    accepted_amount: int | None
    status: str
    """``sent`` (not answered yet), ``accepted`` or ``rejected``."""
    reason: str | None
    created_at: int


_NOTE_COLUMNS = "agreement_id, seq, raw, amount_due, accepted_amount, status, reason, created_at"


class DebitNotes:
    """Debit notes sent (provider) or received (requestor), by ``(agreement_id, seq)``."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def insert(self, agreement_id: str, seq: int, raw: bytes, amount_due: int, *,
                     channel_id: str | None = None) -> StoredDebitNote:
        """Status ``sent``. :class:`~yagna.store.ConstraintError` if ``seq`` is taken for the agreement.

        With ``channel_id``, the channel's ``due`` is set to ``amount_due`` in the same durable
        transaction (one commit per note sent, not two).
        """
        now = int(self._clock())
        due = amount_to_db(amount_due, "amount_due")

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO debit_notes ({_NOTE_COLUMNS}) VALUES (?, ?, ?, ?, NULL, 'sent', NULL, ?)",
                (agreement_id, _seq(seq), bytes(raw), due, now),
            )
            if channel_id is not None:
                conn.execute("UPDATE pay_channels SET due = ?, updated_at = ? WHERE channel_id = ?",
                             (due, now, channel_id))

        await self._store.transaction(fn, durable=True)
        return StoredDebitNote(agreement_id, seq, bytes(raw), amount_due, None, "sent", None, now)

    async def get(self, agreement_id: str, seq: int) -> StoredDebitNote | None:
        row = await self._store.fetchone(
            f"SELECT {_NOTE_COLUMNS} FROM debit_notes WHERE agreement_id = ? AND seq = ?", (agreement_id, _seq(seq))
        )
        return _debit_note(row) if row else None

    async def set_status(
        self, agreement_id: str, seq: int, status: str, *, accepted_amount: int | None = None, reason: str | None = None
    ) -> bool:
        """``accepted`` (with the amount the voucher covers) or ``rejected`` (with a reason).

        Not durable: a record of the answer, not money (the voucher is stored durably on its own).
        """
        accepted = None if accepted_amount is None else amount_to_db(accepted_amount, "accepted_amount")
        changed = await self._store.execute(
            "UPDATE debit_notes SET status = ?, accepted_amount = COALESCE(?, accepted_amount),"
            " reason = COALESCE(?, reason) WHERE agreement_id = ? AND seq = ?",
            (status, accepted, reason, agreement_id, _seq(seq)),
        )
        return changed > 0

    async def list(self, agreement_id: str, *, limit: int = 10_000) -> builtins.list[StoredDebitNote]:
        """The agreement's notes, oldest (lowest seq) first."""
        rows = await self._store.fetchall(
            f"SELECT {_NOTE_COLUMNS} FROM debit_notes WHERE agreement_id = ? ORDER BY length(seq), seq LIMIT ?", (agreement_id, limit)
        )
        return [_debit_note(r) for r in rows]

    async def latest(self, agreement_id: str) -> StoredDebitNote | None:
        row = await self._store.fetchone(
            f"SELECT {_NOTE_COLUMNS} FROM debit_notes WHERE agreement_id = ? ORDER BY length(seq) DESC, seq DESC LIMIT 1", (agreement_id,)
        )
        return _debit_note(row) if row else None


def _debit_note(row: sqlite3.Row) -> StoredDebitNote:
    return StoredDebitNote(
        row["agreement_id"], amount_from_db(row["seq"]), bytes(row["raw"]), amount_from_db(row["amount_due"]),
        None if row["accepted_amount"] is None else amount_from_db(row["accepted_amount"]),
        row["status"], row["reason"], row["created_at"],
    )


# ---------------------------------------------------------------------- invoices


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    agreement_id: str
    role: str
    """``payee`` (issued it) or ``payer`` (received it)."""
    amount: int
    status: str
    """``issued``, ``paid`` or ``settled``."""
    raw: bytes | None
    created_at: int
    updated_at: int


_INVOICE_COLUMNS = "agreement_id, role, amount, status, raw, created_at, updated_at"


class Invoices:
    """One invoice per agreement, written at its end."""

    def __init__(self, store: Store, *, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock

    async def upsert(self, agreement_id: str, role: str, amount: int, status: str, raw: bytes | None = None) -> None:
        """Insert, or update amount and status (and raw, unless ``None``); ``created_at`` is kept."""
        now = int(self._clock())
        await self._store.execute(
            f"INSERT INTO invoices ({_INVOICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(agreement_id) DO UPDATE SET role = excluded.role, amount = excluded.amount,"
            " status = excluded.status, raw = COALESCE(excluded.raw, raw), updated_at = excluded.updated_at",
            (agreement_id, role, amount_to_db(amount), status, None if raw is None else bytes(raw), now, now),
            durable=True,
        )

    async def get(self, agreement_id: str) -> StoredInvoice | None:
        row = await self._store.fetchone(f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE agreement_id = ?", (agreement_id,))
        return _invoice(row) if row else None

    async def list(
        self, *, role: str | None = None, status: str | None = None, limit: int = 1000
    ) -> builtins.list[StoredInvoice]:
        where, params = where_equal(role=role, status=status)
        rows = await self._store.fetchall(
            f"SELECT {_INVOICE_COLUMNS} FROM invoices {where} ORDER BY created_at DESC, agreement_id LIMIT ?",
            (*params, limit),
        )
        return [_invoice(r) for r in rows]


def _invoice(row: sqlite3.Row) -> StoredInvoice:
    return StoredInvoice(
        row["agreement_id"], row["role"], amount_from_db(row["amount"]), row["status"],
        None if row["raw"] is None else bytes(row["raw"]), row["created_at"], row["updated_at"],
    )
