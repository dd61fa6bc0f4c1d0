"""Follow-up reminders by SMS: at most one per slip and window.

The UNIQUE (kit_id, referral_code, "window") is what keeps a reminder to one per window
whatever runs at once: a run claims the row by inserting it before it calls the gateway.
``status`` is ``pending`` (claimed, or waiting to be tried again after a transient
gateway error), ``sending`` (a run is calling the gateway), ``sent``, ``failed`` (a
permanent refusal, or the attempts ran out) or ``skipped`` (no phone usable for SMS).
``last_error`` holds the gateway's status or the kind of failure, never the phone or text.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    op.execute(
        f"""CREATE TABLE followup_reminder (
            id {serial},
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            "window" TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            sent_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (kit_id, referral_code, "window")
        )"""
    )
