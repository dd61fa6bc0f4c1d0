"""The referral landing pages attendees reach from the QR code on their slip.

The slip's language comes with the URL (``?l=es``), so every page is in the attendee's
language from the first scan; it is not signed, and picks nothing but the wording.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from sync.server import booking_pages, checkin_pages, followups, landing
from sync.server.bookings import Bookings
from sync.server.codes import CodeRules, check_code
from sync.server.deps import Calls, Limits, Rules, Settings, Store
from sync.server.limits import LandingLimits
from sync.server.routers.slip import SlipState, html, network_limited, owner_of, slip_state
from sync.server.routers.withdraw import withdrawn_page
from sync.server.settings import ServerSettings
from sync.server.store import ServerStore
from sync.server.withdraw_pages import offer

router = APIRouter()
ODD_VALUE_LENGTH = 512


@router.get(
    "/r/{code}",
    response_class=HTMLResponse,
    responses={
        404: {"description": "Not a valid code or signature (HTML page)"},
        429: {"description": "Too many look-ups from this network or for this code (HTML page)"},
    },
)
def referral(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
    calls: Calls,
    # Generous bounds, so that an odd value gets the generic page rather than a JSON
    # refusal: the signature's length is checked with it, the language from a known list.
    s: str | None = Query(default=None, max_length=ODD_VALUE_LENGTH),
    l: str | None = Query(default=None, max_length=ODD_VALUE_LENGTH),  # noqa: E741
    lang: str | None = Query(default=None, max_length=ODD_VALUE_LENGTH),
) -> HTMLResponse:
    language = landing.page_language(l, lang)
    if network_limited(request, limits):
        return _too_many(language, settings.emergency_number, limits.network.retry_after())
    page, state = _landing(store, rules, limits, code, s, language, settings.emergency_number)
    if page is not None and state is not None and s is not None and page.status == 200:
        page = _with_call(page, calls, state, s, settings)
        page = _with_checkin(page, store, state, s, settings)
    if page is None:
        return _too_many(language, settings.emergency_number, limits.code.retry_after())
    return HTMLResponse(page.html, page.status)


def _too_many(language: str, emergency_number: str, retry_after: int) -> HTMLResponse:
    return html(landing.too_many(language, emergency_number), retry_after)


def _with_call(
    page: landing.Page, calls: Bookings, state: SlipState, sig: str, settings: ServerSettings
) -> landing.Page:
    """The way to the call page (booking, call-back), on a page that offers it."""
    if state.withdrawn:
        return page
    code, owner, found = state.code, state.kit_id, state.referral
    if found is not None and (found.void or not found.shared or found.level is None):
        return page
    level = None if found is None else found.level
    language = _lang_of(page)
    number = (found.emergency_number if found else None) or settings.emergency_number
    booked = calls.booked(owner, code)
    shown = None
    if booked is not None:
        shown = booking_pages.when(
            booked.slot.starts_at, ZoneInfo(settings.clinic_timezone), language
        )
    return booking_pages.hook(
        page,
        code,
        sig,
        language,
        level,
        number,
        booked=shown,
        callback=calls.callback(owner, code) is not None,
    )


def _with_checkin(
    page: landing.Page, store: ServerStore, state: SlipState, sig: str, settings: ServerSettings
) -> landing.Page:
    """The way to the follow-up check-in while one of its windows is open."""
    found = state.referral
    if state.withdrawn or found is None or found.void or not found.shared or found.level is None:
        return page
    intake = followups.intake(store, state.kit_id, state.code)
    if intake is None:
        return page
    windows = followups.windows(settings.followup_windows)
    window = followups.current(windows, intake.visit_at, store.clock())
    if window is None:
        return page
    answered = followups.latest(store, state.kit_id, state.code, window.name) is not None
    return checkin_pages.hook(page, state.code, sig, _lang_of(page), window.name, answered)


def _lang_of(page: landing.Page) -> str:
    found = re.search(r'<html lang="([a-z]+)"', page.html)
    return found.group(1) if found else "en"


def _landing(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    raw_code: str,
    sig: str | None,
    language: str,
    emergency_number: str,
) -> tuple[landing.Page | None, SlipState | None]:
    """The page for this code and signature (None when the code's attempts are spent),
    and the slip's state once its signature checked out."""
    code = check_code(rules, raw_code)
    # Without a valid signature, only the generic page: the code alone is printed large on
    # the slip and says nothing of its outcome, nor whether the server knows it.
    if code is None or sig is None:
        return landing.not_found(language, emergency_number), None
    # The slip belongs to the kit whose key signed it; only that kit's records count.
    owner = owner_of(store, rules, code, sig)
    if owner is None:
        # Wrong signatures for one code are limited (429 once spent); the right one always
        # opens the page, so that someone who reads the code off a slip cannot lock its
        # holder out. A 50-bit signature is not guessed within any allowance.
        if not limits.code.take(code):
            return None, None
        return landing.not_found(language, emergency_number), None
    state = slip_state(store, code, owner)
    # After a withdrawal: only that, and the safety advice.
    after = withdrawn_page(state, language, emergency_number)
    if after is not None:
        return after, state
    found = state.referral
    if found is not None:
        language = landing.page_language(found.language, language)
        # The booth that made the slip says which number to call; version 1 bodies did not.
        number = found.emergency_number or emergency_number
        if found.void or not found.shared or found.level is None:
            page = landing.not_shared(code, language, number)
        else:
            page = landing.next_steps(code, found.level, language, number, booth=found.booth)
        return offer(page, code, sig, language), state
    page = landing.pending(code, language, emergency_number)
    return offer(page, code, sig, language), state
