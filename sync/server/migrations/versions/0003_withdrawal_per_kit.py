"""A withdrawal belongs to the kit that sent it: two kits may name the same visit id, and
one kit's withdrawal must neither hide nor block the other's.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE withdrawal DROP CONSTRAINT withdrawal_pkey")
        op.execute("ALTER TABLE withdrawal ADD PRIMARY KEY (kit_id, visit_id)")
        return
    op.execute(
        """CREATE TABLE withdrawal_by_kit (
            visit_id TEXT NOT NULL,
            kit_id TEXT NOT NULL,
            record_id TEXT NOT NULL,
            withdrawn_at TEXT NOT NULL,
            PRIMARY KEY (kit_id, visit_id)
        )"""
    )
    op.execute(
        "INSERT INTO withdrawal_by_kit SELECT visit_id, kit_id, record_id, withdrawn_at "
        "FROM withdrawal"
    )
    op.execute("DROP TABLE withdrawal")
    op.execute("ALTER TABLE withdrawal_by_kit RENAME TO withdrawal")
