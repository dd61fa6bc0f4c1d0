"""How every SQLite file of the project is opened: the kit's store and the server alike.

WAL (readers never block the writer), ``synchronous=FULL`` (a commit survives a power
cut), foreign keys, a busy timeout, ``secure_delete`` (removed personal data is zeroed),
and transactions issued by hand: pysqlite's own
handling defers the write lock and skips DDL, so ``BEGIN`` (or ``BEGIN IMMEDIATE`` when a
connection carries the ``sqlite_immediate`` execution option) is sent explicitly and
writers queue cleanly instead of failing half way.

A file opened with a ``key`` is a SQLCipher database (the kit's store): the raw 256-bit key
is given before anything else on every connection and checked at once, so a wrong key
fails on connect rather than half way through a transaction.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
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


PLAIN_HEADER = b"SQLite format 3\x00"


def key_pragma(key: bytes) -> str:
    if len(key) != 32:
        raise ValueError("a store key is 32 bytes")
    return f"PRAGMA key = \"x'{key.hex()}'\""


def is_plain(path: Path) -> bool:
    """Whether ``path`` is an unencrypted SQLite file (a SQLCipher file starts with salt)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == PLAIN_HEADER
    except FileNotFoundError:
        return False


def sqlite_engine(path: Path, *, key: bytes | None = None, **kwargs: Any) -> Engine:
    """The engine for one SQLite file, encrypted with ``key`` when given."""
    if key is None:
        engine = create_engine(f"sqlite:///{path}", connect_args=CONNECT_ARGS, **kwargs)
    else:
        import sqlcipher3.dbapi2

        engine = create_engine(
            f"sqlite:///{path}", module=sqlcipher3.dbapi2, connect_args=CONNECT_ARGS, **kwargs
        )
    return tune_sqlite(engine, key=key)


def connect_raw(path: Path, key: bytes | None) -> Any:
    """A bare DB-API connection (backups, exports), keyed like ``sqlite_engine``."""
    if key is None:
        return sqlite3.connect(path)
    import sqlcipher3.dbapi2

    conn = sqlcipher3.dbapi2.connect(str(path))
    conn.execute(key_pragma(key))
    conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    return conn


def backup_to(source: Any, target: Path, key: bytes | None) -> None:
    """SQLite's online backup of ``source`` into a new file ``target`` (mode 0600)."""
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    dest = connect_raw(target, key)
    try:
        source.backup(dest)
    finally:
        dest.close()


def export_encrypted(plain: Path, target: Path, key: bytes) -> None:
    """Write an encrypted copy of the plain file ``plain`` to ``target`` (SQLCipher's
    ``sqlcipher_export``: schema, rows and ``user_version``)."""
    import sqlcipher3.dbapi2

    target.unlink(missing_ok=True)
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlcipher3.dbapi2.connect(str(plain))
    try:
        conn.isolation_level = None
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute(f"ATTACH DATABASE ? AS enc KEY \"x'{key.hex()}'\"", (str(target),))
        conn.execute("SELECT sqlcipher_export('enc')")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA enc.user_version = {int(version)}")
        conn.execute("DETACH DATABASE enc")
    finally:
        conn.close()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tune_sqlite(engine: Engine, *, key: bytes | None = None) -> Engine:
    """Apply the project's SQLite settings to every connection of ``engine``."""
    keying = key_pragma(key) if key is not None else None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if keying is not None:
            cur.execute(keying)
            # fails here ("file is not a database") when the key is wrong
            cur.execute("SELECT count(*) FROM sqlite_master").fetchall()
        for pragma in PRAGMAS:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
