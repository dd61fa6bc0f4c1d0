"""Withdrawals made on the slip's page: by the kit whose slip key signed the code and the
code itself, since the visit may not have reached the centre yet. Only the fact is kept.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    # acknowledged_at: set when the kit's own withdrawal record for the visit arrives;
    # until then the kit is told of it at every sync.
    op.execute(
        f"""CREATE TABLE attendee_withdrawal (
            seq {serial},
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            language TEXT NOT NULL,
            withdrawn_at TEXT NOT NULL,
            acknowledged_at TEXT,
            UNIQUE (kit_id, referral_code)
        )"""
    )
