"""The schema every store had before Alembic (numbered schema 2): visits and their
versions, consent, drafts, tallies, the audit trail, the outbox and its reconciliation
index.

Such a store is stamped here as it is. A new store is created from the models and stamped
at the newest revision, so this revision never runs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise RuntimeError("a kit store is created from its models, not from revision 0001")
