"""The rule set of clinical reference 1.4, rule by rule, with every threshold's edges."""

from __future__ import annotations

from typing import Any

import pytest

from forms import AnswerError, load_forms
from forms.engine import Forms
from tests.forms.answers import BENIGN, startback


@pytest.fixture(scope="module")
def forms() -> Forms:
    return load_forms()


def screen(forms: Forms, **changes: Any) -> dict[str, Any]:
    return forms.screen({**BENIGN, **changes}).as_json()


def test_benign_answers_are_self_care(forms: Forms) -> None:
    out = screen(forms)
    assert out == {
        "triage": "self_care",
        "rules": [],
        "ruleset_version": "2026.11-1",
        "startback": {"total": 0, "psychosocial": 0, "risk": "low"},
    }


# Each rule on its own, from the benign baseline: (rule, answers that fire it, level).
ALONE: list[tuple[str, dict[str, Any], str]] = [
    ("EM1", {"ces_saddle_numbness": "new_or_worsening"}, "emergency"),
    ("EM1", {"ces_bladder_change": "new_or_worsening"}, "emergency"),
    ("EM1", {"ces_bowel_change": "new_or_worsening"}, "emergency"),
    (
        "EM2",
        {"ces_sexual_dysfunction": "new_or_worsening", "leg_pain_side": "unilateral"},
        "emergency",
    ),
    ("EM3", {"leg_weakness": "bilateral"}, "emergency"),
    ("EM5", {"fever_or_rigors": True, "immunosuppressed": True}, "emergency"),
    ("EM5", {"fever_or_rigors": True, "recent_infection_or_spinal_procedure": True}, "emergency"),
    ("EM6", {"recent_trauma": "major"}, "emergency"),
    ("EM7", {"aaa_warning": True}, "emergency"),
    ("UR1", {"ces_bowel_change": "longstanding_stable"}, "urgent"),
    ("UR2", {"ces_sexual_dysfunction": "new_or_worsening"}, "urgent"),
    ("UR4", {"foot_drop": True}, "urgent"),
    ("UR4", {"leg_weakness": "unilateral_progressive"}, "urgent"),
    ("UR5", {"history_of_cancer": True}, "urgent"),
    ("UR6", {"weight_loss": "unexplained"}, "urgent"),
    ("UR7", {"fever_or_rigors": True}, "urgent"),
    ("UR9", {"recent_trauma": "minor", "osteoporosis": True}, "urgent"),
    ("UR9", {"recent_trauma": "minor", "long_term_steroids": True}, "urgent"),
    ("RO1", {"no_improvement_after_4_weeks": True}, "routine"),
    ("RO2", {"startback": startback(4, 3)}, "routine"),
    ("RO4", {"leg_weakness": "unilateral_stable"}, "routine"),
]


@pytest.mark.parametrize(("rule", "changes", "level"), ALONE)
def test_rule_fires_at_its_level(
    forms: Forms, rule: str, changes: dict[str, Any], level: str
) -> None:
    out = screen(forms, **changes)
    assert rule in out["rules"]
    assert out["triage"] == level


def test_combined_rules_all_listed_most_severe_wins(forms: Forms) -> None:
    out = screen(forms, history_of_cancer=True, foot_drop=True, iv_drug_use=True)
    # EM4 (cancer with a nerve symptom), UR4 (foot drop), UR5, UR8 (IV drug use)
    assert out["triage"] == "emergency"
    assert out["rules"] == ["EM4", "UR4", "UR5", "UR8"]


@pytest.mark.parametrize(
    "changes",
    [
        {"leg_weakness": "unilateral_stable"},
        {"foot_drop": True},
        {"ces_saddle_numbness": "longstanding_stable"},
        {"ces_sexual_dysfunction": "longstanding_stable"},
    ],
)
def test_cancer_with_any_nerve_symptom_is_suspected_mscc(
    forms: Forms, changes: dict[str, Any]
) -> None:
    out = screen(forms, history_of_cancer=True, **changes)
    assert "EM4" in out["rules"] and out["triage"] == "emergency"


