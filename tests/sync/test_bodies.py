"""The typed record bodies on their own: shapes, refusals in words, the v1 upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from sync import bodies
from sync import protocol as p

BOOTH = bodies.Booth(name="Booth", event="Market", emergency_number="112")
ANSWERS: dict[str, Any] = {
    "age_years": 63,
    "back_pain_onset_age": 60,
    "leg_pain_side": "bilateral",
    "pain_nrs": 7,
    "foot_drop": False,
    "startback": {"sb1": True, "sb9": "slightly"},
}


def _body(consent: dict[str, bool], contact: bodies.Contact | None = None) -> dict[str, Any]:
    return bodies.visit_body(
        visit_id="v-1",
        version=1,
        supersedes=None,
        status="active",
        void_reason=None,
        referral_code="AAAA-BBBB-CCCC",
        visit_created_at="2026-11-22T17:20:00.000000Z",
        created_at="2026-11-22T17:20:00.000000Z",
        volunteer="AB",
        language="en",
        answers=dict(ANSWERS),
        outcome={"triage": "urgent", "rules": ["UR3"], "ruleset_version": "r1"},
        forms_version="f1",
        booth=BOOTH,
        consent=consent,
        contact=contact,
    )


@pytest.mark.parametrize(
    ("age", "band"),
    [(16, "16-19"), (19, "16-19"), (20, "20-29"), (63, "60-69"), (79, "70-79"), (80, "80+")],
)
def test_age_bands(age: int, band: str) -> None:
    assert bodies.age_band(age) == band


def test_shapes_follow_consent() -> None:
    contact = bodies.Contact(name="N", phone="+1 555 0100")
    full = _body({"c2": True, "c3": True, "c4": False}, contact)
    assert full["sharing"] == "referral" and full["contact"] == {
        "name": "N",
        "phone": "+1 555 0100",
    }
    no_c3 = _body({"c2": True, "c3": False, "c4": True}, contact)
    assert no_c3["contact"] is None and no_c3["answers"] == ANSWERS
    counts = _body({"c2": False, "c3": True, "c4": False}, contact)
    assert set(counts) == {
        "sharing", "visit_id", "version", "supersedes", "status", "referral_code",
        "booth", "consent", "level", "day", "evaluation",
    }  # fmt: skip
    assert counts["level"] == "urgent" and counts["day"] == "2026-11-22"
    assert counts["evaluation"] is None
    evaluation = _body({"c2": False, "c3": False, "c4": True})["evaluation"]
    assert evaluation["age_band"] == "60-69"
    assert evaluation["answers"] == {
        k: v for k, v in ANSWERS.items() if k not in ("age_years", "back_pain_onset_age")
    }
    for body in (full, no_c3, counts):
        bodies.check_body("visit", 2, body)


def test_refusals_name_the_field() -> None:
    body = _body({"c2": True, "c3": True, "c4": False})
    cases = {
        "outcome.triage": {**body, "outcome": {**body["outcome"], "triage": "banana"}},
        "version": {**body, "version": True},
        "sharing": {**body, "sharing": None},
        "language": {**body, "language": "<script>"},
    }
    for word, bad in cases.items():
        with pytest.raises(bodies.BodyError, match=word.replace(".", r"\.")):
            bodies.check_body("visit", 2, bad)
    with pytest.raises(bodies.BodyError, match="schema version 9"):
        bodies.check_body("visit", 9, body)
    with pytest.raises(bodies.BodyError, match="visit_id"):
        bodies.check_body("consent_withdrawal", 1, {})


def test_v1_upgrade_and_the_counts_cut() -> None:
    old = {"visit_id": "v", "answers": {"pain_nrs": 3}, "outcome": {"triage": "routine"}}
    bodies.check_body("visit", 1, {**old, "anything": "else"})  # lenient: extras allowed
    up = p.upgrade_body("visit", 1, old)
    assert up["sharing"] == "referral" and up["legacy"] is True
    cut = bodies.counts_from({**up, "contact": {"name": "N"}}, recorded="2026-01-05T09:00:00Z")
    assert cut == {
        "sharing": "counts",
        "visit_id": "v",
        "version": None,
        "supersedes": None,
        "status": None,
        "referral_code": None,
        "level": "routine",
        "day": "2026-01-05",
        "legacy": True,
    }
