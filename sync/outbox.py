"""The kit's outbox: one row per record to send, written in the same transaction as the
record it carries, drained by the sync client.

The table lives in the kit's SQLite file; the kit's store creates it through its own
migrations (with :data:`OUTBOX_DDL`) and calls :func:`enqueue` inside its write
transactions. Nothing here knows about visits: a row is an envelope from
``sync.records.make_record`` and its content hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, text
from sqlmodel import Field, SQLModel

from sync import protocol as p
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


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class SetAside:
    record_id: str
    record_type: str
    visit_id: str | None
    reason: str


# --- honest status and what purge may rely on ------------------------------------------


@dataclass(frozen=True)
class OutboxStatus:
    """What the home screen and the report show about the outbox."""

    queued: int
    """Not yet confirmed by the server and not set aside (pending or awaiting an answer)."""
    awaiting_answer: int
    """Sent, but the server's answer never arrived: settled at the next sync."""
    set_aside: int
    confirmed: int
    oldest_unsent_at: datetime | None
    last_error: str | None
    next_attempt_at: datetime | None
    last_confirmed_at: datetime | None

    def oldest_unsent_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_unsent_at is None else now - self.oldest_unsent_at

    @property
    def all_confirmed(self) -> bool:
        return self.queued == 0 and self.set_aside == 0


def outbox_status(engine: Engine) -> OutboxStatus:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT "
                "COALESCE(SUM(state IN ('pending', 'sent')), 0), "
                "COALESCE(SUM(state = 'sent'), 0), "
                "COALESCE(SUM(state = 'set_aside'), 0), "
                "COALESCE(SUM(state = 'confirmed'), 0), "
                "MIN(CASE WHEN state IN ('pending', 'sent') THEN created_at END), "
                "MIN(CASE WHEN state IN ('pending', 'sent') THEN next_attempt_at END), "
                "MAX(confirmed_at) "
                "FROM outbox"
            )
        ).one()
        last_error = conn.execute(
            text(
                "SELECT last_error FROM outbox WHERE state IN ('pending', 'sent') "
                "AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
            )
        ).scalar()
    return OutboxStatus(
        queued=int(row[0]),
        awaiting_answer=int(row[1]),
        set_aside=int(row[2]),
        confirmed=int(row[3]),
        oldest_unsent_at=parse_time(row[4]),
        last_error=last_error,
        next_attempt_at=parse_time(row[5]),
        last_confirmed_at=parse_time(row[6]),
    )


def set_aside_records(engine: Engine) -> list[SetAside]:
    """Every set-aside row with its reason, oldest first (for the reconciliation report)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT record_id, record_type, visit_id, last_error FROM outbox "
                "WHERE state = 'set_aside' ORDER BY id"
            )
        ).all()
    return [SetAside(r[0], r[1], r[2], r[3] or "") for r in rows]


def requeue(conn: Connection, record_ids: Sequence[str]) -> int:
    """Put set-aside rows back in the queue (after the cause is fixed); on ``conn``'s
    open transaction. Returns how many moved."""
    moved = 0
    for record_id in record_ids:
        moved += conn.execute(
            text(
                "UPDATE outbox SET state = 'pending', last_error = NULL, next_attempt_at = NULL "
                "WHERE record_id = :r AND state = 'set_aside'"
            ),
            {"r": record_id},
        ).rowcount
    return moved


@dataclass(frozen=True)
class ConfirmedRecord:
    record_id: str
    record_type: str
    visit_id: str | None
    confirmed_at: datetime
    receipt: p.Receipt


def confirmed_records(
    engine: Engine, receipt_key: bytes, *, before: datetime
) -> list[ConfirmedRecord]:
    """Rows confirmed before ``before`` whose stored receipt verifies with ``receipt_key``
    (checked again here: only a verified receipt may let the kit purge)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT record_id, record_type, visit_id, confirmed_at, receipt, content_hash "
                "FROM outbox WHERE state = 'confirmed' AND confirmed_at < :b ORDER BY id"
            ),
            {"b": utc_iso(before)},
        ).all()
    out: list[ConfirmedRecord] = []
    for record_id, record_type, visit_id, confirmed_at, receipt_text, chash in rows:
        try:
            receipt = p.Receipt.model_validate_json(receipt_text or "")
        except ValidationError:
            continue
        if not p.verify_receipt(receipt, receipt_key, record_id=record_id, content_hash=chash):
            continue
        when = parse_time(confirmed_at)
        if when is not None:
            out.append(ConfirmedRecord(record_id, record_type, visit_id, when, receipt))
    return out


def confirmed_visits(engine: Engine, receipt_key: bytes, *, before: datetime) -> list[str]:
    """Visits whose every outbox row is confirmed, with a verified receipt, before ``before``."""
    good = {r.record_id for r in confirmed_records(engine, receipt_key, before=before)}
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT visit_id, record_id FROM outbox WHERE visit_id IS NOT NULL ORDER BY id")
        ).all()
    verdict: dict[str, bool] = {}
    for visit_id, record_id in rows:
        verdict[visit_id] = verdict.get(visit_id, True) and record_id in good
    return [visit_id for visit_id, ok in verdict.items() if ok]


def clear_confirmed_payloads(conn: Connection, record_ids: Sequence[str]) -> int:
    """Drop the payload (which may hold contact details) of confirmed rows, keeping their
    hash and receipt; on ``conn``'s open transaction, alongside the kit's own purge."""
    cleared = 0
    for record_id in record_ids:
        cleared += conn.execute(
            text("UPDATE outbox SET payload = '{}' WHERE record_id = :r AND state = 'confirmed'"),
            {"r": record_id},
        ).rowcount
    return cleared
