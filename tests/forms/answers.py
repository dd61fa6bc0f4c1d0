"""Answer sets for tests and benches: a benign baseline, and the flow answers that give a
canonical answer set."""

from __future__ import annotations

from typing import Any

STARTBACK_LOW: dict[str, Any] = {f"sb{i}": False for i in range(1, 9)} | {"sb9": "slightly"}

# Nobody could be more reassuring: no red flag, low STarT Back risk.
BENIGN: dict[str, Any] = {
    "age_years": 40,
    "symptom_duration_weeks": 3,
    "back_pain_onset_age": 40,
    "leg_pain_side": "none",
    "ces_saddle_numbness": "no",
    "ces_bladder_change": "no",
    "ces_bowel_change": "no",
    "ces_sexual_dysfunction": "no",
    "leg_weakness": "none",
    "foot_drop": False,
    "history_of_cancer": False,
    "weight_loss": "none",
    "night_pain_non_mechanical": False,
    "no_improvement_after_4_weeks": False,
    "fever_or_rigors": False,
    "iv_drug_use": False,
    "immunosuppressed": False,
    "recent_infection_or_spinal_procedure": False,
    "osteoporosis": False,
    "long_term_steroids": False,
    "aaa_warning": False,
    "recent_trauma": "none",
    "pain_nrs": 3,
    "startback": dict(STARTBACK_LOW),
}

CES_FIELDS = {
    "ces_saddle_numbness": "_ces_saddle",
    "ces_bladder_change": "_ces_bladder",
    "ces_bowel_change": "_ces_bowel",
    "ces_sexual_dysfunction": "_ces_sexual",
}
SBI_KEYS = {
    "leg_pain": "sbi_leg_pain",
    "numbness": "sbi_numbness",
    "weakness": "sbi_weakness",
    "sitting": "sbi_sitting",
}


def startback(total: int, psychosocial: int) -> dict[str, Any]:
    """Items giving exactly this total and psychosocial subscore (items 5-9)."""
    assert 0 <= psychosocial <= 5 and psychosocial <= total <= psychosocial + 4
    items: dict[str, Any] = {f"sb{i}": False for i in range(1, 9)}
    item9 = psychosocial >= 1
    for i in range(5, 5 + psychosocial - (1 if item9 else 0)):
        items[f"sb{i}"] = True
    for i in range(1, 1 + total - psychosocial):
        items[f"sb{i}"] = True
    items["sb9"] = "very_much" if item9 else "moderately"
    return items


def flow_answers(canonical: dict[str, Any], *, ces_stable_days: int = 30) -> dict[str, Any]:
    """What the volunteer keys in (by question id) to record ``canonical``."""
    out: dict[str, Any] = {
        "age_years": canonical["age_years"],
        "_capacity": True,
        "c1": True,
        "c2": True,
        "c3": False,
        "c4": False,
        "c5": False,
    }
    for field, helper in CES_FIELDS.items():
        value = canonical[field]
        out[helper] = {"no": "no", "new_or_worsening": "worsening"}.get(value, "stable")
        if value == "longstanding_stable":
            out[f"{helper}_days"] = ces_stable_days
    weight = canonical["weight_loss"]
    out["_weight_loss"] = weight != "none"
    if weight != "none":
        out["_weight_loss_reason"] = weight == "explained"
    for key, value in canonical.items():
        if key in CES_FIELDS or key == "weight_loss":
            continue
        if key == "startback" and value:
            out.update(value)
        elif key == "sbi" and value:
            out.update({SBI_KEYS[k]: v for k, v in value.items()})
        elif key not in ("startback", "sbi"):
            out[key] = value
    return out
