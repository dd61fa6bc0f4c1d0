"""Follow-up check-ins by the attendee at weeks 2, 6 and 12.

One current response per slip and window: a resubmission within the window sets
``superseded_at`` on the one it replaces, so the history stays and the partial unique index
keeps a single current row whatever the statement. ``warning`` is 1 when any cauda equina
warning sign was answered yes; ``answers`` is the JSON of the answers.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    op.execute(
        f"""CREATE TABLE followup_response (
            id {serial},
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            "window" TEXT NOT NULL,
            submitted_at TEXT NOT NULL,
            answers TEXT NOT NULL,
            warning INTEGER NOT NULL CHECK (warning IN (0, 1)),
            superseded_at TEXT
        )"""
    )
    op.execute(
        "CREATE UNIQUE INDEX followup_one_current "
        'ON followup_response (kit_id, referral_code, "window") WHERE superseded_at IS NULL'
    )
