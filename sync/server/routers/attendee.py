"""The referral landing pages attendees reach from the QR code on their slip.

The slip's language comes with the URL (``?l=es``), so every page is in the attendee's
language from the first scan; it is not signed, and picks nothing but the wording.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from sync.server import landing
from sync.server.codes import CodeRules, check_code, signature_valid
from sync.server.deps import Limits, Rules, Settings, Store
from sync.server.limits import LandingLimits, network_key
from sync.server.store import ServerStore

router = APIRouter()


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
    # Unbounded here so that an odd value gets the generic page, not a JSON refusal: the
    # signature's length is checked with it, and the language is picked from a known list.
    s: str | None = Query(default=None),
    l: str | None = Query(default=None),  # noqa: E741 (the URL's own name)
    lang: str | None = Query(default=None),
) -> HTMLResponse:
    language = landing.page_language(l, lang)
    client = request.client.host if request.client else "unknown"
    if not limits.network.take(network_key(client)):
        return _too_many(language, settings.emergency_number, limits.network.retry_after())
    page = _landing(store, rules, limits, code, s, language, settings.emergency_number)
    if page is None:
        return _too_many(language, settings.emergency_number, limits.code.retry_after())
    return HTMLResponse(page.html, page.status)


def _too_many(language: str, emergency_number: str, retry_after: int) -> HTMLResponse:
    page = landing.too_many(language, emergency_number)
    return HTMLResponse(page.html, page.status, headers={"Retry-After": str(retry_after)})


def _landing(
    store: ServerStore,
    rules: CodeRules,
    limits: LandingLimits,
    raw_code: str,
    sig: str | None,
    language: str,
    emergency_number: str,
) -> landing.Page | None:
    """The page for this code and signature; None when the code's attempts are spent."""
    code = check_code(rules, raw_code)
    # Without a valid signature, only the generic page: the code alone is printed large on
    # the slip and says nothing of its outcome, nor whether the server knows it.
    if code is None or sig is None:
        return landing.not_found(language, emergency_number)
    # A code whose signature attempts are spent answers 429 before any check, so that
    # guessing its signature teaches nothing, right guess or wrong.
    if not limits.code.peek(code):
        return None
    # The slip belongs to the kit whose key signed it; only that kit's records count.
    holders = store.kits_with_code(code)
    owners = [
        k.kit_id
        for k in store.kits()
        if k.slip_key
        and (k.revoked_reason is None or k.kit_id in holders)
        and signature_valid(rules, code, sig, k.slip_key)
    ]
    if not owners:
        limits.code.take(code)
        return landing.not_found(language, emergency_number)
    found = store.referral(code, owners[0])
    if found is not None:
        language = landing.page_language(found.language, language)
        if found.void or found.withdrawn or not found.shared or found.level is None:
            return landing.not_shared(code, language, emergency_number)
        return landing.next_steps(code, found.level, language, emergency_number)
    return landing.pending(code, language, emergency_number)
