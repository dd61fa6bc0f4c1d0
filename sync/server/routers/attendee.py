"""The referral landing pages attendees reach from the QR code on their slip."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from sync.server import landing
from sync.server.codes import CodeRules, check_code, signature_valid
from sync.server.deps import Buckets, Rules, Settings, Store
from sync.server.routers.withdraw import withdrawn_page
from sync.server.store import ServerStore
from sync.server.withdraw_pages import offer

router = APIRouter()


@router.get(
    "/r/{code}",
    response_class=HTMLResponse,
    responses={
        404: {"description": "Not a valid code or signature (HTML page)"},
        429: {"description": "Too many look-ups from this client (HTML page)"},
    },
)
def referral(
    request: Request,
    code: str,
    store: Store,
    rules: Rules,
    settings: Settings,
    buckets: Buckets,
    s: str | None = Query(default=None, max_length=64),
    lang: str | None = Query(default=None, max_length=8),
) -> HTMLResponse:
    client = request.client.host if request.client else "unknown"
    if not buckets.take(client):
        page = landing.too_many()
        return HTMLResponse(page.html, page.status, headers={"Retry-After": "60"})
    page = _landing(store, rules, code, s, lang, settings.emergency_number)
    return HTMLResponse(page.html, page.status)


def _landing(
    store: ServerStore,
    rules: CodeRules,
    raw_code: str,
    sig: str | None,
    lang: str | None,
    emergency_number: str,
) -> landing.Page:
    code = check_code(rules, raw_code)
    # Without a valid signature, only the generic page: the code alone is printed large on
    # the slip and says nothing of its outcome, nor whether the server knows it.
    if code is None or sig is None:
        return landing.not_found()
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
        return landing.not_found()
    # After a withdrawal: only that, and the safety advice.
    after = withdrawn_page(store, owners[0], code, lang, emergency_number)
    if after is not None:
        return after
    found = store.referral(code, owners[0])
    if found is not None:
        language = found.language
        if found.void or not found.shared or found.level is None:
            return offer(landing.not_shared(code, language), code, sig, language)
        return offer(
            landing.next_steps(code, found.level, language, emergency_number), code, sig, language
        )
    language = lang if lang in ("en", "es") else "en"
    return offer(landing.pending(code, language), code, sig, language)
