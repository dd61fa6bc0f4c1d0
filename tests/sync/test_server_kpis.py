"""The four KPIs on the small hand-checked month (tests/sync/kpi_month.py): every value
below was worked out by hand from the table in that module, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from popup_kit.cli import main
from sync.server import followups, kpis, visit_facts
from sync.server.bookings import Bookings
from sync.server.store import ServerStore
from sync.server.worklist import Deadlines, record_event
from tests.sync import kpi_month
from tests.sync.clinic_support import (
    NOW,
    PASSWORD,
    consent_change,
    referral_records,
    run_clinic,
    send,
    sign_in,
)
from tests.sync.live_server import enroll_kit

# By hand (hours after the visit; see kpi_month's table):
# time to first contact: needs contact R1 R2 R3 R4 R5 R8 R10 R11 (urgent, routine, call-back).
#   reached R1 3, R2 30 (> 24 h: breach), R3 48, R8 21 (window end 22), R10 10, R11 2;
#   R4 never, past 7 d: breach; R5 not due yet: left out.
#   share 5/7; sorted 2 3 10 21 30 48: p50 rank ceil(3)=3 -> 10, p90 rank ceil(5.4)=6 -> 48.
# appropriateness: decided R1 R2 R3 R6 R7 R8 R10 R11 = 8; conservative first and not escalated
#   in 12 weeks: R3 R10 = 2; conservative then escalated: R2 (day 40), R8 (day 12) = 2.
# escalation latency: R1 3.5, R2 960, R6 1, R7 6, R11 2, R8 5 (from its w2 warning);
#   sorted 1 2 3.5 5 6 960: p50 rank 3 -> 3.5, p90 rank 6 -> 960;
#   suspected CES R1 (UR1) R6 (EM1) R11 (UR2) R8 (warning) = 4, within 4 h: R1 R6 R11 = 3.
# early improvement: reached day 17 R1 R2 R3 R4 R6 R7 R8 R10 = 8, respondents R1 R2 R3 R6 R8
#   R10 = 6; improved R1 leg 8->4, R3 back 5->3 = 2 (R10's superseded 6->2 is not counted).
EXPECTED = {
    "time_to_first_contact": {
        "numerator": 5,
        "denominator": 7,
        "p50_hours": 10.0,
        "p90_hours": 48.0,
    },
    "appropriateness": {"numerator": 2, "denominator": 8, "escalated_later": 2},
    "escalation_latency": {"numerator": 3, "denominator": 4, "p50_hours": 3.5, "p90_hours": 960.0},
    "early_improvement": {"numerator": 2, "denominator": 6, "respondents": 6, "reached_day17": 8},
}


def test_kpis_match_the_hand_checked_month(db_url: str) -> None:
    with run_clinic(db_url) as clinic:
        kpi_month.build(clinic)
        got = kpis.compute(clinic.live.store, Deadlines()).as_json()
    by_name = {k["kpi"]: k for k in got}
    for name, expected in EXPECTED.items():
        for key, value in expected.items():
            assert by_name[name][key] == value, (name, key)
        assert by_name[name]["value"] == expected["numerator"] / expected["denominator"]
    breaches = by_name["time_to_first_contact"]["breaches"]
    assert [b["code"] for b in breaches] == [kpi_month.code_of("R2"), kpi_month.code_of("R4")]
    assert breaches[0]["reached_at"] is not None and breaches[1]["reached_at"] is None
    assert by_name["early_improvement"]["response_rate"] == 0.75
    assert by_name["escalation_latency"]["escalations"] == 6


def test_kpis_filter_by_booth_event_and_clinic_days(sqlite_url: str) -> None:
    with run_clinic(sqlite_url) as clinic:
        kpi_month.build(clinic)
        store = clinic.live.store

        def of(**period: object) -> kpis.Kpis:
            return kpis.compute(store, Deadlines(), kpis.Period(**period))  # type: ignore[arg-type]

        south = of(booth="south").time_to_first_contact
        assert (south.numerator, south.denominator) == (2, 3)  # R10 R11 in time, R4 breach
        fair = of(event="fair")
        assert (fair.time_to_first_contact.numerator, fair.time_to_first_contact.denominator) == (
            1,
            1,
        )
        assert (fair.appropriateness.numerator, fair.appropriateness.denominator) == (1, 1)
        # R7's visit, 23:30 UTC on 30 September, is 1 October in London.
        london = of(start=date(2026, 10, 1))
        assert len(london.escalation_latency.hours) == 6
        utc = of(start=date(2026, 10, 1), zone=ZoneInfo("UTC"))
        assert len(utc.escalation_latency.hours) == 5
        october = of(end=date(2026, 10, 31)).time_to_first_contact  # leaves R5 R11 out
        assert (october.numerator, october.denominator) == (4, 6)


def test_percentile_is_nearest_rank() -> None:
    assert kpis.percentile([], 50) is None
    assert kpis.percentile([4.0], 90) == 4.0
    assert kpis.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert kpis.percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0
    assert kpis.percentile([float(i) for i in range(1, 11)], 90) == 9.0


def test_server_kpis_json_and_text_print_the_hand_checked_figures(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_clinic(sqlite_url) as clinic:
        kpi_month.build(clinic)
    config = tmp_path / "kpis.toml"
    config.write_text(f"database_url = {json.dumps(sqlite_url)}\n")
    at = ["--at", NOW.isoformat(), "--config", str(config)]
    assert main(["server", "kpis", "--json", *at]) == 0
    by_name = {k["kpi"]: k for k in json.loads(capsys.readouterr().out)}
    assert set(by_name) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        for key, value in expected.items():
            assert by_name[name][key] == value, (name, key)
        assert by_name[name]["value"] == expected["numerator"] / expected["denominator"]
    assert main(["server", "kpis", "--json", "--booth", "south", *at]) == 0
    south = json.loads(capsys.readouterr().out)[0]
    assert (south["numerator"], south["denominator"]) == (2, 3)
    assert main(["server", "kpis", *at]) == 0
    shown = capsys.readouterr().out
    assert "5/7 in time" in shown and "2/8 conservative" in shown
    assert "3/4 CES in 4 h" in shown and "2/6 improved" in shown
    assert "p50 10.0 h, p90 48.0 h, 2 breaches" in shown
    assert "response rate 75.0 % (6/8)" in shown
    assert f"breach: {kpi_month.code_of('R4')}" not in shown  # the kit id comes first
    assert shown.count("breach: ") == 2


def test_server_kpis_refuses_a_time_without_its_offset(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('database_url = "server.sqlite3"\n')
    assert main(["server", "migrate", "--config", str(config)]) == 0
    assert main(["server", "kpis", "--at", "2026-11-23T12:00", "--config", str(config)]) == 2
    assert main(["server", "kpis", "--at", "yesterday", "--config", str(config)]) == 2


def test_dashboard_shows_the_hand_checked_figures_to_coordinators_only(sqlite_url: str) -> None:
    with run_clinic(sqlite_url) as clinic:
        kpi_month.build(clinic)
        clinic.accounts.add_user("cora", "coordinator", PASSWORD)
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        clinician = sign_in(clinic, "dana").get(clinic.url + "/kpis", timeout=10)
        assert clinician.status_code == 403
        assert "5 / 7" not in clinician.text
        web = sign_in(clinic, "cora")
        page = web.get(clinic.url + "/kpis", timeout=10)
        south = web.get(clinic.url + "/kpis", params={"booth": "south"}, timeout=10)
        actions = [e.action for e in clinic.accounts.audit_entries()]
    assert page.status_code == 200
    html = page.text
    for name, expected in EXPECTED.items():
        n, d = expected["numerator"], expected["denominator"]
        assert f'data-kpi="{name}" data-numerator="{n}" data-denominator="{d}"' in html
        assert f"{n * 100 / d:.1f} %" in html
    assert "median 10.0 h, 90th percentile 48.0 h" in html
    assert "median 3.5 h, 90th percentile 960.0 h" in html
    assert "Safety line: 2 conservative then escalated" in html
    assert "Week-2 response rate 75.0 % (6 / 8)" in html
    assert "2 breaches" in html and html.count('<tr class="breach">') == 2
    # Weekly trend and per-booth charts, drawn by the server, for each KPI.
    assert html.count('<svg class="chart"') == 8
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert 'data-kpi="time_to_first_contact" data-numerator="2" data-denominator="3"' in south.text
    assert actions.count("view_kpis") == 2


def test_ingest_keeps_each_records_digest_and_the_kpis_read_the_same_without_it(
    db_url: str,
) -> None:
    """The digest written at ingest is the body's own facts; the KPIs from the digests
    equal the KPIs from the bodies (records stored before the digest existed)."""
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kpi_month.build(clinic)
        with store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT record_type, body, digest FROM record "
                    "WHERE record_type IN ('visit', 'consent')"
                )
            ).all()
        assert len(rows) >= len(kpi_month.SPECS)
        for record_type, body, digest in rows:
            assert digest == visit_facts.digest(record_type, json.loads(body))
        from_digests = kpis.compute(store, Deadlines()).as_json()
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE record SET digest = NULL"))
        assert kpis.compute(store, Deadlines()).as_json() == from_digests


def test_a_withdrawal_clears_the_digest_and_the_referral_leaves_the_kpis(sqlite_url: str) -> None:
    with run_clinic(sqlite_url) as clinic:
        store = clinic.live.store
        kit_of = kpi_month.build(clinic)
        before = {r.code for r in kpis.referrals(store, Deadlines())}
        code = kpi_month.code_of("R1")
        assert code in before
        store.withdraw_by_attendee(kit_of["R1"], code, "en")
        with store.engine.connect() as conn:
            kept = conn.execute(
                text(
                    "SELECT digest FROM record WHERE kit_id = :k AND visit_id IN "
                    "(SELECT visit_id FROM record WHERE referral_code = :c)"
                ),
                {"k": kit_of["R1"], "c": code},
            ).all()
        assert kept and all(d is None for (d,) in kept)
        assert {r.code for r in kpis.referrals(store, Deadlines())} == before - {code}


@pytest.mark.parametrize("order", [("false", "true"), ("true", "false")])
def test_when_consent_records_disagree_on_c2_the_latest_decides(
    db_url: str, order: tuple[str, str]
) -> None:
    """As the worklist reads consents: the latest record naming C2 wins, whatever the
    visit's own scope says (records written straight into the store, in either order)."""
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kit_of = kpi_month.build(clinic)
        code = kpi_month.code_of("R1")
        with store.engine.begin() as conn:
            visit_id = conn.execute(
                text("SELECT visit_id FROM record WHERE referral_code = :c"), {"c": code}
            ).scalar_one()
            for n, granted in enumerate(order):
                body = {"visit_id": visit_id, "items": {"c2": granted == "true"}}
                conn.execute(
                    text(
                        "INSERT INTO record (record_id, kit_id, record_type, schema_version, "
                        "content_hash, created_at, received_at, signature, visit_id, payload, "
                        "body) VALUES (:r, :k, 'consent', 2, :h, :c, :c, 'x', :v, '{}', :b)"
                    ),
                    {
                        "r": f"later-consent-{n}",
                        "k": kit_of["R1"],
                        "h": "0" * 64,
                        "c": f"2099-01-0{n + 1}T00:00:00.000000Z",
                        "v": visit_id,
                        "b": json.dumps(body),
                    },
                )
        listed = {r.code for r in kpis.referrals(store, Deadlines())}
        assert (code in listed) is (order[-1] == "true")


