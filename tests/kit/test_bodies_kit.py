"""What the kit puts in its outbox is what consent allows, read from the real store; and a
body the server refuses is set aside with the server's reason, shown by sync and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from popup_kit.config import KitConfig, load_config
from popup_kit.domain import Contact
from popup_kit.services import VisitService
from popup_kit.slips import visit_url
from sync import bodies
from sync.records import canonical_json, content_hash
from tests.forms.answers import BENIGN
from tests.kit.conftest import CONSENT_ALL, visit_input
from tests.kit.test_sync_kit import enroll, main_in
from tests.sync.live_server import run_server

NAME, PHONE = "Quentin Marsh", "+34 600 987 654"
ANSWER_KEYS = ("leg_pain_side", "ces_saddle_numbness", "age_years", "startback")


def payloads(service: VisitService) -> list[tuple[str, str]]:
    """(record type, payload text) of every outbox row, as stored."""
    with service.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT record_type, payload FROM outbox ORDER BY id")).all()
    return [(str(t), str(p)) for t, p in rows]


def _visit_payload(service: VisitService) -> tuple[str, dict[str, Any]]:
    raw = [p for t, p in payloads(service) if t == "visit"][-1]
    return raw, json.loads(raw)


def test_c2_refused_visit_leaves_the_kit_without_answers_or_contact(
    service: VisitService,
) -> None:
    consent = {**CONSENT_ALL, "c2": False, "c4": False}
    saved = service.record_visit(
        visit_input(consent=consent, contact=Contact(NAME, PHONE), answers=dict(BENIGN))
    )
    assert saved.contact == Contact(NAME, PHONE)  # kept here, for the booth's own follow-up
    raw, record = _visit_payload(service)
    for private in (NAME, PHONE, *ANSWER_KEYS, "volunteer", "AB"):
        assert private not in raw, private
    body = record["body"]
    assert body["sharing"] == "counts" and body["level"] == saved.triage
    assert body["referral_code"] == saved.code and body["day"] == raw.split('"day":"')[1][:10]
    assert body["consent"] == {"c2": False, "c3": True, "c4": False}
    assert body["evaluation"] is None
    assert record["schema_version"] == 2
    bodies.check_body("visit", 2, body)
    # A correction keeps the shape.
    service.correct_visit(saved.visit_id, {**BENIGN, "osteoporosis": True}, "CD", saved.contact)
    raw, record = _visit_payload(service)
    assert record["body"]["version"] == 2 and record["body"]["sharing"] == "counts"
    assert NAME not in raw and "osteoporosis" not in raw


def test_c4_without_c2_sends_a_deidentified_record(service: VisitService) -> None:
    consent = {**CONSENT_ALL, "c2": False, "c3": False}
    saved = service.record_visit(visit_input(consent=consent, answers={**BENIGN, "age_years": 47}))
    raw, record = _visit_payload(service)
    evaluation = record["body"]["evaluation"]
    assert evaluation["age_band"] == "40-49"
    assert "age_years" not in evaluation["answers"]
    assert "back_pain_onset_age" not in evaluation["answers"]
    assert evaluation["answers"]["leg_pain_side"] == BENIGN["leg_pain_side"]
    assert '"47"' not in raw and ":47" not in raw and saved.code in raw
    bodies.check_body("visit", 2, record["body"])


def test_c2_granted_sends_the_referral_and_contact_only_with_c3(
    service: VisitService, config: KitConfig
) -> None:
    service.record_visit(visit_input(consent=dict(CONSENT_ALL), contact=Contact(NAME, PHONE)))
    _raw, record = _visit_payload(service)
    body = record["body"]
    assert body["sharing"] == "referral" and body["contact"] == {"name": NAME, "phone": PHONE}
    assert body["answers"]["leg_pain_side"] == BENIGN["leg_pain_side"]
    assert body["booth"] == {
        "name": config.booth_name_in("en"),
        "event": config.event_in("en"),
        "emergency_number": config.emergency_number,
    }
    bodies.check_body("visit", 2, body)
    service.record_visit(visit_input(consent={**CONSENT_ALL, "c3": False}))
    _raw, record = _visit_payload(service)
    assert record["body"]["sharing"] == "referral" and record["body"]["contact"] is None
    consent_raw = [p for t, p in payloads(service) if t == "consent"][-1]
    bodies.check_body("consent", 2, json.loads(consent_raw)["body"])


def test_withdrawn_visit_rebuilt_in_the_outbox_is_still_a_valid_body(
    service: VisitService,
) -> None:
    saved = service.record_visit(
        visit_input(consent=dict(CONSENT_ALL), contact=Contact(NAME, PHONE))
    )
    service.withdraw_consent(saved.visit_id, "AB")
    for record_type, raw in payloads(service):
        assert NAME not in raw
        bodies.check_body(record_type, 2, json.loads(raw)["body"])


def _kit(tmp_path: Path, server_url: str) -> KitConfig:
    kit_toml = tmp_path / "kit.toml"
    kit_toml.write_text(
        '[booth]\nname = "Harbour booth"\nemergency_number = "061 555 0100"\n'
        f'[server]\nbase_url = "{server_url}"\n'
    )
    return load_config(kit_toml, data_dir=tmp_path / "kit")


def test_sync_sets_aside_a_refused_body_with_the_reason_and_sends_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}", emergency_number="999") as server:
        config = _kit(tmp_path, server.url)
        enroll(config, server, capsys)
        service = VisitService(config)
        try:
            shared = service.record_visit(
                visit_input(consent=dict(CONSENT_ALL), answers={**BENIGN, "aaa_warning": True})
            )
            broken = service.record_visit(visit_input(consent=dict(CONSENT_ALL)))
            # A kit with a bug: one visit's outcome level is nonsense.
            with service.store.engine.connect() as conn, conn.begin():
                row = conn.execute(
                    text(
                        "SELECT id, payload FROM outbox "
                        "WHERE visit_id = :v AND record_type = 'visit'"
                    ),
                    {"v": broken.visit_id},
                ).one()
                envelope = json.loads(row[1])
                envelope["body"]["outcome"]["triage"] = "banana"
                conn.execute(
                    text("UPDATE outbox SET payload = :p, content_hash = :h WHERE id = :i"),
                    {
                        "p": canonical_json(envelope).decode(),
                        "h": content_hash(envelope),
                        "i": row[0],
                    },
                )
        finally:
            service.close()
        assert main_in(config, ["sync", "--json"]) != 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["confirmed"] == 3 and summary["set_aside_total"] == 1
        (aside,) = summary["set_aside"]
        assert aside["record_id"] == envelope["record_id"] and "triage" in aside["reason"]
        main_in(config, ["report", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert [e["code"] for e in report["set_aside"]] == [broken.code]
        assert "triage" in report["set_aside"][0]["reason"]
        # The good referral's page carries this booth's number, not the server's.
        page = requests.get(visit_url(config, shared.code), timeout=10).text
        assert shared.triage == "emergency"
        assert "061 555 0100" in page and "Harbour booth" in page and "999" not in page
