"""The kit's outbox: one row per record to send, written in the same transaction as the
record it carries, drained by the sync client.

:class:`Outbox` is the one repository for the table: every outbox query of the kit (the
store, the run, the purge, the status lines, the reconciliation, the sync state beside each
listed visit) is one of its methods, and
:data:`UNSENT_STATES` is the one definition of "unsent".

The table lives in the kit's SQLite file; :class:`OutboxRow` is its schema (the kit's store
creates it with the store's other tables) and the store calls :func:`enqueue` inside its
write transactions. A row is an envelope from ``sync.records.make_record`` and its content hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import CheckConstraint, Connection, Engine, Index, Text, text
from sqlmodel import Field, SQLModel

from sync import protocol as p
from sync.records import canonical_json, content_hash

OutboxState = Literal["pending", "sent", "confirmed", "set_aside"]
OUTBOX_STATES: tuple[OutboxState, ...] = ("pending", "sent", "confirmed", "set_aside")
UNSENT_STATES: tuple[OutboxState, ...] = ("pending", "sent")
"""Unsent: not confirmed by a verified receipt and not set aside, whether queued (pending)
or sent with the answer still to come (sent). The one definition, for every count."""


def unsent_sql(alias: str = "") -> str:
    """The SQL condition for :data:`UNSENT_STATES` (on ``alias.state`` if given)."""
    column = f"{alias}.state" if alias else "state"
    return f"{column} IN ({', '.join(repr(s) for s in UNSENT_STATES)})"


_UNSENT = unsent_sql()


class OutboxRow(SQLModel, table=True):
    """A record waiting for (or holding) the server's receipt."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in OUTBOX_STATES)})"),
        Index("outbox_state", "state", "id"),
        Index("outbox_visit", "visit_id"),
        # The reconciliation counts from this index alone instead of reading every payload.
        Index("outbox_reconcile", "state", "visit_id", "sent_at", "last_error"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True, nullable=True)
    record_id: str = Field(unique=True, sa_type=Text)
    record_type: str = Field(sa_type=Text)
    visit_id: str | None = Field(default=None, sa_type=Text)
    payload: str = Field(sa_type=Text)
    content_hash: str = Field(sa_type=Text)
    state: str = Field(
        default="pending", sa_type=Text, sa_column_kwargs={"server_default": "pending"}
    )
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    next_attempt_at: str | None = Field(default=None, sa_type=Text)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: str = Field(sa_type=Text)
    sent_at: str | None = Field(default=None, sa_type=Text)
    confirmed_at: str | None = Field(default=None, sa_type=Text)
    receipt: str | None = Field(default=None, sa_type=Text)


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


@dataclass(frozen=True)
class OutboxStatus:
    """What the home screen and the report show about the outbox."""

    queued: int
    """Unsent (:data:`UNSENT_STATES`): pending or awaiting an answer."""
    awaiting_answer: int
    """Sent, but the server's answer never arrived: settled at the next sync."""
    set_aside: int
    confirmed: int
    oldest_unsent_at: datetime | None
    last_error: str | None
    """The latest reason an unsent row is still waiting."""
    next_attempt_at: datetime | None
    last_confirmed_at: datetime | None
    unsent_visits: int = 0
    """Visits with at least one unsent row."""
    last_problem: str | None = None
    """The latest reason among unsent and set-aside rows (what the booth shows)."""

    def oldest_unsent_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_unsent_at is None else now - self.oldest_unsent_at

    @property
    def all_confirmed(self) -> bool:
        return self.queued == 0 and self.set_aside == 0


@dataclass(frozen=True)
class ConfirmedRecord:
    record_id: str
    record_type: str
    visit_id: str | None
    confirmed_at: datetime
    receipt: p.Receipt


@dataclass(frozen=True)
class HeldRecord:
    """A set-aside row of a visit, with the visit's referral code (for the report)."""

    record_id: str
    record_type: str
    code: str
    reason: str


@dataclass(frozen=True)
class VisitRecords:
    """The outbox rows of a period's visits: the reconciliation's figures."""

    records: int
    sent: int
    """Sent at least once, or confirmed."""
    confirmed: int
    unsent: int
    """Unsent (:data:`UNSENT_STATES`): still only on this kit."""
    set_aside: list[HeldRecord]
    """Set-aside rows, in outbox order."""
    unsent_codes: list[str]
    """Codes of the visits with an unsent row, in the order their first one was queued."""
    last_error: str | None
    """The latest reason an unsent row is still waiting."""


