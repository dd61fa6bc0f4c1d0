"""The record's digest: the few facts of a visit or consent body the centre reads again and
again (sync.server.visit_facts), written at ingest. Records stored before it have none
and are read from their bodies.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE record ADD COLUMN digest TEXT")
