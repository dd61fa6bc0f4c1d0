"""Typed bodies at the server: every body validated, consent deciding what is held."""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from sync.server.db import sqlite_path
from tests.sync.live_server import (
    EnrolledKit,
    LiveServer,
    PlainCodes,
    consent_record,
    consent_v2,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
    visit_v2,
)

CODES = PlainCodes()
NAME, PHONE = "Zebedee Quartermain", "+44 7700 955501"
CONTACT = {"name": NAME, "phone": PHONE}
# Answers only a visit's answers carry (the field names and a value of this test's own).
ANSWERS = {"age_years": 47, "leg_pain_side": "unilateral", "pain_nrs": 6, "weight_loss": "none"}
ANSWER_MARKERS = ("leg_pain_side", "weight_loss", "age_years")


@pytest.fixture
def slip_server(db_url: str) -> Iterator[LiveServer]:
    """SQLite and PostgreSQL, with a configured emergency number unlike any booth's."""
    with run_server(db_url, code_rules=CODES, emergency_number="999") as live:
        yield live


def _results(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _open(server: LiveServer, kit: EnrolledKit, code: str) -> requests.Response:
    flat = code.replace("-", "")
    return requests.get(
        f"{server.url}/r/{flat}", params={"s": CODES.sign(code, kit.slip_key)}, timeout=10
    )


def _page_text(response: requests.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def _leaks(server: LiveServer) -> list[str]:
    """Every marker of answers or contact found anywhere the server keeps data: each file
    of its SQLite folder read as raw bytes (WAL included), or every row of every
    PostgreSQL table as text."""
    markers = [NAME, PHONE, *ANSWER_MARKERS]
    found: list[str] = []
    path = sqlite_path(server.db_url)
    if path is not None:
        for file in sorted(Path(path).parent.rglob("*")):
            if file.is_file():
                data = file.read_bytes()
                found += [f"{file.name}: {m}" for m in markers if m.encode() in data]
        return found
    with server.store.engine.connect() as conn:
        tables = conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
        for table in tables:
            rows = conn.scalars(text(f'SELECT t::text FROM "{table}" AS t')).all()
            dump = "\n".join(rows)
            found += [f"{table}: {m}" for m in markers if m in dump]
    return found


def test_c2_refused_visit_leaves_no_answer_or_contact_anywhere(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    # A current kit sends the counts shape; an old kit (schema 1) sent everything, with a
    # consent record refusing C2 after it in the same batch.
    new = visit_v2(kit.kit_id, consent={"c2": False, "c3": True}, answers=ANSWERS)
    old = visit_record(kit.kit_id, contact=CONTACT)
    old["body"]["answers"] = dict(ANSWERS)
    records = [
        new,
        consent_v2(kit.kit_id, new["body"]["visit_id"], c2=False),
        old,
        consent_record(kit.kit_id, old["body"]["visit_id"], c2=False),
    ]
    assert [r["status"] for r in _results(ingest(slip_server, kit, records))] == ["accepted"] * 4
    for record in (new, old):
        held = slip_server.store.record_body(record["record_id"])
        assert held is not None and held["sharing"] == "counts"
        assert held["level"] == "routine" and held["day"] == "2026-11-22"
        assert not {"answers", "contact", "age_years", "outcome"} & set(held)
    # Read with the server still running, right after the sync.
    assert _leaks(slip_server) == []


def test_later_refusal_of_c2_cuts_the_held_referral(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    code = CODES.new_code()
    shared = visit_v2(kit.kit_id, code=code, contact=CONTACT, answers=ANSWERS, triage="emergency")
    visit_id = shared["body"]["visit_id"]
    first = [shared, consent_v2(kit.kit_id, visit_id)]
    assert [r["status"] for r in _results(ingest(slip_server, kit, first))] == ["accepted"] * 2
    assert _leaks(slip_server), "the shared referral should be held whole first"
    before = _page_text(_open(slip_server, kit, code))
    assert "112" in before and "Night market booth" in before

    change = consent_v2(kit.kit_id, visit_id, kind="change", c2=False)
    assert _results(ingest(slip_server, kit, [change]))[0]["status"] == "accepted"
    held = slip_server.store.record_body(shared["record_id"])
    assert held is not None and held["sharing"] == "counts" and "contact" not in held
    assert _leaks(slip_server) == []
    page = _page_text(_open(slip_server, kit, code))
    instruction = "Go to the Emergency Department now. Show this slip."
    assert instruction in before and instruction not in page
    # The counts shape keeps the booth: every page still gives its own emergency number.
    assert "112" in page and "999" not in page

    # A version made before the refusal, arriving after it (another relay): held cut too.
    late = visit_v2(kit.kit_id, visit_id=visit_id, code=code, contact=CONTACT, version=2)
    assert _results(ingest(slip_server, kit, [late]))[0]["status"] == "accepted"
    held = slip_server.store.record_body(late["record_id"])
    assert held is not None and held["sharing"] == "counts"
    assert _leaks(slip_server) == []


def test_refusing_c3_later_removes_the_contact_only(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    shared = visit_v2(kit.kit_id, contact=CONTACT, answers=ANSWERS)
    visit_id = shared["body"]["visit_id"]
    ingest(slip_server, kit, [shared, consent_v2(kit.kit_id, visit_id)])
    change = consent_v2(kit.kit_id, visit_id, kind="change", c3=False)
    assert _results(ingest(slip_server, kit, [change]))[0]["status"] == "accepted"
    held = slip_server.store.record_body(shared["record_id"])
    assert held is not None and held["sharing"] == "referral"
    assert "contact" not in held and held["answers"]["leg_pain_side"] == "unilateral"
    assert [m for m in _leaks(slip_server) if NAME in m or PHONE in m] == []


def _bad_bodies(kit_id: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Each malformed record and a word its refusal must give."""
    out: dict[str, tuple[dict[str, Any], str]] = {}

    def visit(change: dict[str, Any], **options: Any) -> dict[str, Any]:
        record = visit_v2(kit_id, **options)
        record["body"] = {**record["body"], **change}
        return record

    good = visit_v2(kit_id)
    banana = copy.deepcopy(good)
    banana["body"]["outcome"]["triage"] = "banana"
    out["banana"] = (banana, "triage")
    old_banana = visit_record(kit_id, triage="banana")
    out["banana (schema 1)"] = (old_banana, "triage")
    out["unknown level"] = (visit_record(kit_id, triage="ineligible"), "triage")
    counts = visit_v2(kit_id, consent={"c2": False})
    out["counts with answers"] = (
        {**counts, "body": {**counts["body"], "answers": dict(ANSWERS)}},
        "answers",
    )
    out["counts with contact"] = (
        {**counts, "body": {**counts["body"], "contact": CONTACT}},
        "contact",
    )
    out["contact without C3"] = (
        visit({"contact": CONTACT, "consent": {"c2": True, "c3": False, "c4": False}}),
        "C3",
    )
    out["referral without C2"] = (
        visit({"consent": {"c2": False, "c3": False, "c4": False}}),
        "C2",
    )
    out["evaluation with exact age"] = (
        {
            **counts,
            "body": {
                **counts["body"],
                "consent": {"c2": False, "c3": False, "c4": True},
                "evaluation": {"age_band": "40-49", "answers": {"age_years": 47}},
            },
        },
        "age_years",
    )
    out["no sharing"] = (visit({"sharing": "everything"}), "sharing")
    out["booth number missing"] = (
        visit({"booth": {"name": "Booth", "event": "", "emergency_number": ""}}),
        "emergency_number",
    )
    out["unknown field"] = (visit({"national_id": "AB123456C"}), "national_id")
    consent = consent_v2(kit_id, good["body"]["visit_id"])
    consent["body"] = {**consent["body"], "items": {**consent["body"]["items"], "c2": "yes"}}
    out["consent item not a choice"] = (consent, "c2")
    withdrawal = consent_v2(kit_id, good["body"]["visit_id"])
    withdrawal["record_type"] = "consent_withdrawal"
    withdrawal["body"] = {"visit_id": good["body"]["visit_id"], "at": "2026-11-22T19:00:00Z"}
    withdrawal["body"]["reason"] = "told the booth"  # the fact only: no reason travels
    out["withdrawal with more than the fact"] = (withdrawal, "reason")
    return out


def test_malformed_bodies_are_refused_each_with_its_reason(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    bad = _bad_bodies(kit.kit_id)
    good = visit_v2(kit.kit_id, code=CODES.new_code(), triage="emergency")
    good_consent = consent_v2(kit.kit_id, good["body"]["visit_id"])
    batch = [good, *(record for record, _ in bad.values()), good_consent]
    results = _results(ingest(slip_server, kit, batch))
    assert results[0]["status"] == "accepted" and results[-1]["status"] == "accepted"
    for (name, (_record, word)), result in zip(bad.items(), results[1:-1], strict=True):
        assert result["status"] == "rejected", name
        assert word in result["reason"], (name, result["reason"])
        assert result["receipt"] is None
    held = {r.record_id for r in slip_server.store.records()}
    assert held == {good["record_id"], good_consent["record_id"]}
    assert slip_server.store.conflicts() == []


def test_slip_page_of_a_refused_body_never_fails(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    code = CODES.new_code()
    banana = visit_record(kit.kit_id, code=code, triage="banana")
    banana_v2 = visit_v2(kit.kit_id, code=code)
    banana_v2["body"]["outcome"]["triage"] = "banana"
    records = [banana, banana_v2, consent_record(kit.kit_id, banana["body"]["visit_id"])]
    statuses = [r["status"] for r in _results(ingest(slip_server, kit, records))]
    assert statuses == ["rejected", "rejected", "accepted"]
    page = _open(slip_server, kit, code)
    assert page.status_code == 200
    assert "will upload your referral soon" in page.text


def test_schema_1_bodies_from_an_old_kit_still_accepted(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    code = CODES.new_code()
    old = visit_record(kit.kit_id, code=code, triage="emergency", contact=CONTACT)
    records = [old, consent_record(kit.kit_id, old["body"]["visit_id"])]
    assert [r["status"] for r in _results(ingest(slip_server, kit, records))] == ["accepted"] * 2
    held = slip_server.store.record_body(old["record_id"])
    assert held is not None and held["sharing"] == "referral" and held["legacy"] is True
    assert held["contact"] == CONTACT  # C2 and C3 granted: the referral as it was sent
    # The old body names no booth: the server's configured number is the fallback.
    assert "999" in _page_text(_open(slip_server, kit, code))


def test_slip_page_shows_the_booth_own_emergency_number(slip_server: LiveServer) -> None:
    kit = enroll_kit(slip_server)
    pages = {}
    for number in ("112", "061 555 0100"):
        code = CODES.new_code()
        booth = {"name": f"Booth {number}", "event": "Market", "emergency_number": number}
        visit = visit_v2(kit.kit_id, code=code, triage="emergency", booth=booth)
        ingest(slip_server, kit, [visit, consent_v2(kit.kit_id, visit["body"]["visit_id"])])
        pages[number] = _page_text(_open(slip_server, kit, code))
    assert "112" in pages["112"] and "Booth 112" in pages["112"]
    assert "061 555 0100" in pages["061 555 0100"] and "112" not in pages["061 555 0100"]
    assert all("999" not in page for page in pages.values())


def test_a_wrongly_typed_field_is_refused_and_the_fixed_record_accepted(
    server: LiveServer,
) -> None:
    kit = enroll_kit(server)
    record = visit_v2(kit.kit_id)
    fixed = copy.deepcopy(record)
    record["body"]["version"] = "one"
    result = _results(ingest(server, kit, [record]))[0]
    assert result["status"] == "rejected" and "version" in result["reason"]
    assert server.store.records() == []
    # Refused, not held: the same record id with a valid body is then accepted.
    assert _results(ingest(server, kit, [fixed]))[0]["status"] == "accepted"


def test_withdrawal_leaves_no_contact_or_answer_right_after_the_sync(
    slip_server: LiveServer,
) -> None:
    kit = enroll_kit(slip_server)
    shared = visit_v2(kit.kit_id, contact=CONTACT, answers=ANSWERS)
    visit_id = shared["body"]["visit_id"]
    ingest(slip_server, kit, [shared, consent_v2(kit.kit_id, visit_id)])
    assert _leaks(slip_server)
    withdrawal = consent_v2(kit.kit_id, visit_id, kind="withdrawal", c1=False, c2=False, c3=False)
    assert _results(ingest(slip_server, kit, [withdrawal]))[0]["status"] == "accepted"
    assert _leaks(slip_server) == []


def test_another_kit_refusing_c2_for_the_same_visit_id_changes_nothing(
    slip_server: LiveServer,
) -> None:
    owner, other = enroll_kit(slip_server), enroll_kit(slip_server)
    shared = visit_v2(owner.kit_id, contact=CONTACT, answers=ANSWERS)
    visit_id = shared["body"]["visit_id"]
    ingest(slip_server, owner, [shared, consent_v2(owner.kit_id, visit_id)])
    change = consent_v2(other.kit_id, visit_id, kind="change", c2=False, c3=False)
    assert _results(ingest(slip_server, other, [change]))[0]["status"] == "accepted"
    held = slip_server.store.record_body(shared["record_id"])
    assert held is not None and held["sharing"] == "referral" and held["contact"] == CONTACT
