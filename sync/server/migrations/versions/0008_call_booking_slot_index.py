"""An index for the free-slot count: a slot's run-out holds are counted when its places are
shown.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX call_booking_slot ON call_booking (slot_id, status)")
