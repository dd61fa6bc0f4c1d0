"""Words on paper: the advice is the forms' own, the paper labels exist in every language."""

from __future__ import annotations

import pytest

from forms import load_forms
from forms.texts import TEXT_LEVELS, ces_warning, outcome_text
from printouts.texts import LABELS, ces_texts, consent_wording, label, outcome_texts


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("level", TEXT_LEVELS)
def test_outcome_advice_is_the_forms_advice(level: str, language: str) -> None:
    assert outcome_texts(level, language, "112") == tuple(
        outcome_text(level, language, emergency_number="112")
    )
    assert ces_texts(language) == tuple(ces_warning(language))


def test_every_paper_label_exists_in_every_language() -> None:
    english = set(LABELS["en"])
    for language, labels in LABELS.items():
        assert set(labels) == english, language
        assert all(text.strip() for text in labels.values()), language


def test_unknown_language_and_placeholders() -> None:
    assert label("date", "el") == "Date"
    assert label("withdraw", "es", controller="X", code="C").endswith("X: C")
    steps = outcome_texts("consent_refused", "en")[2]
    assert any("call the local emergency number" in step for step in steps)
    assert not any("{" in step for step in steps)


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
