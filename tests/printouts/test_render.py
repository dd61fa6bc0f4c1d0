"""The printouts, rendered to real PDFs, rasterised at the thermal printer's 203 dpi and
read back: the QR with pyzbar, the words with pdfium's text extraction."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from forms.texts import ces_warning, outcome_text
from printouts.codes import new_referral_code
from printouts.payload import KitKey, parse_slip_url, slip_url, verify_signature
from printouts.qr import QUIET_ZONE, qr_matrix
from printouts.render import (
    FORMATS,
    DaySummaryData,
    RenderError,
    SlipData,
    render_consent_copy,
    render_day_summary,
    render_emergency_slip,
    render_slip,
    render_visit_slip,
)
from printouts.texts import label
from tests.printouts.conftest import THERMAL_DPI, flat, page_texts, pdf_text, rasterise

MakeSlip = Callable[..., SlipData]
Render = Callable[[SlipData, str], bytes]
ALL_FORMATS = list(FORMATS)
RECEIPTS = [f for f in FORMATS if FORMATS[f].height_mm is None]
LEVELS_WITH_CODE = ["urgent", "routine", "self_care"]
CES_REASON = (
    "New or worsening numbness around the bottom or genitals, or a change in bladder or "
    "bowel: possible pressure on the nerves to the bladder and bowel (cauda equina syndrome)"
)


def _decode(page: Any) -> list[Any]:
    from pyzbar.pyzbar import ZBarSymbol, decode

    return list(decode(page, [ZBarSymbol.QRCODE]))


def _summary(**over: Any) -> DaySummaryData:
    data = DaySummaryData(
        booth_name="Night market booth",
        event="Late market",
        day=dt.date(2026, 11, 22),
        counts_by_outcome={
            "emergency": 1,
            "urgent": 3,
            "routine": 10,
            "self_care": 6,
            "ineligible": 2,
            "consent_refused": 1,
        },
        consent_granted={"c1": 20, "c2": 15, "c3": 9},
        visits=20,
        consent_asked=21,
        unsent=4,
        oldest_unsent=dt.datetime(2026, 11, 22, 18, 5),
        kit_id="kit-3f9a2c71b0d4",
        emergency_number="112",
    )
    return dataclasses.replace(data, **over)


def _all_printouts(make_slip: MakeSlip) -> list[tuple[str, Callable[[str], bytes]]]:
    slip = make_slip(level="urgent")
    emergency = make_slip(level="emergency", reasons=[CES_REASON], rule_ids=["EM1"])
    return [
        ("slip", lambda f: render_slip(slip, f)),
        ("emergency", lambda f: render_emergency_slip(emergency, f)),
        ("consent", lambda f: render_consent_copy(slip, f)),
        ("summary", lambda f: render_day_summary(_summary(), f)),
    ]


# --- the QR ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize(
    ("render", "level"),
    [(render_slip, lv) for lv in LEVELS_WITH_CODE] + [(render_emergency_slip, "emergency")],
)
def test_qr_decodes_to_the_exact_signed_url_at_203_dpi(
    make_slip: MakeSlip, kit_key: KitKey, fmt: str, render: Render, level: str
) -> None:
    data = make_slip(level=level)
    pages = rasterise(render(data, fmt))
    decoded = [s.data.decode("ascii") for page in pages for s in _decode(page)]
    assert decoded == [data.url]
    _, code, sig = parse_slip_url(decoded[0])
    assert code == data.code and verify_signature(code, sig, kit_key.secret)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize(
    "base",
    ["https://triage.example.org", "https://referrals.regional-health-board.example/booths/v2"],
)
def test_qr_modules_are_whole_printer_dots_with_a_white_quiet_zone(
    make_slip: MakeSlip, fmt: str, base: str
) -> None:
    from PIL import ImageOps

    data = make_slip(base_url=base)
    (page,) = rasterise(render_slip(data, fmt))
    (symbol,) = _decode(page)
    r = symbol.rect  # from the corner centres: the symbol's edges give or take a pixel
    near = (r.left - 3, r.top - 3, r.left + r.width + 3, r.top + r.height + 3)
    dark = ImageOps.invert(page.crop(near)).getbbox()
    assert dark is not None
    left, top = near[0] + dark[0], near[1] + dark[1]
    width, height = dark[2] - dark[0], dark[3] - dark[1]
    modules = qr_matrix(data.url).size - 2 * QUIET_ZONE
    assert width == height
    dots, remainder = divmod(width, modules)
    assert remainder == 0, (width, modules)
    symbol_pixels = page.crop((left, top, left + width, top + height))
    assert set(symbol_pixels.getdata()) == {0, 255}  # on the 203 dpi grid: no half dots
    assert dots * 25.4 / THERMAL_DPI >= 0.6  # mm per module, at version <= 7
    if fmt in RECEIPTS:
        assert dots >= 6  # 0.75 mm on the thermal roll
    zone = QUIET_ZONE * dots
    box = (left - zone, top - zone, left + width + zone, top + height + zone)
    assert box[0] >= 0 and box[1] >= 0 and box[2] <= page.width and box[3] <= page.height
    quiet = page.crop(box)
    quiet.paste(255, (zone, zone, zone + width, zone + height))  # keep only the quiet zone
    assert quiet.getextrema()[0] == 255


def test_page_width_is_the_roll_width(make_slip: MakeSlip) -> None:
    for fmt, page_format in FORMATS.items():
        (page, *_) = rasterise(render_slip(make_slip(), fmt))
        assert abs(page.width / THERMAL_DPI * 25.4 - page_format.width_mm) < 0.3


# --- what the slip says ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("level", [*LEVELS_WITH_CODE, "ineligible", "consent_refused"])
def test_slip_text_has_code_advice_booth_date_and_warning_signs(
    make_slip: MakeSlip, fmt: str, level: str
) -> None:
    advice_only = level in ("ineligible", "consent_refused")
    data = make_slip(level=level, code="" if advice_only else new_referral_code())
    text = flat(pdf_text(render_slip(data, fmt)))
    title, instruction, steps = outcome_text(level, "en", emergency_number="999")
    heading, signs = ces_warning("en")
    for expected in (title, instruction, *steps, heading, *signs):
        assert flat(expected) in text
    assert "Go to the emergency department now if any of these start" in text
    assert "Night market booth" in text and "Late market" in text and "2026-11-22" in text
    assert "Emergency number: 999" in text
    if advice_only:
        assert label("referral_code", "en") not in text
    else:
        assert data.code in text
        host_and_path = data.url.split("://", 1)[1]
        assert host_and_path in text.replace(" ", "")  # the address to type, whole


# What the page behind the code does (issue 9): urgent and routine book a call or ask for
# a call-back; self-care reads the advice and may ask for a call-back.
SCAN_WORDS = {
    ("urgent", "en"): "Scan the code today to book a call or ask for a call-back within 24 hours.",
    ("urgent", "es"): (
        "Escanee el código hoy para reservar una llamada o pedir que le llamen en 24 horas."
    ),
    ("routine", "en"): "Scan the code to book a tele-triage call or ask for a call-back.",
    ("routine", "es"): (
        "Escanee el código para reservar una llamada de teletriaje o pedir que le llamen."
    ),
    ("self_care", "en"): "Scan the code for advice, or to ask for a call-back if you want one.",
    ("self_care", "es"): (
        "Escanee el código para recibir consejos, o para pedir que le llamen si lo desea."
    ),
}


@pytest.mark.parametrize(("level", "language"), list(SCAN_WORDS))
def test_the_slip_says_what_its_code_leads_to(
    make_slip: MakeSlip, level: str, language: str
) -> None:
    text = flat(pdf_text(render_slip(make_slip(level=level, language=language), "receipt80")))
    assert flat(SCAN_WORDS[level, language]) in text
    assert "priority call" not in text and "llamada prioritaria" not in text


def test_advice_only_slip_has_no_qr(make_slip: MakeSlip) -> None:
    data = make_slip(level="consent_refused", code="")
    (page,) = rasterise(render_slip(data, "receipt80"))
    assert _decode(page) == []


def test_no_emergency_number_reads_the_local_emergency_number(make_slip: MakeSlip) -> None:
    data = make_slip(level="emergency", emergency_number="")
    text = flat(pdf_text(render_emergency_slip(data, "receipt80")))
    assert "call the local emergency number" in text
    assert "{" not in text and "Emergency number:" not in text


def test_spanish_slip_uses_the_forms_texts(make_slip: MakeSlip) -> None:
    data = make_slip(language="es", level="urgent", reasons=["Pérdida de peso sin causa conocida"])
    text = flat(pdf_text(render_slip(data, "receipt80")))
    title, instruction, steps = outcome_text("urgent", "es")
    heading, signs = ces_warning("es")
    for expected in (title, instruction, *steps, heading, *signs):
        assert flat(expected) in text
    assert "Su código de derivación" in text and "Número de emergencias: 999" in text
    assert "Pérdida de peso sin causa conocida" in text


def test_unknown_language_falls_back_to_english(make_slip: MakeSlip) -> None:
    text = flat(pdf_text(render_slip(make_slip(language="el"), "receipt58")))
    assert outcome_text("routine", "en")[1] in text and "Your referral code" in text


def test_greek_and_cyrillic_render_as_real_glyphs(make_slip: MakeSlip) -> None:
    from reportlab.pdfbase import pdfmetrics

    booth, event = "Περίπτερο Αθήνα", "Ярмарка здоровья"
    data = make_slip(booth_name=booth, event=event)
    for fmt in ALL_FORMATS:
        pdf = render_slip(data, fmt)
        text = flat(pdf_text(pdf))
        assert booth in text and event in text
        assert b"/FontFile2" in pdf  # the TrueType program is embedded
    # Every letter has its own glyph in the embedded fonts (glyph 0 is the empty box).
    for font in ("DejaVuSans", "DejaVuSans-Bold"):
        glyphs = pdfmetrics.getFont(font).face.charToGlyph
        for ch in set(booth + event) - {" "}:
            assert glyphs.get(ord(ch), 0) != 0, (font, ch)


# --- the emergency slip -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_emergency_slip_leads_with_the_instruction_then_why_then_the_handover(
    make_slip: MakeSlip, fmt: str
) -> None:
    data = make_slip(
        level="emergency",
        reasons=[CES_REASON],
        rule_ids=["EM1", "EM4"],
        ruleset_version="2026.11-1",
        emergency_number="112",
    )
    text = flat(pdf_text(render_emergency_slip(data, fmt)))
    _, instruction, steps = outcome_text("emergency", "en", emergency_number="112")
    assert text.startswith(instruction)
    assert "If you cannot get there safely, call 112." in steps
    order = [instruction, *steps, "Why:", CES_REASON, "For the emergency department"]
    order += ["EM1, EM4", "2026.11-1", data.code, ces_warning("en")[0]]
    positions = [text.find(part) for part in order]
    assert -1 not in positions, dict(zip(order, positions, strict=True))
    assert positions == sorted(positions)
    assert "not a clinician" in text and "not a diagnosis" in text


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_emergency_instruction_is_a_black_band_at_the_top(make_slip: MakeSlip, fmt: str) -> None:
    (page, *_) = rasterise(render_emergency_slip(make_slip(level="emergency"), fmt))
    px_per_mm = THERMAL_DPI / 25.4
    margin = round((FORMATS[fmt].width_mm - FORMATS[fmt].printable_mm) / 2 * px_per_mm)
    band = page.crop(
        (margin + 2, round(4.5 * px_per_mm), page.width - margin - 2, round(6 * px_per_mm))
    )
    histogram = band.histogram()
    dark = sum(histogram[:100]) / (band.width * band.height)
    assert dark > 0.6  # mostly black: white letters on a black band


def test_visit_slip_picks_the_emergency_slip(make_slip: MakeSlip) -> None:
    emergency = make_slip(level="emergency")
    urgent = make_slip(level="urgent")
    assert render_visit_slip(emergency, "a6") == render_emergency_slip(emergency, "a6")
    assert render_visit_slip(urgent, "a6") == render_slip(urgent, "a6")


# --- layout: nothing clipped, one page where it is handed over --------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_nothing_is_printed_outside_the_printable_area(make_slip: MakeSlip, fmt: str) -> None:
    page_format = FORMATS[fmt]
    px_per_mm = THERMAL_DPI / 25.4
    # A long word and a long booth name must wrap inside the column, not run off it.
    long_booth = "Gemeinschaftsgesundheitszentrum-Nachtmarktstand Riverside " * 2
    slip = make_slip(level="urgent", booth_name=long_booth, reasons=["x" * 120])
    printouts = [render(fmt) for _, render in _all_printouts(make_slip)]
    printouts.append(render_slip(slip, fmt))
    for pdf in printouts:
        for page in rasterise(pdf):
            margin = int((page_format.width_mm - page_format.printable_mm) / 2 * px_per_mm) - 1
            left = page.crop((0, 0, margin, page.height))
            right = page.crop((page.width - margin, 0, page.width, page.height))
            assert left.getextrema()[0] >= 250 and right.getextrema()[0] >= 250
            top = page.crop((0, 0, page.width, int(3.5 * px_per_mm)))
            assert top.getextrema()[0] >= 250
            bottom_mm = 9.5 if page_format.height_mm is None else 5.5
            bottom = page.crop(
                (0, page.height - int(bottom_mm * px_per_mm), page.width, page.height)
            )
            assert bottom.getextrema()[0] >= 250


@pytest.mark.parametrize("fmt", RECEIPTS)
def test_receipt_is_one_page_as_long_as_its_content(make_slip: MakeSlip, fmt: str) -> None:
    short = rasterise(render_slip(make_slip(reasons=[]), fmt))
    long = rasterise(render_slip(make_slip(reasons=["a reason that is quite long " * 10]), fmt))
    assert len(short) == len(long) == 1
    assert long[0].height > short[0].height


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("kind", ["slip", "emergency", "consent"])
def test_a6_handouts_stay_one_page_with_the_whole_card(
    make_slip: MakeSlip, language: str, kind: str
) -> None:
    data = make_slip(
        level="emergency" if kind == "emergency" else "urgent",
        language=language,
        reasons=[CES_REASON, "A history of cancer with leg weakness or nerve symptoms"],
        rule_ids=["EM1", "EM4"],
    )
    render = {"slip": render_slip, "emergency": render_emergency_slip}.get(
        kind, render_consent_copy
    )
    pdf = render(data, "a6")
    assert len(rasterise(pdf, dpi=50)) == 1
    heading, signs = ces_warning(language)
    text = flat(pdf_text(pdf))
    assert all(flat(s) in text for s in (heading, *signs))


def test_a6_day_summary_continues_on_a_second_page_without_splitting_the_card() -> None:
    codes = [new_referral_code() for _ in range(30)]
    pdf = render_day_summary(_summary(unsent=30, unsent_codes=codes), "a6")
    per_page = [flat(t) for t in page_texts(pdf)]
    assert len(per_page) >= 2
    card_pages = [i for i, t in enumerate(per_page) if ces_warning("en")[0] in t]
    assert len(card_pages) == 1
    assert label("ces_title", "en") in per_page[card_pages[0]]  # the title went with it
    shown = [c for c in codes if any(c in t for t in per_page)]
    assert shown == codes[:20] and "and 10 more" in " ".join(per_page)


def test_same_data_gives_the_same_pdf(make_slip: MakeSlip) -> None:
    data = make_slip()
    assert render_slip(data, "receipt80") == render_slip(data, "receipt80")


# --- consent copy and day summary --------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_consent_copy_lists_what_was_agreed_and_refused_in_the_forms_wording(
    make_slip: MakeSlip, fmt: str
) -> None:
    from forms import load_forms

    context = {"provider": "Riverside Tele-Triage", "controller": "Riverside Health"}
    data = make_slip(
        consent={"c1": True, "c2": False, "c3": False, "c4": True, "c5": False},
        consent_context=context,
        consent_version="2026.11-1",
    )
    text = flat(pdf_text(render_consent_copy(data, fmt)))
    wording = load_forms(context=context).consent_document("en").items
    assert "Riverside Tele-Triage" in wording["c2"]
    agreed, refused = text.split("You did not agree to")
    for cid in ("c1", "c4"):
        assert f"{cid.upper()}: {wording[cid]}" in agreed
    for cid in ("c2", "c3", "c5"):
        assert f"{cid.upper()}: {wording[cid]}" in refused and wording[cid] not in agreed
    assert f"to the booth or to Riverside Health: {data.code}" in refused
    assert "Consent text version: 2026.11-1" in text
    assert ces_warning("en")[0] in refused  # the warning card is on the consent copy too


def test_consent_copy_accepts_upper_case_item_ids(make_slip: MakeSlip) -> None:
    from forms import load_forms

    wording = load_forms().consent_document("en").items
    data = make_slip(consent={"C1": True, "C2": False})
    text = flat(pdf_text(render_consent_copy(data, "receipt58")))
    agreed, refused = text.split("You did not agree to")
    assert f"C1: {wording['c1']}" in agreed and f"C2: {wording['c2']}" in refused


def test_consent_copy_without_a_consent_record(make_slip: MakeSlip) -> None:
    with pytest.raises(RenderError, match="no consent record"):
        render_consent_copy(make_slip(consent=None), "receipt80")


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_day_summary(fmt: str) -> None:
    text = flat(pdf_text(render_day_summary(_summary(set_aside=2), fmt)))
    assert "Day summary" in text and "Kit: kit-3f9a2c71b0d4" in text
    assert "Visits: 20" in text
    by_outcome, advice_only = text.split("Advice only, nothing recorded:")
    for shown in ("Emergency: 1", "Urgent: 3", "Routine: 10", "Self-care: 6"):
        assert shown in by_outcome
    assert "Not eligible: 2" in advice_only and "Consent refused: 1" in advice_only
    assert "C1 screening: 20/21 (95 %)" in text and "C2 sharing for a call: 15/21 (71 %)" in text
    assert "Visits not yet sent: 4" in text and "Oldest unsent: 2026-11-22 18:05" in text
    assert "Set aside by the server: 2" in text
    assert "Emergency number: 112" in text and ces_warning("en")[0] in text


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Any:
    import time

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_day_summary_shows_times_in_local_time(local_tz: Callable[[str], None]) -> None:
    local_tz("Europe/Madrid")
    oldest = dt.datetime(2026, 11, 22, 18, 5, tzinfo=dt.UTC)
    text = flat(pdf_text(render_day_summary(_summary(oldest_unsent=oldest), "receipt80")))
    assert "Oldest unsent: 2026-11-22 19:05" in text


def test_day_summary_without_visits() -> None:
    data = _summary(counts_by_outcome={}, consent_granted={"c1": 0}, visits=0, consent_asked=0)
    text = flat(pdf_text(render_day_summary(data, "receipt58")))
    assert "Visits: 0" in text and "C1 screening: 0/0 (-)" in text


# --- refusals ---------------------------------------------------------------------------


def test_unknown_format(make_slip: MakeSlip) -> None:
    with pytest.raises(RenderError, match="receipt80, receipt58, a6"):
        render_slip(make_slip(), "letter")


def test_unknown_level(make_slip: MakeSlip) -> None:
    with pytest.raises(RenderError, match="no advice for outcome level 'later'"):
        render_slip(make_slip(level="later"), "receipt80")


def test_a_code_that_fails_its_check_is_never_printed(make_slip: MakeSlip, kit_key: KitKey) -> None:
    code = new_referral_code()
    typo = code[:2] + ("0" if code[2] != "0" else "1") + code[3:]
    with pytest.raises(RenderError, match="check character"):
        render_slip(make_slip(code=typo, url=""), "receipt80")
    other = slip_url("https://triage.example.org", new_referral_code(), kit_key)
    with pytest.raises(RenderError, match="is not for code"):
        render_slip(make_slip(code=code, url=other), "receipt80")


def test_code_is_printed_canonical_and_date_is_local(
    make_slip: MakeSlip, local_tz: Callable[[str], None]
) -> None:
    local_tz("Pacific/Auckland")  # UTC+13 in November
    code = new_referral_code()
    late = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    data = make_slip(code=code.lower().replace("-", ""), visit_date=late)
    data = dataclasses.replace(data, url=slip_url("https://triage.example.org", code, b"k" * 32))
    text = flat(pdf_text(render_slip(data, "receipt80")))
    assert code in text
    assert "Date: 2026-11-23" in text


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_typed_address_never_splits_the_code_or_the_signature(
    make_slip: MakeSlip, kit_key: KitKey, fmt: str
) -> None:
    from printouts.codes import check_character, format_code

    body = "WMWMWMWMWMWMWM"  # the widest letters, so the address is as wide as it gets
    code = format_code(body + check_character(body))
    data = make_slip(code=code)
    lines = [line.strip() for line in pdf_text(render_slip(data, fmt)).splitlines()]
    compact, signature = code.replace("-", ""), parse_slip_url(data.url)[2]
    assert any(compact in line for line in lines)
    assert any(line.endswith(f"?s={signature}&l={data.language}") for line in lines)


# --- VOID and REPLACED: a marked printout cannot be missed or used ------------------------

MARKS = {
    "void": ({"void_reason": "Recorded twice by mistake"}, "VOID"),
    "superseded": ({"superseded_by": 3}, "REPLACED"),
}


def _render_kind(kind: str, data: SlipData, fmt: str) -> bytes:
    render = {"slip": render_slip, "emergency": render_emergency_slip}.get(
        kind, render_consent_copy
    )
    return render(data, fmt)


def _band_darkness(page: Any, fmt: str, from_mm: float, to_mm: float) -> float:
    px_per_mm = THERMAL_DPI / 25.4
    margin = round((FORMATS[fmt].width_mm - FORMATS[fmt].printable_mm) / 2 * px_per_mm)
    band = page.crop(
        (margin + 2, round(from_mm * px_per_mm), page.width - margin - 2, round(to_mm * px_per_mm))
    )
    return sum(band.histogram()[:100]) / (band.width * band.height)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("kind", ["slip", "emergency", "consent"])
@pytest.mark.parametrize("mark", list(MARKS))
def test_a_marked_printout_leads_with_its_mark_has_no_qr_and_is_marked_all_over(
    make_slip: MakeSlip, fmt: str, kind: str, mark: str
) -> None:
    fields, word = MARKS[mark]
    level = "emergency" if kind == "emergency" else "urgent"
    data = make_slip(level=level, reasons=[CES_REASON], **fields)
    pdf = _render_kind(kind, data, fmt)
    text = flat(pdf_text(pdf))
    assert text.startswith(word)
    if mark == "void":
        assert "This slip is void: do not follow it and do not use it to book." in text
        assert "Reason: Recorded twice by mistake" in text
    else:
        assert "replaced by a corrected one (version 3): follow the new slip" in text
    assert data.code in text  # still says which visit it was
    pages = rasterise(pdf)
    assert len(pages) == 1  # A6 too: a marked handout stays one page
    assert [s for page in pages for s in _decode(page)] == []  # nothing to scan and book
    (page,) = pages
    assert _band_darkness(page, fmt, 4.5, 7.5) > 0.6  # the black band across the top
    # The word is drawn again across the page, outlined and slanted.
    assert text.count(word) >= 2


def test_a_void_without_a_reason_says_none_was_given(make_slip: MakeSlip) -> None:
    text = flat(pdf_text(render_slip(make_slip(void_reason="  "), "receipt58")))
    assert text.startswith("VOID") and "Reason: none given" in text


def test_void_and_replaced_in_spanish(make_slip: MakeSlip) -> None:
    void = flat(pdf_text(render_slip(make_slip(language="es", void_reason="Duplicada"), "a6")))
    assert void.startswith("ANULADA") and "Esta hoja está anulada" in void
    assert "Motivo: Duplicada" in void
    old = flat(pdf_text(render_emergency_slip(make_slip(language="es", superseded_by=2), "a6")))
    assert old.startswith("SUSTITUIDA") and "(versión 2): siga la hoja nueva" in old


@pytest.mark.parametrize("language", ["en", "es"])
def test_marked_a6_handouts_stay_one_page_with_a_long_reason(
    make_slip: MakeSlip, language: str
) -> None:
    reason = "Recorded twice by mistake while the queue was long; the person came back " * 2
    data = make_slip(
        level="emergency",
        language=language,
        reasons=[CES_REASON, "A history of cancer with leg weakness or nerve symptoms"],
        rule_ids=["EM1", "EM4"],
        void_reason=reason,
    )
    for kind in ("slip", "emergency", "consent"):
        pdf = _render_kind(kind, data, "a6")
        assert len(rasterise(pdf, dpi=50)) == 1, kind
        heading, signs = ces_warning(language)
        text = flat(pdf_text(pdf))
        assert all(flat(s) in text for s in (heading, *signs))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_marks_stay_inside_the_printable_area(make_slip: MakeSlip, fmt: str) -> None:
    page_format = FORMATS[fmt]
    px_per_mm = THERMAL_DPI / 25.4
    for fields, _ in MARKS.values():
        for kind in ("slip", "emergency", "consent"):
            (page,) = rasterise(_render_kind(kind, make_slip(**fields), fmt))
            margin = int((page_format.width_mm - page_format.printable_mm) / 2 * px_per_mm) - 1
            assert page.crop((0, 0, margin, page.height)).getextrema()[0] >= 250
            assert (
                page.crop((page.width - margin, 0, page.width, page.height)).getextrema()[0] >= 250
            )
            assert page.crop((0, 0, page.width, int(3.5 * px_per_mm))).getextrema()[0] >= 250
            bottom_mm = 9.5 if page_format.height_mm is None else 5.5
            bottom = page.crop(
                (0, page.height - int(bottom_mm * px_per_mm), page.width, page.height)
            )
            assert bottom.getextrema()[0] >= 250


# --- the placeholder server ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("render", [render_slip, render_emergency_slip])
def test_a_slip_for_the_placeholder_server_says_its_qr_leads_nowhere_yet(
    make_slip: MakeSlip, fmt: str, render: Render
) -> None:
    level = "emergency" if render is render_emergency_slip else "routine"
    data = make_slip(level=level, server_placeholder=True)
    pdf = render(data, fmt)
    text = flat(pdf_text(pdf))
    assert "This code does not lead anywhere yet" in text
    assert "tele-triage server is not set up" in text
    assert "For the booth staff: set [server] base_url in kit.toml." in text
    if level == "emergency":  # never "ask the booth" on the way to the emergency department
        assert "That changes nothing above: go to the emergency department now." in text
        assert "Ask the booth staff" not in text
    else:
        assert "Ask the booth staff what to do next." in text
    assert [s.data.decode() for page in rasterise(pdf) for s in _decode(page)] == [data.url]
    assert len(rasterise(pdf, dpi=50)) == 1
    real = flat(pdf_text(render(make_slip(level=level, server_placeholder=False), fmt)))
    assert "does not lead anywhere" not in real


def test_the_placeholder_note_in_spanish(make_slip: MakeSlip) -> None:
    text = flat(pdf_text(render_slip(make_slip(language="es", server_placeholder=True), "a6")))
    assert "Este código aún no lleva a ninguna parte" in text
    assert "configure [server] base_url en kit.toml" in text


def test_the_day_summary_warns_the_coordinator_of_the_placeholder_server() -> None:
    text = flat(pdf_text(render_day_summary(_summary(server_placeholder=True), "receipt80")))
    assert "The QR codes on today's slips lead nowhere yet: set [server] base_url" in text
    plain = flat(pdf_text(render_day_summary(_summary(), "receipt80")))
    assert "lead nowhere" not in plain


# --- languages ---------------------------------------------------------------------------


def test_day_summary_names_levels_as_the_forms_do_in_the_kits_language() -> None:
    from forms.texts import level_name

    text = flat(pdf_text(render_day_summary(_summary(language="es"), "receipt80")))
    assert level_name("emergency", "es") == "Emergencia"
    assert level_name("urgent", "es") == "Preferente"
    for shown in ("Emergencia: 1", "Preferente: 3", "Ordinaria: 10", "Autocuidado: 6"):
        assert shown in text
    assert "No elegible: 2" in text and "Consentimiento rechazado: 1" in text


def test_spanish_consent_copy_names_the_organisers_in_spanish(make_slip: MakeSlip) -> None:
    text = flat(pdf_text(render_consent_copy(make_slip(language="es"), "receipt80")))
    assert "los organizadores de este puesto (pida ver sus datos)" in text
    assert "organisers" not in text and "ask to see" not in text
    english = flat(pdf_text(render_consent_copy(make_slip(language="en"), "receipt80")))
    assert "the organisers of this booth (ask to see their details)" in english