@dataclass(frozen=True)
class QueuedRow:
    """An outbox row as the run reads it."""

    row_id: int
    record_id: str
    record_type: str
    visit_id: str | None
    content_hash: str
    payload: str


class Outbox:
    """Every query on the kit's ``outbox`` table.

    Methods taking a ``conn`` run on the caller's open transaction (so a row lands or
    changes with the record it belongs to); the others open their own connection.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def writing(self) -> Connection:
        """A connection for one write transaction (``BEGIN IMMEDIATE``): ``with
        outbox.writing() as conn, conn.begin():``."""
        return self.engine.connect().execution_options(sqlite_immediate=True)

    # --- reading ---------------------------------------------------------------------

    def status(self) -> OutboxStatus:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT "
                    f"COALESCE(SUM({_UNSENT}), 0), "
                    "COALESCE(SUM(state = 'sent'), 0), "
                    "COALESCE(SUM(state = 'set_aside'), 0), "
                    "COALESCE(SUM(state = 'confirmed'), 0), "
                    f"MIN(CASE WHEN {_UNSENT} THEN created_at END), "
                    f"MIN(CASE WHEN {_UNSENT} THEN next_attempt_at END), "
                    "MAX(confirmed_at), "
                    f"COUNT(DISTINCT CASE WHEN {_UNSENT} THEN visit_id END) "
                    "FROM outbox"
                )
            ).one()
            last_error = conn.execute(
                text(
                    f"SELECT last_error FROM outbox WHERE {_UNSENT} "
                    "AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
                )
            ).scalar()
            last_problem = conn.execute(
                text(
                    f"SELECT last_error FROM outbox WHERE ({_UNSENT} OR state = 'set_aside') "
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
            unsent_visits=int(row[7]),
            last_problem=str(last_problem) if last_problem else None,
        )

    def count_unsent(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(text(f"SELECT COUNT(*) FROM outbox WHERE {_UNSENT}")).scalar_one()
            )

    def totals(self) -> tuple[int, int]:
        """Unsent rows and set-aside rows, now."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT state = 'set_aside', COUNT(*) FROM outbox "
                    f"WHERE {_UNSENT} OR state = 'set_aside' GROUP BY state = 'set_aside'"
                )
            ).all()
        counts = {bool(aside): int(n) for aside, n in rows}
        return counts.get(False, 0), counts.get(True, 0)

    def of_visits(
        self, conn: Connection, *, created: tuple[datetime, datetime] | None
    ) -> VisitRecords:
        """Where the rows of the visits created in ``created`` (every visit when None)
        are, counted in SQL on the caller's transaction (with the visit counts it reads):
        a kit that served many events holds tens of thousands of rows."""
        where, params = "", {}
        if created is not None:
            where = "WHERE v.created_at >= :s AND v.created_at < :u"
            params = {"s": utc_iso(created[0]), "u": utc_iso(created[1])}
        unsent = unsent_sql("o")
        joined = f"FROM outbox o JOIN visit v ON v.visit_id = o.visit_id {where}"
        and_ = "AND" if where else "WHERE"
        totals = conn.execute(
            text(
                "SELECT COUNT(*), "
                "COALESCE(SUM(o.sent_at IS NOT NULL OR o.state = 'confirmed'), 0), "
                "COALESCE(SUM(o.state = 'confirmed'), 0), "
                f"COALESCE(SUM({unsent}), 0) {joined}"
            ),
            params,
        ).one()
        held = conn.execute(
            text(
                "SELECT o.record_id, o.record_type, v.referral_code, o.last_error "
                f"{joined} {and_} o.state = 'set_aside' ORDER BY o.id"
            ),
            params,
        ).all()
        codes = conn.execute(
            text(
                f"SELECT v.referral_code {joined} {and_} {unsent} "
                "GROUP BY v.referral_code ORDER BY MIN(o.id)"
            ),
            params,
        ).scalars()
        last_error = conn.execute(
            text(
                f"SELECT o.last_error {joined} {and_} {unsent} "
                "AND o.last_error IS NOT NULL AND o.last_error != '' ORDER BY o.id DESC LIMIT 1"
            ),
            params,
        ).scalar()
        records, sent, confirmed, unsent_rows = map(int, totals)
        return VisitRecords(
            records=records,
            sent=sent,
            confirmed=confirmed,
            unsent=unsent_rows,
            set_aside=[HeldRecord(r[0], r[1], r[2], r[3] or "") for r in held],
            unsent_codes=list(codes),
            last_error=last_error,
        )

    @staticmethod
    def state_of_sql(record_id: str) -> str:
        """A subquery for the outbox state of the record whose id is the column
        ``record_id`` (for a query that lists records with their sync state)."""
        return f"(SELECT state FROM outbox o WHERE o.record_id = {record_id})"

    def rows(self, state: OutboxState, *, after: int, limit: int) -> list[QueuedRow]:
        """Rows in ``state`` after row id ``after``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, record_id, record_type, visit_id, content_hash, payload "
                    "FROM outbox WHERE state = :s AND id > :a ORDER BY id LIMIT :n"
                ),
                {"s": state, "a": after, "n": limit},
            ).all()
        return [QueuedRow(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def set_aside_records(self) -> list[SetAside]:
        """Every set-aside row with its reason, oldest first (for the reconciliation report)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT record_id, record_type, visit_id, last_error FROM outbox "
                    "WHERE state = 'set_aside' ORDER BY id"
                )
            ).all()
        return [SetAside(r[0], r[1], r[2], r[3] or "") for r in rows]

    def confirmed_records(self, receipt_key: bytes, *, before: datetime) -> list[ConfirmedRecord]:
        """Rows confirmed before ``before`` whose stored receipt verifies with
        ``receipt_key`` (checked again here: only a verified receipt may let the kit purge)."""
        with self.engine.connect() as conn:
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

    def confirmed_visits(self, receipt_key: bytes, *, before: datetime) -> list[str]:
        """Visits whose every outbox row is confirmed, with a verified receipt, before
        ``before``."""
        good = {r.record_id for r in self.confirmed_records(receipt_key, before=before)}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT visit_id, record_id FROM outbox WHERE visit_id IS NOT NULL ORDER BY id"
                )
            ).all()
        verdict: dict[str, bool] = {}
        for visit_id, record_id in rows:
            verdict[visit_id] = verdict.get(visit_id, True) and record_id in good
        return [visit_id for visit_id, ok in verdict.items() if ok]

    # --- the run's moves (each its own transaction) ------------------------------------

    def mark_sent(self, row_ids: Sequence[int], *, now: datetime) -> None:
        """Pending rows become sent, committed before the request goes out."""
        with self.writing() as conn, conn.begin():
            conn.execute(
                text(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = :t "
                    "WHERE id = :i AND state = 'pending'"
                ),
                [{"t": utc_iso(now), "i": i} for i in row_ids],
            )

    def unsend(self, row_ids: Sequence[int]) -> None:
        """Rows that surely never reached the server go back to the queue as they were."""
        if not row_ids:
            return
        with self.writing() as conn, conn.begin():
            conn.execute(
                text("UPDATE outbox SET state = 'pending' WHERE id = :i AND state = 'sent'"),
                [{"i": i} for i in row_ids],
            )

    def note_failure(self, reason: str, *, next_attempt_at: datetime) -> None:
        """Every unsent row learns why it waits and when the next try is due."""
        with self.writing() as conn, conn.begin():
            conn.execute(
                text(f"UPDATE outbox SET last_error = :e, next_attempt_at = :n WHERE {_UNSENT}"),
                {"e": reason, "n": utc_iso(next_attempt_at)},
            )

    # --- on the caller's transaction ---------------------------------------------------

    def confirm(
        self, conn: Connection, receipts: Sequence[tuple[int, str]], *, now: datetime
    ) -> None:
        """Rows whose receipt verified (row id, receipt JSON) become confirmed, the receipt
        kept with them."""
        if not receipts:
            return
        conn.execute(
            text(
                "UPDATE outbox SET state = 'confirmed', confirmed_at = :t, receipt = :r, "
                "last_error = NULL, next_attempt_at = NULL "
                f"WHERE id = :i AND {_UNSENT}"
            ),
            [{"t": utc_iso(now), "r": receipt, "i": row_id} for row_id, receipt in receipts],
        )

    def back_to_pending(self, conn: Connection, row_id: int, reason: str) -> None:
        conn.execute(
            text(
                f"UPDATE outbox SET state = 'pending', last_error = :e WHERE id = :i AND {_UNSENT}"
            ),
            {"e": reason, "i": row_id},
        )

    def set_aside(self, conn: Connection, row_id: int, reason: str) -> bool:
        """An unsent row set aside with its reason; False if it was not unsent."""
        done = conn.execute(
            text(
                "UPDATE outbox SET state = 'set_aside', last_error = :e, next_attempt_at = NULL "
                f"WHERE id = :i AND {_UNSENT}"
            ),
            {"e": reason, "i": row_id},
        )
        return bool(done.rowcount)

    def requeue(self, conn: Connection, record_ids: Sequence[str]) -> int:
        """Put set-aside rows back in the queue (after the cause is fixed). Returns how
        many moved."""
        moved = 0
        for record_id in record_ids:
            moved += conn.execute(
                text(
                    "UPDATE outbox SET state = 'pending', last_error = NULL, "
                    "next_attempt_at = NULL WHERE record_id = :r AND state = 'set_aside'"
                ),
                {"r": record_id},
            ).rowcount
        return moved

    def record_ids_of_visit(self, conn: Connection, visit_id: str) -> list[str]:
        return list(
            conn.execute(
                text("SELECT record_id FROM outbox WHERE visit_id = :v"), {"v": visit_id}
            ).scalars()
        )

    def clear_confirmed_payloads(self, conn: Connection, record_ids: Sequence[str]) -> int:
        """Drop the payload (which may hold contact details) of confirmed rows, keeping
        their hash and receipt."""
        cleared = 0
        for record_id in record_ids:
            cleared += conn.execute(
                text(
                    "UPDATE outbox SET payload = '{}' WHERE record_id = :r AND state = 'confirmed'"
                ),
                {"r": record_id},
            ).rowcount
        return cleared

    def remove_contact(self, conn: Connection, visit_id: str) -> int:
        """A withdrawal's share: every visit record of ``visit_id`` not yet confirmed is
        rebuilt without the contact (new content hash), so it is never sent; the payloads
        of those confirmed are cleared, hashes and receipts kept. Returns how many rows
        were rebuilt."""
        queued = conn.execute(
            text(
                "SELECT id, payload FROM outbox WHERE visit_id = :v "
                "AND record_type = 'visit' AND state != 'confirmed'"
            ),
            {"v": visit_id},
        ).all()
        rebuilt = 0
        for row_id, payload in queued:
            envelope = json.loads(payload)
            if envelope.get("body", {}).pop("contact", None) is None:
                continue
            conn.execute(
                text("UPDATE outbox SET payload = :p, content_hash = :h WHERE id = :i"),
                {
                    "p": canonical_json(envelope).decode("utf-8"),
                    "h": content_hash(envelope),
                    "i": row_id,
                },
            )
            rebuilt += 1
        conn.execute(
            text(
                "UPDATE outbox SET payload = '{}' WHERE visit_id = :v "
                "AND record_type = 'visit' AND state = 'confirmed'"
            ),
            {"v": visit_id},
        )
        return rebuilt


# Module-level forms kept for callers of the engine-level functions.


def outbox_status(engine: Engine) -> OutboxStatus:
    return Outbox(engine).status()


def set_aside_records(engine: Engine) -> list[SetAside]:
    return Outbox(engine).set_aside_records()


def confirmed_records(
    engine: Engine, receipt_key: bytes, *, before: datetime
) -> list[ConfirmedRecord]:
    return Outbox(engine).confirmed_records(receipt_key, before=before)


def confirmed_visits(engine: Engine, receipt_key: bytes, *, before: datetime) -> list[str]:
    return Outbox(engine).confirmed_visits(receipt_key, before=before)


def requeue(conn: Connection, record_ids: Sequence[str]) -> int:
    engine = conn.engine
    return Outbox(engine).requeue(conn, record_ids)


def clear_confirmed_payloads(conn: Connection, record_ids: Sequence[str]) -> int:
    return Outbox(conn.engine).clear_confirmed_payloads(conn, record_ids)