def _kept_and_worked_out(store: ServerStore) -> dict[str, kpis.Referral]:
    """The referrals read from kpi_fact, checked against the same worked out from the
    records and the log; keyed by code."""
    kept = sorted(kpis.referrals(store, Deadlines()), key=lambda r: (r.kit_id, r.code))
    fresh = sorted(kpis.source_referrals(store, Deadlines()), key=lambda r: (r.kit_id, r.code))
    assert kept == fresh
    return {r.code: r for r in kept}


def _facts_of(store: ServerStore, code: str) -> list[tuple[object, ...]]:
    with store.engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text("SELECT * FROM kpi_fact WHERE referral_code = :c"), {"c": code}
            )
        ]


def test_the_kept_facts_follow_every_change_to_their_sources(db_url: str) -> None:
    """Each kind of write reaches kpi_fact through the triggers: a contact, a decision, a
    call-back request and its cancellation, a follow-up answer and its resubmission, a
    consent refused later, a digest cleared, a withdrawal (its row gone at once)."""
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kit_of = kpi_month.build(clinic)
        code = kpi_month.code_of
        before = _kept_and_worked_out(store)
        assert before[code("R4")].first_contact_at is None

        record_event(
            store, kit_of["R4"], code("R4"), "attempt", "clin", {"result": "reached"}, at=NOW
        )
        record_event(
            store, kit_of["R4"], code("R4"), "decision", "clin", {"decision": "gp"}, at=NOW
        )
        after = _kept_and_worked_out(store)
        assert after[code("R4")].first_contact_at == NOW
        assert [d for d, _, _ in after[code("R4")].decisions] == ["gp"]

        bookings = Bookings(store.engine, clock=clinic.clock)
        window = (NOW - timedelta(days=50), NOW - timedelta(days=50) + timedelta(hours=2))
        bookings.request_callback(kit_of["R3"], code("R3"), window, window[1], "+44 7700 900123")
        assert _kept_and_worked_out(store)[code("R3")].deadline == window[1]
        assert bookings.cancel_callback(kit_of["R3"], code("R3"))
        assert _kept_and_worked_out(store)[code("R3")].deadline == before[code("R3")].deadline

        answers = {"pain_nrs": 2, "leg_pain_nrs": None, "global_change": "much_better"}
        answers.update({name: "no" for name in followups.CES_FIELDS})
        followups.submit(store, kit_of["R4"], code("R4"), "w2", answers)
        assert _kept_and_worked_out(store)[code("R4")].week2 is not None
        answers[followups.CES_FIELDS[0]] = followups.YES
        followups.submit(store, kit_of["R4"], code("R4"), "w2", answers)
        assert _kept_and_worked_out(store)[code("R4")].warning_at is not None

        with store.engine.begin() as conn:
            conn.execute(text("UPDATE record SET digest = NULL"))
        assert _kept_and_worked_out(store) == after | {
            code("R3"): _kept_and_worked_out(store)[code("R3")],
            code("R4"): _kept_and_worked_out(store)[code("R4")],
        }

        assert _facts_of(store, code("R1"))
        store.withdraw_by_attendee(kit_of["R1"], code("R1"), "en")
        assert _facts_of(store, code("R1")) == []  # before any KPI reading
        assert code("R1") not in _kept_and_worked_out(store)
        assert _facts_of(store, code("R1")) == []


