"""The kit's SQLite file: engine set-up and its schema.

One file in the data directory, opened with WAL, ``synchronous=FULL`` (a committed visit
survives a power cut), a busy timeout and foreign keys. Writes take the write lock at
``BEGIN IMMEDIATE`` so two writers queue instead of failing half way.

The schema is the SQLModel tables (``popup_kit.store.tables``): a new file is created from
them and stamped at the newest Alembic revision (``popup_kit/store/migrations``); later
changes are revisions, run in one transaction on the store's own keyed connection. A file
that already holds data is copied aside before an upgrade, so one in the field can always
be undone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from popup_kit.store.migrations import BASELINE, HEAD, MIGRATIONS_DIR
from sync.files import private_dir
from sync.sqlite import backup_to, sqlite_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Before Alembic the schema was numbered in ``schema_migration``; every store in the field
# is at 2. Adopting one adds the row 3, so a popup-kit from before refuses it as newer.
LEGACY_VERSION = 2
LEGACY_MARK = 3


class StoreError(RuntimeError):
    """The visit store cannot be opened or used; the message says what to do."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC with microseconds and ``Z``: sorts as text in time order."""
    if moment.tzinfo is None:
        raise ValueError("times must carry a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def make_engine(path: Path, key: bytes | None = None) -> Engine:
    """The engine for the kit's file (SQLCipher with ``key``); the folder is owner only."""
    private_dir(path.parent)
    if not path.exists():
        # Health data: readable by the kit's user only, from the first byte.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return sqlite_engine(path, key=key, pool_size=4, max_overflow=4)


def _tables(conn: Connection) -> set[str]:
    found = conn.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ).scalars()
    return set(found)


def stored_revision(conn: Connection) -> str | None:
    """The file's Alembic revision (None before it has one)."""
    if "alembic_version" not in _tables(conn):
        return None
    found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return found[0] if len(found) == 1 else None


def migrate(
    engine: Engine,
    path: Path,
    *,
    clock: Callable[[], datetime] = utc_now,
    key: bytes | None = None,
    script_location: Path = MIGRATIONS_DIR,
) -> int:
    """Bring the file up to the newest schema; returns its revision's number.

    Refuses a file made by a newer popup-kit (never downgrade data in place).
    """
    if script_location == MIGRATIONS_DIR:
        with engine.connect() as conn:
            if stored_revision(conn) == HEAD:
                return int(HEAD)
    return _migrate(engine, path, clock=clock, key=key, script_location=script_location)


def _migrate(
    engine: Engine,
    path: Path,
    *,
    clock: Callable[[], datetime],
    key: bytes | None,
    script_location: Path,
) -> int:
    from alembic import command
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(script_location))
    head = scripts.get_current_head()
    if head is None:
        raise StoreError(f"no schema revisions in {script_location}")
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        current = _adopt_or_create(conn, path, scripts, head, clock=clock)
    if current == head:
        return int(head)
    backup(engine, path.with_name(f"{path.name}.schema-{current}.bak"), key=key)
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        # another process may have upgraded meanwhile: then this does nothing
        command.upgrade(_alembic(conn, scripts), "head")
    return int(head)


def _alembic(conn: Connection, scripts: ScriptDirectory) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", scripts.dir)
    config.attributes["connection"] = conn
    return config


def _adopt_or_create(
    conn: Connection,
    path: Path,
    scripts: ScriptDirectory,
    head: str,
    *,
    clock: Callable[[], datetime],
) -> str:
    """The file's revision, once it has one: a new file is created from the models and
    stamped at ``head``, one from before Alembic stamped at the baseline."""
    from alembic import command
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError
    from sqlmodel import SQLModel

    from popup_kit.store.tables import KIT_TABLES

    tables = _tables(conn)
    if "alembic_version" in tables:
        current = stored_revision(conn)
        try:
            if current is not None and scripts.get_revision(current) is not None:
                return current
        except (RevisionError, CommandError):
            pass
        raise StoreError(
            f"{path} was written by a newer popup-kit (schema {current}, this one knows "
            f"{head}); install the newer popup-kit again rather than lose records"
        )
    if "schema_migration" in tables:
        version = int(conn.execute(text("SELECT MAX(version) FROM schema_migration")).scalar() or 0)
        if version > LEGACY_VERSION:
            raise StoreError(
                f"{path} was written by a newer popup-kit (schema {version}, this one knows "
                f"{LEGACY_VERSION}); install the newer popup-kit again rather than lose records"
            )
        if version < LEGACY_VERSION:
            raise StoreError(
                f"{path} has schema {version} from a pre-release popup-kit; this one "
                f"upgrades schema {LEGACY_VERSION} only"
            )
        command.stamp(_alembic(conn, scripts), BASELINE)
        conn.execute(
            text("INSERT INTO schema_migration (version, name, applied_at) VALUES (:v, :n, :t)"),
            {"v": LEGACY_MARK, "n": f"moved to Alembic at {BASELINE}", "t": iso(clock())},
        )
        return BASELINE
    if tables:
        raise StoreError(f"{path} holds tables but no schema revision: not a visit store")
    SQLModel.metadata.create_all(conn, tables=list(KIT_TABLES), checkfirst=False)
    command.stamp(_alembic(conn, scripts), head)
    return head


def backup(engine: Engine, target: Path, *, key: bytes | None = None) -> Path:
    """A consistent copy of the live database (SQLite's online backup), encrypted with
    the same key as the store."""
    raw = engine.raw_connection()
    try:
        backup_to(raw.driver_connection, target, key)
    finally:
        raw.close()
    return target
