"""Versioned schema migrations.

A migration is ``(version, description, sql)``. Versions start at 1 and
increase by one; a released migration is never edited, only followed by a new
one. :func:`migrate` runs on the store's worker thread: every pending
migration is applied with its ``schema_version`` row in one ``BEGIN IMMEDIATE``
transaction (two daemons opening the same file at once serialize on the write
lock and the second sees the work already done). A database whose version is
newer than :data:`MIGRATIONS` knows is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from yagna.store.errors import StoreOpenError
from yagna.store.sqlite_tx import immediate_transaction


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "app keys, peers, settings",
        """
        -- Bearer keys for the local REST API. Only sha256(token) is stored:
        -- a leaked database file does not leak usable keys.
        CREATE TABLE app_keys (
            id           TEXT PRIMARY KEY,
            name         TEXT NOT NULL UNIQUE,
            key_hash     BLOB NOT NULL UNIQUE,
            created_at   INTEGER NOT NULL,
            last_used_at INTEGER
        );

        -- Peers we know of; addrs is a JSON list of multiaddr strings.
        CREATE TABLE peers (
            node_id        TEXT PRIMARY KEY,
            addrs          TEXT NOT NULL,
            source         TEXT NOT NULL CHECK (source IN ('bootstrap', 'px', 'inbound')),
            first_seen     INTEGER NOT NULL,
            last_seen      INTEGER NOT NULL,
            last_connected INTEGER,
            failures       INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX peers_last_seen ON peers (last_seen);

        CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "market: provider presets, agreements, provider records",
        """
        -- A provider's presets; body is the preset's JSON (market.presets).
        CREATE TABLE presets (
            name       TEXT PRIMARY KEY,
            body       TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );

        -- Agreements this node is a party to; raw is the co-signed document
        -- (market.agreement), verifiable offline by anyone.
        CREATE TABLE agreements (
            agreement_id TEXT PRIMARY KEY,
            role         TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
            peer_id      TEXT NOT NULL,
            offer_id     TEXT NOT NULL,
            demand_id    TEXT,
            state        TEXT NOT NULL,
            reason       TEXT,
            raw          BLOB NOT NULL,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        );
        CREATE INDEX agreements_state ON agreements (state);

        -- The requestor's own record of each provider it dealt with (reputation).
        CREATE TABLE provider_records (
            node_id              TEXT PRIMARY KEY,
            successes            INTEGER NOT NULL DEFAULT 0,
            failures             INTEGER NOT NULL DEFAULT 0,
            rejections           INTEGER NOT NULL DEFAULT 0,
            timeouts             INTEGER NOT NULL DEFAULT 0,
            latency_ms           REAL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_failure_ms      INTEGER,
            updated_at           INTEGER NOT NULL
        );
        """,
    ),
    Migration(
        3,
        "exe-unit: activities",
        """
        -- Activities this node runs (provider) or drives (requestor). A provider
        -- that restarts finds its non-terminal rows and the containers they
        -- name, reports them terminated and removes the containers.
        CREATE TABLE activities (
            activity_id  TEXT PRIMARY KEY,
            agreement_id TEXT NOT NULL,
            role         TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
            peer_id      TEXT NOT NULL,
            state        TEXT NOT NULL,
            reason       TEXT,
            container_id TEXT,
            usage        TEXT,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        );
        CREATE INDEX activities_agreement ON activities (agreement_id);
        CREATE INDEX activities_state ON activities (state);
        """,
    ),
    Migration(
        4,
        "payments: ledger, channels, vouchers, debit notes",
        """
        -- Money columns are TEXT holding the canonical decimal of a non-negative
        -- int of base units (1e-18 token): no sign, no leading zero, at most 78
        -- digits (2**255 - 1, yagna.core.money.MAX_UNITS). An INTEGER column
        -- would overflow at 2**63 - 1 base units, about 9.2 tokens. Arithmetic is
        -- done in Python inside one transaction on the store thread; the CHECKs
        -- refuse anything that is not canonical, so equal amounts are equal text.
        -- To order by amount: ORDER BY length(col), col. Sequence numbers are
        -- stored the same way: the wire allows them past 2**63 - 1 too.

        -- The test-network ledger (yagna.store.payment_repos.SqliteLedger): what
        -- this node's ledger knows of each account. total = funded - spent + earned,
        -- free = total - locked.
        CREATE TABLE ledger_accounts (
            account    TEXT PRIMARY KEY,
            funded     TEXT NOT NULL DEFAULT '0' CHECK (typeof(funded) = 'text' AND length(funded) BETWEEN 1 AND 78
                           AND funded NOT GLOB '*[^0-9]*' AND (funded = '0' OR funded NOT GLOB '0*')),
            locked     TEXT NOT NULL DEFAULT '0' CHECK (typeof(locked) = 'text' AND length(locked) BETWEEN 1 AND 78
                           AND locked NOT GLOB '*[^0-9]*' AND (locked = '0' OR locked NOT GLOB '0*')),
            spent      TEXT NOT NULL DEFAULT '0' CHECK (typeof(spent) = 'text' AND length(spent) BETWEEN 1 AND 78
                           AND spent NOT GLOB '*[^0-9]*' AND (spent = '0' OR spent NOT GLOB '0*')),
            earned     TEXT NOT NULL DEFAULT '0' CHECK (typeof(earned) = 'text' AND length(earned) BETWEEN 1 AND 78
                           AND earned NOT GLOB '*[^0-9]*' AND (earned = '0' OR earned NOT GLOB '0*')),
            updated_at INTEGER NOT NULL
        );

        -- Deposits the ledger holds. role: this node locked it (payer) or accepted
        -- the payer's promise (payee). A channel id is never reused, even closed.
        CREATE TABLE ledger_channels (
            channel_id TEXT PRIMARY KEY,
            payer      TEXT NOT NULL,
            payee      TEXT NOT NULL,
            deposit    TEXT NOT NULL CHECK (typeof(deposit) = 'text' AND length(deposit) BETWEEN 1 AND 78
                           AND deposit NOT GLOB '*[^0-9]*' AND (deposit = '0' OR deposit NOT GLOB '0*')),
            redeemed   TEXT NOT NULL DEFAULT '0' CHECK (typeof(redeemed) = 'text' AND length(redeemed) BETWEEN 1 AND 78
                           AND redeemed NOT GLOB '*[^0-9]*' AND (redeemed = '0' OR redeemed NOT GLOB '0*')),
            state      TEXT NOT NULL CHECK (state IN ('open', 'closed')),
            role       TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
            created_at INTEGER NOT NULL,
            closed_at  INTEGER
        );

        -- The voucher protocol's side of each channel, as this node sees it.
        -- terms: canonical CBOR of the channel terms. best_voucher: the payee's
        -- best voucher (raw), or the payer's last signed one. acked_seq: payer
        -- only. due (payee): the last amount due sent in a debit note. paid
        -- (payee): counted as paid, min(best_amount, deposit). evidence: both
        -- vouchers of an equivocation or a decrease, kept for a dispute.
        CREATE TABLE pay_channels (
            channel_id   TEXT PRIMARY KEY,
            agreement_id TEXT NOT NULL UNIQUE,
            role         TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
            peer_id      TEXT NOT NULL,
            terms        BLOB NOT NULL,
            deposit      TEXT NOT NULL CHECK (typeof(deposit) = 'text' AND length(deposit) BETWEEN 1 AND 78
                             AND deposit NOT GLOB '*[^0-9]*' AND (deposit = '0' OR deposit NOT GLOB '0*')),
            state        TEXT NOT NULL CHECK (state IN ('open', 'closing', 'closed')),
            best_seq     TEXT NOT NULL DEFAULT '0' CHECK (typeof(best_seq) = 'text' AND length(best_seq) BETWEEN 1 AND 78
                             AND best_seq NOT GLOB '*[^0-9]*' AND (best_seq = '0' OR best_seq NOT GLOB '0*')),
            best_amount  TEXT NOT NULL DEFAULT '0' CHECK (typeof(best_amount) = 'text'
                             AND length(best_amount) BETWEEN 1 AND 78 AND best_amount NOT GLOB '*[^0-9]*'
                             AND (best_amount = '0' OR best_amount NOT GLOB '0*')),
            best_voucher BLOB,
            acked_seq    TEXT NOT NULL DEFAULT '0' CHECK (typeof(acked_seq) = 'text' AND length(acked_seq) BETWEEN 1 AND 78
                             AND acked_seq NOT GLOB '*[^0-9]*' AND (acked_seq = '0' OR acked_seq NOT GLOB '0*')),
            due          TEXT NOT NULL DEFAULT '0' CHECK (typeof(due) = 'text' AND length(due) BETWEEN 1 AND 78
                             AND due NOT GLOB '*[^0-9]*' AND (due = '0' OR due NOT GLOB '0*')),
            paid         TEXT NOT NULL DEFAULT '0' CHECK (typeof(paid) = 'text' AND length(paid) BETWEEN 1 AND 78
                             AND paid NOT GLOB '*[^0-9]*' AND (paid = '0' OR paid NOT GLOB '0*')),
            evidence     BLOB,
            reason       TEXT,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        );
        CREATE INDEX pay_channels_role_state ON pay_channels (role, state);

        -- Debit notes sent (provider) or received (requestor), by agreement and seq.
        CREATE TABLE debit_notes (
            agreement_id    TEXT NOT NULL,
            seq             TEXT NOT NULL CHECK (typeof(seq) = 'text' AND length(seq) BETWEEN 1 AND 78
                                AND seq NOT GLOB '*[^0-9]*' AND (seq = '0' OR seq NOT GLOB '0*')),
            raw             BLOB NOT NULL,
            amount_due      TEXT NOT NULL CHECK (typeof(amount_due) = 'text' AND length(amount_due) BETWEEN 1 AND 78
                                AND amount_due NOT GLOB '*[^0-9]*' AND (amount_due = '0' OR amount_due NOT GLOB '0*')),
            accepted_amount TEXT CHECK (accepted_amount IS NULL OR (typeof(accepted_amount) = 'text'
                                AND length(accepted_amount) BETWEEN 1 AND 78 AND accepted_amount NOT GLOB '*[^0-9]*'
                                AND (accepted_amount = '0' OR accepted_amount NOT GLOB '0*'))),
            status          TEXT NOT NULL CHECK (status IN ('sent', 'accepted', 'rejected')),
            reason          TEXT,
            created_at      INTEGER NOT NULL,
            PRIMARY KEY (agreement_id, seq)
        );

        -- One invoice per agreement, at its end.
        CREATE TABLE invoices (
            agreement_id TEXT PRIMARY KEY,
            role         TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
            amount       TEXT NOT NULL CHECK (typeof(amount) = 'text' AND length(amount) BETWEEN 1 AND 78
                             AND amount NOT GLOB '*[^0-9]*' AND (amount = '0' OR amount NOT GLOB '0*')),
            status       TEXT NOT NULL CHECK (status IN ('issued', 'paid', 'settled')),
            raw          BLOB,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        );
        CREATE INDEX invoices_status ON invoices (status);
        """,
    ),
    Migration(
        5,
        "reputation: disagreements",
        """
        -- Results of a provider that lost a redundancy vote (requestor_sdk verification).
        ALTER TABLE provider_records ADD COLUMN disagreements INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        6,
        "payments: the payer's own meter survives restarts",
        """
        -- Payer channels: the requestor's own clock of the agreement's activities
        -- (payments.meter.MeterRecord), which caps what it signs. Kept across
        -- restarts so a restarted requestor pays for the time before it too.
        ALTER TABLE pay_channels ADD COLUMN meter_ms INTEGER NOT NULL DEFAULT 0 CHECK (meter_ms >= 0);
        ALTER TABLE pay_channels ADD COLUMN meter_at INTEGER NOT NULL DEFAULT 0 CHECK (meter_at >= 0);
        ALTER TABLE pay_channels ADD COLUMN meter_live INTEGER NOT NULL DEFAULT 0 CHECK (meter_live IN (0, 1));
        ALTER TABLE pay_channels ADD COLUMN meter_acts INTEGER NOT NULL DEFAULT 0 CHECK (meter_acts >= 0);
        """,
    ),
    Migration(
        7,
        "payments: channels on a chain and the journal of their transactions",
        """
        -- The EVM settlement driver's channels (yagna/chain/driver.py). The chain is the
        -- truth; this is what the node needs to act on it after a crash: a redeem or close
        -- is written here (pending_*) before it is sent, with every transaction hash as it
        -- goes out, and finished from the chain on restart (never paid twice: the contract
        -- refuses a cumulative amount that is not above what it paid).
        CREATE TABLE chain_channels (
            channel_id      TEXT PRIMARY KEY,                -- 0x + 64 hex: the contract's id
            chain_id        INTEGER NOT NULL,
            contract        TEXT NOT NULL,
            role            TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
            proposed_id     TEXT UNIQUE,                     -- the caller's id for the payer's open
            payer           TEXT NOT NULL,
            payee           TEXT NOT NULL,
            deposit         TEXT NOT NULL CHECK (deposit GLOB '[0-9]*'),
            expiry          INTEGER NOT NULL,
            redeemed        TEXT NOT NULL DEFAULT '0' CHECK (redeemed GLOB '[0-9]*'),
            refunded        TEXT,                            -- back to the payer at the end
            state           TEXT NOT NULL CHECK (state IN ('open', 'closed')),
            pending_amount  TEXT,                            -- a redeem/close sent, outcome unknown
            pending_close   INTEGER,
            pending_proof   BLOB,
            pending_hashes  TEXT,                            -- JSON list, appended as each goes out
            txs             TEXT NOT NULL DEFAULT '[]',      -- JSON [[op, hash], ...] mined
            from_block      INTEGER NOT NULL DEFAULT 0,      -- no event of the channel is older
            created_at      INTEGER NOT NULL,
            updated_at      INTEGER NOT NULL
        );
        """,
    ),
)

_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
)
"""


def validate(migrations: Sequence[Migration]) -> None:
    """Refuse a migration list with gaps, duplicates or a wrong start (a bug)."""
    for expected, m in enumerate(migrations, start=1):
        if m.version != expected:
            raise ValueError(f"migration versions must be 1, 2, 3, ...; got {m.version} at position {expected}")


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements.

    ``executescript`` would COMMIT any open transaction first, so a migration is
    run statement by statement inside our own transaction instead.
    ``sqlite3.complete_statement`` keeps ``;`` inside strings and triggers intact.
    """
    out: list[str] = []
    buf = ""
    for chunk in script.split(";"):
        buf += chunk + ";"
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if _has_code(stmt):
                out.append(stmt)
            buf = ""
    if _has_code(buf.rstrip(";")):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buf.strip()[:80]!r}")
    return out


def _has_code(stmt: str) -> bool:
    lines = (line.split("--", 1)[0].strip() for line in stmt.splitlines())
    return any(line and line != ";" for line in lines)


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, where: str = "") -> int:
    """Bring the schema up to date; return the resulting version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Runs on the
    worker thread. ``where`` names the file in error messages.
    """
    validate(migrations)
    latest = len(migrations)
    # full sync: a half-migrated schema is worse than a slow start
    with immediate_transaction(conn, full_sync=True):
        conn.execute(_SCHEMA_VERSION_DDL)
        version = current_version(conn)
        if version > latest:
            raise StoreOpenError(
                f"the node database {where} has schema version {version}, but this yagna only knows "
                f"versions up to {latest}: it was written by a newer yagna. Upgrade yagna, or use "
                f"another data directory."
            )
        for m in migrations[version:]:
            for stmt in split_statements(m.sql):
                conn.execute(stmt)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (m.version, m.description, int(time.time())),
            )
    return latest