def test_sexual_dysfunction_alone_is_urgent_with_leg_pain_emergency(forms: Forms) -> None:
    alone = screen(forms, ces_sexual_dysfunction="new_or_worsening")
    assert alone["rules"] == ["UR2"] and alone["triage"] == "urgent"
    both = screen(forms, ces_sexual_dysfunction="new_or_worsening", leg_pain_side="bilateral")
    assert both["triage"] == "emergency" and "EM2" in both["rules"] and "UR2" not in both["rules"]


def test_bilateral_sciatica_alone_is_urgent(forms: Forms) -> None:
    out = screen(forms, leg_pain_side="bilateral")
    assert out["rules"] == ["UR3"] and out["triage"] == "urgent"


def test_fever_alone_urgent_with_risk_factor_emergency(forms: Forms) -> None:
    assert screen(forms, fever_or_rigors=True)["rules"] == ["UR7"]
    out = screen(forms, fever_or_rigors=True, iv_drug_use=True)
    assert out["triage"] == "emergency" and out["rules"] == ["EM5", "UR7", "UR8"]
    assert screen(forms, iv_drug_use=True)["rules"] == ["UR8"]


@pytest.mark.parametrize(
    "flag",
    [
        "night_pain_non_mechanical",
        "immunosuppressed",
        "recent_infection_or_spinal_procedure",
        "osteoporosis",
        "long_term_steroids",
        "no_improvement_after_4_weeks",
    ],
)
def test_single_soft_flags_are_routine(forms: Forms, flag: str) -> None:
    out = screen(forms, **{flag: True})
    assert out["rules"] == ["RO1"] and out["triage"] == "routine"


def test_explained_weight_loss_is_not_a_flag(forms: Forms) -> None:
    assert screen(forms, weight_loss="explained")["triage"] == "self_care"


# --- threshold edges ------------------------------------------------------------------


@pytest.mark.parametrize(("age", "fires"), [(50, False), (51, True)])
def test_night_pain_over_50_edge(forms: Forms, age: int, fires: bool) -> None:
    out = screen(forms, night_pain_non_mechanical=True, age_years=age)
    assert ("UR10" in out["rules"]) is fires
    assert out["triage"] == ("urgent" if fires else "routine")


@pytest.mark.parametrize(("age", "fires"), [(70, False), (71, True)])
def test_minor_trauma_over_70_edge(forms: Forms, age: int, fires: bool) -> None:
    out = screen(forms, recent_trauma="minor", age_years=age)
    assert ("UR9" in out["rules"]) is fires
    assert out["triage"] == ("urgent" if fires else "self_care")


@pytest.mark.parametrize(
    ("duration", "onset", "count", "fires"),
    [
        (13, 44, 4, True),
        (12.5, 44, 4, False),  # under 13 weeks: the count is not even asked
        (13, 45, 4, False),  # started at 45: not "before 45"
        (13, 44, 3, False),  # three criteria: a clinician's HLA-B27 question, not RO3
        (52, 20, 9, True),
    ],
)
def test_inflammatory_back_pain_edges(
    forms: Forms, duration: float, onset: int, count: int, fires: bool
) -> None:
    changes: dict[str, Any] = {
        "age_years": 60,
        "symptom_duration_weeks": duration,
        "back_pain_onset_age": onset,
    }
    if duration >= 13 and onset < 45:
        changes["axspa_criteria_count"] = count
    out = screen(forms, **changes)
    assert ("RO3" in out["rules"]) is fires


@pytest.mark.parametrize(
    ("total", "psychosocial", "risk", "level"),
    [
        (3, 3, "low", "self_care"),
        (4, 3, "medium", "routine"),
        (4, 4, "high", "routine"),
        (9, 5, "high", "routine"),
        (0, 0, "low", "self_care"),
        (8, 4, "high", "routine"),
    ],
)
def test_startback_edges(
    forms: Forms, total: int, psychosocial: int, risk: str, level: str
) -> None:
    out = screen(forms, startback=startback(total, psychosocial))
    assert out["startback"] == {"total": total, "psychosocial": psychosocial, "risk": risk}
    assert out["triage"] == level


