"""Impossible histories are refused in the forms, so `screen`, `visit add`, the UI and
corrections all refuse them the same way, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from forms import AnswerError, Flow, load_forms
from tests.forms.answers import BENIGN


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"age_years": 58, "back_pain_onset_age": 80}, "back_pain_onset_age", "at most 58"),
        # ten years of symptoms that began last year
        (
            {"age_years": 40, "back_pain_onset_age": 39, "symptom_duration_weeks": 520},
            "symptom_duration_weeks",
            "at most 104 weeks",
        ),
        (
            {"age_years": 16, "back_pain_onset_age": 16, "symptom_duration_weeks": 1000},
            "symptom_duration_weeks",
            "at most 52 weeks",
        ),
    ],
)
def test_impossible_history_is_refused(changes: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(AnswerError) as caught:
        load_forms().screen({**BENIGN, **changes})
    assert caught.value.field == field and words in caught.value.message


@pytest.mark.parametrize(
    "changes",
    [
        {"age_years": 50, "back_pain_onset_age": 50, "symptom_duration_weeks": 52},
        # a birthday since the pain began: one year more is allowed
        {"age_years": 51, "back_pain_onset_age": 50, "symptom_duration_weeks": 104},
    ],
)
def test_possible_histories_pass(changes: dict[str, Any]) -> None:
    load_forms().screen({**BENIGN, **changes})


def answer_until(flow: Flow, stop_at: str, answers: dict[str, Any]) -> None:
    while (question := flow.current()) is not None and question.id != stop_at:
        flow.answer(answers[question.id])


def test_flow_refuses_the_question_being_answered_and_keeps_the_others() -> None:
    from tests.ui.driver import plan_for

    plan = plan_for(age_years=58, symptom_duration_weeks=10)
    flow = Flow(load_forms(), "en")
    answer_until(flow, "back_pain_onset_age", plan)
    with pytest.raises(AnswerError) as caught:
        flow.answer(80)
    assert caught.value.field == "back_pain_onset_age"
    assert caught.value.message == "is more than the age now (58): give at most 58"
    current = flow.current()
    assert current is not None and current.id == "back_pain_onset_age"
    flow.answer(57)
    # the age taken back and changed to 45 with onset 57 already given: refused there
    assert flow.revisit("age_years")
    with pytest.raises(AnswerError) as caught:
        flow.answer(45)
    assert caught.value.field == "age_years" and "(57)" in caught.value.message
