"""The definition files: complete, consistent, translated, and checked on load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forms import DefinitionError, load_forms, outcome_text
from forms.engine import DEFINITIONS
from forms.texts import TEXT_LEVELS, ces_warning

LANGUAGES = ("en", "es")


def test_every_text_is_in_english_and_spanish() -> None:
    forms = load_forms()
    for q in forms.questions:
        for lang in LANGUAGES:
            assert q.prompt.get(lang), (q.id, lang)
            if q.volunteer_prompt:
                assert q.volunteer_prompt.get(lang), (q.id, lang)
            for c in q.choices:
                assert c.label.get(lang), (q.id, c.value, lang)
    for rule in forms.rules:
        assert all(rule.reason.get(lang) for lang in LANGUAGES), rule.id
        assert rule.source
    for level in TEXT_LEVELS:
        for lang in LANGUAGES:
            title, instruction, steps = outcome_text(level, lang, emergency_number="112")
            assert title and instruction and steps
            assert "{" not in instruction + "".join(steps)
    for lang in LANGUAGES:
        heading, signs = ces_warning(lang)
        assert heading and len(signs) >= 5
        doc = forms.consent_document(lang)
        assert set(doc.items) == {"c1", "c2", "c3", "c4", "c5"}
        assert "{" not in doc.text


def test_every_rule_of_the_reference_is_there() -> None:
    ids = [r.id for r in load_forms().rules]
    expected = [f"EM{i}" for i in range(1, 8)] + [f"UR{i}" for i in range(1, 11)]
    expected += [f"RO{i}" for i in range(1, 5)]
    assert ids == expected


def test_consent_items_are_explicit_choices_with_nothing_preselected() -> None:
    forms = load_forms()
    for cid in forms.consent_items:
        question = forms.question(cid)
        assert question is not None and question.kind == "choice"
        assert {c.value for c in question.choices} == {True, False}
    assert forms.consent_required == {"c1"}


def test_consent_hash_follows_the_text_shown() -> None:
    a = load_forms(context={"provider": "TeleBack"}).consent_document("en")
    b = load_forms(context={"provider": "OtherCo"}).consent_document("en")
    es = load_forms(context={"provider": "TeleBack"}).consent_document("es")
    assert "TeleBack" in a.text and a.sha256 != b.sha256 != es.sha256
    assert a.version == b.version


def test_choice_keys_are_single_and_distinct_per_question() -> None:
    for q in load_forms().questions:
        keys = [c.key for c in q.choices]
        assert len(keys) == len(set(keys)) and all(len(k) == 1 for k in keys), q.id


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "words"),
    [
        ("rules.toml", 'when = "aaa_warning"', 'when = "aaa_warnings"', "aaa_warnings"),
        ("rules.toml", 'when = "aaa_warning"', "when = \"__import__('os')\"", "not allowed"),
        ("rules.toml", 'level = "routine"', 'level = "soon"', "level must be"),
        ("screen.toml", 'value = "unexplained"', 'value = "unexplaned"', "unexplaned"),
        ("screen.toml", 'id = "aaa_warning"', 'id = "aaa_warn"', "aaa_warning"),
        (
            "screen.toml",
            'ask_if = "symptom_duration_weeks >= 4"',
            'ask_if = "axspa_criteria_count >= 4"',
            "asked later",
        ),
        ("choices.toml", 'key = "w"', 'key = "n"', "distinct"),
    ],
)
def test_broken_definitions_are_refused_on_load(
    copy: Path, file: str, old: str, new: str, words: str
) -> None:
    _edit(copy / file, old, new)
    with pytest.raises(DefinitionError, match=words):
        load_forms(directory=copy)


def test_forms_version_changes_with_any_definition(copy: Path) -> None:
    before = load_forms(directory=copy).forms_version
    _edit(copy / "texts.toml", "Self-care", "Self care")
    assert load_forms(directory=copy).forms_version != before
