"""The kit's side of sync for tests: a real SQLite file holding the outbox, opened the
way the kit's store opens it, and records in the shapes the kit writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlmodel import SQLModel

from sync import protocol as p
from sync.client import SyncConfig
from sync.outbox import OutboxRow, enqueue
from sync.records import make_record
from sync.server import ServerStore
from sync.sqlite import CONNECT_ARGS, tune_sqlite

T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)

# Short waits and timeouts: the loopback server answers in milliseconds.
FAST = SyncConfig(
    batch_size=25,
    connect_timeout=2.0,
    read_timeout=5.0,
    attempts=60,
    backoff_initial=0.01,
    backoff_max=0.05,
    total_time=120.0,
    retry_interval=60.0,
)


def kit_engine(path: Path) -> Engine:
    """The kit's file as the kit's store opens it: WAL, synchronous=FULL, busy timeout,
    foreign keys, transactions begun by hand (``BEGIN IMMEDIATE`` for writers)."""
    new = not path.exists()
    engine = tune_sqlite(create_engine(f"sqlite:///{path}", connect_args=CONNECT_ARGS))

    if new:
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            # the outbox's one schema: its model, as the kit's store creates it
            SQLModel.metadata.create_all(conn, tables=[OutboxRow.__table__], checkfirst=False)
    return engine


def queue(engine: Engine, records: Iterable[dict[str, Any]], *, now: datetime = T0) -> None:
    """Queue records the way the kit does: in a write transaction."""
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        for i, record in enumerate(records):
            enqueue(conn, record, now=now + timedelta(seconds=i))


def visit(
    kit_id: str,
    *,
    visit_id: str | None = None,
    version: int = 1,
    supersedes: str | None = None,
    code: str = "K7M3Q-X9P2C-AW4T7",
    triage: str = "routine",
    contact: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One version of a visit, as the kit records it."""
    visit_id = visit_id or str(uuid.uuid4())
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="visit",
        kit_id=kit_id,
        created_at="2026-11-22T17:30:00Z",
        schema_version=1,
        body={
            "visit_id": visit_id,
            "version": version,
            "supersedes": supersedes,
            "status": "active",
            "void_reason": None,
            "referral_code": code,
            "visit_created_at": "2026-11-22T17:20:00Z",
            "created_at": "2026-11-22T17:30:00Z",
            "volunteer": "Ana",
            "language": "en",
            "answers": {"age_years": 47, "leg_pain_side": "unilateral", "pain_nrs": 6},
            "outcome": {
                "triage": triage,
                "rules": ["RO1"],
                "ruleset_version": "2026.1",
                "startback": "medium",
                "sbi_total": 5,
            },
            "forms_version": "2026.1",
            **({"contact": contact} if contact is not None else {}),
        },
    )


def consent(
    kit_id: str, visit_id: str, *, kind: str = "initial", c1: bool = True, c2: bool = True
) -> dict[str, Any]:
    consent_id = str(uuid.uuid4())
    return make_record(
        record_id=consent_id,
        record_type="consent",
        kit_id=kit_id,
        created_at="2026-11-22T17:21:00Z",
        schema_version=1,
        body={
            "visit_id": visit_id,
            "consent_id": consent_id,
            "kind": kind,
            "items": {"c1": c1, "c2": c2, "c3": True, "c4": False, "c5": False},
            "text_version": "2026.1",
            "text_hash": "ab" * 32,
            "language": "en",
            "method": "read_aloud_tap",
            "volunteer": "Ana",
            "at": "2026-11-22T17:21:00Z",
        },
    )


def visits_with_consent(kit_id: str, n: int) -> list[dict[str, Any]]:
    """``n`` visits, each with its initial consent: ``2 * n`` records."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        contact = {"name": f"Person {i}", "phone": f"+44 7700 9{i:05d}"}
        record = visit(kit_id, contact=contact)
        out += [consent(kit_id, record["body"]["visit_id"]), record]
    return out


@dataclass(frozen=True)
class KitRow:
    record_id: str
    state: str
    content_hash: str
    receipt: p.Receipt | None
    attempts: int
    last_error: str | None


def rows(engine: Engine) -> list[KitRow]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT record_id, state, content_hash, receipt, attempts, last_error "
                "FROM outbox ORDER BY id"
            )
        ).all()
    return [
        KitRow(
            r[0],
            r[1],
            r[2],
            p.Receipt.model_validate_json(r[3]) if r[3] else None,
            int(r[4]),
            r[5],
        )
        for r in found
    ]


def assert_all_on_server_once(
    store: ServerStore, engine: Engine, credentials: p.KitCredentials
) -> None:
    """Every queued record is on the server exactly once with the kit's content, and the
    kit's row is confirmed by the very receipt the server keeps, verified with the key."""
    kit_rows = rows(engine)
    held = [r for r in store.records() if r.kit_id == credentials.kit_id]
    held_ids = [r.record_id for r in held]
    assert len(held_ids) == len(set(held_ids))
    assert sorted(held_ids) == sorted(r.record_id for r in kit_rows)
    by_id = {r.record_id: r for r in held}
    kit = store.authenticate(f"Bearer {credentials.kit_id}:{credentials.credential}")
    server_receipts = {h.record_id: h.receipt for h in store.have(kit, list(by_id))}
    for row in kit_rows:
        assert row.state == "confirmed", (row.record_id, row.state, row.last_error)
        assert by_id[row.record_id].content_hash == row.content_hash
        assert row.receipt is not None
        assert p.verify_receipt(
            row.receipt,
            credentials.receipt_key,
            record_id=row.record_id,
            content_hash=row.content_hash,
        )
        assert row.receipt == server_receipts[row.record_id]
