"""The kit's SQLite file: engine set-up and numbered migrations.

One file in the data directory, opened with WAL, ``synchronous=FULL`` (a committed visit
survives a power cut), a busy timeout and foreign keys. Writes take the write lock at
``BEGIN IMMEDIATE`` so two writers queue instead of failing half way. Migrations run in
one transaction each; a database that already holds data is copied aside first, so an
upgrade in the field can always be undone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from sync.files import private_dir
from sync.outbox import OUTBOX_DDL
from sync.sqlite import backup_to, sqlite_engine


class StoreError(RuntimeError):
    """The visit store cannot be opened or used; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _m1() -> tuple[str, ...]:
    return (
        """CREATE TABLE visit (
            visit_id TEXT PRIMARY KEY,
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            latest_version INTEGER NOT NULL
        )""",
        "CREATE INDEX visit_created ON visit(created_at)",
        """CREATE TABLE visit_version (
            record_id TEXT PRIMARY KEY,
            visit_id TEXT NOT NULL REFERENCES visit(visit_id),
            version INTEGER NOT NULL,
            supersedes TEXT,
            created_at TEXT NOT NULL,
            volunteer TEXT NOT NULL,
            language TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'void')),
            void_reason TEXT,
            note TEXT,
            answers TEXT NOT NULL,
            outcome TEXT NOT NULL,
            triage TEXT NOT NULL,
            forms_version TEXT NOT NULL,
            contact_name TEXT,
            contact_phone TEXT,
            purged_at TEXT,
            UNIQUE (visit_id, version)
        )""",
        """CREATE TABLE consent_event (
            consent_id TEXT PRIMARY KEY,
            visit_id TEXT NOT NULL REFERENCES visit(visit_id),
            kind TEXT NOT NULL CHECK (kind IN ('initial', 'withdrawal')),
            items TEXT NOT NULL,
            text_version TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            language TEXT NOT NULL,
            method TEXT NOT NULL,
            volunteer TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX consent_visit ON consent_event(visit_id)",
        """CREATE TABLE draft (
            draft_id TEXT PRIMARY KEY,
            volunteer TEXT NOT NULL,
            language TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE tally (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('ineligible', 'consent_refused')),
            volunteer TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX tally_created ON tally(created_at)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            visit_id TEXT,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX audit_visit ON audit(visit_id)",
        *OUTBOX_DDL,
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "visits, consent, drafts, outbox", _m1()),
    # The reconciliation counts from this index alone instead of reading every payload.
    Migration(
        2,
        "outbox index for the reconciliation",
        ("CREATE INDEX outbox_reconcile ON outbox(state, visit_id, sent_at, last_error)",),
    ),
)
LATEST = MIGRATIONS[-1].version


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC with microseconds and ``Z``: sorts as text in time order."""
    if moment.tzinfo is None:
        raise ValueError("times must carry a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def make_engine(path: Path, key: bytes | None = None) -> Engine:
    """The engine for the kit's file (SQLCipher with ``key``); the folder is owner only."""
    private_dir(path.parent)
    if not path.exists():
        # Health data: readable by the kit's user only, from the first byte.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return sqlite_engine(path, key=key, pool_size=4, max_overflow=4)


def schema_version(conn: Connection) -> int:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migration ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    )
    found = conn.execute(text("SELECT MAX(version) FROM schema_migration")).scalar()
    return int(found or 0)


def migrate(
    engine: Engine,
    path: Path,
    *,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    clock: Callable[[], datetime] = utc_now,
    key: bytes | None = None,
) -> int:
    """Bring the file up to the newest schema; returns its version.

    Refuses a file made by a newer popup-kit (never downgrade data in place).
    """
    newest = migrations[-1].version
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        current = schema_version(conn)
        if current > newest:
            raise StoreError(
                f"{path} was written by a newer popup-kit (schema {current}, this one knows "
                f"{newest}); install the newer popup-kit again rather than lose records"
            )
        if current == newest:
            return current
        has_data = current > 0
    if has_data:
        backup(engine, path.with_name(f"{path.name}.schema-{current}.bak"), key=key)
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        current = schema_version(conn)  # another process may have migrated meanwhile
        for migration in migrations:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                conn.execute(text(statement))
            conn.execute(
                text(
                    "INSERT INTO schema_migration (version, name, applied_at) VALUES (:v, :n, :t)"
                ),
                {"v": migration.version, "n": migration.name, "t": iso(clock())},
            )
    return newest


def backup(engine: Engine, target: Path, *, key: bytes | None = None) -> Path:
    """A consistent copy of the live database (SQLite's online backup), encrypted with
    the same key as the store."""
    raw = engine.raw_connection()
    try:
        backup_to(raw.driver_connection, target, key)
    finally:
        raw.close()
    return target
