"""The visit flow: order, skip logic, stops, going back, drafts, and agreement with
`screen` for any answer set."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forms import AnswerError, Flow, load_forms
from forms.engine import WEEKS_PER_YEAR, Forms
from tests.forms.answers import BENIGN, flow_answers, startback


@pytest.fixture(scope="module")
def forms() -> Forms:
    return load_forms()


def run(forms: Forms, answers: dict[str, Any], language: str = "en") -> tuple[Flow, list[str]]:
    """Answer every question asked from ``answers`` (by question id); returns the ids asked."""
    flow = Flow(forms, language)
    asked: list[str] = []
    while (question := flow.current()) is not None:
        asked.append(question.id)
        assert question.id in answers, f"asked {question.id} with no answer planned"
        flow.answer(answers[question.id])
    return flow, asked


def test_order_eligibility_consent_then_cauda_equina_first(forms: Forms) -> None:
    _, asked = run(forms, flow_answers(BENIGN))
    assert asked[:7] == ["age_years", "_capacity", "c1", "c2", "c3", "c4", "c5"]
    assert asked[7:11] == ["_ces_saddle", "_ces_bladder", "_ces_bowel", "_ces_sexual"]
    screen_end = asked.index("pain_nrs")
    assert all(not q.startswith("sb") for q in asked[:screen_end])
    assert asked[-9:] == [f"sb{i}" for i in range(1, 10)]


def test_self_care_visit_asks_no_follow_ups(forms: Forms) -> None:
    flow, asked = run(forms, flow_answers(BENIGN))
    assert flow.finished and flow.stopped is None
    for skipped in (
        "_weight_loss_reason",
        "axspa_criteria_count",
        "leg_pain_nrs",
        "sbi_leg_pain",
        "no_improvement_after_4_weeks",  # 3 weeks of pain: cannot have failed for 4
        "_ces_saddle_days",
    ):
        assert skipped not in asked
    assert flow.canonical_answers() == {**BENIGN, "no_improvement_after_4_weeks": False}
    assert flow.outcome().triage == "self_care"


def test_weight_loss_follow_up_only_after_yes(forms: Forms) -> None:
    _, asked = run(forms, flow_answers({**BENIGN, "weight_loss": "unexplained"}))
    assert asked[asked.index("_weight_loss") + 1] == "_weight_loss_reason"
    flow, _ = run(forms, flow_answers({**BENIGN, "weight_loss": "explained"}))
    assert flow.canonical_answers()["weight_loss"] == "explained"


def test_axspa_count_only_when_onset_before_45_and_over_13_weeks(forms: Forms) -> None:
    long_young = {
        **BENIGN,
        "age_years": 50,
        "symptom_duration_weeks": 13,
        "back_pain_onset_age": 44,
    }
    _, asked = run(forms, flow_answers({**long_young, "axspa_criteria_count": 4}))
    assert "axspa_criteria_count" in asked
    for changes in ({"symptom_duration_weeks": 12}, {"back_pain_onset_age": 45}):
        _, asked = run(forms, flow_answers({**long_young, **changes}))
        assert "axspa_criteria_count" not in asked


def test_leg_pain_brings_leg_nrs_and_sciatica_index(forms: Forms) -> None:
    sbi = {"leg_pain": 4, "numbness": 2, "weakness": 0, "sitting": 5}
    answers = {**BENIGN, "leg_pain_side": "unilateral", "leg_pain_nrs": 6, "sbi": sbi}
    flow, asked = run(forms, flow_answers(answers))
    assert "leg_pain_nrs" in asked and "sbi_sitting" in asked
    assert flow.canonical_answers()["sbi"] == sbi
    assert flow.outcome().sbi_total == 11


@pytest.mark.parametrize(
    ("days", "value", "triage"),
    [
        (13, "new_or_worsening", "emergency"),
        (14, "new_or_worsening", "emergency"),
        (15, "longstanding_stable", "urgent"),
    ],
)
def test_fourteen_day_window(forms: Forms, days: int, value: str, triage: str) -> None:
    flow = Flow(forms, "en")
    for answer in (40, True, True, True, False, False, False, "stable", days):
        flow.answer(answer)
    answers = flow.canonical_answers()
    assert answers["ces_saddle_numbness"] == value
    if triage == "emergency":
        assert flow.stopped == "emergency" and flow.current() is None
    else:
        assert flow.stopped is None and flow.current() is not None
    assert flow.outcome().triage == triage  # known already, mid-visit
    if triage == "urgent":
        full = flow_answers(
            {**BENIGN, "ces_saddle_numbness": "longstanding_stable"}, ces_stable_days=days
        )
        assert run(forms, full)[0].outcome().rule_ids == ["UR1"]


def test_window_follows_kit_threshold() -> None:
    seven = load_forms(thresholds={"ces_window_days": 7})
    flow = Flow(seven, "en")
    for answer in (40, True, True, True, False, False, False, "stable", 8):
        flow.answer(answer)
    assert flow.canonical_answers()["ces_saddle_numbness"] == "longstanding_stable"
    prompt = seven.question("_ces_saddle_days")
    assert prompt is not None and "More than 7 days" in (prompt.volunteer_prompt or {})["en"]


def test_emergency_stops_at_once_and_skips_instruments(forms: Forms) -> None:
    flow = Flow(forms, "en")
    for answer in (60, True, True, True, False, False, False, "no", "worsening"):
        flow.answer(answer)
    assert flow.stopped == "emergency"
    assert flow.current() is None and not flow.finished
    outcome = flow.outcome()
    assert outcome.triage == "emergency" and outcome.rule_ids == ["EM1"]
    assert outcome.startback is None
    assert "pain_nrs" not in flow.canonical_answers()


def test_emergency_found_late_in_the_screen(forms: Forms) -> None:
    answers = flow_answers({**BENIGN, "aaa_warning": True})
    flow, asked = run(forms, answers)
    assert asked[-1] == "aaa_warning" and flow.stopped == "emergency"


@pytest.mark.parametrize(
    ("answers", "stop"),
    [((15,), "ineligible"), ((40, False), "ineligible"), ((40, True, False), "consent_refused")],
)
def test_gates_stop_the_visit(forms: Forms, answers: tuple[Any, ...], stop: str) -> None:
    flow = Flow(forms, "en")
    for answer in answers:
        flow.answer(answer)
    assert flow.stopped == stop and flow.current() is None


def test_min_age_from_config() -> None:
    flow = Flow(load_forms(min_self_consent_age=18), "en")
    flow.answer(17)
    assert flow.stopped == "ineligible"


def test_back_takes_back_one_answer_and_remembers_it(forms: Forms) -> None:
    flow = Flow(forms, "en")
    for answer in (40, True, True, False):
        flow.answer(answer)
    current = flow.current()
    assert current is not None and current.id == "c3"
    assert flow.back()
    current = flow.current()
    assert current is not None and current.id == "c2"
    assert flow.shown_answer("c2") is False
    flow.answer(True)
    assert flow.consent()["c2"] is True
    for _ in range(10):
        flow.back()
    assert not flow.back()
    current = flow.current()
    assert current is not None and current.id == "age_years"


def test_back_out_of_an_emergency_reopens_the_trigger(forms: Forms) -> None:
    flow = Flow(forms, "en")
    for answer in (40, True, True, True, False, False, False, "worsening"):
        flow.answer(answer)
    assert flow.stopped == "emergency"
    assert flow.back()
    current = flow.current()
    assert flow.stopped is None and current is not None and current.id == "_ces_saddle"


def test_revisit_changes_one_answer_and_returns_to_the_end(forms: Forms) -> None:
    flow, _ = run(forms, flow_answers(BENIGN))
    assert flow.revisit("osteoporosis")
    current = flow.current()
    assert current is not None and current.id == "osteoporosis"
    flow.answer(True)
    assert flow.finished
    assert flow.outcome().rule_ids == ["RO1"]


def test_revisit_to_emergency_and_back(forms: Forms) -> None:
    flow, _ = run(forms, flow_answers(BENIGN))
    flow.revisit("_ces_bowel")
    flow.answer("worsening")
    assert flow.stopped == "emergency"
    flow.revisit("_ces_bowel")
    flow.answer("no")
    assert flow.finished and flow.outcome().triage == "self_care"


def test_revisit_to_yes_opens_the_follow_up(forms: Forms) -> None:
    flow, _ = run(forms, flow_answers(BENIGN))
    flow.revisit("_weight_loss")
    flow.answer(True)
    current = flow.current()
    assert current is not None and current.id == "_weight_loss_reason"
    flow.answer(False)
    assert flow.finished and flow.outcome().rule_ids == ["UR6"]


def test_bad_answer_is_refused_and_nothing_changes(forms: Forms) -> None:
    flow = Flow(forms, "en")
    with pytest.raises(AnswerError, match="from 0 to 120"):
        flow.answer(400)
    with pytest.raises(AnswerError):
        flow.answer("forty")
    assert flow.progress()[0] == 0
    flow.answer(40)
    with pytest.raises(AnswerError, match="must be one of true, false"):
        flow.answer("y")


def test_state_round_trip_resumes_exactly(forms: Forms) -> None:
    import json

    flow = Flow(forms, "es")
    for answer in (40, True, True, True, False, False, False, "no", "stable"):
        flow.answer(answer)
    flow.back()
    state = json.loads(json.dumps(flow.to_state()))
    again = Flow(forms, "es", state=state)
    assert again.current() == flow.current()
    assert again.shown_answer("_ces_bladder") == "stable"
    assert again.progress() == flow.progress()


def test_draft_from_other_forms_version_does_not_crash(forms: Forms) -> None:
    state = {"answers": {"age_years": 40, "_gone": True, "_capacity": "maybe"}}
    flow = Flow(forms, "en", state=state)
    current = flow.current()
    assert current is not None and current.id == "_capacity"


# --- the flow and `screen` agree -------------------------------------------------------

CES = st.sampled_from(["no", "no", "no", "new_or_worsening", "longstanding_stable"])
FLAG = st.booleans()


@st.composite
def answer_sets(draw: st.DrawFn) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "age_years": draw(st.integers(16, 100)),
        "symptom_duration_weeks": draw(st.integers(0, 60)),
        "leg_pain_side": draw(st.sampled_from(["none", "unilateral", "bilateral"])),
        "leg_weakness": draw(
            st.sampled_from(
                ["none", "none", "unilateral_stable", "unilateral_progressive", "bilateral"]
            )
        ),
        "weight_loss": draw(st.sampled_from(["none", "explained", "unexplained"])),
        "recent_trauma": draw(st.sampled_from(["none", "minor", "major"])),
        "pain_nrs": draw(st.integers(0, 10)),
    }
    # A history that can be (forms.engine.check_plausible): the pain began long enough ago
    # for the weeks of symptoms.
    age, weeks = answers["age_years"], answers["symptom_duration_weeks"]
    latest_onset = min(age, math.floor(age + 1 - weeks / WEEKS_PER_YEAR))
    answers["back_pain_onset_age"] = draw(st.integers(0, max(0, latest_onset)))
    for name in (
        "ces_saddle_numbness",
        "ces_bladder_change",
        "ces_bowel_change",
        "ces_sexual_dysfunction",
    ):
        answers[name] = draw(CES)
    for name in (
        "foot_drop",
        "history_of_cancer",
        "night_pain_non_mechanical",
        "fever_or_rigors",
        "iv_drug_use",
        "immunosuppressed",
        "recent_infection_or_spinal_procedure",
        "osteoporosis",
        "long_term_steroids",
        "aaa_warning",
    ):
        answers[name] = draw(st.integers(0, 4)) == 0  # a flag in one of five
    answers["no_improvement_after_4_weeks"] = answers["symptom_duration_weeks"] >= 4 and draw(FLAG)
    if answers["back_pain_onset_age"] < 45 and answers["symptom_duration_weeks"] >= 13:
        answers["axspa_criteria_count"] = draw(st.integers(0, 9))
    total = draw(st.integers(0, 9))
    psycho = draw(st.integers(max(0, total - 4), min(5, total)))
    answers["startback"] = startback(total, psycho)
    if answers["leg_pain_side"] != "none":
        answers["leg_pain_nrs"] = draw(st.integers(0, 10))
        answers["sbi"] = {
            k: draw(st.integers(0, 6)) for k in ("leg_pain", "numbness", "weakness", "sitting")
        }
    return answers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=answer_sets())
def test_flow_and_screen_agree(forms: Forms, answers: dict[str, Any]) -> None:
    expected = forms.screen(answers)
    flow, _ = run(forms, flow_answers(answers))
    got = flow.outcome()
    assert got.triage == expected.triage
    if expected.triage == "emergency":
        # the flow stops at the first emergency; screen lists every rule
        assert set(got.rule_ids) <= set(expected.rule_ids)
        assert flow.stopped == "emergency" and got.startback is None
    else:
        assert got.rule_ids == expected.rule_ids
        assert got.startback == expected.startback
        assert got.sbi_total == expected.sbi_total
        assert flow.canonical_answers() == forms.validate(answers)
