"""Recording, correcting, voiding and finding visits on a real SQLite file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from forms import AnswerError
from popup_kit.domain import Contact, VisitRefused
from popup_kit.services import VisitService
from popup_kit.store import VersionConflict
from sync.records import content_hash
from tests.forms.answers import BENIGN
from tests.kit.conftest import CONSENT_ALL, CONSENT_MIN, visit_input, with_contact


def outbox(service: VisitService) -> list[dict[str, Any]]:
    with service.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM outbox ORDER BY id")).mappings().all()
    return [dict(r) for r in rows]


def test_visit_is_stored_whole_with_consent_outbox_and_audit(service: VisitService) -> None:
    saved = service.record_visit(with_contact())
    assert saved.triage == "self_care" and saved.version == 1
    assert saved.contact == Contact("Ana Ruiz", "+34 600 111 222")
    assert saved.consent == CONSENT_ALL
    again = service.find_by_code(saved.code)
    assert again is not None and again.visit_id == saved.visit_id
    rows = outbox(service)
    assert [r["record_type"] for r in rows] == ["visit", "consent"]
    for row in rows:
        payload = json.loads(row["payload"])
        assert content_hash(payload) == row["content_hash"] and row["state"] == "pending"
    visit_body = json.loads(rows[0]["payload"])["body"]
    assert visit_body["referral_code"] == saved.code
    assert visit_body["contact"] == {"name": "Ana Ruiz", "phone": "+34 600 111 222"}
    assert visit_body["outcome"]["triage"] == "self_care"
    consent_body = json.loads(rows[1]["payload"])["body"]
    assert consent_body["items"] == CONSENT_ALL
    document = service.forms.consent_document("en")
    assert consent_body["text_hash"] == document.sha256
    assert consent_body["text_version"] == document.version
    assert [a["action"] for a in service.store.audit(saved.visit_id)] == ["visit_saved"]


def test_code_is_forgiving_and_unique(service: VisitService) -> None:
    codes = {service.record_visit(visit_input()).code for _ in range(20)}
    assert len(codes) == 20
    code = next(iter(codes))
    typed = code.lower().replace("-", "").replace("0", "o").replace("1", "l")
    found = service.find_by_code(typed)
    assert found is not None and found.code == code
    assert service.find_by_code("not a code") is None


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"consent": {**CONSENT_MIN, "c1": False}}, "C1"),
        ({"contact": Contact("Ana", "600111222")}, "C3"),
        ({"consent": {"c1": True}}, "consent.c2"),
        ({"consent": {**CONSENT_MIN, "c6": True}}, "c6"),
        ({"language": "fr"}, "language 'fr'"),
        ({"volunteer": "  "}, "volunteer"),
        ({"consent": dict(CONSENT_ALL), "contact": Contact("Ana", "12")}, "6 digits"),
        ({"answers": {**BENIGN, "age_years": 15}}, "self-consent age"),
    ],
)
def test_refused_visits_store_nothing(
    service: VisitService, changes: dict[str, Any], words: str
) -> None:
    with pytest.raises(VisitRefused, match=words):
        service.record_visit(visit_input(**changes))
    assert service.list_visits() == [] and outbox(service) == []


def test_bad_answers_store_nothing(service: VisitService) -> None:
    with pytest.raises(AnswerError, match="pain_nrs"):
        service.record_visit(visit_input(answers={**BENIGN, "pain_nrs": 12}))
    assert outbox(service) == []


def test_emergency_visit_may_stop_early(service: VisitService) -> None:
    saved = service.record_visit(
        visit_input(answers={"age_years": 61, "ces_saddle_numbness": "new_or_worsening"})
    )
    assert saved.triage == "emergency" and saved.rule_ids == ["EM1"]
    assert saved.rules[0].reason_in("es").startswith("Adormecimiento")


def test_correction_is_a_new_version_never_an_edit(service: VisitService) -> None:
    first = service.record_visit(with_contact())
    fixed = service.correct_visit(
        first.visit_id,
        {**BENIGN, "night_pain_non_mechanical": True, "age_years": 60},
        "CD",
        first.contact,
    )
    assert fixed.version == 2 and fixed.triage == "urgent" and fixed.rule_ids == ["UR10", "RO1"]
    assert fixed.code == first.code and fixed.contact == first.contact
    assert [h.triage for h in fixed.history] == ["self_care", "urgent"]
    rows = outbox(service)
    bodies = [json.loads(r["payload"])["body"] for r in rows if r["record_type"] == "visit"]
    assert [b["version"] for b in bodies] == [1, 2]
    assert bodies[1]["supersedes"] == first.record_id
    assert bodies[0]["answers"]["age_years"] == 40  # the first version is untouched
    audit = service.store.audit(first.visit_id)
    assert audit[-1]["action"] == "visit_corrected" and audit[-1]["actor"] == "CD"
    assert "age_years" in audit[-1]["detail"]


def test_void_keeps_the_record_and_its_reason(service: VisitService) -> None:
    first = service.record_visit(visit_input())
    void = service.void_visit(first.visit_id, "entered twice", "CD")
    assert void.voided and void.void_reason == "entered twice" and void.version == 2
    assert void.answers == first.answers and void.triage == first.triage
    with pytest.raises(VisitRefused, match="already void"):
        service.void_visit(first.visit_id, "again", "CD")
    with pytest.raises(VisitRefused, match="void"):
        service.correct_visit(first.visit_id, BENIGN, "CD")
    with pytest.raises(VisitRefused, match="reason"):
        service.void_visit(service.record_visit(visit_input()).visit_id, " ", "CD")
    counts = service.counts_for_day(first.created_at.astimezone().date())
    assert counts == {"void": 1, "self_care": 1}


def test_concurrent_correction_is_refused_not_lost(service: VisitService) -> None:
    from popup_kit.store.tables import VisitVersionRow

    first = service.record_visit(visit_input())
    row = VisitVersionRow(
        record_id="r-stale",
        visit_id=first.visit_id,
        version=3,  # skips version 2: somebody else's version 2 came first
        created_at="2026-11-22T18:30:00.000000Z",
        volunteer="XX",
        language="en",
        status="active",
        answers="{}",
        outcome="{}",
        triage="self_care",
        forms_version="x",
    )
    with pytest.raises(VersionConflict):
        service.store.add_version(
            row,
            {"record_id": "r-stale", "record_type": "visit", "body": {}},
            action="visit_corrected",
            detail={},
        )
    assert service.get_visit(first.visit_id).version == 1  # type: ignore[union-attr]


def test_contact_only_with_c3_on_correction(service: VisitService) -> None:
    first = service.record_visit(visit_input())
    with pytest.raises(VisitRefused, match="C3"):
        service.correct_visit(first.visit_id, BENIGN, "CD", Contact("Ana", "600111222"))


def test_counts_tallies_and_unsent(service: VisitService) -> None:
    service.record_visit(visit_input())
    service.record_visit(visit_input(answers={**BENIGN, "aaa_warning": True}))
    service.record_tally("consent_refused", "AB")
    service.record_tally("ineligible", "AB")
    day = service.clock().astimezone().date()
    assert service.counts_for_day(day) == {
        "self_care": 1,
        "emergency": 1,
        "consent_refused": 1,
        "ineligible": 1,
    }
    unsent = service.unsent()
    assert unsent.count == 4 and unsent.oldest is not None
    assert service.consent_counts_for_day(day) == {"c1": 2, "c2": 0, "c3": 0, "c4": 0, "c5": 0}


def test_list_and_search(service: VisitService) -> None:
    a = service.record_visit(visit_input(volunteer="Maria"))
    b = service.record_visit(visit_input(answers={**BENIGN, "fever_or_rigors": True}))
    assert [v.code for v in service.list_visits()] == [b.code, a.code]
    assert [v.code for v in service.list_visits(search="maria")] == [a.code]
    assert [v.code for v in service.list_visits(search="urgent")] == [b.code]
    assert [v.code for v in service.list_visits(search=a.code[6:11].lower())] == [a.code]


def test_drafts_round_trip_and_go_with_the_visit(service: VisitService) -> None:
    service.save_draft("d1", "AB", "es", {"answers": {"age_years": 40}})
    service.save_draft("d1", "AB", "es", {"answers": {"age_years": 41}})
    drafts = service.load_drafts()
    assert len(drafts) == 1 and drafts[0].state == {"answers": {"age_years": 41}}
    service.record_visit(visit_input(), draft_id="d1")
    assert service.load_drafts() == []


def test_withdrawal_travels_and_removes_contact_here(service: VisitService) -> None:
    first = service.record_visit(with_contact())
    after = service.withdraw_consent(first.visit_id, "CD")
    assert after.consent == {f"c{i}": False for i in range(1, 6)}
    assert after.contact is None and after.purged
    rows = outbox(service)
    assert [r["record_type"] for r in rows] == ["visit", "consent", "consent"]
    body = json.loads(rows[-1]["payload"])["body"]
    assert body["kind"] == "withdrawal" and body["visit_id"] == first.visit_id
    assert not any(body["items"].values())
    with pytest.raises(VisitRefused, match="already withdrawn"):
        service.withdraw_consent(first.visit_id, "CD")
    actions = [a["action"] for a in service.store.audit(first.visit_id)]
    assert actions == ["visit_saved", "consent_withdrawal", "contact_removed"]
