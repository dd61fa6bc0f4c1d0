"""Paper in the attendee's language: every printout an attendee takes home from a Spanish
visit (slips of every level, the emergency slip, the consent copy, VOID and REPLACED
copies, the placeholder-server note) is rendered from visits in the real store through
``popup_kit.slips``, its text extracted, and any English in it fails the test."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from forms import load_forms
from forms.engine import DEFAULT_CONTEXT
from forms.texts import TEXT_LEVELS, ces_warning, level_name, outcome_text
from popup_kit.config import KitConfig, load_config
from popup_kit.domain import Contact, VisitRecord
from popup_kit.services import VisitService
from popup_kit.slips import render_visit, slip_data
from printouts.printing import slip_filename
from printouts.render import FORMATS, render_slip
from printouts.texts import LABELS
from tests.forms.answers import BENIGN
from tests.kit.conftest import CONSENT_ALL, CONSENT_MIN, StepClock, visit_input
from tests.printouts.conftest import flat, pdf_text

SPANISH_KIT = """
[booth]
name = { en = "Back pain booth", es = "Puesto de dolor de espalda" }
event = { en = "Night market", es = "Mercado nocturno" }
"""
ANSWERS: dict[str, dict[str, Any]] = {
    "emergency": {**BENIGN, "ces_bladder_change": "new_or_worsening"},
    "urgent": {**BENIGN, "fever_or_rigors": True},
    "routine": {**BENIGN, "osteoporosis": True},
    "self_care": dict(BENIGN),
}
WORD = re.compile(r"[^\W\d_]+")


def _tokens(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def _english_sources() -> list[str]:
    """Every English text that could reach paper: the paper labels, the forms' advice,
    level names, warning card, consent wording and defaults, and the rules' reasons."""
    forms = load_forms()
    texts = list(LABELS["en"].values())
    for level in TEXT_LEVELS:
        title, instruction, steps = outcome_text(level, "en", emergency_number="999")
        texts += [title, instruction, *steps, level_name(level, "en")]
    heading, signs = ces_warning("en")
    texts += [heading, *signs, *forms.consent_document("en").items.values()]
    texts += [by_language["en"] for by_language in DEFAULT_CONTEXT.values()]
    texts += [rule.reason.get("en", "") for rule in forms.rules]
    return texts


def _spanish_sources() -> list[str]:
    forms = load_forms()
    texts = list(LABELS["es"].values())
    for level in TEXT_LEVELS:
        title, instruction, steps = outcome_text(level, "es", emergency_number="999")
        texts += [title, instruction, *steps, level_name(level, "es")]
    heading, signs = ces_warning("es")
    texts += [heading, *signs, *forms.consent_document("es").items.values()]
    texts += [v.get("es", "") for v in DEFAULT_CONTEXT.values()]
    texts += [rule.reason.get("es", "") for rule in forms.rules]
    return texts


ENGLISH_ONLY = _tokens(" ".join(_english_sources())) - _tokens(" ".join(_spanish_sources()))
# Longer English phrases, looked for whole (placeholders cut out).
ENGLISH_PHRASES = sorted(
    {
        piece.strip()
        for text in _english_sources()
        for piece in re.split(r"\{[a-z_]+\}", text)
        if len(piece.strip()) >= 12
    }
)


def english_in(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """English words and phrases in ``text`` (a printout's extracted text), ignoring the
    address to type (a URL) and the given ``allowed`` strings (names from kit.toml)."""
    text = flat(text)
    for name in allowed:
        text = text.replace(name, " ")
    # Not words: the address, file names, referral codes, rule ids, dates, versions.
    text = " ".join(t for t in text.split() if not re.search(r"[/?\d]|\.org|\.toml", t))
    text = re.sub(r"\b[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}\b", " ", text)
    found = [phrase for phrase in ENGLISH_PHRASES if phrase in text]
    found += sorted(_tokens(text) & ENGLISH_ONLY)
    return found


@pytest.fixture
def spanish_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KitConfig:
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(tmp_path / "data"))
    kit = tmp_path / "kit.toml"
    kit.write_text(SPANISH_KIT)
    return load_config(kit)


@pytest.fixture
def visits(spanish_kit: KitConfig) -> dict[str, VisitRecord]:
    service = VisitService(spanish_kit, clock=StepClock())
    try:
        made = {
            level: service.record_visit(
                visit_input(answers=answers, language="es", consent={**CONSENT_MIN, "c2": True})
            )
            for level, answers in ANSWERS.items()
        }
        everything = service.record_visit(
            visit_input(
                answers=ANSWERS["urgent"],
                language="es",
                consent=dict(CONSENT_ALL),
                contact=Contact("Ana Ruiz", "+34 600 111 222"),
            )
        )
        made["all_consent"] = everything
        voided = service.record_visit(visit_input(answers=ANSWERS["emergency"], language="es"))
        made["void"] = service.void_visit(voided.visit_id, "Registrada dos veces", "AB")
        return made
    finally:
        service.close()


