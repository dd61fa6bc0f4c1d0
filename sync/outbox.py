"""The kit's outbox: one row per record to send, written in the same transaction as the
record it carries, drained by the sync client.

The table lives in the kit's SQLite file; the kit's store creates it through its own
migrations (with :data:`OUTBOX_DDL`) and calls :func:`enqueue` inside its write
transactions. Nothing here knows about visits: a row is an envelope from
``sync.records.make_record`` and its content hash.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, text
from sqlmodel import Field, SQLModel

from sync.records import canonical_json, content_hash

OutboxState = Literal["pending", "sent", "confirmed", "set_aside"]
OUTBOX_STATES: tuple[OutboxState, ...] = ("pending", "sent", "confirmed", "set_aside")

OUTBOX_DDL: tuple[str, ...] = (
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL UNIQUE,
        record_type TEXT NOT NULL,
        visit_id TEXT,
        payload TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sent', 'confirmed', 'set_aside')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        confirmed_at TEXT,
        receipt TEXT
    )""",
    "CREATE INDEX outbox_state ON outbox(state, id)",
    "CREATE INDEX outbox_visit ON outbox(visit_id)",
)


class OutboxRow(SQLModel, table=True):
    """A record waiting for (or holding) the server's receipt."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    record_id: str = Field(unique=True)
    record_type: str
    visit_id: str | None = Field(default=None, index=True)
    payload: str
    content_hash: str
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: str | None = None
    last_error: str | None = None
    created_at: str
    sent_at: str | None = None
    confirmed_at: str | None = None
    receipt: str | None = None


def utc_iso(moment: datetime) -> str:
    """UTC, microseconds, ``Z``: sorts as text in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def enqueue(conn: Connection, record: dict[str, Any], *, now: datetime) -> str:
    """Queue ``record`` (an envelope from ``make_record``) on ``conn``'s open transaction.

    Returns its content hash. The caller commits: the row and the record it carries
    land together or not at all.
    """
    digest = content_hash(record)
    body = record.get("body", {})
    visit_id = body.get("visit_id") if isinstance(body, dict) else None
    conn.execute(
        text(
            "INSERT INTO outbox (record_id, record_type, visit_id, payload, content_hash, "
            "state, created_at) VALUES (:rid, :rt, :vid, :p, :h, 'pending', :t)"
        ),
        {
            "rid": record["record_id"],
            "rt": record["record_type"],
            "vid": visit_id if isinstance(visit_id, str) else None,
            "p": canonical_json(record).decode("utf-8"),
            "h": digest,
            "t": utc_iso(now),
        },
    )
    return digest


def payload_of(row: OutboxRow) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(row.payload)
    return value
