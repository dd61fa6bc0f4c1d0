"""The server's database: engine set-up and its Alembic migrations.

SQLite (a file URL) by default, PostgreSQL when the URL says so. ``migrate`` applies the
revisions under ``sync/server/migrations`` in one transaction (``server migrate``, and
every start of the server).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from sync.sqlite import CONNECT_ARGS, tune_sqlite

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Before Alembic the schema was numbered in a ``schema_version`` table.
_LEGACY = {1: "0001"}


def normalize_url(db: str) -> str:
    """A SQLAlchemy URL; a bare path means a SQLite file."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def sqlite_path(db_url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    url = normalize_url(db_url)
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1]
    if not path or path == ":memory:":
        return None
    return Path(path)


def make_engine(db_url: str) -> Engine:
    url = normalize_url(db_url)
    if url.startswith("sqlite"):
        return tune_sqlite(create_engine(url, connect_args=CONNECT_ARGS, pool_size=8))
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _alembic(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def migrate(engine: Engine) -> int:
    """Bring this database to the newest schema (Alembic); returns its schema number."""
    dialect = engine.dialect.name
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if dialect == "postgresql":
            # Two servers starting at once: one migrates, the other waits.
            conn.execute(text("SELECT pg_advisory_xact_lock(84700001)"))
        current = MigrationContext.configure(conn).get_current_revision()
        if current is None:
            current = _adopt_legacy(conn)
        if current is not None:
            try:
                scripts.get_revision(current)
            except (RevisionError, AlembicError) as exc:
                raise RuntimeError(
                    f"database schema {current} is newer than this server knows "
                    f"({scripts.get_current_head()}); upgrade popup-kit"
                ) from exc
        command.upgrade(_alembic(conn), "head")
    return int(scripts.get_current_head() or 0)


def _adopt_legacy(conn: Connection) -> str | None:
    """Stamp a database made by the numbered migrations with its Alembic revision."""
    if not inspect(conn).has_table("schema_version"):
        return None
    version = conn.scalar(text("SELECT MAX(version) FROM schema_version"))
    if version is None:
        return None
    revision = _LEGACY.get(int(version))
    if revision is None:
        raise RuntimeError(
            f"database schema version {version} is newer than this server knows; upgrade popup-kit"
        )
    command.stamp(_alembic(conn), revision)
    return revision


def database_exists(db_url: str) -> bool:
    """True when ``db_url`` names a database that already holds the server's tables."""
    url = normalize_url(db_url)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is None or not path.exists():
            return False
    engine = make_engine(url)
    try:
        return inspect(engine).has_table("kit")
    finally:
        engine.dispose()
