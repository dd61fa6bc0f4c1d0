"""The kit's side of sync: running the client on this kit's store, purging personal data
once the centre has verifiably received it, and the end-of-day reconciliation.

Headless: used by `popup-kit sync`, `popup-kit report` and the UI's background worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from popup_kit.config import KitConfig
from popup_kit.domain import ON_THE_SLIP_PAGE
from popup_kit.enrolment import enrolled_with, require_credentials
from popup_kit.store import Store
from popup_kit.store.db import iso, utc_now
from sync.outbox import Outbox

if TYPE_CHECKING:
    from sync.client import SyncConfig, SyncSummary
    from sync.outbox import OutboxStatus
    from sync.protocol import KitCredentials

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PurgeResult:
    visits: int
    records: int


def run_sync(
    config: KitConfig,
    store: Store,
    *,
    sync_config: SyncConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    clock: Clock = utc_now,
) -> SyncSummary:
    """One sync run on this kit's outbox; then the purge of what is due."""
    from sync.client import sync_outbox

    creds = require_credentials(config)
    # Before the outbox drains: a withdrawn visit's contact then never leaves.
    applied: list[str] = []
    if stop is None or not stop.is_set():
        applied = apply_centre_withdrawals(config, store, creds, sync_config, clock=clock).applied
    summary = sync_outbox(
        store.engine, creds, sync_config, progress=progress, stop=stop, clock=clock
    )
    summary.withdrawn_on_slip_page = applied
    purge(config, store, creds, now=clock())
    return summary


@dataclass(frozen=True)
class CentreWithdrawals:
    applied: list[str]
    """Codes whose consent this run withdrew here."""
    error: str = ""


def apply_centre_withdrawals(
    config: KitConfig,
    store: Store,
    creds: KitCredentials,
    sync_config: SyncConfig | None = None,
    *,
    clock: Clock = utc_now,
) -> CentreWithdrawals:
    """Withdrawals made on the slip's page for this kit's visits, applied as at the booth
    (the same ``Store.withdraw`` transaction). A code already withdrawn or unknown here
    changes nothing, so the centre's list may be applied again and again."""
    from popup_kit.domain import VisitRefused
    from popup_kit.services import VisitService
    from sync.withdrawals import fetch_withdrawals

    answer = fetch_withdrawals(creds, sync_config)
    applied: list[str] = []
    if not answer.codes:
        return CentreWithdrawals(applied, answer.error)
    service = VisitService(config, store=store, clock=clock)
    for code in answer.codes:
        visit = service.find_by_code(code)
        if visit is None or visit.kit_id != config.kit_id:
            continue
        try:
            service.withdraw_consent(visit.visit_id, "attendee", method=ON_THE_SLIP_PAGE)
        except VisitRefused:  # withdrawn already
            continue
        applied.append(visit.code)
    return CentreWithdrawals(applied, answer.error)


def purge(config: KitConfig, store: Store, creds: KitCredentials, *, now: datetime) -> PurgeResult:
    """Remove contact details (the only personal data kept) from visits whose every record
    the server confirmed with a verified receipt more than the retention period ago; the
    non-personal skeleton and the receipts stay. Never before."""
    outbox = Outbox(store.engine)
    cutoff = now - timedelta(days=config.retention_days)
    due = outbox.confirmed_visits(creds.receipt_key, before=cutoff)
    if not due:
        return PurgeResult(0, 0)
    stamp = iso(now)
    purged_visits = 0
    with store.writing() as session:
        conn = session.connection()
        # every row of a due visit is confirmed with a verified receipt: clear them all
        records: list[str] = []
        for visit_id in due:
            records += outbox.record_ids_of_visit(conn, visit_id)
            changed = conn.execute(
                text(
                    "UPDATE visit_version SET contact_name = NULL, contact_phone = NULL, "
                    "purged_at = :t WHERE visit_id = :v AND purged_at IS NULL"
                ),
                {"t": stamp, "v": visit_id},
            ).rowcount
            if changed:
                purged_visits += 1
                conn.execute(
                    text(
                        "INSERT INTO audit (at, actor, action, visit_id, detail) "
                        "VALUES (:t, 'kit', 'purged', :v, :d)"
                    ),
                    {"t": stamp, "v": visit_id, "d": f"{config.retention_days} days after receipt"},
                )
        cleared = outbox.clear_confirmed_payloads(conn, records)
    return PurgeResult(purged_visits, cleared)


def status(store: Store) -> OutboxStatus:
    return Outbox(store.engine).status()


# --- the reconciliation -----------------------------------------------------------------


