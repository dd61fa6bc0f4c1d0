"""The clinicians' and coordinators' pages: sign-in, the worklist, one referral with its
log and the forms that add to it, and the access audit.

Every page needs a session (the cookie is HttpOnly, SameSite=Strict, Secure when the
public URL is https); every form carries the session's CSRF token. Each view of a
referral's details and each change is written to the access audit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from sync.server import checkin_pages, followups, kpi_charts, kpis
from sync.server import worklist as wl
from sync.server.accounts import Accounts, Policy, Session, SignInRefused, same_token
from sync.server.deps import Settings, Store
from sync.server.events import event
from sync.server.settings import ServerSettings
from sync.server.store import ServerStore

PREFIX = "/clinic"
COOKIE = "popup_kit_session"
_HERE = Path(__file__).resolve().parent.parent
STATIC = _HERE / "static"
_MAX_FORM = 16 * 1024
# Rows a worklist page shows: a clinician works from the top; the rest are pages on.
PAGE_ROWS = 100

templates = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(
    shown=wl.shown,
    parse_time=wl.parse_time,
    level_names=wl.LEVEL_NAMES,
    attempt_results=wl.ATTEMPT_RESULTS,
    conservative=wl.CONSERVATIVE,
    escalated=wl.ESCALATED,
    decisions=wl.DECISIONS,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def accounts_of(request: Request) -> Accounts:
    """One Accounts per app, built on its store with the settings' policy."""
    state = request.app.state
    found: Accounts | None = getattr(state, "accounts", None)
    if found is None:
        settings: ServerSettings = state.settings
        found = Accounts(
            state.store,
            Policy(
                idle=timedelta(minutes=settings.session_idle_minutes),
                failures_per_account=settings.signin_failures_per_account,
                failures_per_address=settings.signin_failures_per_address,
                lockout=timedelta(minutes=settings.signin_lockout_minutes),
            ),
        )
        state.accounts = found
    return found


def deadlines_of(settings: ServerSettings) -> wl.Deadlines:
    return wl.Deadlines(
        emergency=timedelta(hours=settings.deadline_emergency_hours),
        urgent=timedelta(hours=settings.deadline_urgent_hours),
        routine=timedelta(days=settings.deadline_routine_days),
    )


AccountsDep = Annotated[Accounts, Depends(accounts_of)]


class NeedsSignIn(Exception):
    """No live session: a page redirects to sign-in, the JSON answers 401."""

    def __init__(self, json: bool) -> None:
        self.json = json


def _session(request: Request, accounts: Accounts, *, touch: bool = True) -> Session | None:
    return accounts.session(request.cookies.get(COOKIE), touch=touch)


def _signed_in(request: Request, accounts: Accounts, *, json: bool = False) -> Session:
    # The worklist's JSON is its 30-second refresh: it must not keep an unattended
    # screen signed in.
    session = _session(request, accounts, touch=not json)
    if session is None or session.user is None:
        raise NeedsSignIn(json)
    return session


def _set_cookie(response: Response, settings: ServerSettings, sid: str) -> None:
    response.set_cookie(
        COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https://"),
        path=PREFIX,
    )


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status)


def _zone(settings: ServerSettings) -> ZoneInfo:
    return ZoneInfo(settings.clinic_timezone)


def _in_zone(zone: ZoneInfo) -> dict[str, Any]:
    """What a page needs to show its times in the clinic's zone, labelled with it."""
    return {"zone": zone.key, "shown": lambda moment: wl.shown(moment, zone)}


def _local_time(value: str | None, zone: ZoneInfo) -> str | None:
    """A form's time: a browser's datetime-local (no offset) is the clinic's local time."""
    if not value:
        return value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # refused further on as unreadable
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).isoformat()


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items()}


