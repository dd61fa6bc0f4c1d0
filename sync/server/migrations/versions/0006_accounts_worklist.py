"""The centre's accounts, sessions, sign-in attempts and access audit; the worklist's
append-only event log per referral and the attendees' call-back requests.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    op.execute(
        """CREATE TABLE staff_user (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('clinician', 'coordinator')),
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            disabled_at TEXT
        )"""
    )
    # Only a hash of the session id is kept: a copy of the database signs no one in.
    op.execute(
        """CREATE TABLE staff_session (
            id_hash TEXT PRIMARY KEY,
            user_name TEXT REFERENCES staff_user(name),
            csrf_token TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        )"""
    )
    op.execute("CREATE INDEX staff_session_seen ON staff_session(last_seen_at)")
    op.execute(
        f"""CREATE TABLE signin_attempt (
            id {serial},
            at TEXT NOT NULL,
            user_name TEXT NOT NULL,
            address TEXT NOT NULL,
            ok INTEGER NOT NULL
        )"""
    )
    op.execute("CREATE INDEX signin_attempt_user ON signin_attempt(user_name, at)")
    op.execute("CREATE INDEX signin_attempt_address ON signin_attempt(address, at)")
    op.execute(
        f"""CREATE TABLE access_audit (
            id {serial},
            at TEXT NOT NULL,
            user_name TEXT NOT NULL,
            role TEXT NOT NULL,
            action TEXT NOT NULL,
            kit_id TEXT,
            referral_code TEXT,
            detail TEXT NOT NULL
        )"""
    )
    op.execute(
        f"""CREATE TABLE referral_event (
            id {serial},
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('attempt', 'decision', 'closure', 'note')),
            at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            user_name TEXT NOT NULL,
            data TEXT NOT NULL
        )"""
    )
    op.execute("CREATE INDEX referral_event_referral ON referral_event(kit_id, referral_code)")
    # Call-back requests: the call page's table (revision 0007).
    op.execute("CREATE INDEX record_type_kit ON record(record_type, kit_id)")
