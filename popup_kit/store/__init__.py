"""The local store: visits, consent, drafts, tallies, the audit trail and the outbox, in
one SQLite file. Every change that must travel to the centre is queued in the outbox in
the same transaction, so a visit is either whole (with its consent and its outbox rows)
or absent, whatever happens to the laptop.

Reads return domain objects (``popup_kit.domain``); rows never leave this package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import Session, select

from popup_kit.domain import (
    Contact,
    Draft,
    RuleHit,
    UnsentStatus,
    VisitRecord,
    VisitVersion,
)
from popup_kit.store.db import StoreError, iso, make_engine, migrate, parse_iso, utc_now
from popup_kit.store.keys import remember_key, unlock
from popup_kit.store.tables import (
    AuditRow,
    ConsentRow,
    DraftRow,
    TallyRow,
    VisitRow,
    VisitVersionRow,
)
from sync.files import private_dir
from sync.outbox import Outbox, enqueue

__all__ = ["Store", "StoreError", "VersionConflict"]

Clock = Callable[[], datetime]


class VersionConflict(StoreError):
    """Someone saved a newer version of this visit first; reload and try again."""


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_LATEST = """
SELECT v.visit_id, v.kit_id, v.referral_code, v.created_at AS visit_created_at,
       vv.record_id, vv.version, vv.created_at, vv.volunteer, vv.language, vv.status,
       vv.void_reason, vv.answers, vv.outcome, vv.triage, vv.forms_version,
       vv.contact_name, vv.contact_phone, vv.purged_at,
       (SELECT items FROM consent_event c WHERE c.visit_id = v.visit_id
         ORDER BY c.created_at DESC, c.rowid DESC LIMIT 1) AS consent_items,
       (SELECT text_version FROM consent_event c WHERE c.visit_id = v.visit_id
         AND c.kind = 'initial' LIMIT 1) AS consent_version,
       {sync_state} AS sync_state
FROM visit v JOIN visit_version vv
  ON vv.visit_id = v.visit_id AND vv.version = v.latest_version