def _refused(reason: str) -> HTMLResponse:
    event("clinic_refused", reason=reason)
    return _page("refused.html", 403, reason=reason)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- sign-in ---------------------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, accounts: AccountsDep, settings: Settings) -> Response:
    session = _session(request, accounts)
    if session is not None and session.user is not None:
        return RedirectResponse(f"{PREFIX}/", 303)
    session = session or accounts.anonymous_session()
    response = _page("signin.html", csrf=session.csrf, error="")
    _set_cookie(response, settings, session.sid)
    return response


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, accounts: AccountsDep, settings: Settings) -> Response:
    form = await _form(request)
    session = _session(request, accounts)
    if session is None or not same_token(form.get("csrf"), session.csrf):
        return _refused("The form has expired or did not come from this site. Reload the page.")
    try:
        signed = accounts.sign_in(
            form.get("name", ""), form.get("password", ""), _address(request), session.sid
        )
    except SignInRefused as exc:
        return _page("signin.html", 401, csrf=session.csrf, error=str(exc))
    response = RedirectResponse(f"{PREFIX}/", 303)
    _set_cookie(response, settings, signed.sid)
    return response


@router.post("/signout")
async def signout(request: Request, accounts: AccountsDep) -> Response:
    form = await _form(request)
    session = _session(request, accounts)
    if session is None or not same_token(form.get("csrf"), session.csrf):
        return _refused("The form has expired or did not come from this site. Reload the page.")
    accounts.audit(session.user, "sign_out", None, None, "")
    accounts.end_session(session.sid)
    response = RedirectResponse(f"{PREFIX}/signin", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# --- the worklist -----------------------------------------------------------------------


def _filters(request: Request, zone: ZoneInfo) -> wl.Filters:
    q = request.query_params
    day = q.get("day", "")[:10]
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        day = ""
    return wl.Filters(
        booth=q.get("booth", "")[:80], event=q.get("event", "")[:200], day=day, zone=zone
    )


def _page_number(request: Request, rows: int) -> tuple[int, int]:
    """The page asked for (1-based, within range) and the number of pages."""
    pages = max(1, -(-rows // PAGE_ROWS))
    raw = request.query_params.get("page", "1")
    number = int(raw) if raw.isdigit() and len(raw) < 6 else 1
    return min(max(1, number), pages), pages


@router.get("/", response_class=HTMLResponse)
def worklist_page(
    request: Request, accounts: AccountsDep, settings: Settings, store: Store
) -> Response:
    session = _signed_in(request, accounts)
    zone = _zone(settings)
    filters = _filters(request, zone)
    now = store.clock()
    everything = wl.worklist(store, deadlines_of(settings))
    matching = [r for r in everything if filters.keep(r)]
    number, pages = _page_number(request, len(matching))
    rows = matching[(number - 1) * PAGE_ROWS : number * PAGE_ROWS]
    chosen = {k: v for k, v in vars(filters).items() if v and k != "zone"}
    accounts.audit(session.user, "view_worklist", None, None, {"rows": len(rows)})
    return _page(
        "worklist.html",
        **_in_zone(zone),
        session=session,
        rows=rows,
        total=len(matching),
        breached=sum(1 for r in matching if r.breached(now)),
        page=number,
        pages=pages,
        first=(number - 1) * PAGE_ROWS,
        now=now,
        filters=filters,
        booths=sorted({r.booth for r in everything}),
        events=sorted({r.event for r in everything if r.event}),
        days=sorted({r.visit_at.astimezone(zone).date().isoformat() for r in everything}),
        query=urlencode(chosen),
        page_query=urlencode({**chosen, **({"page": number} if number > 1 else {})}),
    )


@router.get("/worklist.json")
def worklist_json(
    request: Request, accounts: AccountsDep, settings: Settings, store: Store
) -> JSONResponse:
    _signed_in(request, accounts, json=True)
    now = store.clock()
    zone = _zone(settings)
    # The page's own 30-second refresh: the page view it belongs to is in the audit.
    matching = wl.worklist(store, deadlines_of(settings), _filters(request, zone))
    number, pages = _page_number(request, len(matching))
    rows = matching[(number - 1) * PAGE_ROWS : number * PAGE_ROWS]
    return JSONResponse(
        {
            "now": wl.shown(now, zone),
            "total": len(matching),
            "breached": sum(1 for r in matching if r.breached(now)),
            "page": number,
            "pages": pages,
            "rows": [r.as_json(now, zone) for r in rows],
        },
        headers={"Cache-Control": "no-store"},
    )


# --- one referral -----------------------------------------------------------------------


def _detail(store: ServerStore, settings: ServerSettings, kit_id: str, code: str) -> wl.Detail:
    detail = wl.referral(store, deadlines_of(settings), kit_id[:80], code[:40])
    if detail is None:
        raise NotShared()
    return detail


class NotShared(Exception):
    """No shared referral by that kit and code."""


@router.get("/r/{kit_id}/{code}", response_class=HTMLResponse)
def referral_page(
    request: Request,
    kit_id: str,
    code: str,
    accounts: AccountsDep,
    settings: Settings,
    store: Store,
) -> Response:
    session = _signed_in(request, accounts)
    detail = _detail(store, settings, kit_id, code)
    accounts.audit(session.user, "view_referral", kit_id, code, "")
    return _page(
        "referral.html",
        **_in_zone(_zone(settings)),
        session=session,
        row=detail.row,
        events=detail.events,
        state=detail.row.state,
        now=store.clock(),
        error=request.query_params.get("error", "")[:300],
        checkins=list(reversed(followups.history(store, kit_id, code))),
        week_label=followups.week_label,
        # The attendee's own English words for each answer.
        change_names={c: checkin_pages.TEXTS["en"][c] for c in followups.GLOBAL_CHANGE},
        ces_names=followups.CES_NAMES,
        warning_answer=followups.YES,
    )


@router.post("/r/{kit_id}/{code}/{kind}")
async def add_event(
    request: Request,
    kit_id: str,
    code: str,
    kind: str,
    accounts: AccountsDep,
    settings: Settings,
    store: Store,
) -> Response:
    session = _signed_in(request, accounts)
    form = await _form(request)
    if not same_token(form.get("csrf"), session.csrf):
        return _refused("The form has expired or did not come from this site. Reload the page.")
    assert session.user is not None
    if session.user.role != "clinician":
        return _refused("Only a clinician records calls and decisions.")
    if kind not in wl.KINDS:
        return _refused("Unknown kind of entry.")
    detail = _detail(store, settings, kit_id, code)
    row = detail.row
    page = f"{PREFIX}/r/{row.kit_id}/{row.code}"
    if not row.open and kind in ("decision", "closure"):
        return RedirectResponse(page + "?" + urlencode({"error": "already decided or closed"}), 303)
    zone = _zone(settings)
    data: dict[str, Any] = dict(form)
    data.pop("csrf", None)
    if data.get("escalation_arranged_at"):
        data["escalation_arranged_at"] = _local_time(data["escalation_arranged_at"], zone)
    at = wl.parse_time(_local_time(form.get("at"), zone)) if form.get("at") else None
    if form.get("at") and at is None:
        return RedirectResponse(page + "?" + urlencode({"error": "unreadable time"}), 303)
    try:
        recorded = wl.record_event(store, row.kit_id, row.code, kind, session.user.name, data, at)
    except wl.EventRefused as exc:
        return RedirectResponse(page + "?" + urlencode({"error": str(exc)}), 303)
    shown = {k: v for k, v in recorded.data.items() if k != "note"}
    shown["note"] = bool(recorded.data.get("note"))
    accounts.audit(session.user, kind, row.kit_id, row.code, shown)
    event("referral_event", kind=kind)
    return RedirectResponse(page, 303)


# --- the coordinator's audit --------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, accounts: AccountsDep, settings: Settings) -> Response:
    session = _signed_in(request, accounts)
    assert session.user is not None
    if session.user.role != "coordinator":
        return _refused("The access audit is for coordinators.")
    entries = accounts.audit_entries(limit=500)
    accounts.audit(session.user, "view_audit", None, None, "")
    zone = _zone(settings)
    return _page(
        "audit.html",
        session=session,
        entries=entries,
        when=lambda at: wl.shown(wl.parse_time(at), zone),
        **_in_zone(zone),
    )


@router.get("/audit.json")
def audit_json(request: Request, accounts: AccountsDep) -> Response:
    session = _signed_in(request, accounts, json=True)
    assert session.user is not None
    if session.user.role != "coordinator":
        return JSONResponse({"error": "forbidden"}, 403)
    entries = accounts.audit_entries()
    accounts.audit(session.user, "export_audit", None, None, "")
    return JSONResponse([e.as_json() for e in entries], headers={"Cache-Control": "no-store"})


# --- the coordinators' KPI dashboard ---------------------------------------------------


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


KPI_TITLES = {
    "time_to_first_contact": "Time to first contact: reached within the level's deadline",
    "appropriateness": "Appropriateness: conservative and not escalated within 12 weeks",
    "escalation_latency": "Escalation latency: suspected cauda equina arranged within 4 h",
    "early_improvement": "Early improvement at week 2: leg (or back) NRS down >= 30 % and >= 2",
}


def _charts(found: kpis.Breakdown) -> list[dict[str, Any]]:
    out = []
    for n, (name, title) in enumerate(KPI_TITLES.items()):
        overall = found.overall.all()[n]

        def item(label: str, group: kpis.Kpis, n: int = n) -> tuple[str, float | None, str]:
            kpi = group.all()[n]
            return (label, kpi.value, f"{kpi.numerator}/{kpi.denominator}")

        out.append(
            {
                "name": name,
                "title": title,
                "kpi": overall.as_json(),
                "weekly": kpi_charts.bars(
                    title + ", by week",
                    [item(f"{w:%d %b}", g) for w, g in found.weeks.items()],
                ),
                "booths": kpi_charts.bars(
                    title + ", by booth", [item(b, g) for b, g in found.booths.items()]
                ),
            }
        )
    return out


@router.get("/kpis", response_class=HTMLResponse)
def kpis_page(
    request: Request, accounts: AccountsDep, settings: Settings, store: Store
) -> Response:
    session = _signed_in(request, accounts)
    assert session.user is not None
    if session.user.role != "coordinator":
        return _refused("The KPI dashboard is for coordinators.")
    q = request.query_params
    period = kpis.Period(
        _day(q.get("from")),
        _day(q.get("to")),
        q.get("booth", ""),
        q.get("event", ""),
        ZoneInfo(settings.clinic_timezone),
    )
    found = kpis.breakdown(store, deadlines_of(settings), period)
    chosen = {
        "from": "" if period.start is None else period.start.isoformat(),
        "to": "" if period.end is None else period.end.isoformat(),
        "booth": period.booth,
        "event": period.event,
    }
    accounts.audit(session.user, "view_kpis", None, None, {k: v for k, v in chosen.items() if v})
    return _page(
        "kpis.html",
        session=session,
        charts=_charts(found),
        chosen=chosen,
        booths=found.booth_names,
        events=found.event_names,
        zone=settings.clinic_timezone,
    )


# --- vendored assets ---------------------------------------------------------------------

_ASSETS = {"clinic.css": "text/css", "worklist.js": "text/javascript"}


@router.get("/static/{name}")
def asset(name: str) -> Response:
    if name not in _ASSETS:
        return Response(status_code=404)
    return FileResponse(STATIC / name, media_type=_ASSETS[name])


def install(app: Any) -> None:
    """The router and its two refusals."""

    async def needs_signin(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NeedsSignIn)
        if exc.json:
            return JSONResponse({"error": "unauthenticated"}, 401)
        return RedirectResponse(f"{PREFIX}/signin", 303)

    async def not_shared(request: Request, exc: Exception) -> Response:
        return _page("refused.html", 404, reason="No shared referral with that kit and code.")

    app.add_exception_handler(NeedsSignIn, needs_signin)
    app.add_exception_handler(NotShared, not_shared)
    app.include_router(router)
