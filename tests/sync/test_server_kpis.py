"""The four KPIs on the small hand-checked month (tests/sync/kpi_month.py): every value
below was worked out by hand from the table in that module, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from popup_kit.cli import main
from sync.server import kpis, visit_facts
from sync.server.worklist import Deadlines
from tests.sync import kpi_month
from tests.sync.clinic_support import NOW, PASSWORD, run_clinic, sign_in

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
        kpis._READ.pop(store, None)  # as in a fresh server process
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