def _printouts(
    config: KitConfig, visits: dict[str, VisitRecord], fmt: str
) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for name, visit in visits.items():
        out.append((f"{name} slip", render_visit(config, visit, fmt).pdf))
        out.append((f"{name} consent copy", render_visit(config, visit, fmt, "consent").pdf))
    old = visits["routine"]
    out.append(("replaced slip", render_visit(config, old, fmt, superseded_by=2).pdf))
    # Visits that end with advice only keep nothing, but their slip is the same paper.
    data = slip_data(config, visits["self_care"])
    for level in ("ineligible", "consent_refused"):
        advice = render_slip(
            type(data)(
                code="",
                url="",
                level=level,
                language="es",
                booth_name=data.booth_name,
                event=data.event,
                visit_date=data.visit_date,
                emergency_number=data.emergency_number,
            ),
            fmt,
        )
        out.append((f"{level} advice", advice))
    return out


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_no_english_on_any_printout_of_a_spanish_visit(
    spanish_kit: KitConfig, visits: dict[str, VisitRecord], fmt: str
) -> None:
    assert spanish_kit.server_is_placeholder  # so the placeholder note is on every slip
    printouts = _printouts(spanish_kit, visits, fmt)
    assert len(printouts) == 2 * len(visits) + 3
    for name, pdf in printouts:
        text = flat(pdf_text(pdf))
        assert english_in(text) == [], name
        assert "Puesto de dolor de espalda" in text and "Mercado nocturno" in text, name
        assert "Back pain booth" not in text and "Night market" not in text, name
    seen = {name: flat(pdf_text(pdf)) for name, pdf in printouts}
    assert seen["void slip"].startswith("ANULADA") and "Registrada dos veces" in seen["void slip"]
    assert seen["void consent copy"].startswith("ANULADA")
    assert seen["replaced slip"].startswith("SUSTITUIDA")
    assert "Este código aún no lleva a ninguna parte" in seen["urgent slip"]
    assert "Vaya a Urgencias ahora" in seen["emergency slip"]
    assert "síndrome de cola de caballo" in seen["emergency slip"]
    assert "los organizadores de este puesto" in seen["routine consent copy"]


def test_the_english_detector_finds_english(
    spanish_kit: KitConfig, visits: dict[str, VisitRecord]
) -> None:
    """The check above can fail: English paper, and the Spanish consent copy as it was
    printed before (the organisers named in English), are caught."""
    from dataclasses import replace

    from printouts.render import render_consent_copy

    english = replace(visits["urgent"], language="en")
    found = english_in(pdf_text(render_visit(spanish_kit, english, "receipt80").pdf))
    assert len(found) > 20 and "scan" in found
    data = slip_data(spanish_kit, visits["urgent"])
    old_copy = replace(
        data,
        consent_context={"controller": "the organisers of this booth (ask to see their details)"},
    )
    found = english_in(pdf_text(render_consent_copy(old_copy, "a6")))
    assert "organisers" in found


def test_booth_name_and_event_follow_the_visits_language(
    spanish_kit: KitConfig, visits: dict[str, VisitRecord]
) -> None:
    from dataclasses import replace

    in_english = replace(visits["urgent"], language="en")
    english = flat(pdf_text(render_visit(spanish_kit, in_english, "a6").pdf))
    assert "Back pain booth" in english and "Night market" in english
    assert "Puesto de dolor de espalda" not in english


def test_a_voided_visit_is_always_marked_and_keeps_its_file_name(
    spanish_kit: KitConfig, visits: dict[str, VisitRecord]
) -> None:
    void = visits["void"]
    made = render_visit(spanish_kit, void, "receipt58")
    assert made.filename == slip_filename(void.code, "receipt58", "emergency")
    assert flat(pdf_text(made.pdf)).startswith("ANULADA")
    other = render_visit(
        spanish_kit, visits["self_care"], "receipt58", void_reason="Error al teclear"
    )
    assert "Motivo: Error al teclear" in flat(pdf_text(other.pdf))
    replaced = render_visit(spanish_kit, visits["routine"], "a6", superseded_by=2)
    code = visits["routine"].code
    assert replaced.filename == f"{code}-v1-replaced-a6.pdf"


def test_the_slips_qr_names_the_visits_language(
    spanish_kit: KitConfig, visits: dict[str, VisitRecord]
) -> None:
    from dataclasses import replace

    from popup_kit.vault import kit_key
    from printouts.payload import parse_slip_url, url_language
    from printouts.payload import verify_signature as verify

    key = kit_key(spanish_kit)
    spanish = slip_data(spanish_kit, visits["urgent"]).url
    english = slip_data(spanish_kit, replace(visits["urgent"], language="en")).url
    assert spanish.endswith("&l=es") and english.endswith("&l=en")
    assert url_language(spanish) == "es" and url_language(english) == "en"
    # The language is beside the signature, not in it: both verify alike.
    for url in (spanish, english):
        _base, code, sig = parse_slip_url(url)
        assert code == visits["urgent"].code and verify(code, sig, key.secret)