def test_startback_item9_scores_only_very_much_and_extremely(forms: Forms) -> None:
    items = {f"sb{i}": False for i in range(1, 9)}
    for answer, point in [
        ("not_at_all", 0),
        ("slightly", 0),
        ("moderately", 0),
        ("very_much", 1),
        ("extremely", 1),
    ]:
        out = screen(forms, startback={**items, "sb9": answer})
        assert out["startback"]["total"] == point
        assert out["startback"]["psychosocial"] == point


def test_questionnaires_never_lower_a_red_flag(forms: Forms) -> None:
    out = screen(forms, fever_or_rigors=True, startback=startback(0, 0))
    assert out["triage"] == "urgent"


def test_emergency_skips_questionnaires(forms: Forms) -> None:
    out = screen(forms, aaa_warning=True, startback=startback(9, 5))
    assert out["triage"] == "emergency"
    assert out["startback"] is None and "RO2" not in out["rules"]


def test_under_self_consent_age_is_ineligible(forms: Forms) -> None:
    assert forms.screen({"age_years": 15}).triage == "ineligible"
    assert screen(forms, age_years=16, back_pain_onset_age=16)["triage"] == "self_care"
    eighteen = load_forms(min_self_consent_age=18)
    assert eighteen.screen({**BENIGN, "age_years": 17}).triage == "ineligible"


def test_threshold_override_moves_the_edge_and_the_version(forms: Forms) -> None:
    custom = load_forms(thresholds={"night_pain_age": 55})
    assert custom.ruleset_version == "2026.11-1+night_pain_age=55"
    at55 = custom.screen({**BENIGN, "night_pain_non_mechanical": True, "age_years": 55})
    at56 = custom.screen({**BENIGN, "night_pain_non_mechanical": True, "age_years": 56})
    assert "UR10" not in at55.rule_ids and "UR10" in at56.rule_ids
    # the reason names the threshold in force
    reason = next(r for r in at56.rules if r.id == "UR10").reason["en"]
    assert "55" in reason
    assert custom.screen(BENIGN).ruleset_version == custom.ruleset_version
    assert load_forms(thresholds={"night_pain_age": 50}).ruleset_version == "2026.11-1"


def test_unknown_threshold_is_refused() -> None:
    from forms import DefinitionError

    with pytest.raises(DefinitionError, match="night_pain_years"):
        load_forms(thresholds={"night_pain_years": 50})


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"age": 40}, "age", 'did you mean "age_years"'),
        ({"ces_bladder_change": "yes"}, "ces_bladder_change", '"new_or_worsening"'),
        ({"age_years": 130}, "age_years", "from 0 to 120"),
        ({"age_years": 40.5}, "age_years", "whole number"),
        ({"foot_drop": "no"}, "foot_drop", "true or false"),
        ({"pain_nrs": 11}, "pain_nrs", "from 0 to 10"),
        ({"startback": {**BENIGN["startback"], "sb9": "a lot"}}, "startback.sb9", "very_much"),
        ({"startback": {"sb1": True}}, "startback.sb2", "missing"),
        ({"startback": [1, 2]}, "startback", "an object with sb1"),
        ({"leg_pain_side": None}, "leg_pain_side", "is missing"),
    ],
)
def test_bad_answers_name_the_field_and_what_is_allowed(
    forms: Forms, changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(AnswerError) as caught:
        forms.screen({**BENIGN, **changes})
    assert caught.value.field == field
    assert words in str(caught.value)


def test_missing_red_flag_field_is_refused_unless_the_screen_stopped(forms: Forms) -> None:
    partial = {k: v for k, v in BENIGN.items() if k != "aaa_warning"}
    with pytest.raises(AnswerError, match="aaa_warning: is missing"):
        forms.screen(partial)
    stopped = {"age_years": 60, "ces_saddle_numbness": "new_or_worsening"}
    assert forms.screen(stopped).triage == "emergency"


def test_optional_fields_may_be_null(forms: Forms) -> None:
    out = forms.screen({**BENIGN, "startback": None, "pain_nrs": None, "sbi": None})
    assert out.triage == "self_care" and out.startback is None


def test_sbi_total(forms: Forms) -> None:
    sbi = {"leg_pain": 6, "numbness": 5, "weakness": 0, "sitting": 3}
    out = forms.screen({**BENIGN, "leg_pain_side": "unilateral", "sbi": sbi})
    assert out.sbi_total == 14
