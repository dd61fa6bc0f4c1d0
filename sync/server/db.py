"""The server's database: engine set-up and numbered, dialect-aware migrations.

SQLite (a file URL) by default, PostgreSQL when the URL says so. Migrations are applied
at startup, each in its own transaction, and recorded in the ``schema_version`` table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, inspect, text

from sync.sqlite import CONNECT_ARGS, tune_sqlite

Dialect = str


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[Dialect], list[str]]


def _serial(dialect: Dialect) -> str:
    if dialect == "postgresql":
        return "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    return "INTEGER PRIMARY KEY AUTOINCREMENT"


def _m1(dialect: Dialect) -> list[str]:
    return [
        """CREATE TABLE kit (
            kit_id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            enrolled_at TEXT,
            credential_hash TEXT,
            receipt_key TEXT,
            slip_key TEXT,
            revoked_at TEXT,
            revoked_reason TEXT
        )""",
        """CREATE TABLE enrollment_token (
            token_hash TEXT PRIMARY KEY,
            kit_id TEXT NOT NULL REFERENCES kit(kit_id),
            created_at TEXT NOT NULL,
            used_at TEXT
        )""",
        """CREATE TABLE record (
            record_id TEXT PRIMARY KEY,
            kit_id TEXT NOT NULL REFERENCES kit(kit_id),
            record_type TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            signature TEXT NOT NULL,
            visit_id TEXT,
            visit_version INTEGER,
            referral_code TEXT,
            payload TEXT NOT NULL,
            body TEXT NOT NULL,
            scrubbed_at TEXT
        )""",
        "CREATE INDEX record_visit ON record(visit_id)",
        "CREATE INDEX record_code ON record(referral_code)",
        "CREATE INDEX record_received ON record(received_at)",
        f"""CREATE TABLE conflict (
            id {_serial(dialect)},
            record_id TEXT NOT NULL,
            kit_id TEXT NOT NULL,
            stored_hash TEXT NOT NULL,
            incoming_hash TEXT NOT NULL,
            received_at TEXT NOT NULL,
            UNIQUE (record_id, incoming_hash)
        )""",
        """CREATE TABLE withdrawal (
            visit_id TEXT PRIMARY KEY,
            kit_id TEXT NOT NULL,
            record_id TEXT NOT NULL,
            withdrawn_at TEXT NOT NULL
        )""",
    ]


def _m2(_dialect: Dialect) -> list[str]:
    # Tokens from before expiry existed have no expires_at and so no longer work.
    return [
        "ALTER TABLE enrollment_token ADD COLUMN expires_at TEXT",
        "ALTER TABLE enrollment_token ADD COLUMN rekey INTEGER NOT NULL DEFAULT 0",
    ]


def _m3(dialect: Dialect) -> list[str]:
    # A withdrawal belongs to the kit that sent it: two kits may name the same visit id.
    if dialect == "postgresql":
        return [
            "ALTER TABLE withdrawal DROP CONSTRAINT withdrawal_pkey",
            "ALTER TABLE withdrawal ADD PRIMARY KEY (kit_id, visit_id)",
        ]
    return [
        """CREATE TABLE withdrawal_by_kit (
            visit_id TEXT NOT NULL,
            kit_id TEXT NOT NULL,
            record_id TEXT NOT NULL,
            withdrawn_at TEXT NOT NULL,
            PRIMARY KEY (kit_id, visit_id)
        )""",
        "INSERT INTO withdrawal_by_kit SELECT visit_id, kit_id, record_id, withdrawn_at "
        "FROM withdrawal",
        "DROP TABLE withdrawal",
        "ALTER TABLE withdrawal_by_kit RENAME TO withdrawal",
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _m1),
    Migration(2, "enrolment token expiry and re-key", _m2),
    Migration(3, "withdrawals per kit", _m3),
)


def normalize_url(db: str) -> str:
    """A SQLAlchemy URL; a bare path means a SQLite file."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def make_engine(db_url: str) -> Engine:
    url = normalize_url(db_url)
    if url.startswith("sqlite"):
        return tune_sqlite(create_engine(url, connect_args=CONNECT_ARGS, pool_size=8))
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> int:
    """Apply the migrations this database lacks; returns its schema version."""
    dialect = engine.dialect.name
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if dialect == "postgresql":
            # Two servers starting at once: one migrates, the other waits.
            conn.execute(text("SELECT pg_advisory_xact_lock(84700001)"))
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        )
        applied = {int(v) for v in conn.scalars(text("SELECT version FROM schema_version"))}
        known = max(m.version for m in MIGRATIONS)
        if applied and max(applied) > known:
            raise RuntimeError(
                f"database schema version {max(applied)} is newer than this server knows "
                f"({known}); upgrade popup-kit"
            )
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            for statement in migration.statements(dialect):
                conn.execute(text(statement))
            conn.execute(
                text(
                    "INSERT INTO schema_version (version, name, applied_at) "
                    "VALUES (:v, :n, CURRENT_TIMESTAMP)"
                ),
                {"v": migration.version, "n": migration.name},
            )
        return max(applied | {m.version for m in MIGRATIONS})


def database_exists(db_url: str) -> bool:
    """True when ``db_url`` names a database that already holds the server's tables."""
    url = normalize_url(db_url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return False
    engine = make_engine(url)
    try:
        return inspect(engine).has_table("kit")
    finally:
        engine.dispose()
