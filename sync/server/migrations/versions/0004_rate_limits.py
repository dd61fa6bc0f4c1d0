"""The attendee pages' rate limits, kept in the database so that every server worker
draws from the same buckets.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # scope: which limit; key: a hash of the address or code (neither is stored);
    # tokens and updated (seconds since the epoch) describe the bucket at its last use.
    op.execute(
        """CREATE TABLE rate_limit (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            tokens DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, key)
        )"""
    )
    op.execute("CREATE INDEX rate_limit_updated ON rate_limit (scope, updated)")
