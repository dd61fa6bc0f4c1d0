"""The phone-chase list: referrals with C3 still without a follow-up response some days
after their window opened. For signed-in clinicians and coordinators; each view is in the
access audit, as the worklist's is."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from sync.server import reminders
from sync.server.deps import Settings, Store
from sync.server.routers.clinic import PREFIX, AccountsDep, _page, _signed_in

router = APIRouter(prefix=PREFIX, include_in_schema=False)

REMINDER_NAMES = {
    None: "none sent",
    "pending": "to be tried again",
    "sending": "sending",
    "sent": "sent",
    "failed": "gateway failed",
    "skipped": "no SMS number",
}


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


@router.get("/chase", response_class=HTMLResponse)
def chase_page(
    request: Request, accounts: AccountsDep, settings: Settings, store: Store
) -> Response:
    session = _signed_in(request, accounts)
    now = store.clock()
    zone = ZoneInfo(settings.clinic_timezone)
    rows = reminders.chase_list(store, settings, now)
    accounts.audit(session.user, "view_chase", None, None, {"rows": len(rows)})
    return _page(
        "chase.html",
        session=session,
        rows=[
            {
                "kit_id": d.row.kit_id,
                "code": d.row.code,
                "window": d.window.name,
                "opened": _local(d.opens, zone),
                "days": int(d.days_open(now)),
                "closes": _local(d.closes, zone),
                "phone": d.row.phone,
                "language": d.row.language,
                "booth": d.row.booth,
                "event": d.row.event,
                "reminder": REMINDER_NAMES.get(d.reminder, d.reminder or ""),
            }
            for d in rows
        ],
        now=_local(now, zone),
        zone=settings.clinic_timezone,
        chase_days=settings.followup_chase_days,
    )