@dataclass
class Reconciliation:
    """Where every record of the period is: the coordinator's end-of-day answer."""

    day: date | None
    kit_id: str
    visits: int = 0
    records: int = 0
    sent: int = 0
    confirmed: int = 0
    conflicts: list[dict[str, str]] = field(default_factory=list)
    set_aside: list[dict[str, str]] = field(default_factory=list)
    purged_visits: int = 0
    withdrawn_visits: int = 0
    withdrawn_on_slip_page: list[str] = field(default_factory=list)
    only_here: int = 0
    only_here_codes: list[str] = field(default_factory=list)
    enrolled: bool = True
    last_error: str | None = None

    @property
    def all_confirmed(self) -> bool:
        return self.only_here == 0 and not self.set_aside and not self.conflicts

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat() if self.day else None,
            "kit_id": self.kit_id,
            "captured": {"visits": self.visits, "records": self.records},
            "sent": self.sent,
            "confirmed": self.confirmed,
            "conflicts": self.conflicts,
            "set_aside": self.set_aside,
            "purged_visits": self.purged_visits,
            "withdrawn": {
                "visits": self.withdrawn_visits,
                "on_slip_page": self.withdrawn_on_slip_page,
            },
            "still_only_here": {"records": self.only_here, "codes": self.only_here_codes},
            "all_confirmed": self.all_confirmed,
            "enrolled": self.enrolled,
            "last_error": self.last_error,
        }


def reconcile(
    config: KitConfig, store: Store, day: date | None, *, bounds: tuple[datetime, datetime] | None
) -> Reconciliation:
    """Counts over the records of visits created in ``bounds`` (all visits when None)."""
    report = Reconciliation(
        day=day, kit_id=config.kit_id, enrolled=enrolled_with(config) is not None
    )
    where = ""
    params: dict[str, Any] = {}
    if bounds is not None:
        where = "WHERE v.created_at >= :s AND v.created_at < :u"
        params = {"s": iso(bounds[0]), "u": iso(bounds[1])}
    with store.engine.connect() as conn:
        report.visits = int(
            conn.execute(text(f"SELECT COUNT(*) FROM visit v {where}"), params).scalar() or 0
        )
        report.purged_visits = int(
            conn.execute(
                text(
                    "SELECT COUNT(DISTINCT vv.visit_id) FROM visit_version vv JOIN visit v "
                    f"ON v.visit_id = vv.visit_id {where} "
                    + ("AND" if where else "WHERE")
                    + " vv.purged_at IS NOT NULL"
                ),
                params,
            ).scalar()
            or 0
        )
        withdrawals = conn.execute(
            text(
                "SELECT v.referral_code, MAX(c.method = :page) FROM consent_event c "
                f"JOIN visit v ON v.visit_id = c.visit_id {where} "
                + ("AND" if where else "WHERE")
                + " c.kind = 'withdrawal' GROUP BY v.visit_id ORDER BY MIN(c.created_at)"
            ),
            {**params, "page": ON_THE_SLIP_PAGE},
        ).all()
        report.withdrawn_visits = len(withdrawals)
        report.withdrawn_on_slip_page = [code for code, on_page in withdrawals if on_page]
        rows = Outbox(store.engine).of_visits(conn, created=bounds)
    report.records, report.sent, report.confirmed = rows.records, rows.sent, rows.confirmed
    report.only_here, report.only_here_codes = rows.unsent, rows.unsent_codes
    report.last_error = rows.last_error
    for held in rows.set_aside:
        entry = {
            "record_id": held.record_id,
            "type": held.record_type,
            "code": held.code,
            "reason": held.reason,
        }
        if held.reason.startswith("conflict"):
            report.conflicts.append(entry)
        else:
            report.set_aside.append(entry)
    return report


def report_pdf(config: KitConfig, report: Reconciliation, fmt: str | None = None) -> bytes:
    """The reconciliation on paper (the kit's slip format unless told otherwise)."""
    from printouts.render import ReconciliationData, render_reconciliation

    data = ReconciliationData(
        booth_name=config.booth_name,
        event=config.event,
        day=report.day,
        kit_id=report.kit_id,
        visits=report.visits,
        records=report.records,
        sent=report.sent,
        confirmed=report.confirmed,
        conflicts=[(c["code"], c["reason"]) for c in report.conflicts],
        set_aside=[(c["code"], c["reason"]) for c in report.set_aside],
        purged_visits=report.purged_visits,
        only_here=report.only_here,
        only_here_codes=report.only_here_codes,
        last_error=report.last_error or "",
        withdrawn_visits=report.withdrawn_visits,
        withdrawn_on_slip_page=report.withdrawn_on_slip_page,
    )
    return render_reconciliation(data, fmt or config.slip_format)
