"""`popup-kit server export --fhir`: visits synced by a real kit to a real server come out
as FHIR R4 NDJSON that the official HL7 R4 JSON schema and the fhirclient R4 models
accept, with nothing personal and nothing the attendee did not agree to share."""

from __future__ import annotations

import contextlib
import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from popup_kit.cli import main
from popup_kit.domain import Contact
from popup_kit.services import VisitService
from popup_kit.syncing import run_sync
from tests.forms.answers import BENIGN, startback
from tests.kit.conftest import CONSENT_ALL, visit_input
from tests.kit.test_sync_kit import kit
from tests.sync.live_server import run_server

SCHEMA = Path(__file__).with_name("fhir.schema.json")
NAMES = ("Ana Ruiz", "Bea Soto", "Carla Diaz", "Dora Vega", "Elsa Mora", "Fina Gil")


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
    with run_server(server_db) as server:
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
                "c2_refused": service.record_visit(visit_input()),
                "withdrawn": service.record_visit(shared("Elsa Mora")),
                "voided": service.record_visit(shared("Fina Gil")),
            }
            service.withdraw_consent(made["withdrawn"].visit_id, "CD")
            service.void_visit(made["voided"].visit_id, "entered twice", "CD")
            summary = run_sync(config, service.store)
            assert summary.still_unsent == 0 and not summary.set_aside, summary
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
        "made": {k: v.code for k, v in made.items()},
        "counts": json.loads(printed.getvalue())["resources"],
        "files": files,
        "resources": {
            kind: [json.loads(line) for line in text.splitlines()] for kind, text in files.items()
        },
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


def test_only_shared_referrals_leave_and_nothing_personal(exported: dict[str, Any]) -> None:
    made, everything = exported["made"], "".join(exported["files"].values())
    for kept in ("emergency", "urgent", "routine", "self_care"):
        assert made[kept] in everything
    for dropped in ("c2_refused", "withdrawn", "voided"):
        assert made[dropped] not in everything, dropped
    for name in NAMES:
        assert name not in everything
    assert "+34 600" not in everything and '"age_years"' not in everything
    patients = {p["identifier"][0]["value"]: p for p in exported["resources"]["Patient"]}
    assert set(patients) == {made[k] for k in ("emergency", "urgent", "routine", "self_care")}
    assert all(
        "telecom" not in p and "name" not in p and "birthDate" not in p for p in patients.values()
    )
    urgent = patients[made["urgent"]]
    assert urgent["extension"][0]["valueString"] == "50-59"
    assert urgent["communication"][0]["language"]["coding"][0]["code"] == "es"


def test_priorities_and_codes(exported: dict[str, Any]) -> None:
    made, r = exported["made"], exported["resources"]
    priority = {s["identifier"][0]["value"]: s["priority"] for s in r["ServiceRequest"]}
    assert priority == {
        made["emergency"]: "stat",
        made["urgent"]: "asap",
        made["routine"]: "routine",
    }
    notes = {s["identifier"][0]["value"]: s["note"][0]["text"] for s in r["ServiceRequest"]}
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
