"""The attendee's call page from the slip: book a call slot, change or cancel it, or ask for
a call-back. The slip's signature in each form is the credential (no cookie, no script);
everything is scoped to the kit whose key signed the slip and that code.

What each level is offered: emergency nothing but the number to call; urgent a slot in the
next 24 hours if one is free, else a call-back within 24 hours; routine a slot within
``booking_days`` or a call-back window; self-care and a visit not on the server yet a
call-back request only. The bounds are enforced by the slot UPDATE itself, so a form
naming another slot cannot get around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sync.server import booking_pages as pages
from sync.server import landing
from sync.server.bookings import Bookings
from sync.server.codes import CodeRules, check_code
from sync.server.deps import Calls, Limits, Rules, Settings, Store
from sync.server.limits import LandingLimits
from sync.server.routers.slip import html, network_limited, owner_of, read_form, slip_state
from sync.server.routers.withdraw import withdrawn_page
from sync.server.settings import ServerSettings
from sync.server.store import ServerStore

router = APIRouter()

_RESPONSES: dict[int | str, dict[str, str]] = {
    303: {"description": "Done; see the call page"},
    404: {"description": "Not a valid code or signature (HTML page)"},
    429: {"description": "Too many requests from this client (HTML page)"},
}
_MAX_FORM = 1024
_PHONE = re.compile(r"\+?[0-9 ()./-]{6,24}")
_BOOKABLE = ("urgent", "routine")


@dataclass(frozen=True)
class _Slip:
    """A slip whose signature checked out, and what the call page needs to know of it."""

    code: str
    sig: str
    kit_id: str
    language: str
    # None: the visit has not reached the centre yet.
    level: str | None
    number: str
    need_phone: bool


def _resolve(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    raw_code: str,
    sig: str | None,
    asked: str,
    emergency_number: str,
) -> _Slip | landing.Page:
    """The slip, or the page to answer instead (not found, too many, withdrawn, not shared)."""
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
        return _Slip(code, sig, owner, pages.language_of(asked), None, emergency_number, True)
    language = pages.language_of(landing.page_language(found.language, asked))
    number = found.emergency_number or emergency_number
    if found.void or not found.shared or found.level is None:
        # Not shared with tele-triage: the centre has nobody to call.
        return landing.not_shared(code, language, number)
    return _Slip(code, sig, owner, language, found.level, number, not found.has_contact)


def _latest(slip: _Slip, settings: ServerSettings) -> timedelta | None:
    """How far ahead this slip may book a slot (None: it may not book one)."""
    if slip.level == "urgent":
        return timedelta(hours=24)
    if slip.level == "routine":
        return timedelta(days=settings.booking_days)
    return None


def _view(
    slip: _Slip, settings: ServerSettings, calls: Bookings, message: str = ""
) -> pages.CallView:
    now = calls.clock()
    ahead = _latest(slip, settings)
    slots = calls.free_slots(now + ahead) if ahead is not None else []
    return pages.CallView(
        code=slip.code,
        sig=slip.sig,
        language=slip.language,
        emergency_number=slip.number,
        zone=ZoneInfo(settings.clinic_timezone),
        now=now,
        level=slip.level,
        need_phone=slip.need_phone,
        booked=calls.booked(slip.kit_id, slip.code),
        held=calls.held(slip.kit_id, slip.code),
        callback=calls.callback(slip.kit_id, slip.code),
        slots=slots,
        message=message,
        arranged=calls.arranged(slip.kit_id, slip.code),
    )


def _call_page(
    slip: _Slip, settings: ServerSettings, calls: Bookings, message: str = ""
) -> landing.Page:
    if slip.level == "emergency":
        return pages.emergency(slip.code, slip.language, slip.number)
    return pages.call(_view(slip, settings, calls, message))


@router.get("/r/{code}/call", response_class=HTMLResponse, responses=_RESPONSES)
def call_page(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
    calls: Calls,
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
    return html(_call_page(slip, settings, calls))


@router.get(
    "/r/{code}/call.ics",
    response_class=Response,
    responses={**_RESPONSES, 200: {"content": {"text/calendar": {}}}},
)
def call_ics(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
    calls: Calls,
    s: str | None = Query(default=None, max_length=64),
    lang: str | None = Query(default=None, max_length=8),
) -> Response:
    asked = landing.page_language(lang)
    if network_limited(request, limits):
        return html(landing.too_many(asked, settings.emergency_number))
    slip = _resolve(store, rules, limits, code, s, asked, settings.emergency_number)
    if isinstance(slip, landing.Page):
        return html(slip)
    booked = calls.booked(slip.kit_id, slip.code)
    if booked is None:
        return html(landing.not_found(slip.language, slip.number))
    return Response(
        pages.ics(booked, slip.language, calls.clock()),
        media_type="text/calendar",
        headers={"Content-Disposition": 'attachment; filename="tele-triage-call.ics"'},
    )


@router.post("/r/{code}/call", response_class=HTMLResponse, responses=_RESPONSES)
async def call_action(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
    calls: Calls,
) -> Response:
    form = read_form(await request.body(), max_bytes=_MAX_FORM, max_fields=10)
    asked = landing.page_language(form.get("l"), form.get("lang"))
    if network_limited(request, limits):
        page = landing.too_many(asked, settings.emergency_number)
        return html(page, limits.network.retry_after())
    sig = form.get("s")
    if sig is None or len(sig) > 64:
        return html(landing.not_found(asked, settings.emergency_number))
    return await run_in_threadpool(
        _act, store, rules, limits, settings, calls, code, sig, asked, form
    )


def _act(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    settings: ServerSettings,
    calls: Bookings,
    raw_code: str,
    sig: str,
    asked: str,
    form: dict[str, str],
) -> Response:
    slip = _resolve(store, rules, limits, raw_code, sig, asked, settings.emergency_number)
    if isinstance(slip, landing.Page):
        return html(slip)
    if slip.level == "emergency":
        # Nothing to book: the page says to call now.
        return html(replace(pages.emergency(slip.code, slip.language, slip.number), status=403))
    action = form.get("action", "")
    lang = slip.language

    def again(key: str, status: int = 409) -> Response:
        page = _call_page(slip, settings, calls, pages.TEXTS[lang][key])
        return html(replace(page, status=status))

    now = calls.clock()
    if action == "hold":
        ahead = _latest(slip, settings)
        if ahead is None:
            return again("not_offered", 403)
        slot = form.get("slot", "")
        if not slot.isdigit() or len(slot) > 12:
            return again("taken")
        if calls.hold(slip.kit_id, slip.code, int(slot), now + ahead) != "held":
            return again("taken")
    elif action == "confirm":
        phone = _phone(form, slip)
        if phone is False:
            return again("bad_phone", 422)
        if not calls.confirm(slip.kit_id, slip.code, phone):
            return again("expired")
    elif action == "cancel":
        calls.cancel(slip.kit_id, slip.code)
    elif action == "callback":
        phone = _phone(form, slip)
        if phone is False:
            return again("bad_phone", 422)
        if slip.level == "urgent":
            if calls.free_slots(now + timedelta(hours=24)):
                return again("not_offered", 403)
            window = (now, now + timedelta(hours=24))
        else:
            zone = ZoneInfo(settings.clinic_timezone)
            chosen = pages.window_of(form.get("window", ""), zone, now)
            if chosen is None:
                return again("bad_window", 422)
            window = chosen
        calls.request_callback(slip.kit_id, slip.code, window, window[1], phone)
    elif action == "cancel_callback":
        calls.cancel_callback(slip.kit_id, slip.code)
    else:
        return again("not_offered", 400)
    # After a change, the page as it now is (a reload does not repeat the form).
    target = f"/r/{pages.compact(slip.code)}/call?s={quote(sig)}&lang={quote(lang)}"
    return RedirectResponse(target, status_code=303)


def _phone(form: dict[str, str], slip: _Slip) -> str | Literal[False] | None:
    """The number given when the booth recorded none: None when none is needed or it was
    left out of an optional field, False when it is needed and not a phone number."""
    if not slip.need_phone:
        return None
    given = form.get("phone", "").strip()
    if not given and slip.level is None:
        return None
    digits = sum(ch.isdigit() for ch in given)
    if not _PHONE.fullmatch(given) or not 6 <= digits <= 20:
        return False
    return given