""".format(sync_state=Outbox.state_of_sql("vv.record_id"))


class Store:
    """The kit's SQLite file, migrated on open."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = utc_now,
        passphrase: str | None = None,
        key: bytes | None = None,
        encrypted: bool = True,
    ) -> None:
        """Opens (or creates) the encrypted store: with ``key`` when already unlocked,
        else with ``passphrase``, the start-of-day passphrase or ``POPUP_KIT_PASSPHRASE``.
        ``recovery_key`` is set when new keys were made: show it once.

        ``encrypted=False`` opens a plain file as releases before encryption wrote it
        (upgrade tests and the benches' baseline only)."""
        self.path = path
        self.clock = clock
        self.recovery_key: str | None = None
        self.encrypted_plain = False
        try:
            if key is None and encrypted:
                private_dir(path.parent)
                unlocked = unlock(path, passphrase)
                key = unlocked.key
                self.recovery_key = unlocked.recovery_key
                self.encrypted_plain = unlocked.encrypted_plain
            self.key: bytes | None = key
            if key is not None:
                remember_key(path, key)
            self.engine: Engine = make_engine(path, key)
            self.schema_version = migrate(self.engine, path, clock=clock, key=key)
        except (OperationalError, DatabaseError) as exc:
            raise StoreError(f"cannot open the visit store {path}: {exc.orig}") from exc
        self.write_engine = self.engine.execution_options(sqlite_immediate=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE): all of it commits, or none."""
        with Session(self.write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    # --- writes ------------------------------------------------------------------------

    def add_visit(
        self,
        visit: VisitRow,
        version: VisitVersionRow,
        consent: ConsentRow,
        records: Sequence[dict[str, Any]],
        *,
        draft_id: str | None = None,
    ) -> None:
        """A new visit with its first version, consent, outbox rows and audit line; its
        draft goes in the same transaction."""
        now = self.clock()
        with self.writing() as session:
            session.add(visit)
            session.flush()  # the visit row first: the others refer to it
            session.add(version)
            session.add(consent)
            session.add(
                AuditRow(
                    at=iso(now),
                    actor=version.volunteer,
                    action="visit_saved",
                    visit_id=visit.visit_id,
                    detail=_dump({"code": visit.referral_code, "triage": version.triage}),
                )
            )
            if draft_id is not None:
                draft = session.get(DraftRow, draft_id)
                if draft is not None:
                    session.delete(draft)
            session.flush()
            conn = session.connection()
            for record in records:
                enqueue(conn, record, now=now)

    def add_version(
        self,
        version: VisitVersionRow,
        record: dict[str, Any],
        *,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        """A correction or void: a new version that must follow the latest one."""
        now = self.clock()
        with self.writing() as session:
            visit = session.get(VisitRow, version.visit_id)
            if visit is None:
                raise StoreError(f"no visit {version.visit_id}")
            if visit.latest_version != version.version - 1:
                raise VersionConflict(
                    f"visit {visit.referral_code} changed meanwhile (now version "
                    f"{visit.latest_version}); open it again"
                )
            visit.latest_version = version.version
            session.add(visit)
            session.add(version)
            session.add(
                AuditRow(
                    at=iso(now),
                    actor=version.volunteer,
                    action=action,
                    visit_id=version.visit_id,
                    detail=_dump(detail),
                )
            )
            session.flush()
            enqueue(session.connection(), record, now=now)

    def add_consent_event(self, consent: ConsentRow, record: dict[str, Any]) -> None:
        now = self.clock()
        with self.writing() as session:
            session.add(consent)
            session.add(
                AuditRow(
                    at=iso(now),
                    actor=consent.volunteer,
                    action=f"consent_{consent.kind}",
                    visit_id=consent.visit_id,
                    detail=consent.items,
                )
            )
            session.flush()
            enqueue(session.connection(), record, now=now)

    def withdraw(self, consent: ConsentRow, record: dict[str, Any]) -> int:
        """A withdrawal, in one transaction: the event and its outbox record, the contact
        removed from every version of the visit, every visit record not yet confirmed
        by the centre rebuilt without it (so it is never sent), and the payloads of those
        confirmed cleared. Then the WAL is
        checkpointed so the removed bytes leave the disk. Returns how many queued records
        were rebuilt."""
        visit_id = consent.visit_id
        now = self.clock()
        with self.writing() as session:
            session.add(consent)
            session.add(
                AuditRow(
                    at=iso(now),
                    actor=consent.volunteer,
                    action="consent_withdrawal",
                    visit_id=visit_id,
                    detail=consent.items,
                )
            )
            self._blank_contact(session, visit_id, now=iso(now), reason="consent withdrawn")
            conn = session.connection()
            # Confirmed payloads are cleared too: the centre holds those (with a verified
            # receipt), their hashes and receipts stay, as the purge leaves them.
            rebuilt = Outbox(self.engine).remove_contact(conn, visit_id)
            session.flush()
            enqueue(conn, record, now=now)
        self.checkpoint()
        return rebuilt

    def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it: with ``secure_delete`` the
        overwritten pages are then gone from both."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _blank_contact(self, session: Session, visit_id: str, *, now: str, reason: str) -> int:
        rows = session.exec(
            select(VisitVersionRow).where(VisitVersionRow.visit_id == visit_id)
        ).all()
        changed = 0
        for row in rows:
            if row.contact_name is not None or row.contact_phone is not None:
                row.contact_name = row.contact_phone = None
                row.purged_at = row.purged_at or now
                session.add(row)
                changed += 1
        session.add(
            AuditRow(
                at=now, actor="kit", action="contact_removed", visit_id=visit_id, detail=reason
            )
        )
        return changed

    def forget_contact(self, visit_id: str, *, reason: str) -> int:
        """Remove the contact details from every version of a visit; returns how many
        versions held any."""
        with self.writing() as session:
            return self._blank_contact(session, visit_id, now=iso(self.clock()), reason=reason)

    def save_draft(self, draft_id: str, volunteer: str, language: str, state: str) -> None:
        now = iso(self.clock())
        with self.writing() as session:
            row = session.get(DraftRow, draft_id)
            if row is None:
                row = DraftRow(
                    draft_id=draft_id,
                    volunteer=volunteer,
                    language=language,
                    state=state,
                    created_at=now,
                    updated_at=now,
                )
            else:
                row.volunteer, row.language, row.state, row.updated_at = (
                    volunteer,
                    language,
                    state,
                    now,
                )
            session.add(row)

    def delete_draft(self, draft_id: str, *, actor: str = "", why: str = "") -> None:
        with self.writing() as session:
            row = session.get(DraftRow, draft_id)
            if row is not None:
                session.delete(row)
                if why:
                    session.add(
                        AuditRow(at=iso(self.clock()), actor=actor, action=why, detail=draft_id)
                    )

    def add_tally(self, kind: str, volunteer: str) -> None:
        with self.writing() as session:
            session.add(TallyRow(kind=kind, volunteer=volunteer, created_at=iso(self.clock())))

    # --- reads -------------------------------------------------------------------------

    def drafts(self) -> list[Draft]:
        with self.reading() as session:
            rows = session.exec(select(DraftRow).order_by(DraftRow.updated_at)).all()
            return [
                Draft(
                    draft_id=r.draft_id,
                    volunteer=r.volunteer,
                    language=r.language,
                    state=json.loads(r.state),
                    created_at=parse_iso(r.created_at),
                    updated_at=parse_iso(r.updated_at),
                )
                for r in rows
            ]

    def visit(self, visit_id: str, *, history: bool = True) -> VisitRecord | None:
        rows = self._latest("WHERE v.visit_id = :v", {"v": visit_id})
        if not rows:
            return None
        return self._record(rows[0], self._history(visit_id) if history else ())

    def visit_by_code(self, code: str) -> VisitRecord | None:
        rows = self._latest("WHERE v.referral_code = :c", {"c": code})
        if not rows:
            return None
        return self._record(rows[0], self._history(str(rows[0]["visit_id"])))

    def visits(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        search: str | None = None,
        limit: int = 2000,
    ) -> list[VisitRecord]:
        """Latest versions, newest first; ``search`` matches code, volunteer or outcome."""
        where, params = self._range(since, until)
        if search:
            needle = search.strip().upper().replace("-", "").replace(" ", "")
            where.append(
                "(REPLACE(v.referral_code, '-', '') LIKE :code OR vv.volunteer LIKE :word "
                "OR vv.triage LIKE :word)"
            )
            params["code"] = f"%{needle}%"
            params["word"] = f"%{search.strip()}%"
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        params["limit"] = limit
        # Visits recorded in the same instant keep one order: the latest recorded first.
        rows = self._latest(
            f"{clause} ORDER BY v.created_at DESC, v.rowid DESC LIMIT :limit", params
        )
        return [self._record(row, ()) for row in rows]

    def counts(self, since: datetime, until: datetime) -> dict[str, int]:
        """Visits by outcome (voided ones apart) and the anonymous tallies."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT CASE WHEN vv.status = 'void' THEN 'void' ELSE vv.triage END, "
                    "COUNT(*) FROM visit v JOIN visit_version vv ON vv.visit_id = v.visit_id "
                    "AND vv.version = v.latest_version "
                    "WHERE v.created_at >= :s AND v.created_at < :u GROUP BY 1"
                ),
                {"s": iso(since), "u": iso(until)},
            ).all()
            out.update({str(k): int(n) for k, n in rows})
            rows = conn.execute(
                text(
                    "SELECT kind, COUNT(*) FROM tally WHERE created_at >= :s AND "
                    "created_at < :u GROUP BY kind"
                ),
                {"s": iso(since), "u": iso(until)},
            ).all()
            out.update({str(k): int(n) for k, n in rows})
        return out

    def consent_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        """Per consent item, how many of the period's visits granted it (latest event)."""
        out = {f"c{i}": 0 for i in range(1, 6)}
        for visit in self.visits(since=since, until=until, limit=100_000):
            for item, granted in visit.consent.items():
                if granted:
                    out[item] = out.get(item, 0) + 1
        return out

    def unsent(self) -> UnsentStatus:
        """The booth's view of :meth:`sync.outbox.Outbox.status` (one rule for unsent)."""
        status = Outbox(self.engine).status()
        return UnsentStatus(
            count=status.queued,
            oldest=status.oldest_unsent_at,
            set_aside=status.set_aside,
            last_error=status.last_problem,
            visits=status.unsent_visits,
        )

    def version_row(self, record_id: str) -> VisitVersionRow:
        """A stored version as it is (to derive the next one from it)."""
        with self.reading() as session:
            row = session.get(VisitVersionRow, record_id)
            if row is None:
                raise StoreError(f"no visit version {record_id}")
            session.expunge(row)
            return row

    def audit(self, visit_id: str | None = None) -> list[dict[str, Any]]:
        with self.reading() as session:
            query = select(AuditRow).order_by(AuditRow.id)  # type: ignore[arg-type]
            if visit_id is not None:
                query = query.where(AuditRow.visit_id == visit_id)
            return [row.model_dump() for row in session.exec(query).all()]

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _range(since: datetime | None, until: datetime | None) -> tuple[list[str], dict[str, Any]]:
        where: list[str] = []
        params: dict[str, Any] = {}
        if since is not None:
            where.append("v.created_at >= :since")
            params["since"] = iso(since)
        if until is not None:
            where.append("v.created_at < :until")
            params["until"] = iso(until)
        return where, params

    def _latest(self, tail: str, params: dict[str, Any]) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(_LATEST + tail), params).mappings().all())

    def _history(self, visit_id: str) -> tuple[VisitVersion, ...]:
        with self.reading() as session:
            rows = session.exec(
                select(VisitVersionRow)
                .where(VisitVersionRow.visit_id == visit_id)
                .order_by(VisitVersionRow.version)  # type: ignore[arg-type]
            ).all()
            return tuple(
                VisitVersion(
                    version=r.version,
                    at=parse_iso(r.created_at),
                    volunteer=r.volunteer,
                    triage=r.triage,
                    status="void" if r.status == "void" else "active",
                    note=r.void_reason or r.note or "",
                )
                for r in rows
            )

    @staticmethod
    def _record(row: Any, history: tuple[VisitVersion, ...]) -> VisitRecord:
        outcome = json.loads(row["outcome"])
        contact = None
        if row["contact_name"] is not None or row["contact_phone"] is not None:
            contact = Contact(row["contact_name"] or "", row["contact_phone"] or "")
        consent = json.loads(row["consent_items"]) if row["consent_items"] else {}
        return VisitRecord(
            visit_id=row["visit_id"],
            version=int(row["version"]),
            record_id=row["record_id"],
            code=row["referral_code"],
            kit_id=row["kit_id"],
            created_at=parse_iso(row["visit_created_at"]),
            updated_at=parse_iso(row["created_at"]),
            volunteer=row["volunteer"],
            language=row["language"],
            answers=json.loads(row["answers"]),
            triage=row["triage"],
            rules=tuple(
                RuleHit(str(r["id"]), str(r["level"]), dict(r["reason"]))
                for r in outcome.get("fired", [])
            ),
            ruleset_version=str(outcome.get("ruleset_version", "")),
            forms_version=row["forms_version"],
            startback=outcome.get("startback"),
            sbi_total=outcome.get("sbi_total"),
            consent={str(k): bool(v) for k, v in consent.items()},
            consent_version=row["consent_version"] or "",
            contact=contact,
            status="void" if row["status"] == "void" else "active",
            void_reason=row["void_reason"],
            sync_state=row["sync_state"] or "pending",
            purged=row["purged_at"] is not None,
            history=history,
        )
