"""Withdrawal of consent from the slip's page: GET the one confirmation step, POST it.

The slip's signature is the credential, as for the page itself: it names the kit whose
slip key made it, and the withdrawal is that kit's, for that code, whether or not the
visit has reached the centre (it is scrubbed on arrival). No cookie, no script.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from sync.server import landing
from sync.server import withdraw_pages as pages
from sync.server.codes import CodeRules, check_code
from sync.server.deps import Limits, Rules, Settings, Store
from sync.server.limits import LandingLimits
from sync.server.routers.slip import (
    SlipState,
    html,
    network_limited,
    owner_of,
    read_form,
    slip_state,
)
from sync.server.store import ServerStore

router = APIRouter()

_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "Not a valid code or signature (HTML page)"},
    429: {"description": "Too many look-ups from this client (HTML page)"},
}
_MAX_FORM = 512


def _too_many(limits: LandingLimits, language: str, emergency_number: str) -> HTMLResponse:
    page = landing.too_many(language, emergency_number)
    return html(page, limits.network.retry_after())


def withdrawn_page(
    state: SlipState, asked: str | None, emergency_number: str
) -> landing.Page | None:
    """The page after a withdrawal (on the slip's page or at the booth), else None."""
    if not state.withdrawn:
        return None
    # The booth's own number when its visit has arrived (the skeleton keeps the booth).
    found = state.referral
    number = (found.emergency_number if found else None) or emergency_number
    return pages.withdrawn(state.code, state.language(asked), number)


@router.get("/r/{code}/withdraw", response_class=HTMLResponse, responses=_RESPONSES)
def confirm(
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
        return _too_many(limits, asked, settings.emergency_number)
    canonical = check_code(rules, code)
    owner = None if canonical is None or s is None else owner_of(store, rules, canonical, s)
    if canonical is None or s is None or owner is None:
        if canonical is not None and not limits.code.take(canonical):
            return _too_many(limits, asked, settings.emergency_number)
        return html(landing.not_found(asked, settings.emergency_number))
    state = slip_state(store, canonical, owner)
    after = withdrawn_page(state, asked, settings.emergency_number)
    if after is not None:
        return html(after)
    language = state.language(asked)
    return html(pages.confirm(canonical, s, language, settings.emergency_number))


@router.post("/r/{code}/withdraw", response_class=HTMLResponse, responses=_RESPONSES)
async def withdraw(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    limits: Limits,
) -> HTMLResponse:
    body = await request.body()
    form = read_form(body, max_bytes=_MAX_FORM, max_fields=8)
    sig, lang = form.get("s"), landing.page_language(form.get("l"), form.get("lang"))
    if network_limited(request, limits):
        return _too_many(limits, lang, settings.emergency_number)
    if form.get("confirm") != "yes" or sig is None or len(sig) > 64:
        return html(landing.not_found(lang, settings.emergency_number))
    page = await run_in_threadpool(
        _withdraw, store, rules, limits, code, sig, lang, settings.emergency_number
    )
    if page is None:
        spent = landing.too_many(lang, settings.emergency_number)
        return html(spent, limits.code.retry_after())
    return html(page)


def _withdraw(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    raw_code: str,
    sig: str,
    lang: str | None,
    emergency_number: str,
) -> landing.Page | None:
    """The page after withdrawing; None when the code's wrong signatures are spent."""
    code = check_code(rules, raw_code)
    owner = None if code is None else owner_of(store, rules, code, sig)
    if code is None or owner is None:
        # A wrong signature costs the code's allowance here as on its page: the form is
        # no way round the limit on guessing.
        if code is not None and not limits.code.take(code):
            return None
        return landing.not_found(pages.language_of(lang), emergency_number)
    language = slip_state(store, code, owner).language(lang)
    store.withdraw_by_attendee(owner, code, language)
    return pages.withdrawn(code, language, emergency_number)
