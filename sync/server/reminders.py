"""Follow-up reminders by SMS and the phone-chase list.

Who is due: a referral the server holds (C2, not voided, not withdrawn on the slip's page
or at the booth) with a phone shared under C3, whose follow-up window is open now, with no
current response in that window. Each (kit, code, window) gets at most one reminder: a
run claims the reminder's row (UNIQUE in ``followup_reminder``) before calling the gateway,
so two runs at once never both send. A transient gateway failure leaves the row pending
for the next run, up to ``sms_max_attempts``; a run that stopped while sending leaves it
``sending``, never sent again (at most once, as the slip holder expects).

The phone-chase list: the same referrals, still without a response
``followup_chase_days`` after their window opened, while it is open.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from sync.server import followups
from sync.server import worklist as wl
from sync.server.events import event
from sync.server.settings import ServerSettings
from sync.server.sms import Gateway, Outcome, e164
from sync.server.store import ServerStore, iso

DONE = ("sent", "failed", "skipped", "sending")
_ANY_CALLBACK = (datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC))

TEXTS = {
    "en": {
        "link": "popup-kit: your back-pain check-in is due. Please open {link}",
        "slip": "popup-kit: your back-pain check-in is due. Please open the link on your slip "
        "(or scan its QR code).",
    },
    "es": {
        "link": "popup-kit: ya puede hacer su control del dolor de espalda. Abra {link}",
        "slip": "popup-kit: ya puede hacer su control del dolor de espalda. Abra el enlace de "
        "su hoja (o escanee su código QR).",
    },
}


@dataclass(frozen=True)
class Due:
    """A referral in an open window without a response (phone only under C3)."""

    row: wl.Row
    window: followups.Window
    reminder: str | None  # the reminder's status, None when none was made

    @property
    def opens(self) -> datetime:
        return self.window.opens(self.row.visit_at)

    @property
    def closes(self) -> datetime:
        return self.window.closes(self.row.visit_at)

    def days_open(self, now: datetime) -> float:
        return (now - self.opens) / timedelta(days=1)


@dataclass
class Counts:
    sent: int = 0
    failed: int = 0
    retry: int = 0
    skipped: int = 0
    dry_run: bool = False
    would_send: list[str] = field(default_factory=list)  # windows, in --dry-run

    @property
    def gateway_failed(self) -> bool:
        return self.failed > 0 or self.retry > 0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sent": self.sent,
            "failed": self.failed,
            "retry": self.retry,
            "skipped": self.skipped,
        }
        if self.dry_run:
            out["would_send"] = len(self.would_send)
        return out


def _responded(store: ServerStore) -> set[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return {
            (k, c, w)
            for k, c, w in conn.execute(
                text(
                    'SELECT kit_id, referral_code, "window" FROM followup_response '
                    "WHERE superseded_at IS NULL"
                )
            )
        }


def _withdrawn_codes(store: ServerStore) -> set[tuple[str, str]]:
    with store.engine.connect() as conn:
        return {
            (k, c)
            for k, c in conn.execute(text("SELECT kit_id, referral_code FROM attendee_withdrawal"))
        }


def _reminders(store: ServerStore) -> dict[tuple[str, str, str], tuple[str, int]]:
    with store.engine.connect() as conn:
        return {
            (k, c, w): (s, int(a))
            for k, c, w, s, a in conn.execute(
                text(
                    'SELECT kit_id, referral_code, "window", status, attempts '
                    "FROM followup_reminder"
                )
            )
        }


def open_windows(store: ServerStore, settings: ServerSettings, now: datetime) -> list[Due]:
    """Every held referral with a C3 phone whose window is open at ``now`` and has no
    current response in it."""
    all_windows = followups.windows(settings.followup_windows)
    consents = wl._consents(store)
    withdrawn = wl._withdrawn(store)
    by_slip = _withdrawn_codes(store)
    callbacks = wl._callbacks(store)
    responded = _responded(store)
    reminders = _reminders(store)
    out: dict[tuple[str, str], Due] = {}
    for visit in wl._visits(store):
        key = (visit.kit_id, visit.visit_id)
        ref = (visit.kit_id, visit.code)
        if ref in by_slip:
            continue
        # The worklist's own rule for what is shared and where the phone may be shown. It
        # leaves out self-care without a call-back request (no call is due); a follow-up
        # is due for every held referral, so any window stands in for the request.
        callback = callbacks.get(ref) or _ANY_CALLBACK
        row = wl._row(visit, consents.get(key, {}), key in withdrawn, callback, [], wl.Deadlines())
        if row is None or row.phone is None:
            continue
        window = followups.current(all_windows, row.visit_at, now)
        if window is None or (*ref, window.name) in responded:
            continue
        found = reminders.get((*ref, window.name))
        out[ref] = Due(row, window, None if found is None else found[0])
    return list(out.values())


def _link_maker(store: ServerStore, settings: ServerSettings) -> Callable[[wl.Row], str | None]:
    """The slip's own URL, rebuilt from the kit's slip key (the server holds it to check
    slips) and the public URL; None when either is missing."""
    if not settings.public_url:
        return lambda _row: None
    try:
        payload = importlib.import_module("printouts.payload")
    except ImportError:
        return lambda _row: None
    keys = {k.kit_id: k.slip_key for k in store.kits() if k.slip_key}

    def link(row: wl.Row) -> str | None:
        key = keys.get(row.kit_id)
        if key is None:
            return None
        try:
            return str(payload.slip_url(settings.public_url, row.code, key, row.language[:2]))
        except ValueError:  # PayloadError, CodeError
            return None

    return link


def message(language: str, link: str | None) -> str:
    words = TEXTS.get(language, TEXTS["en"])
    return words["link"].format(link=link) if link else words["slip"]


def gateway_of(settings: ServerSettings) -> Gateway | None:
    if not settings.sms_webhook_url:
        return None
    return Gateway(
        settings.sms_webhook_url,
        settings.sms_webhook_token,
        settings.sms_sender,
        settings.sms_timeout_seconds,
    )


def _still_due(store: ServerStore, due: Due) -> bool:
    """Asked again just before sending: a run with a slow gateway takes a while, and a
    withdrawal or a response may land meanwhile."""
    params = {"k": due.row.kit_id, "c": due.row.code, "w": due.window.name}
    with store.engine.connect() as conn:
        held = conn.scalar(
            text(
                "SELECT 1 FROM record WHERE kit_id = :k AND referral_code = :c "
                "AND record_type = 'visit' AND scrubbed_at IS NULL"
            ),
            params,
        )
        gone = conn.scalar(
            text("SELECT 1 FROM attendee_withdrawal WHERE kit_id = :k AND referral_code = :c"),
            params,
        )
        answered = conn.scalar(
            text(
                "SELECT 1 FROM followup_response WHERE kit_id = :k AND referral_code = :c "
                'AND "window" = :w AND superseded_at IS NULL'
            ),
            params,
        )
    return held is not None and gone is None and answered is None


def _writing(store: ServerStore) -> Connection:
    # SQLite: take the write lock at BEGIN, so that another process's run waits for it
    # instead of failing at its first write after a read.
    return store.engine.connect().execution_options(sqlite_immediate=True)


def _claim(store: ServerStore, due: Due, status: str, now: str) -> bool:
    """Take the reminder for this run: a new row, or a pending one; False when another
    run holds it or it is done."""
    params = {"k": due.row.kit_id, "c": due.row.code, "w": due.window.name, "s": status, "t": now}
    with _writing(store) as conn, conn.begin():
        made = conn.execute(
            text(
                'INSERT INTO followup_reminder (kit_id, referral_code, "window", status, '
                "attempts, last_error, created_at, updated_at) VALUES (:k, :c, :w, :s, 0, '', "
                ':t, :t) ON CONFLICT (kit_id, referral_code, "window") DO NOTHING'
            ),
            params,
        ).rowcount
        if made == 1 or status == "skipped":
            return made == 1
        taken = conn.execute(
            text(
                "UPDATE followup_reminder SET status = 'sending', updated_at = :t "
                'WHERE kit_id = :k AND referral_code = :c AND "window" = :w '
                "AND status = 'pending'"
            ),
            params,
        ).rowcount
    return taken == 1


def _settle(store: ServerStore, due: Due, outcome: Outcome, max_attempts: int, now: str) -> str:
    with _writing(store) as conn, conn.begin():
        attempts = (
            int(
                conn.scalar(
                    text(
                        "SELECT attempts FROM followup_reminder WHERE kit_id = :k "
                        'AND referral_code = :c AND "window" = :w'
                    ),
                    {"k": due.row.kit_id, "c": due.row.code, "w": due.window.name},
                )
                or 0
            )
            + 1
        )
        status: str = outcome.result
        if status == "retry":
            status = "failed" if attempts >= max_attempts else "pending"
        conn.execute(
            text(
                "UPDATE followup_reminder SET status = :s, attempts = :a, last_error = :e, "
                "sent_at = :sent, updated_at = :t WHERE kit_id = :k AND referral_code = :c "
                'AND "window" = :w'
            ),
            {
                "s": status,
                "a": attempts,
                "e": outcome.error,
                "sent": now if status == "sent" else None,
                "t": now,
                "k": due.row.kit_id,
                "c": due.row.code,
                "w": due.window.name,
            },
        )
    return status


def run(
    store: ServerStore,
    settings: ServerSettings,
    gateway: Gateway | None,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
) -> Counts:
    """Send the reminders due at ``now``; idempotent, safe to run from several places."""
    now = now or store.clock()
    stamp = iso(now)
    counts = Counts(dry_run=dry_run)
    if gateway is None and not dry_run:
        event("reminders_off")
        return counts
    link = _link_maker(store, settings)
    for due in open_windows(store, settings, now):
        if due.reminder in DONE:
            continue
        phone = e164(due.row.phone)
        if dry_run:
            if phone is None:
                counts.skipped += 1
            else:
                counts.would_send.append(due.window.name)
            continue
        assert gateway is not None
        if phone is None:
            if _claim(store, due, "skipped", stamp):
                counts.skipped += 1
            continue
        if not _still_due(store, due) or not _claim(store, due, "sending", stamp):
            continue
        outcome = gateway.send(phone, message(due.row.language, link(due.row)))
        status = _settle(store, due, outcome, settings.sms_max_attempts, stamp)
        if status == "sent":
            counts.sent += 1
        elif status == "failed":
            counts.failed += 1
        else:
            counts.retry += 1
        event(
            "reminder",
            kit_id=due.row.kit_id,
            window=due.window.name,
            status=status,
            error=outcome.error,
        )
    event("reminders_run", dry_run=dry_run, **counts.as_json())
    return counts


def chase_list(store: ServerStore, settings: ServerSettings, now: datetime) -> list[Due]:
    """Non-responders to call: still no response ``followup_chase_days`` after their
    window opened, while it is open; the window closing first comes first."""
    wait = timedelta(days=settings.followup_chase_days)
    rows = [d for d in open_windows(store, settings, now) if now - d.opens >= wait]
    return sorted(rows, key=lambda d: (d.closes, d.opens, d.row.kit_id, d.row.code))


async def _every(store: ServerStore, settings: ServerSettings, gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(settings.reminders_every_minutes * 60)
        try:
            await asyncio.to_thread(run, store, settings, gateway)
        except Exception as exc:  # a failed run must not end the task: the next may work
            event("reminders_error", error=type(exc).__name__)


def start(store: ServerStore, settings: ServerSettings) -> asyncio.Task[None] | None:
    """The server's own periodic run (``reminders_every_minutes``); None when off. With
    several workers each runs it: the claims keep every reminder to one."""
    gateway = gateway_of(settings)
    if gateway is None or settings.reminders_every_minutes <= 0:
        return None
    return asyncio.get_running_loop().create_task(_every(store, settings, gateway))
