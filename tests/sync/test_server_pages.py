"""Attendee pages in the slip's language from the first scan, every one with the warning."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import requests

from forms.texts import ces_warning, outcome_text
from sync.server import booking_pages, landing, withdraw_pages
from sync.server.withdraw_pages import offer
from tests.sync.live_server import (
    LiveServer,
    ManualClock,
    PlainCodes,
    consent_record,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
)

CODES = PlainCodes()
CODE = "AAAA-BBBB-CCCC"
LEVELS = ("emergency", "urgent", "routine", "self_care")


def _pages(language: str) -> dict[str, landing.Page]:
    pages = {
        "not_found": landing.not_found(language, "112"),
        "too_many": landing.too_many(language, "112"),
        "pending": landing.pending(CODE, language, "112"),
        "not_shared": landing.not_shared(CODE, language, "112"),
    }
    for level in LEVELS:
        pages[level] = landing.next_steps(CODE, level, language, "112")
    # The withdrawal pages reached from the slip's page.
    pages["offer"] = offer(landing.pending(CODE, language, "112"), CODE, "0" * 10, language)
    pages["withdraw_confirm"] = withdraw_pages.confirm(CODE, "0" * 10, language, "112")
    pages["withdrawn"] = withdraw_pages.withdrawn(CODE, language, "112")
    return pages


def _sentences(page_html: str) -> set[str]:
    """The page's text pieces (between tags) that hold a word, the code left out."""
    visible = re.sub(r"<style>.*?</style>", "", page_html, flags=re.S)
    pieces = (html.unescape(p).strip() for p in re.split(r"<[^>]+>", visible))
    return {p for p in pieces if p and p != CODE and re.search(r"[A-Za-z]{2,}", p)}


def _text(page_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page_html))


def test_every_page_kind_in_spanish_has_no_english_sentence() -> None:
    english, spanish = _pages("en"), _pages("es")
    heading_es, signs_es = ces_warning("es")
    for kind, page in spanish.items():
        sentences = _sentences(english[kind].html)
        assert len(sentences) >= 4, kind  # the check below has something to find
        leftover = sorted(s for s in sentences if s in _text(page.html))
        assert leftover == [], kind
        assert '<html lang="es">' in page.html
        # Every kind keeps the cauda equina warning and the emergency number.
        text = _text(page.html)
        assert heading_es in text and all(sign in text for sign in signs_es), kind
        assert "Teléfono de emergencias: 112" in text, kind
    assert spanish["not_found"].status == 404 and spanish["too_many"].status == 429


def test_the_english_sentence_check_can_fail() -> None:
    english = _pages("en")
    found = [s for s in _sentences(english["pending"].html) if s in _text(english["pending"].html)]
    assert "Your booth will upload your referral soon" in found


def _get(server: LiveServer, code: str, **params: str) -> requests.Response:
    return requests.get(f"{server.url}/r/{code}", params=params, timeout=10)


@pytest.fixture
def server(sqlite_url: str) -> Iterator[LiveServer]:
    with run_server(sqlite_url, code_rules=CODES, emergency_number="112") as live:
        yield live


def test_a_spanish_slip_is_spanish_before_it_syncs(server: LiveServer) -> None:
    kit = enroll_kit(server)
    sig = CODES.sign(CODE, kit.slip_key)
    pending = _get(server, CODE, s=sig, l="es")
    assert pending.status_code == 200
    # The pending page with the way to withdraw and the way to ask for a call-back.
    expected = booking_pages.hook(
        offer(landing.pending(CODE, "es", "112"), CODE, sig, "es"), CODE, sig, "es", None, "112"
    )
    assert expected.html == pending.text
    # Wrong signature, no signature, not a code: the generic page, in Spanish.
    for code, params in ((CODE, {"s": "0" * 10, "l": "es"}), (CODE, {"l": "es"})):
        page = _get(server, code, **params)
        assert page.status_code == 404
        assert page.text == landing.not_found("es", "112").html
    for code, params in (
        ("NOPE", {"l": "es"}),
        ("NOPE/extra", {"l": "es"}),  # no such route
        (CODE, {"s": "9" * 500, "l": "es"}),  # over-long signature
        (CODE, {"s": "0" * 10, "l": "es" * 200}),  # over-long language
    ):
        page = _get(server, code, **params)
        expected = landing.not_found("es" if len(params["l"]) == 2 else "en", "112")
        assert page.status_code == 404 and page.text == expected.html, code
        assert page.headers["Cache-Control"] == "no-store"


def test_a_synced_spanish_visit_is_spanish(server: LiveServer) -> None:
    kit = enroll_kit(server)
    sig = CODES.sign(CODE, kit.slip_key)
    visit = visit_record(kit.kit_id, code=CODE, triage="urgent", language="es")
    ingest(server, kit, [visit, consent_record(kit.kit_id, visit["body"]["visit_id"])])
    page = _get(server, CODE, s=sig, l="es")
    _title, instruction, _steps = outcome_text("urgent", "es", emergency_number="112")
    assert page.status_code == 200 and instruction in _text(page.text)
    # The kit's own record of the visit decides its language once it is here.
    assert _get(server, CODE, s=sig).text == page.text


def test_a_tampered_language_changes_only_the_wording(server: LiveServer) -> None:
    kit = enroll_kit(server)
    sig = CODES.sign(CODE, kit.slip_key)
    other = "BBBB-CCCC-DDDD"
    forged = CODES.sign(other, b"not an enrolled kit's key" * 2)
    visit = visit_record(kit.kit_id, code=CODE, triage="emergency", language="en")
    ingest(server, kit, [visit, consent_record(kit.kit_id, visit["body"]["visit_id"])])
    _title, go_now, _steps = outcome_text("emergency", "en", emergency_number="112")
    for language in ("es", "en", "xx", "<b>", "ES", ""):
        genuine = _get(server, CODE, s=sig, l=language)
        assert genuine.status_code == 200 and go_now in _text(genuine.text), language
        # A forged signature stays refused whatever the language says.
        refused = _get(server, other, s=forged, l=language)
        assert refused.status_code == 404, language
        assert "<b>" not in refused.text and 'lang="xx"' not in refused.text
    assert 'lang="es"' in _get(server, other, s=forged, l="ES").text
    assert 'lang="en"' in _get(server, other, s=forged, l="xx").text


def test_too_many_requests_stays_in_the_slips_language(sqlite_url: str) -> None:
    clock = ManualClock()
    with run_server(
        sqlite_url,
        code_rules=CODES,
        rate_clock=clock,
        landing_rate=(2, 60.0),
        emergency_number="112",
    ) as server:
        statuses = [_get(server, "NOPE", l="es").status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
        limited = _get(server, "NOPE", l="es")
        assert limited.status_code == 429
        assert limited.text == landing.too_many("es", "112").html
        assert limited.headers["Cache-Control"] == "no-store"
        assert int(limited.headers["Retry-After"]) >= 1