def test_a_consent_refused_later_takes_the_referral_out_of_the_kept_facts(db_url: str) -> None:
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kpi_month.build(clinic)
        kit = enroll_kit(clinic.live)
        records = referral_records(kit.kit_id, "KPLATE-TEST-CODE", visit_at=NOW - timedelta(days=3))
        send(clinic, kit, records)
        assert "KPLATE-TEST-CODE" in _kept_and_worked_out(store)
        visit_id = records[0]["body"]["visit_id"]
        items = {"c1": True, "c2": False, "c3": False, "c4": False, "c5": False}
        send(clinic, kit, [consent_change(kit.kit_id, visit_id, items, at=NOW)])
        assert _facts_of(store, "KPLATE-TEST-CODE") == []
        assert "KPLATE-TEST-CODE" not in _kept_and_worked_out(store)


def test_a_large_change_works_every_fact_out_again_in_one_pass(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From WHOLE_AT changed visits on, the table is worked out again whole: the same
    referrals and the same KPIs as visit by visit."""
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kpi_month.build(clinic)
        one_by_one = kpis.compute(store, Deadlines()).as_json()
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO kpi_stale (kit_id, visit_id) SELECT DISTINCT kit_id, visit_id "
                    "FROM record WHERE visit_id IS NOT NULL"
                )
            )
            conn.execute(text("UPDATE kpi_fact SET level = 'routine', first_decision = NULL"))
        monkeypatch.setattr(kpis, "WHOLE_AT", 3)
        assert kpis.refresh(store) >= len(kpi_month.SPECS)
        assert kpis.compute(store, Deadlines()).as_json() == one_by_one
        _kept_and_worked_out(store)


def _back_to_0011(store: ServerStore) -> None:
    """The database as the server before kpi_fact left it."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP FUNCTION kpi_visit_changed, kpi_code_changed CASCADE"))
        else:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'kpi%'")
            ).scalars()
            for name in list(names):
                conn.execute(text(f"DROP TRIGGER {name}"))
        conn.execute(text("DROP TABLE kpi_fact"))
        conn.execute(text("DROP TABLE kpi_stale"))
        conn.execute(text("DROP INDEX record_kit_visit"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0011'"))


def test_the_migration_works_out_the_facts_of_every_visit_already_held(db_url: str) -> None:
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kpi_month.build(clinic)
        expected = kpis.compute(store, Deadlines()).as_json()
        _back_to_0011(store)
    upgraded = ServerStore(db_url)
    try:
        assert upgraded.schema_version == 12
        with upgraded.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM kpi_fact")).scalar_one() == 0
        assert kpis.compute(upgraded, Deadlines(), now=NOW).as_json() == expected
        _kept_and_worked_out(upgraded)
    finally:
        upgraded.close()


def test_a_self_care_visit_raised_by_its_follow_up_counts_in_the_escalations_only(
    db_url: str,
) -> None:
    """R12: self-care, no call-back request, shared (C2); a warning sign at week 2 (288 h)
    and urgent imaging arranged 2 h later. By hand, on top of the month: escalation latency
    CES 4/5 (2 h within 4 h), 7 escalations, sorted 1 2 2 3.5 5 6 960: p50 rank 4 -> 3.5,
    p90 rank 7 -> 960; appropriateness 2/9 (decided, escalated first); first contact and
    early improvement unchanged (it needs no contact, and it is counted at week 2 only
    because it answered)."""
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        kpi_month.build(clinic)
        spec = kpi_month.Spec("R12", "north", "self_care", (), kpi_month.V1, 3, None)
        kit_of = kpi_month.send_visits(clinic, (spec,))
        code = kpi_month.code_of("R12")
        warned_at = kpi_month.V1 + timedelta(hours=288)
        kpi_month.respond(store, kit_of["R12"], code, warned_at, back=2, leg=None, warning=True)
        arranged = warned_at + timedelta(hours=2)
        record_event(
            store,
            kit_of["R12"],
            code,
            "decision",
            "clin",
            {"decision": "urgent_imaging", "escalation_arranged_at": arranged},
            at=arranged,
        )
        got = {k["kpi"]: k for k in kpis.compute(store, Deadlines()).as_json()}
    escalation = got["escalation_latency"]
    assert (escalation["numerator"], escalation["denominator"]) == (4, 5)
    assert escalation["escalations"] == 7
    assert (escalation["p50_hours"], escalation["p90_hours"]) == (3.5, 960.0)
    appropriate = got["appropriateness"]
    assert (appropriate["numerator"], appropriate["denominator"]) == (2, 9)
    for name in ("time_to_first_contact", "early_improvement"):
        for key, value in EXPECTED[name].items():
            assert got[name][key] == value, (name, key)
    assert got["early_improvement"]["reached_day17"] == 8
