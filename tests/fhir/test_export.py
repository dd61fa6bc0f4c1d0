"""`popup-kit server export --fhir`: visits synced by a real kit to a real server come out
as FHIR R4 NDJSON that the official HL7 R4 JSON schema and the fhirclient R4 models
accept, with nothing personal and nothing the attendee did not agree to share."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema_rs
import pytest

from popup_kit.cli import main
from popup_kit.domain import Contact
from popup_kit.services import VisitService
from popup_kit.syncing import run_sync
from sync.server import worklist as wl
from sync.server.bookings import Bookings
from sync.server.store import iso
from tests.forms.answers import BENIGN, startback
from tests.kit.conftest import CONSENT_ALL, visit_input
from tests.kit.test_sync_kit import kit
from tests.sync.kpi_month import respond
from tests.sync.live_server import TickingClock, run_server

SCHEMA = Path(__file__).with_name("fhir.schema.json")
NAMES = ("Ana Ruiz", "Bea Soto", "Carla Diaz", "Dora Vega", "Elsa Mora", "Fina Gil", "Gina Paz")


@cache
def validator() -> Any:
    return jsonschema_rs.Draft6Validator(json.loads(SCHEMA.read_text("utf-8")))


def shared(name: str, **answers: Any) -> Any:
    phone = "+34 600 " + str(100000 + NAMES.index(name))
    return visit_input(
        answers={**BENIGN, **answers},
        consent=dict(CONSENT_ALL),
        contact=Contact(name, phone),
        language="es" if name == "Bea Soto" else "en",
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fhir")
    server_db = f"sqlite:///{tmp / 'server.sqlite3'}"
    # the centre's clock runs from now, after the kit's visits, as in use
    with run_server(server_db, clock=TickingClock(datetime.now(UTC))) as server:
        config = kit(tmp, "kit-a", server.url)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("POPUP_KIT_DATA_DIR", str(config.data_dir))
            token = server.store.create_enrollment(config.kit_id)
            assert main(["enroll", server.url, token, "--json"]) == 0
        service = VisitService(config)
        try:
            made = {
                "emergency": service.record_visit(
                    shared(
                        "Ana Ruiz",
                        ces_bowel_change="new_or_worsening",
                        startback=None,
                        pain_nrs=None,
                    )
                ),
                "urgent": service.record_visit(
                    shared(
                        "Bea Soto",
                        night_pain_non_mechanical=True,
                        age_years=51,
                        startback=startback(6, 4),
                    )
                ),
                "routine": service.record_visit(shared("Carla Diaz", osteoporosis=True)),
                "self_care": service.record_visit(
                    shared(
                        "Dora Vega",
                        leg_pain_side="unilateral",
                        leg_pain_nrs=7,
                        sbi={"leg_pain": 5, "numbness": 3, "weakness": 2, "sitting": 4},
                    )
                ),
                "self_care_quiet": service.record_visit(shared("Gina Paz")),
                "c2_refused": service.record_visit(visit_input()),
                "withdrawn": service.record_visit(shared("Elsa Mora")),
                "voided": service.record_visit(shared("Fina Gil")),
            }
            service.withdraw_consent(made["withdrawn"].visit_id, "CD")
            service.void_visit(made["voided"].visit_id, "entered twice", "CD")
            summary = run_sync(config, service.store)
            assert summary.still_unsent == 0 and not summary.set_aside, summary
            work = _centre_work(server.store, config.kit_id, {k: v.code for k, v in made.items()})
        finally:
            service.close()
    out = tmp / "export"
    server_toml = tmp / "server.toml"
    server_toml.write_text(f'database_url = "{server_db}"\n', "utf-8")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        args = ["server", "export", "--fhir", str(out), "--config", str(server_toml), "--json"]
        code = main(args)
    assert code == 0
    files = {p.stem: p.read_text("utf-8") for p in sorted(out.glob("*.ndjson"))}
    return {
        "work": work,
        "made": {k: v.code for k, v in made.items()},
        "counts": json.loads(printed.getvalue())["resources"],
        "files": files,
        "resources": {
            kind: [json.loads(line) for line in text.splitlines()] for kind, text in files.items()
        },
    }


def _centre_work(store: Any, kit_id: str, made: dict[str, str]) -> dict[str, Any]:
    """The centre's work on the referrals, through the real event log, booking and
    follow-up tables: the same for the withdrawn and C2-refused ones, which must not leave."""
    clock = store.clock
    t0 = clock()

    def log(code: str, kind: str, **data: Any) -> None:
        wl.record_event(store, kit_id, code, kind, "Dr Nadia Quill", data)

    emergency, urgent, routine = made["emergency"], made["urgent"], made["routine"]
    log(emergency, "attempt", result="no_answer", note="Rang Ana Ruiz on +34 600 100000")
    log(emergency, "attempt", result="reached")
    arranged = clock()
    log(
        emergency,
        "decision",
        decision="emergency_department",
        escalation_arranged_at=arranged,
        note="Ana Ruiz sent to A&E",
    )
    log(urgent, "attempt", result="no_answer")
    log(routine, "attempt", result="reached")
    log(routine, "decision", decision="physiotherapy")
    log(made["self_care"], "closure", reason="Dora Vega asked not to be called")
    bookings = Bookings(store.engine, clock=clock)
    slots = bookings.add_slots(
        t0 + timedelta(days=1), 20, 5, weeks=2, zone=ZoneInfo("Europe/Madrid")
    )
    latest = t0 + timedelta(days=30)
    for code in (urgent, made["withdrawn"], made["c2_refused"]):
        assert bookings.hold(kit_id, code, slots[0].slot_id, latest) == "held"
        assert bookings.confirm(kit_id, code, None)
    assert bookings.hold(kit_id, routine, slots[1].slot_id, latest) == "held"
    assert bookings.confirm(kit_id, routine, None)
    assert bookings.cancel(kit_id, routine)
    submitted = t0 + timedelta(days=12)
    for code in (routine, made["withdrawn"], made["c2_refused"]):
        respond(store, kit_id, code, submitted - timedelta(hours=2), back=6, leg=4, superseded=True)
        respond(store, kit_id, code, submitted, back=3, leg=2)
    for code in (made["withdrawn"], made["c2_refused"]):
        log(code, "attempt", result="reached")
        log(code, "decision", decision="specialist", escalation_arranged_at=clock())
    return {
        "arranged": iso(arranged),
        "slots": [(iso(s.starts_at), s.minutes) for s in slots[:2]],
        "submitted": iso(submitted),
    }


def test_every_resource_validates_against_the_hl7_r4_schema(exported: dict[str, Any]) -> None:
    checked = 0
    for kind, resources in exported["resources"].items():
        for resource in resources:
            assert resource["resourceType"] == kind
            errors = [e.message for e in validator().iter_errors(resource)]
            assert errors == [], (kind, resource["id"], errors[:3])
            checked += 1
    assert checked == sum(exported["counts"].values()) > 20


def test_the_schema_check_can_fail() -> None:
    bad = {"resourceType": "Observation", "status": "finished", "code": {"text": 7}}
    assert list(validator().iter_errors(bad))


def test_every_resource_loads_in_the_fhirclient_r4_models(exported: dict[str, Any]) -> None:
    import importlib

    for kind, resources in exported["resources"].items():
        module = importlib.import_module(f"fhirclient.models.{kind.lower()}")
        model = getattr(module, kind)
        for resource in resources:
            assert model(resource, strict=True).as_json()["resourceType"] == kind


def test_required_elements_the_schema_does_not_enforce(exported: dict[str, Any]) -> None:
    r = exported["resources"]
    assert all(q["status"] in {"completed", "stopped"} for q in r["QuestionnaireResponse"])
    assert all(o["status"] == "final" for o in r["Observation"])
    for request in r["ServiceRequest"]:
        assert request["status"] and request["intent"] and request["subject"]["reference"]
    assert len(r["Task"]) == 4 and len(r["Appointment"]) == 2
    for task in r["Task"]:
        assert task["status"] in {"requested", "in-progress", "completed", "cancelled"}
        assert task["intent"] == "order" and task["for"]["reference"].startswith("Patient/")
    for appointment in r["Appointment"]:
        assert appointment["status"] in {"booked", "cancelled"}
        assert [p["actor"]["reference"] for p in appointment["participant"]]
        assert all(p["status"] for p in appointment["participant"])


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [ref for v in value.values() for ref in _references(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _references(v)]
    return []


def test_every_reference_resolves_within_the_export(exported: dict[str, Any]) -> None:
    present = {f"{kind}/{res['id']}" for kind, rs in exported["resources"].items() for res in rs}
    assert len(present) == sum(exported["counts"].values())  # ids are unique
    pointed = {ref for rs in exported["resources"].values() for ref in _references(rs)}
    assert pointed - present == set()
    # every kind of link the work resources carry is there to be checked
    kinds = {ref.split("/")[0] for ref in pointed}
    assert {"Patient", "ServiceRequest", "QuestionnaireResponse", "Observation"} <= kinds


def test_the_reference_check_can_fail() -> None:
    task = {"focus": {"reference": "S/x"}, "output": [{"valueReference": {"reference": "A/b"}}]}
    assert set(_references(task)) == {"S/x", "A/b"}


def test_tasks_follow_the_worklist_state(exported: dict[str, Any]) -> None:
    made, r = exported["made"], exported["resources"]
    tasks = {t["identifier"][0]["value"]: t for t in r["Task"]}
    # self-care with no call-back asked for and nothing done owes no call: no Task
    assert set(tasks) == {made[k] for k in ("emergency", "urgent", "routine", "self_care")}
    e, u, ro, s = (tasks[made[k]] for k in ("emergency", "urgent", "routine", "self_care"))
    assert (e["status"], e["businessStatus"]["coding"][0]["code"]) == ("completed", "decided")
    assert (u["status"], u["businessStatus"]["coding"][0]["code"]) == ("in-progress", "attempting")
    assert (ro["status"], ro["businessStatus"]["coding"][0]["code"]) == ("completed", "decided")
    assert (s["status"], s["businessStatus"]["coding"][0]["code"]) == ("cancelled", "closed")
    assert e["focus"] == {"reference": f"ServiceRequest/{made['emergency']}-referral"}
    assert "focus" not in s  # self-care has no ServiceRequest
    requests = {q["id"]: q["status"] for q in r["ServiceRequest"]}
    assert requests[f"{made['emergency']}-referral"] == "completed"
    assert requests[f"{made['routine']}-referral"] == "completed"
    assert requests[f"{made['urgent']}-referral"] == "active"
    codes = [o["type"]["coding"][0]["code"] for o in e["output"]]
    assert codes == [
        "contact-attempt-no_answer",
        "contact-attempt-reached",
        "triage-decision",
        "escalation",
    ]
    first, reached = (o["valueDateTime"] for o in e["output"][:2])
    assert first < reached <= e["lastModified"] and e["authoredOn"] <= first
    assert e["executionPeriod"]["start"] == first and e["executionPeriod"]["end"] >= reached
    decision = e["output"][2]["valueCodeableConcept"]["coding"][0]["code"]
    assert decision == "decision-emergency_department"
    assert ro["output"][-1]["valueCodeableConcept"]["coding"][0]["code"] == "decision-physiotherapy"
    assert "end" not in u["executionPeriod"] and "output" not in s


def test_the_escalation_is_a_service_request_authored_when_it_was_arranged(
    exported: dict[str, Any],
) -> None:
    made, r = exported["made"], exported["resources"]
    requests = {q["id"]: q for q in r["ServiceRequest"]}
    escalation = requests[f"{made['emergency']}-escalation-1"]
    assert escalation["authoredOn"] == exported["work"]["arranged"]
    assert escalation["code"]["coding"][0]["code"] == "escalation-emergency_department"
    assert escalation["basedOn"] == [{"reference": f"ServiceRequest/{made['emergency']}-referral"}]
    assert escalation["subject"] == {"reference": f"Patient/{made['emergency']}"}
    # a conservative decision orders nothing further
    assert [q for q in requests if "escalation" in q] == [escalation["id"]]


def test_appointments_for_the_bookings(exported: dict[str, Any]) -> None:
    made, r = exported["made"], exported["resources"]
    by_patient = {a["participant"][0]["actor"]["reference"]: a for a in r["Appointment"]}
    assert set(by_patient) == {f"Patient/{made['urgent']}", f"Patient/{made['routine']}"}
    (first_start, minutes), (second_start, _) = exported["work"]["slots"]
    booked = by_patient[f"Patient/{made['urgent']}"]
    assert booked["status"] == "booked"
    assert booked["start"] == first_start and booked["start"].endswith("Z")
    assert booked["minutesDuration"] == minutes == 20
    assert booked["end"] == iso(parse(first_start) + timedelta(minutes=20))
    assert booked["basedOn"] == [{"reference": f"ServiceRequest/{made['urgent']}-referral"}]
    cancelled = by_patient[f"Patient/{made['routine']}"]
    assert (cancelled["status"], cancelled["start"]) == ("cancelled", second_start)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_follow_up_responses_and_their_pain_observations(exported: dict[str, Any]) -> None:
    made, r = exported["made"], exported["resources"]
    ro, submitted = made["routine"], exported["work"]["submitted"]
    followups = [q for q in r["QuestionnaireResponse"] if "-followup-" in q["id"]]
    assert [q["id"] for q in followups] == [f"{ro}-followup-w2"]  # the current one only
    qr = followups[0]
    assert qr["authored"] == submitted and qr["status"] == "completed"
    assert qr["questionnaire"].endswith("/followup-w2")
    answers = {i["linkId"]: i["answer"][0] for i in qr["item"]}
    assert answers["pain_nrs"] == {"valueInteger": 3}
    assert answers["leg_pain_nrs"] == {"valueInteger": 2}
    assert answers["global_change"]["valueCoding"]["code"] == "no_change"
    obs = {o["id"]: o for o in r["Observation"] if "-followup-" in o["id"]}
    assert set(obs) == {f"{ro}-followup-w2-pain-nrs-back", f"{ro}-followup-w2-pain-nrs-leg"}
    back = obs[f"{ro}-followup-w2-pain-nrs-back"]
    assert back["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "72514-3",
        "display": "Pain severity 0-10 verbal numeric rating [Score] - Reported",
    }
    assert back["valueInteger"] == 3 and back["effectiveDateTime"] == submitted
    assert back["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]


def test_only_shared_referrals_leave_and_nothing_personal(exported: dict[str, Any]) -> None:
    made, everything = exported["made"], "".join(exported["files"].values())
    for kept in ("emergency", "urgent", "routine", "self_care", "self_care_quiet"):
        assert made[kept] in everything
    for dropped in ("c2_refused", "withdrawn", "voided"):
        assert made[dropped] not in everything, dropped
    for name in NAMES:
        assert name not in everything
    assert "+34 600" not in everything and '"age_years"' not in everything
    assert "Quill" not in everything and "A&E" not in everything  # clinicians' free text
    patients = {p["identifier"][0]["value"]: p for p in exported["resources"]["Patient"]}
    kept = ("emergency", "urgent", "routine", "self_care", "self_care_quiet")
    assert set(patients) == {made[k] for k in kept}
    assert all(
        "telecom" not in p and "name" not in p and "birthDate" not in p for p in patients.values()
    )
    urgent = patients[made["urgent"]]
    assert urgent["extension"][0]["valueString"] == "50-59"
    assert urgent["communication"][0]["language"]["coding"][0]["code"] == "es"


def test_priorities_and_codes(exported: dict[str, Any]) -> None:
    made, r = exported["made"], exported["resources"]
    referrals = [s for s in r["ServiceRequest"] if s["id"].endswith("-referral")]
    priority = {s["identifier"][0]["value"]: s["priority"] for s in referrals}
    assert priority == {
        made["emergency"]: "stat",
        made["urgent"]: "asap",
        made["routine"]: "routine",
    }
    notes = {s["identifier"][0]["value"]: s["note"][0]["text"] for s in referrals}
    assert "rules EM1" in notes[made["emergency"]]
    by_id = {o["id"]: o for o in r["Observation"]}

    def coded(oid: str) -> tuple[str, str]:
        coding = by_id[oid]["code"]["coding"][0]
        return coding["system"], coding["code"]

    u = made["urgent"]
    assert coded(f"{u}-intake-startback") == ("http://loinc.org", "91349-1")
    panel = by_id[f"{u}-intake-startback"]
    items = [c["code"]["coding"][0]["code"] for c in panel["component"]]
    assert items == [
        "91340-0", "91341-8", "91342-6", "91343-4", "91344-2",
        "91345-9", "91346-7", "91347-5", "91348-3",
    ]  # fmt: skip
    assert by_id[f"{u}-intake-startback-total"]["valueInteger"] == 6
    assert coded(f"{u}-intake-startback-distress") == ("http://loinc.org", "91350-9")
    assert by_id[f"{u}-intake-startback-distress"]["valueInteger"] == 4
    risk = by_id[f"{u}-intake-startback-risk"]["valueCodeableConcept"]["coding"][0]["code"]
    assert risk == "LA9193-9"  # high
    s = made["self_care"]
    assert coded(f"{s}-intake-pain-nrs-leg") == ("http://loinc.org", "72514-3")
    assert by_id[f"{s}-intake-pain-nrs-leg"]["valueInteger"] == 7
    assert by_id[f"{s}-intake-sbi"]["valueInteger"] == 14
    assert coded(f"{s}-intake-sbi")[0].startswith("urn:popup-kit")
    screens = {q["id"]: q for q in r["QuestionnaireResponse"]}
    assert screens[f"{made['emergency']}-intake-red-flag-screen"]["status"] == "stopped"
    consent = {c["patient"]["reference"]: c for c in r["Consent"]}[f"Patient/{u}"]
    assert [p["type"] for p in consent["provision"]["provision"]] == ["permit"] * 5
    assert "sha256:" in consent["sourceAttachment"]["url"]


def test_export_refuses_a_bad_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(f'database_url = "sqlite:///{tmp_path / "server.sqlite3"}"\n')
    args = ["server", "export", "--fhir", str(tmp_path / "out"), "--config", str(server_toml)]
    assert main([*args, "--from", "2026-13-01"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert main([*args, "--from", "2026-12-05", "--to", "2026-12-01"]) == 2
    assert not (tmp_path / "out").exists()


def test_resource_ids_keep_to_the_fhir_id_alphabet() -> None:
    from sync.server.fhir import fhir_id

    assert fhir_id("AB-é_1", "x.y") == "AB---1-x.y"
    assert fhir_id("A" * 70) == "A" * 64


def test_a_closed_referral_revokes_its_request_and_cancels_its_task() -> None:
    from sync.server.fhir import SharedReferral, resources

    at = parse("2026-11-30T10:00:00.000000Z")
    ref = SharedReferral(
        code="AB12-CD34",
        kit_id="kit-a",
        visit_id="v1",
        visit_created_at="2026-11-30T09:00:00.000000Z",
        language="en",
        answers={"pain_nrs": 5},
        outcome={"triage": "routine", "rules": ["RO1"]},
        consent={"c1": True, "c2": True},
        consent_at="2026-11-30T09:00:00.000000Z",
        consent_text_version="1",
        consent_text_hash="0" * 64,
        events=(
            wl.Event("attempt", at, at, "CD", {"result": "wrong_number", "note": ""}),
            wl.Event("closure", at, at, "CD", {"reason": "number unusable", "note": ""}),
        ),
    )
    made = resources(ref)
    assert [q["status"] for q in made["ServiceRequest"]] == ["revoked"]
    (task,) = made["Task"]
    assert task["status"] == "cancelled" and task["businessStatus"]["coding"][0]["code"] == "closed"
    assert task["executionPeriod"] == {"start": iso(at), "end": iso(at)}
    assert "number unusable" not in json.dumps(made)  # free text stays at the centre
    errors = [e.message for kind in made.values() for r in kind for e in validator().iter_errors(r)]
    assert errors == []
