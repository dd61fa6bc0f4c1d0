"""Words on paper: the advice is the forms' own, the paper labels exist in every language."""

from __future__ import annotations

import pytest

from forms import load_forms
from forms.texts import TEXT_LEVELS, outcome_text
from printouts.texts import LABELS, consent_wording, label


@pytest.mark.parametrize(
    ("language", "number", "step"),
    [
        ("en", "112", "If you cannot get there safely, call 112."),
        ("es", "112", "Si no puede llegar con seguridad, llame al 112."),
        ("en", "", "If you cannot get there safely, call the local emergency number."),
        ("es", " ", "Si no puede llegar con seguridad, llame al número local de emergencias."),
    ],
)
def test_one_fallback_for_a_missing_emergency_number(language: str, number: str, step: str) -> None:
    _title, _instruction, steps = outcome_text("emergency", language, emergency_number=number)
    assert step in steps


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("level", TEXT_LEVELS)
def test_no_placeholder_is_left_without_a_number(level: str, language: str) -> None:
    title, instruction, steps = outcome_text(level, language)
    assert "{" not in " ".join([title, instruction, *steps])
    assert " call ." not in instruction and "llame al ." not in instruction


def test_every_paper_label_exists_in_every_language() -> None:
    english = set(LABELS["en"])
    for language, labels in LABELS.items():
        assert set(labels) == english, language
        assert all(text.strip() for text in labels.values()), language


def test_unknown_language_and_placeholders() -> None:
    assert label("date", "el") == "Date"
    assert label("withdraw", "es", controller="X", code="C").endswith("X: C")
    steps = outcome_text("consent_refused", "en")[2]
    assert (
        "If you have any of the warning signs below, go to the emergency department now or "
        "call the local emergency number."
    ) in steps


def test_consent_wording_names_the_provider() -> None:
    items, controller = consent_wording(
        "es", {"provider": "TeleTriaje Sur", "controller": "Salud Sur"}
    )
    assert set(items) == {"c1", "c2", "c3", "c4", "c5"}
    assert "TeleTriaje Sur" in items["c2"] and controller == "Salud Sur"
    defaults = load_forms()
    assert consent_wording("en") == (
        defaults.consent_document("en").items,
        defaults.context["controller"],
    )
