"""How every SQLite file of the project is opened: the kit's store and the server alike.

WAL (readers never block the writer), ``synchronous=FULL`` (a commit survives a power
cut), foreign keys, a busy timeout, ``secure_delete`` (removed personal data is zeroed),
and transactions issued by hand: pysqlite's own
handling defers the write lock and skips DDL, so ``BEGIN`` (or ``BEGIN IMMEDIATE`` when a
connection carries the ``sqlite_immediate`` execution option) is sent explicitly and
writers queue cleanly instead of failing half way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection

BUSY_TIMEOUT_MS = 30_000
PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    "foreign_keys=ON",
    f"busy_timeout={BUSY_TIMEOUT_MS}",
    # purged contact details and withdrawn answers are overwritten, not left in free pages
    "secure_delete=ON",
)
CONNECT_ARGS = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}


def tune_sqlite(engine: Engine) -> Engine:
    """Apply the project's SQLite settings to every connection of ``engine``."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in PRAGMAS:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
