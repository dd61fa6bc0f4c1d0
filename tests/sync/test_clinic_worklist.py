"""The worklist on the real server (SQLite and PostgreSQL): which referrals, in what
order, by when; phones only with C3; one referral's page shows only its own data; the
call log and how a referral leaves the list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import text

from sync.server import worklist as wl
from sync.server.bookings import Bookings
from tests.sync.clinic_support import (
    NOW,
    PASSWORD,
    Clinic,
    consent_change,
    page_csrf,
    referral_records,
    run_clinic,
    send,
    sign_in,
)
from tests.sync.live_server import consent_record, enroll_kit, visit_record


@pytest.fixture
def clinic(db_url: str) -> Iterator[Clinic]:
    with run_clinic(db_url) as running:
        running.accounts.add_user("dana", "clinician", PASSWORD)
        running.accounts.add_user("cora", "coordinator", PASSWORD)
        yield running


def _rows(web: requests.Session, clinic: Clinic, **filters: str) -> list[dict[str, Any]]:
    response = web.get(clinic.url + "/worklist.json", params=filters, timeout=10)
    assert response.status_code == 200
    return list(response.json()["rows"])


def _iso(moment: Any) -> str:
    return str(wl.iso(moment))


def test_order_and_deadline_for_every_level(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    h = timedelta(hours=1)
    plan = [
        # code, level, visit time
        ("RTNA-0000-0001", "routine", NOW - 24 * h),
        ("RTNB-0000-0002", "routine", NOW - 48 * h),
        ("URGA-0000-0003", "urgent", NOW - 20 * h),
        ("URGB-0000-0004", "urgent", NOW - 30 * h),
        ("EMGA-0000-0005", "emergency", NOW - 2 * h),
        ("EMGB-0000-0006", "emergency", NOW - 5 * h),
        ("SELF-0000-0007", "self_care", NOW - 3 * h),
        ("SELF-0000-0008", "self_care", NOW - 3 * h),  # no call-back request
    ]
    records: list[dict[str, Any]] = []
    for code, level, at in plan:
        records += referral_records(kit.kit_id, code, level=level, visit_at=at)
    # Never on the list: not shared (no C2), voided.
    records += referral_records(kit.kit_id, "NOC2-0000-0009", level="urgent", c2=False)
    records += referral_records(kit.kit_id, "VOID-0000-0010", level="urgent", status="void")
    send(clinic, kit, records)  # everything reaches the server at NOW
    # As the slip's call page asks for it (routers/booking.py): due by the window's end.
    calls = Bookings(clinic.live.store.engine, clock=clinic.live.store.clock)
    calls.request_callback(kit.kit_id, "SELF-0000-0007", (NOW + h, NOW + 3 * h), NOW + 3 * h, None)
    web = sign_in(clinic, "dana")
    rows = _rows(web, clinic)
    assert [r["code"] for r in rows] == [
        "EMGB-0000-0006",  # emergency, same deadline (1 h after arrival): older visit first
        "EMGA-0000-0005",
        "URGB-0000-0004",  # urgent: 24 h from the visit, already breached
        "URGA-0000-0003",
        "RTNB-0000-0002",  # routine: 7 days from the visit
        "RTNA-0000-0001",
        "SELF-0000-0007",  # self-care call-back: by the end of its window
    ]
    deadline = {r["code"]: r["deadline"] for r in rows}
    assert deadline["EMGA-0000-0005"] == _iso(NOW + h)
    assert deadline["URGB-0000-0004"] == _iso(NOW - 6 * h)
    assert deadline["URGA-0000-0003"] == _iso(NOW + 4 * h)
    assert deadline["RTNB-0000-0002"] == _iso(NOW + 5 * 24 * h)
    assert deadline["RTNA-0000-0001"] == _iso(NOW + 6 * 24 * h)
    assert deadline["SELF-0000-0007"] == _iso(NOW + 3 * h)
    callback = next(r for r in rows if r["code"] == "SELF-0000-0007")["callback"]
    assert callback == [_iso(NOW + h), _iso(NOW + 3 * h)]
    breached = {r["code"] for r in rows if r["breached"]}
    assert breached == {"URGB-0000-0004"}
    page = web.get(clinic.url + "/", timeout=10).text
    assert page.count("BREACHED") == 1
    # An hour and a minute on, the emergencies' safety calls are overdue too.
    clinic.clock.advance(hours=1, minutes=1)
    web = sign_in(clinic, "dana")  # the first session has been idle too long
    later = {r["code"] for r in _rows(web, clinic) if r["breached"]}
    assert later == {"URGB-0000-0004", "EMGA-0000-0005", "EMGB-0000-0006"}


def test_deadlines_come_from_the_configuration(db_url: str) -> None:
    with run_clinic(
        db_url, deadline_emergency_hours=0.5, deadline_urgent_hours=12, deadline_routine_days=3
    ) as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        kit = enroll_kit(clinic.live)
        at = NOW - timedelta(hours=2)
        records = []
        for code, level in (("EMGA-1", "emergency"), ("URGA-1", "urgent"), ("RTNA-1", "routine")):
            records += referral_records(kit.kit_id, code, level=level, visit_at=at)
        send(clinic, kit, records)
        rows = {r["code"]: r["deadline"] for r in _rows(sign_in(clinic, "dana"), clinic)}
        assert rows == {
            "EMGA-1": _iso(NOW + timedelta(minutes=30)),
            "URGA-1": _iso(at + timedelta(hours=12)),
            "RTNA-1": _iso(at + timedelta(days=3)),
        }


def test_phone_only_where_c3_was_granted(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    later = referral_records(kit.kit_id, "LATE-0000-0003", phone="+44 7700 900333")
    send(
        clinic,
        kit,
        referral_records(kit.kit_id, "WITH-0000-0001", phone="+44 7700 900111")
        + referral_records(kit.kit_id, "NOC3-0000-0002", c3=False, phone="+44 7700 900222")
        + later,
    )
    web = sign_in(clinic, "dana")
    phones = {r["code"]: r["phone"] for r in _rows(web, clinic)}
    assert phones == {
        "WITH-0000-0001": "+44 7700 900111",
        "NOC3-0000-0002": None,
        "LATE-0000-0003": "+44 7700 900333",
    }
    # C3 taken back later (a consent change from the booth): the visit still holds the
    # number, but the worklist no longer shows it.
    visit_id = later[1]["body"]["visit_id"]
    items = {"c1": True, "c2": True, "c3": False, "c4": False, "c5": False}
    send(clinic, kit, [consent_change(kit.kit_id, visit_id, items, at=NOW)])
    phones = {r["code"]: r["phone"] for r in _rows(web, clinic)}
    assert phones["LATE-0000-0003"] is None
    listing = web.get(clinic.url + "/", timeout=10).text
    assert "900111" in listing and "900222" not in listing and "900333" not in listing
    for code, number in (("NOC3-0000-0002", "900222"), ("LATE-0000-0003", "900333")):
        page = web.get(clinic.url + f"/r/{kit.kit_id}/{code}", timeout=10).text
        assert number not in page and "not shared (no consent C3)" in page
    with_phone = web.get(clinic.url + f"/r/{kit.kit_id}/WITH-0000-0001", timeout=10).text
    assert 'href="tel:+44 7700 900111"' in with_phone


def test_a_legacy_body_with_a_phone_but_no_c3_shows_none(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    visit = visit_record(kit.kit_id, code="OLD0-0000-0001", contact={"name": "S", "phone": "0444"})
    consent = consent_record(kit.kit_id, visit["body"]["visit_id"])
    consent["body"]["items"]["c3"] = False
    send(clinic, kit, [consent, visit])
    web = sign_in(clinic, "dana")
    rows = _rows(web, clinic)
    assert [(r["code"], r["phone"]) for r in rows] == [("OLD0-0000-0001", None)]
    page = web.get(clinic.url + f"/r/{kit.kit_id}/OLD0-0000-0001", timeout=10).text
    assert "0444" not in page


def test_one_referrals_page_never_shows_anothers_data(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    other_kit = enroll_kit(clinic.live)
    send(
        clinic,
        kit,
        referral_records(kit.kit_id, "MINE-0000-0001", phone="+44 7700 900111", age=33)
        + referral_records(kit.kit_id, "THEI-0000-0002", phone="+44 7700 900222", age=75),
    )
    # Another kit names the same code: it is a different referral.
    same_code = referral_records(other_kit.kit_id, "MINE-0000-0001", phone="+1 555 0199")
    send(clinic, other_kit, same_code)
    web = sign_in(clinic, "dana")
    token = page_csrf(clinic, web)
    theirs = clinic.url + f"/r/{kit.kit_id}/THEI-0000-0002"
    web.post(theirs + "/note", data={"csrf": token, "note": "THEIR-SECRET-NOTE"}, timeout=10)
    other = clinic.url + f"/r/{other_kit.kit_id}/MINE-0000-0001"
    web.post(other + "/note", data={"csrf": token, "note": "OTHER-KIT-NOTE"}, timeout=10)
    mine = web.get(clinic.url + f"/r/{kit.kit_id}/MINE-0000-0001", timeout=10)
    assert mine.status_code == 200
    assert "900111" in mine.text and "30-39" in mine.text
    for foreign in ("THEI-0000-0002", "900222", "THEIR-SECRET-NOTE", "OTHER-KIT-NOTE", "0199"):
        assert foreign not in mine.text, foreign
    assert "70-79" not in mine.text
    # A kit that holds no such referral: nothing, not another kit's.
    third = enroll_kit(clinic.live)
    missing = web.get(clinic.url + f"/r/{third.kit_id}/MINE-0000-0001", timeout=10)
    assert missing.status_code == 404 and "900111" not in missing.text
    refused = web.post(
        clinic.url + f"/r/{third.kit_id}/MINE-0000-0001/note",
        data={"csrf": token, "note": "x"},
        timeout=10,
    )
    assert refused.status_code == 404


def test_recording_the_call_and_leaving_the_worklist(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(
        clinic,
        kit,
        referral_records(kit.kit_id, "CALL-0000-0001", level="urgent")
        + referral_records(kit.kit_id, "SHUT-0000-0002", level="routine"),
    )
    web = sign_in(clinic, "dana")
    token = page_csrf(clinic, web)
    page = clinic.url + f"/r/{kit.kit_id}/CALL-0000-0001"
    clinic.clock.advance(minutes=10)
    web.post(page + "/attempt", data={"csrf": token, "result": "no_answer"}, timeout=10)
    row = next(r for r in _rows(web, clinic) if r["code"] == "CALL-0000-0001")
    assert (row["attempts"], row["last_attempt"]) == (1, "no_answer")
    clinic.clock.advance(minutes=20)
    reached_at = clinic.clock.now
    web.post(page + "/attempt", data={"csrf": token, "result": "reached"}, timeout=10)
    # Unknown results, an escalation without its time, one in the future: refused, unrecorded.
    for kind, data in (
        ("attempt", {"result": "maybe"}),
        ("decision", {"decision": "urgent_imaging"}),
        ("decision", {"decision": "specialist", "escalation_arranged_at": "2099-01-01T00:00"}),
        ("decision", {"decision": "surgery"}),
        ("closure", {"reason": "  "}),
    ):
        answer = web.post(page + "/" + kind, data={"csrf": token, **data}, timeout=10)
        assert "Not recorded:" in answer.text, (kind, data)
    assert "CALL-0000-0001" in {r["code"] for r in _rows(web, clinic)}
    # A coordinator reads, but does not record.
    cora = sign_in(clinic, "cora")
    refused = cora.post(
        page + "/decision", data={"csrf": page_csrf(clinic, cora), "decision": "gp"}, timeout=10
    )
    assert refused.status_code == 403
    arranged = (clinic.clock.now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    done = web.post(
        page + "/decision",
        data={
            "csrf": token,
            "decision": "urgent_in_person",
            "escalation_arranged_at": arranged,
            "note": "weak ankle, seen today",
        },
        timeout=10,
    )
    assert "Urgent in-person review, arranged" in done.text
    assert "CALL-0000-0001" not in {r["code"] for r in _rows(web, clinic)}
    detail = wl.referral(clinic.live.store, wl.Deadlines(), kit.kit_id, "CALL-0000-0001")
    assert detail is not None
    state = detail.row.state
    assert state.first_contact_at == reached_at and state.attempts == 2
    assert state.decision == "urgent_in_person"
    assert state.escalation_arranged_at == clinic.clock.now.replace(second=0) - timedelta(minutes=5)
    assert [e.kind for e in detail.events] == ["attempt", "attempt", "decision"]
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in detail.events)
    # A second decision is refused: the log has one.
    again = web.post(page + "/decision", data={"csrf": token, "decision": "gp"}, timeout=10)
    assert "already decided or closed" in again.text
    # The other leaves only with an explicit closure and its reason.
    other = clinic.url + f"/r/{kit.kit_id}/SHUT-0000-0002"
    web.post(other + "/note", data={"csrf": token, "note": "tried twice"}, timeout=10)
    assert "SHUT-0000-0002" in {r["code"] for r in _rows(web, clinic)}
    web.post(other + "/closure", data={"csrf": token, "reason": "moved abroad"}, timeout=10)
    assert _rows(web, clinic) == []
    with clinic.live.store.engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT kind, at, recorded_at FROM referral_event ORDER BY id")
        ).all()
    assert [k for k, _, _ in kinds] == ["attempt", "attempt", "decision", "note", "closure"]
    assert all(at.endswith("Z") and recorded.endswith("Z") for _, at, recorded in kinds)


def test_filters_by_booth_event_and_day(clinic: Clinic) -> None:
    north, south = enroll_kit(clinic.live, "booth-north"), enroll_kit(clinic.live, "booth-south")
    day1, day2 = NOW - timedelta(days=2), NOW - timedelta(days=1)
    send(clinic, north, referral_records("booth-north", "NRTH-0001", visit_at=day1, event="Fair"))
    send(clinic, north, referral_records("booth-north", "NRTH-0002", visit_at=day2, event="Market"))
    send(clinic, south, referral_records("booth-south", "STH0-0003", visit_at=day2, event="Market"))
    web = sign_in(clinic, "dana")

    def codes(**f: str) -> set[str]:
        return {r["code"] for r in _rows(web, clinic, **f)}

    assert codes(booth="booth-north") == {"NRTH-0001", "NRTH-0002"}
    assert codes(event="Market") == {"NRTH-0002", "STH0-0003"}
    assert codes(day=day1.date().isoformat()) == {"NRTH-0001"}
    assert codes(booth="booth-south", day=day2.date().isoformat()) == {"STH0-0003"}
    page = web.get(clinic.url + "/", params={"booth": "booth-south"}, timeout=10).text
    assert "STH0-0003" in page and "NRTH-0001" not in page


def test_pages_carry_a_csp_that_allows_only_this_server(clinic: Clinic) -> None:
    web = sign_in(clinic, "dana")
    page = web.get(clinic.url + "/", timeout=10)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and 'src="/clinic/static/worklist.js"' in page.text
    script = web.get(clinic.url + "/static/worklist.js", timeout=10)
    assert script.status_code == 200 and "worklist.json" in script.text
    assert web.get(clinic.url + "/static/../app.py", timeout=10).status_code == 404


def test_fired_rules_in_plain_words_with_the_kits_thresholds() -> None:
    default = wl._rules({"rules": ["UR10"], "ruleset_version": "2026.11-1"})
    assert default == ("Constant pain that wakes you at night, over the age of 50",)
    stamped = wl._rules(
        {"rules": ["UR10", "ZZ9"], "ruleset_version": "2026.11-1+night_pain_age=55"}
    )
    assert stamped == ("Constant pain that wakes you at night, over the age of 55", "ZZ9")


def test_long_lists_come_in_pages_in_one_order(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    records: list[dict[str, Any]] = []
    for i in range(130):
        visit_at = NOW - timedelta(minutes=10 * i)
        records += referral_records(kit.kit_id, f"PAGE-{i:04d}", visit_at=visit_at)
    send(clinic, kit, records)
    web = sign_in(clinic, "dana")
    first = web.get(clinic.url + "/worklist.json", timeout=10).json()
    second = web.get(clinic.url + "/worklist.json", params={"page": "2"}, timeout=10).json()
    assert (first["total"], first["pages"], len(first["rows"])) == (130, 2, 100)
    assert (second["page"], len(second["rows"])) == (2, 30)
    codes = [r["code"] for r in first["rows"] + second["rows"]]
    assert codes == [f"PAGE-{i:04d}" for i in reversed(range(130))]  # oldest visit first
    page = web.get(clinic.url + "/", params={"page": "2"}, timeout=10).text
    assert "Rows 101 to 130 of 130" in page and 'data-query="page=2"' in page
    assert "PAGE-0029" in page and "PAGE-0030" not in page


def test_two_workers_share_sessions_and_see_each_others_changes(pg_cluster: str) -> None:
    from tests.support.pg import create_database

    db_url = create_database(pg_cluster)
    with run_clinic(db_url) as one, run_clinic(db_url) as two:
        one.accounts.add_user("dana", "clinician", PASSWORD)
        kit = enroll_kit(one.live)
        send(one, kit, referral_records(kit.kit_id, "WORK-0000-0001", level="urgent"))
        web = sign_in(one, "dana")
        # The session made by the first worker is good on the second.
        assert [r["code"] for r in _rows(web, two)] == ["WORK-0000-0001"]
        token = page_csrf(one, web)
        closed = web.post(
            two.url + f"/r/{kit.kit_id}/WORK-0000-0001/closure",
            data={"csrf": token, "reason": "duplicate of another referral"},
            timeout=10,
        )
        assert closed.status_code == 200
        # The first worker had the list in hand; it sees the closure all the same.
        assert _rows(web, one) == []
        send(one, kit, referral_records(kit.kit_id, "WORK-0000-0002", level="routine"))
        assert [r["code"] for r in _rows(web, two)] == ["WORK-0000-0002"]


def test_an_event_committed_below_the_newest_id_is_not_missed(sqlite_url: str) -> None:
    with run_clinic(sqlite_url) as clinic:
        kit = enroll_kit(clinic.live)
        send(
            clinic,
            kit,
            referral_records(kit.kit_id, "LATE-0000-000A")
            + referral_records(kit.kit_id, "LATE-0000-000B"),
        )
        store = clinic.live.store

        def close(event_id: int, code: str) -> None:
            with store.engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO referral_event (id, kit_id, referral_code, kind, at, "
                        "recorded_at, user_name, data) VALUES (:i, :k, :c, 'closure', "
                        ":t, :t, 'dana', :d)"
                    ),
                    {
                        "i": event_id,
                        "k": kit.kit_id,
                        "c": code,
                        "t": wl.iso(NOW),
                        "d": '{"reason": "r"}',
                    },
                )

        def codes() -> list[str]:
            return [r.code for r in wl.worklist(store, wl.Deadlines())]

        assert codes() == ["LATE-0000-000A", "LATE-0000-000B"]
        close(10, "LATE-0000-000A")
        assert codes() == ["LATE-0000-000B"]
        # Ids are handed out before commit: on PostgreSQL a slower writer's event can land
        # below the newest id already seen.
        close(5, "LATE-0000-000B")
        assert codes() == []


def test_a_withdrawal_takes_the_referral_off_the_worklist(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(
        clinic,
        kit,
        referral_records(kit.kit_id, "GONE-0000-0001", phone="+44 7700 900111")
        + referral_records(kit.kit_id, "STAY-0000-0002"),
    )
    web = sign_in(clinic, "dana")
    assert len(_rows(web, clinic)) == 2
    clinic.live.store.withdraw_by_attendee(kit.kit_id, "GONE-0000-0001", "en")
    assert [r["code"] for r in _rows(web, clinic)] == ["STAY-0000-0002"]
    page = web.get(clinic.url + f"/r/{kit.kit_id}/GONE-0000-0001", timeout=10)
    assert page.status_code == 404 and "900111" not in page.text


def test_a_withdrawal_leaves_no_clinicians_note(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(clinic, kit, referral_records(kit.kit_id, "NOTE-0000-0001"))
    web = sign_in(clinic, "dana")
    page = clinic.url + f"/r/{kit.kit_id}/NOTE-0000-0001"
    said = "Lives with daughter Quirina Vandersloot, prefers mornings"
    posted = web.post(page + "/note", data={"csrf": page_csrf(clinic, web), "note": said})
    assert posted.status_code in (200, 303)
    attempt = {"csrf": page_csrf(clinic, web), "result": "no_answer", "note": said}
    web.post(page + "/attempt", data=attempt, timeout=10)
    with clinic.live.store.engine.connect() as conn:
        before = [r for (r,) in conn.execute(text("SELECT data FROM referral_event"))]
    assert any("Quirina" in d for d in before)
    clinic.live.store.withdraw_by_attendee(kit.kit_id, "NOTE-0000-0001", "en")
    with clinic.live.store.engine.connect() as conn:
        after = [r for (r,) in conn.execute(text("SELECT data FROM referral_event"))]
    assert len(after) == len(before)  # what was done, and when, stays
    assert not any("Quirina" in d for d in after)


def test_bad_entries_are_refused_and_not_recorded(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(clinic, kit, referral_records(kit.kit_id, "BADS-0000-0001"))
    web = sign_in(clinic, "dana")
    token = page_csrf(clinic, web)
    page = clinic.url + f"/r/{kit.kit_id}/BADS-0000-0001"
    unknown = web.post(page + "/delete", data={"csrf": token}, timeout=10)
    assert unknown.status_code == 403
    long_note = web.post(page + "/note", data={"csrf": token, "note": "x" * 4001}, timeout=10)
    assert "Not recorded: a note holds at most 4000 characters" in long_note.text
    when = web.post(
        page + "/attempt", data={"csrf": token, "result": "reached", "at": "yesterday"}, timeout=10
    )
    assert "Not recorded: unreadable time" in when.text
    # A body past the form limit carries no readable token: refused as a forged form.
    huge = web.post(page + "/note", data={"csrf": token, "note": "x" * 20_000}, timeout=10)
    assert huge.status_code == 403
    with clinic.live.store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM referral_event")).scalar_one() == 0
