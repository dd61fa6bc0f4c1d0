"""Follow-up check-ins by the attendee on the real server (SQLite and PostgreSQL): the
windows and their edges, the pages for slips that may not answer, one current response per
window with its history kept, validation that keeps what was entered, one slip's signature
never opening another's check-in, a warning sign answered yes, both languages."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import text

from sync.server import followups
from sync.server import worklist as wl
from sync.server.checkin_pages import TEXTS
from sync.server.settings import ServerSettings
from sync.server.store import iso
from tests.sync.clinic_support import (
    NOW,
    PASSWORD,
    Clinic,
    consent_change,
    referral_records,
    run_clinic,
    send,
    sign_in,
)
from tests.sync.live_server import EnrolledKit, PlainCodes, enroll_kit, withdrawal_record

CODES = PlainCodes()
EN, ES = TEXTS["en"], TEXTS["es"]
DAY = timedelta(days=1)
# The booth visit: 12:00 UTC, 11 days before the clinic's clock starts.
VISIT = NOW - 11 * DAY
LEG = {"age_years": 47, "leg_pain_side": "unilateral", "pain_nrs": 6, "leg_pain_nrs": 7}
LEG_SBI = {**LEG, "sbi": {"leg_pain": 4, "numbness": 3, "weakness": 1, "sitting": 5}}
NO_LEG = {"age_years": 47, "leg_pain_side": "none", "pain_nrs": 5}
CALM = {
    "pain_nrs": "3",
    "leg_pain_nrs": "2",
    "global_change": "much_better",
    "ces_saddle_numbness": "no",
    "ces_bladder_change": "no",
    "ces_bowel_change": "no",
    "ces_sexual_dysfunction": "no",
}


@pytest.fixture
def clinic(db_url: str) -> Iterator[Clinic]:
    with run_clinic(db_url, code_rules=CODES, emergency_number="112") as running:
        running.accounts.add_user("dana", "clinician", PASSWORD)
        yield running


def _referral(
    clinic: Clinic,
    kit: EnrolledKit,
    *,
    answers: dict[str, Any] = LEG,
    visit_at: datetime = VISIT,
    **options: Any,
) -> str:
    code = CODES.new_code()
    send(
        clinic,
        kit,
        referral_records(kit.kit_id, code, visit_at=visit_at, answers=answers, **options),
    )
    return code


def _url(clinic: Clinic, code: str, tail: str = "/checkin") -> str:
    return f"{clinic.live.url}/r/{code.replace('-', '')}{tail}"


def _sig(kit: EnrolledKit, code: str) -> str:
    return CODES.sign(code, kit.slip_key)


def _get(clinic: Clinic, kit: EnrolledKit, code: str, lang: str = "en") -> requests.Response:
    return requests.get(_url(clinic, code), params={"s": _sig(kit, code), "l": lang}, timeout=10)


def _post(
    clinic: Clinic, code: str, sig: str, fields: dict[str, str], lang: str = "en"
) -> requests.Response:
    """The answers sent, and the redirect followed as a browser does (to the page saying
    what they lead to)."""
    form = {"s": sig, "lang": lang, **fields}
    return requests.post(_url(clinic, code), data=form, timeout=10)


def _text(response: requests.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def _rows(clinic: Clinic, kit_id: str, code: str) -> list[tuple[Any, ...]]:
    with clinic.live.store.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    'SELECT "window", submitted_at, answers, warning, superseded_at '
                    "FROM followup_response WHERE kit_id = :k AND referral_code = :c ORDER BY id"
                ),
                {"k": kit_id, "c": code},
            )
        ]


def test_window_edges() -> None:
    all_windows = followups.windows({"w6": (38, 46), "w2": (11, 17), "w12": (77, 91)})
    assert [w.name for w in all_windows] == ["w2", "w6", "w12"]
    tick = timedelta(microseconds=1)
    w2 = all_windows[0]
    assert followups.current(all_windows, VISIT, VISIT + 11 * DAY - tick) is None
    assert followups.next_window(all_windows, VISIT, VISIT + 11 * DAY - tick) == w2
    assert followups.current(all_windows, VISIT, VISIT + 11 * DAY) == w2
    # Day 17 is the window's last day: open until visit + 18 days, exclusive.
    assert followups.current(all_windows, VISIT, VISIT + 18 * DAY - tick) == w2
    assert followups.current(all_windows, VISIT, VISIT + 18 * DAY) is None
    assert followups.next_window(all_windows, VISIT, VISIT + 18 * DAY) == all_windows[1]
    assert followups.current(all_windows, VISIT, VISIT + 92 * DAY - tick) == all_windows[2]
    assert followups.current(all_windows, VISIT, VISIT + 92 * DAY) is None
    assert followups.next_window(all_windows, VISIT, VISIT + 92 * DAY) is None


def test_the_page_before_between_and_after_the_windows(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    code = _referral(clinic, kit)
    clinic.clock.now = VISIT + 11 * DAY - timedelta(minutes=1)
    page = _get(clinic, kit, code)
    assert page.status_code == 200
    # 12:00 UTC on 3 December is 12:00 GMT in London: the date in the clinic's zone, labelled.
    assert "Your next check-in opens on Monday 23 November, 12:00 GMT." in _text(page)
    assert 'name="pain_nrs"' not in page.text
    clinic.clock.now = VISIT + 11 * DAY
    page = _get(clinic, kit, code)
    assert page.status_code == 200 and 'name="pain_nrs"' in page.text
    assert "week 2" in _text(page)
    clinic.clock.now = VISIT + 18 * DAY
    page = _get(clinic, kit, code)
    assert 'name="pain_nrs"' not in page.text
    assert "Your next check-in opens on Sunday 20 December, 12:00 GMT." in _text(page)
    clinic.clock.now = VISIT + 92 * DAY
    page = _get(clinic, kit, code)
    assert EN["over"] in _text(page) and 'name="pain_nrs"' not in page.text
    # A form posted after its window closed stores nothing.
    assert _post(clinic, code, _sig(kit, code), CALM).status_code == 200
    assert _rows(clinic, kit.kit_id, code) == []


def test_refused_withdrawn_and_pending_slips_are_not_asked(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    refused = _referral(clinic, kit, c2=False)
    page = _get(clinic, kit, refused)
    assert 'name="pain_nrs"' not in page.text
    assert "not shared" in _text(page).lower() or "tele-triage" in _text(page)
    assert _post(clinic, refused, _sig(kit, refused), CALM).status_code == 200
    assert _rows(clinic, kit.kit_id, refused) == []

    # Withdrawn on the slip's page.
    withdrawn = _referral(clinic, kit)
    done = requests.post(
        _url(clinic, withdrawn, "/withdraw"),
        data={"s": _sig(kit, withdrawn), "l": "en", "confirm": "yes"},
        timeout=10,
    )
    assert done.status_code == 200
    page = _get(clinic, kit, withdrawn)
    assert "Your consent is withdrawn" in _text(page) and 'name="pain_nrs"' not in page.text
    assert _post(clinic, withdrawn, _sig(kit, withdrawn), CALM).status_code == 200
    assert _rows(clinic, kit.kit_id, withdrawn) == []

    # C2 withdrawn at the booth by a later consent event.
    changed = CODES.new_code()
    records = referral_records(kit.kit_id, changed, visit_at=VISIT, answers=LEG)
    visit_id = records[1]["body"]["visit_id"]
    items = {"c1": True, "c2": False, "c3": False, "c4": False, "c5": False}
    send(clinic, kit, [*records, consent_change(kit.kit_id, visit_id, items, at=VISIT + DAY)])
    assert 'name="pain_nrs"' not in _get(clinic, kit, changed).text

    # Not arrived: the pending page.
    pending = CODES.new_code()
    page = _get(clinic, kit, pending)
    assert page.status_code == 200 and 'name="pain_nrs"' not in page.text
    assert _post(clinic, pending, _sig(kit, pending), CALM).status_code == 200
    assert _rows(clinic, kit.kit_id, pending) == []


def test_another_slips_signature_never_opens_this_check_in(clinic: Clinic) -> None:
    kit, other_kit = enroll_kit(clinic.live), enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    mine, theirs = _referral(clinic, kit), _referral(clinic, kit)
    wrong = _sig(kit, theirs)
    got = requests.get(_url(clinic, mine), params={"s": wrong}, timeout=10)
    assert got.status_code == 404 and 'name="pain_nrs"' not in got.text
    assert _post(clinic, mine, wrong, CALM).status_code == 404
    # The same code signed with another kit's key names that kit's slip, which has not
    # arrived: its pending page, never this kit's check-in.
    forged = CODES.sign(mine, other_kit.slip_key)
    answered = _post(clinic, mine, forged, CALM)
    assert answered.status_code == 200 and 'name="pain_nrs"' not in answered.text
    assert requests.get(_url(clinic, mine), timeout=10).status_code == 404
    assert _rows(clinic, kit.kit_id, mine) == [] and _rows(clinic, kit.kit_id, theirs) == []
    assert _rows(clinic, other_kit.kit_id, mine) == []


def test_questions_follow_what_was_asked_at_intake(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    bare, leg, both = (
        _referral(clinic, kit, answers=NO_LEG),
        _referral(clinic, kit, answers=LEG),
        _referral(clinic, kit, answers=LEG_SBI),
    )
    bare_page, leg_page, both_page = (_get(clinic, kit, c).text for c in (bare, leg, both))
    assert 'name="pain_nrs"' in bare_page and 'name="leg_pain_nrs"' not in bare_page
    assert 'name="sbi_leg_pain"' not in bare_page
    assert 'name="leg_pain_nrs"' in leg_page and 'name="sbi_leg_pain"' not in leg_page
    for name in followups.SBI_FIELDS:
        assert f'name="{name}"' in both_page
    for page in (bare_page, leg_page, both_page):
        for name in followups.CES_FIELDS:
            assert page.count(f'name="{name}"') == 2  # yes and no
        assert page.count('name="global_change"') == 7
    # Without leg pain at intake, no leg answer is stored even if one is posted.
    assert _post(clinic, bare, _sig(kit, bare), CALM).status_code == 200
    stored = json.loads(_rows(clinic, kit.kit_id, bare)[0][2])
    assert stored["leg_pain_nrs"] is None and stored["sbi"] is None and stored["pain_nrs"] == 3
    # An intake that asked the SBI needs its four items.
    refused = _post(clinic, both, _sig(kit, both), CALM)
    assert refused.status_code == 422 and 'id="sbi_sitting-err"' in refused.text
    sbi = {"sbi_leg_pain": "2", "sbi_numbness": "1", "sbi_weakness": "0", "sbi_sitting": "6"}
    assert _post(clinic, both, _sig(kit, both), {**CALM, **sbi}).status_code == 200
    stored = json.loads(_rows(clinic, kit.kit_id, both)[0][2])
    assert stored == {
        "pain_nrs": 3,
        "leg_pain_nrs": 2,
        "sbi": {"sbi_leg_pain": 2, "sbi_numbness": 1, "sbi_weakness": 0, "sbi_sitting": 6},
        "global_change": "much_better",
        "ces_saddle_numbness": "no",
        "ces_bladder_change": "no",
        "ces_bowel_change": "no",
        "ces_sexual_dysfunction": "no",
    }


def test_bad_input_shows_the_form_again_with_the_answers_kept(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit)
    bad = {**CALM, "pain_nrs": "7", "leg_pain_nrs": "11", "ces_bowel_change": "yes"}
    del bad["global_change"]
    page = _post(clinic, code, _sig(kit, code), bad)
    assert page.status_code == 422
    assert EN["missing"] in _text(page)
    assert 'id="leg_pain_nrs-err"' in page.text and 'id="global_change-err"' in page.text
    assert 'id="pain_nrs-err"' not in page.text
    assert '<option value="7" selected>' in page.text
    assert re.search(r'name="ces_bowel_change" value="yes" checked', page.text)
    assert re.search(r'name="ces_bladder_change" value="no" checked', page.text)
    assert _rows(clinic, kit.kit_id, code) == []


def test_a_resubmission_supersedes_and_keeps_the_history(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit)
    sig = _sig(kit, code)
    first = _post(clinic, code, sig, CALM)
    assert first.status_code == 200 and "Your week 2 answers are saved." in _text(first)
    # The page shows the answers given, to change them.
    again = _get(clinic, kit, code)
    assert '<option value="3" selected>' in again.text and "You answered on" in _text(again)
    # The landing page's link says so.
    landing = requests.get(_url(clinic, code, ""), params={"s": sig}, timeout=10)
    assert EN["link_done"].format(window="week 2") in _text(landing)
    clinic.clock.advance(days=2)
    assert _post(clinic, code, sig, {**CALM, "pain_nrs": "5"}).status_code == 200
    rows = _rows(clinic, kit.kit_id, code)
    assert [(r[0], json.loads(r[2])["pain_nrs"]) for r in rows] == [("w2", 3), ("w2", 5)]
    assert rows[0][4] == iso(VISIT + 14 * DAY) and rows[1][4] is None
    assert rows[0][1] == iso(VISIT + 12 * DAY) and rows[1][1] == iso(VISIT + 14 * DAY)
    history = followups.history(clinic.live.store, kit.kit_id, code)
    assert [h.superseded_at is None for h in history] == [False, True]
    # The next window is a response of its own.
    clinic.clock.now = VISIT + 40 * DAY
    assert _post(clinic, code, sig, CALM).status_code == 200
    current = [(r[0], r[4]) for r in _rows(clinic, kit.kit_id, code) if r[4] is None]
    assert current == [("w2", None), ("w6", None)]


def test_the_database_keeps_one_current_response_per_window(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    with pytest.raises(Exception), clinic.live.store.engine.begin() as conn:  # noqa: B017
        for _ in range(2):
            conn.execute(
                text(
                    'INSERT INTO followup_response (kit_id, referral_code, "window", '
                    "submitted_at, answers, warning) VALUES (:k, 'C', 'w2', :at, '{}', 0)"
                ),
                {"k": kit.kit_id, "at": iso(NOW)},
            )


def test_a_warning_sign_shows_the_emergency_instruction_at_once(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit)
    page = _post(clinic, code, _sig(kit, code), {**CALM, "ces_bladder_change": "yes"})
    assert page.status_code == 200
    shown = _text(page)
    assert EN["warning_title"] in shown and EN["warning_saved"] in shown
    assert 'href="tel:999"' in page.text  # the booth's own emergency number
    assert page.text.index('href="tel:999"') < page.text.index('class="warn"')
    (row,) = _rows(clinic, kit.kit_id, code)
    assert row[3] == 1 and json.loads(row[2])["ces_bladder_change"] == "new_or_worsening"
    calm = _post(clinic, code, _sig(kit, code), CALM)
    assert EN["warning_saved"] not in _text(calm)
    assert [r[3] for r in _rows(clinic, kit.kit_id, code)] == [1, 0]


def test_a_spanish_slip_is_asked_in_spanish(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit, language="es")
    page = _get(clinic, kit, code, lang="es")
    assert '<html lang="es">' in page.text
    shown = _text(page)
    assert ES["pain_nrs"] in shown and ES["much_better"] in shown and "semana 2" in shown
    assert EN["pain_nrs"] not in shown
    bad = _post(clinic, code, _sig(kit, code), {"pain_nrs": "4"}, lang="es")
    assert bad.status_code == 422 and ES["missing"] in _text(bad)
    done = _post(clinic, code, _sig(kit, code), {**CALM, "ces_saddle_numbness": "yes"}, "es")
    assert ES["warning_title"] in _text(done) and '<html lang="es">' in done.text
    landing = requests.get(_url(clinic, code, ""), params={"s": _sig(kit, code)}, timeout=10)
    assert ES["link_done"].format(window="semana 2") in _text(landing)


def test_the_landing_page_links_to_the_check_in_only_while_a_window_is_open(
    clinic: Clinic,
) -> None:
    kit = enroll_kit(clinic.live)
    code = _referral(clinic, kit)
    sig = _sig(kit, code)

    def link() -> bool:
        page = requests.get(_url(clinic, code, ""), params={"s": sig}, timeout=10)
        assert page.status_code == 200
        return f"/checkin?s={sig}" in page.text

    clinic.clock.now = VISIT + 10 * DAY
    assert not link()
    clinic.clock.now = VISIT + 11 * DAY
    assert link()
    clinic.clock.now = VISIT + 20 * DAY
    assert not link()
    clinic.clock.now = VISIT + 45 * DAY
    assert link()
    assert EN["link"].format(window="week 6") in _text(
        requests.get(_url(clinic, code, ""), params={"s": sig}, timeout=10)
    )


def test_visit_time_is_the_booths(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    code = _referral(clinic, kit, visit_at=datetime(2026, 11, 1, 23, 30, tzinfo=UTC))
    found = followups.intake(clinic.live.store, kit.kit_id, code)
    assert found is not None and found.visit_at == datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
    assert found.leg_pain and not found.sbi


def _worklist(web: requests.Session, clinic: Clinic) -> list[dict[str, Any]]:
    response = web.get(clinic.url + "/worklist.json", timeout=10)
    assert response.status_code == 200
    return list(response.json()["rows"])


def _warn(clinic: Clinic, kit: EnrolledKit, code: str) -> None:
    answered = _post(clinic, code, _sig(kit, code), {**CALM, "ces_saddle_numbness": "yes"})
    assert answered.status_code == 200 and EN["warning_saved"] in _text(answered)


def test_a_follow_up_warning_puts_the_referral_at_the_top_of_the_worklist(
    clinic: Clinic,
) -> None:
    store = clinic.live.store
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    web = sign_in(clinic, "dana")
    decided = _referral(clinic, kit, level="routine")
    closed = _referral(clinic, kit, level="urgent")
    self_care = _referral(clinic, kit, level="self_care")
    # Breached long ago, but of a lower tier.
    urgent = _referral(clinic, kit, level="urgent", visit_at=clinic.clock.now - 3 * DAY)
    wl.record_event(store, kit.kit_id, decided, "decision", "dana", {"decision": "advice"})
    wl.record_event(store, kit.kit_id, closed, "closure", "dana", {"reason": "reached, fine"})
    before = [r["code"] for r in _worklist(web, clinic)]
    assert before == [urgent]  # the list is now cached

    clinic.clock.advance(minutes=10)
    _warn(clinic, kit, decided)
    rows = _worklist(web, clinic)
    assert [r["code"] for r in rows] == [decided, urgent]
    top = rows[0]
    assert top["flag"] == "warning sign at follow-up (week 2)"
    assert top["level"] == "routine" and rows[1]["flag"] is None
    hours = ServerSettings.model_fields["deadline_emergency_hours"].default
    assert top["deadline"] == iso(clinic.clock.now + timedelta(hours=hours))

    # A closed referral and a self-care one without a call-back re-open too.
    clinic.clock.advance(minutes=10)
    _warn(clinic, kit, closed)
    clinic.clock.advance(minutes=1)
    _warn(clinic, kit, self_care)
    rows = _worklist(web, clinic)
    assert [r["code"] for r in rows] == [decided, closed, self_care, urgent]
    assert all(r["flag"] for r in rows[:3])

    # The clinician's page shows the flag and offers a new decision.
    page = web.get(f"{clinic.url}/r/{kit.kit_id}/{decided}", timeout=10)
    assert "warning sign at follow-up (week 2)" in page.text and 'id="decision"' in page.text

    # A decision after the response settles it; one before it never did.
    clinic.clock.advance(minutes=5)
    wl.record_event(store, kit.kit_id, decided, "decision", "dana", {"decision": "gp"})
    assert [r["code"] for r in _worklist(web, clinic)] == [closed, self_care, urgent]

    # A calm resubmission replaces the warning: the closed referral leaves again.
    clinic.clock.advance(minutes=5)
    assert _post(clinic, closed, _sig(kit, closed), CALM).status_code == 200
    assert [r["code"] for r in _worklist(web, clinic)] == [self_care, urgent]

    # A new warning after the decision re-opens it again, due from the new answer.
    clinic.clock.advance(minutes=5)
    _warn(clinic, kit, decided)
    assert [r["code"] for r in _worklist(web, clinic)] == [self_care, decided, urgent]


def test_a_withdrawn_referrals_warning_leaves_the_worklist(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    web = sign_in(clinic, "dana")
    code = _referral(clinic, kit, level="self_care")
    _warn(clinic, kit, code)
    assert [r["code"] for r in _worklist(web, clinic)] == [code]
    done = requests.post(
        _url(clinic, code, "/withdraw"),
        data={"s": _sig(kit, code), "l": "en", "confirm": "yes"},
        timeout=10,
    )
    assert done.status_code == 200
    assert _worklist(web, clinic) == []
    # The answers go with the withdrawal, as the visit's do.
    assert _rows(clinic, kit.kit_id, code) == []


def test_a_withdrawal_at_the_booth_removes_the_follow_up_answers(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = CODES.new_code()
    records = referral_records(kit.kit_id, code, visit_at=VISIT, answers=LEG)
    send(clinic, kit, records)
    kept = _referral(clinic, kit)
    for slip in (code, kept):
        assert _post(clinic, slip, _sig(kit, slip), CALM).status_code == 200
    send(clinic, kit, [withdrawal_record(kit.kit_id, records[1]["body"]["visit_id"])])
    assert _rows(clinic, kit.kit_id, code) == []
    assert len(_rows(clinic, kit.kit_id, kept)) == 1


def test_resubmissions_at_once_leave_one_current_response(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit)
    answers, errors = followups.parse(CALM, followups.Intake(VISIT, True, False))
    assert errors == []
    failures: list[BaseException] = []

    def answer() -> None:
        try:
            followups.submit(clinic.live.store, kit.kit_id, code, "w2", answers)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=answer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    rows = _rows(clinic, kit.kit_id, code)
    assert len(rows) == 8 and [r[4] for r in rows].count(None) == 1


def test_the_clinician_sees_each_check_in_on_the_referral_page(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit, answers=LEG_SBI)
    sig = _sig(kit, code)
    sbi = {"sbi_leg_pain": "2", "sbi_numbness": "1", "sbi_weakness": "0", "sbi_sitting": "3"}
    assert _post(clinic, code, sig, {**CALM, **sbi}).status_code == 200
    clinic.clock.advance(days=1)
    changed = {**CALM, **sbi, "pain_nrs": "4", "global_change": "slightly_worse"}
    assert _post(clinic, code, sig, {**changed, "ces_bladder_change": "yes"}).status_code == 200
    web = sign_in(clinic, "dana")
    page = web.get(f"{clinic.url}/r/{kit.kit_id}/{code}", timeout=10)
    assert page.status_code == 200
    table = _text(page).split("Follow-up check-ins", 1)[1].split("Log", 1)[0]
    rows = [" ".join(r.split()) for r in re.findall(r"<tr class=[^>]*>(.*?)</tr>", page.text, re.S)]
    # Newest first: the current answer with its warning sign, then the one it replaced.
    assert len(rows) == 2
    current = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rows[0])).split())
    replaced = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rows[1])).split())
    assert current.startswith("week 2 ") and " 4 2 6 / 24 Slightly worse bladder change" in current
    assert "(replaced" in replaced and " 3 2 6 / 24 Much better none" in replaced
    assert "Follow-up check-ins" in _text(page) and "No check-in yet." not in table


def test_a_reload_after_answering_shows_the_page_again_and_sends_nothing(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    clinic.clock.now = VISIT + 12 * DAY
    code = _referral(clinic, kit)
    sig = _sig(kit, code)
    form = {"s": sig, "lang": "en", **CALM, "ces_bowel_change": "yes"}
    sent = requests.post(_url(clinic, code), data=form, timeout=10, allow_redirects=False)
    assert sent.status_code == 303
    after = sent.headers["location"]
    assert after.startswith(f"/r/{code.replace('-', '')}/checkin?") and "saved=w2" in after
    for _ in range(2):  # the page, then a reload of it
        page = requests.get(clinic.live.url + after, timeout=10)
        assert page.status_code == 200 and EN["warning_saved"] in _text(page)
    assert len(_rows(clinic, kit.kit_id, code)) == 1
    # Another slip's signature on that address shows nothing of this one.
    other = _referral(clinic, kit)
    forged = after.replace(f"s={sig}", f"s={_sig(kit, other)}")
    assert EN["warning_saved"] not in _text(requests.get(clinic.live.url + forged, timeout=10))
