"""The initial schema: kits, enrolment tokens, records, conflicts, withdrawals.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    op.execute(
        """CREATE TABLE kit (
            kit_id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            enrolled_at TEXT,
            credential_hash TEXT,
            receipt_key TEXT,
            slip_key TEXT,
            revoked_at TEXT,
            revoked_reason TEXT
        )"""
    )
    op.execute(
        """CREATE TABLE enrollment_token (
            token_hash TEXT PRIMARY KEY,
            kit_id TEXT NOT NULL REFERENCES kit(kit_id),
            created_at TEXT NOT NULL,
            used_at TEXT
        )"""
    )
    op.execute(
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
        )"""
    )
    op.execute("CREATE INDEX record_visit ON record(visit_id)")
    op.execute("CREATE INDEX record_code ON record(referral_code)")
    op.execute("CREATE INDEX record_received ON record(received_at)")
    op.execute(
        f"""CREATE TABLE conflict (
            id {serial},
            record_id TEXT NOT NULL,
            kit_id TEXT NOT NULL,
            stored_hash TEXT NOT NULL,
            incoming_hash TEXT NOT NULL,
            received_at TEXT NOT NULL,
            UNIQUE (record_id, incoming_hash)
        )"""
    )
    op.execute(
        """CREATE TABLE withdrawal (
            visit_id TEXT PRIMARY KEY,
            kit_id TEXT NOT NULL,
            record_id TEXT NOT NULL,
            withdrawn_at TEXT NOT NULL
        )"""
    )
