"""The attendee's follow-up check-in from the slip: GET the form of the window open now,
POST the answers. The slip's signature in the form is the credential, as on the call page;
everything is scoped to the kit whose key signed the slip and that code.

Only a referral the centre holds with consent C2 is asked; a withdrawn one gets the
withdrawal page, one not arrived yet the pending page.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sync.server import booking_pages, followups, landing
from sync.server import checkin_pages as pages
from sync.server.codes import CodeRules, check_code
from sync.server.deps import Limits, Rules, Settings, Store
from sync.server.limits import LandingLimits
from sync.server.routers.slip import html, network_limited, owner_of, read_form, slip_state
from sync.server.routers.withdraw import withdrawn_page
from sync.server.settings import ServerSettings
from sync.server.store import ServerStore

router = APIRouter()

_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "Not a valid code or signature (HTML page)"},
    303: {"description": "Answers saved: to the page saying so (GET, safe to reload)"},
    422: {"description": "An answer is missing or wrong: the form again (HTML page)"},
    429: {"description": "Too many requests from this client (HTML page)"},
}
_MAX_FORM = 1024
_MAX_FIELDS = 20


@dataclass(frozen=True)
class _Slip:
    code: str
    sig: str
    kit_id: str
    language: str
    number: str
    intake: followups.Intake


def _resolve(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    raw_code: str,
    sig: str | None,
    asked: str,
    emergency_number: str,
) -> _Slip | landing.Page:
    """The slip, or the page to answer instead (not found, too many, withdrawn, pending,
    not shared)."""
    code = check_code(rules, raw_code)
    owner = None if code is None or sig is None else owner_of(store, rules, code, sig)
    if code is None or sig is None or owner is None:
        if code is not None and sig is not None and not limits.code.take(code):
            return landing.too_many(asked, emergency_number)
        return landing.not_found(asked, emergency_number)
    state = slip_state(store, code, owner)
    after = withdrawn_page(state, asked, emergency_number)
    if after is not None:
        return after
    found = state.referral
    if found is None:
        return landing.pending(code, pages.language_of(asked), emergency_number)
    language = pages.language_of(landing.page_language(found.language, asked))
    number = found.emergency_number or emergency_number
    intake = followups.intake(store, owner, code)
    if found.void or not found.shared or found.level is None or intake is None:
        return landing.not_shared(code, language, number)
    return _Slip(code, sig, owner, language, number, intake)


def _form_page(
    slip: _Slip,
    settings: ServerSettings,
    store: ServerStore,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
) -> landing.Page:
    zone = ZoneInfo(settings.clinic_timezone)
    now = store.clock()
    all_windows = followups.windows(settings.followup_windows)
    window = followups.current(all_windows, slip.intake.visit_at, now)
    if window is None:
        upcoming = followups.next_window(all_windows, slip.intake.visit_at, now)
        opens = None if upcoming is None else upcoming.opens(slip.intake.visit_at)
        return pages.closed(slip.code, slip.sig, slip.language, slip.number, zone, opens)
    given = followups.latest(store, slip.kit_id, slip.code, window.name)
    if values is None:
        values = {} if given is None else _as_form(given.answers)
    return pages.form(
        code=slip.code,
        sig=slip.sig,
        language=slip.language,
        number=slip.number,
        zone=zone,
        window=window.name,
        closes=window.closes(slip.intake.visit_at),
        asked=slip.intake,
        values=values,
        errors=errors or [],
        answered_at=None if given is None else given.submitted_at,
    )


def _as_form(answers: dict[str, object]) -> dict[str, str]:
    """A stored response as the form's fields, to show it chosen again."""
    out: dict[str, str] = {}
    for name in ("pain_nrs", "leg_pain_nrs", "global_change"):
        if answers.get(name) is not None:
            out[name] = str(answers[name])
    sbi = answers.get("sbi")
    if isinstance(sbi, dict):
        out.update({k: str(v) for k, v in sbi.items() if v is not None})
    for name in followups.CES_FIELDS:
        said = answers.get(name)
        if said is not None:
            out[name] = "yes" if said == followups.YES else "no"
    return out


@router.get("/r/{code}/checkin", response_class=HTMLResponse, responses=_RESPONSES)
def checkin_page(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
    s: str | None = Query(default=None, max_length=64),
    l: str | None = Query(default=None, max_length=8),  # noqa: E741 (the URL's own name)
    lang: str | None = Query(default=None, max_length=8),
) -> HTMLResponse:
    asked = landing.page_language(l, lang)
    if network_limited(request, limits):
        page = landing.too_many(asked, settings.emergency_number)
        return html(page, limits.network.retry_after())
    slip = _resolve(store, rules, limits, code, s, asked, settings.emergency_number)
    if isinstance(slip, landing.Page):
        return html(slip, limits.code.retry_after())
    saved = request.query_params.get("saved")
    if saved is not None:
        done = _saved_page(slip, settings, store, saved)
        if done is not None:
            return html(done)
    return html(_form_page(slip, settings, store))


def _saved_page(
    slip: _Slip, settings: ServerSettings, store: ServerStore, window_name: str
) -> landing.Page | None:
    """What the answers just given lead to (the page a submission redirects to, so a
    reload shows it again instead of sending the answers twice); None when that window
    holds no answer."""
    all_windows = followups.windows(settings.followup_windows)
    window = next((w for w in all_windows if w.name == window_name), None)
    given = None if window is None else followups.latest(store, slip.kit_id, slip.code, window.name)
    if window is None or given is None:
        return None
    if given.warning:
        return pages.warning(slip.code, slip.language, slip.number)
    upcoming = followups.next_window(all_windows, slip.intake.visit_at, given.submitted_at)
    opens = None if upcoming is None else upcoming.opens(slip.intake.visit_at)
    zone = ZoneInfo(settings.clinic_timezone)
    return pages.thanks(slip.code, slip.sig, slip.language, slip.number, zone, window.name, opens)


@router.post("/r/{code}/checkin", response_class=HTMLResponse, responses=_RESPONSES)
async def checkin_answer(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
) -> Response:
    form = read_form(await request.body(), max_bytes=_MAX_FORM, max_fields=_MAX_FIELDS)
    asked = landing.page_language(form.get("l"), form.get("lang"))
    if network_limited(request, limits):
        page = landing.too_many(asked, settings.emergency_number)
        return html(page, limits.network.retry_after())
    sig = form.get("s")
    if sig is None or len(sig) > 64:
        return html(landing.not_found(asked, settings.emergency_number))
    return await run_in_threadpool(_answer, store, rules, limits, settings, code, sig, asked, form)


def _answer(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    settings: ServerSettings,
    raw_code: str,
    sig: str,
    asked: str,
    form: dict[str, str],
) -> Response:
    slip = _resolve(store, rules, limits, raw_code, sig, asked, settings.emergency_number)
    if isinstance(slip, landing.Page):
        return html(slip, limits.code.retry_after())
    now = store.clock()
    all_windows = followups.windows(settings.followup_windows)
    window = followups.current(all_windows, slip.intake.visit_at, now)
    if window is None:
        # The window closed while the form was open: say so, store nothing.
        return html(_form_page(slip, settings, store))
    answers, errors = followups.parse(form, slip.intake)
    if errors:
        return html(_form_page(slip, settings, store, values=form, errors=errors))
    followups.submit(store, slip.kit_id, slip.code, window.name, answers)
    # Post, then redirect: the page after is a GET, so reloading it sends nothing again.
    query = urlencode({"s": slip.sig, "l": slip.language, "saved": window.name})
    return RedirectResponse(f"/r/{booking_pages.compact(slip.code)}/checkin?{query}", 303)
