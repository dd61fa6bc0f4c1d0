"""Kit stores as earlier and later releases leave them, for the schema and upgrade tests."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from popup_kit.store.migrations import MIGRATIONS_DIR
from popup_kit.store.tables import KIT_TABLES

V2_DDL = Path(__file__).with_name("schema_v2.sql")
"""The DDL popup-kit ran up to numbered schema 2 (the stores in the field), frozen."""
KIT_TABLE_NAMES = sorted(t.name for t in KIT_TABLES)


def v2_store(path: Path, *, rows_from: Path | None = None) -> None:
    """A plain store as popup-kit wrote it at schema 2 (before encryption and Alembic),
    holding the rows of the plain store ``rows_from`` if given."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(V2_DDL.read_text())
        if rows_from is not None:
            conn.execute("ATTACH DATABASE ? AS source", (str(rows_from),))
            for name in KIT_TABLE_NAMES:
                conn.execute(f"INSERT INTO {name} SELECT * FROM source.{name}")
            conn.commit()
            conn.execute("DETACH DATABASE source")
        conn.commit()
    finally:
        conn.close()


LATER = '''"""A later release adds a column.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("visit_version") as batch:
        batch.add_column(sa.Column("printed_at", sa.Text(), nullable=True))
'''


def later_release(tmp_path: Path) -> Path:
    """This release's revisions and one more."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / "0002_printed_at.py").write_text(LATER)
    return location
