"""Enrolment tokens expire, and may be made to re-key a live kit.

Tokens from before this revision have no expiry and so no longer work.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE enrollment_token ADD COLUMN expires_at TEXT")
    op.execute("ALTER TABLE enrollment_token ADD COLUMN rekey INTEGER NOT NULL DEFAULT 0")
