"""The centre's accounts on the real server (SQLite and PostgreSQL): sign-in, sessions,
CSRF, idle timeout, attempt limits, disabled accounts, and the access audit."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.sync.clinic_support import (
    PASSWORD,
    Clinic,
    browser,
    csrf_of,
    page_csrf,
    referral_records,
    run_clinic,
    send,
    sign_in,
    try_sign_in,
)
from tests.sync.live_server import enroll_kit

COOKIE = "popup_kit_session"


@pytest.fixture
def clinic(db_url: str) -> Iterator[Clinic]:
    with run_clinic(db_url) as running:
        running.accounts.add_user("dana", "clinician", PASSWORD)
        running.accounts.add_user("cora", "coordinator", PASSWORD)
        yield running


def _events(clinic: Clinic) -> int:
    with clinic.live.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM referral_event")).scalar_one())


def _sessions(clinic: Clinic) -> list[tuple[str, str | None]]:
    with clinic.live.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT id_hash, user_name FROM staff_session")).all()
    return [(r[0], r[1]) for r in rows]


def test_no_clinician_page_without_a_session(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(clinic, kit, referral_records(kit.kit_id, "AAAA-BBBB-CCCC", phone="+44 7700 900555"))
    web = browser()
    for path in ("/", "/r/" + kit.kit_id + "/AAAA-BBBB-CCCC", "/audit"):
        response = web.get(clinic.url + path, allow_redirects=False, timeout=10)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/clinic/signin"
        assert "AAAA-BBBB-CCCC" not in response.text and "900555" not in response.text
    for path in ("/worklist.json", "/audit.json"):
        response = web.get(clinic.url + path, timeout=10)
        assert response.status_code == 401, path
        assert "AAAA" not in response.text
    posted = web.post(
        clinic.url + f"/r/{kit.kit_id}/AAAA-BBBB-CCCC/attempt",
        data={"result": "reached"},
        allow_redirects=False,
        timeout=10,
    )
    assert posted.status_code == 303 and _events(clinic) == 0
    # A cookie the server never issued is no session either.
    web.cookies.set(COOKIE, "attacker-chosen-value", path="/clinic")
    assert web.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 303


def test_session_cookie_is_httponly_strict_and_rotated_at_sign_in(clinic: Clinic) -> None:
    web = browser()
    form = web.get(clinic.url + "/signin", timeout=10)
    before = web.cookies.get(COOKIE, path="/clinic")
    assert before
    set_cookie = form.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert "path=/clinic" in set_cookie and "secure" not in set_cookie
    response = web.post(
        clinic.url + "/signin",
        data={"csrf": csrf_of(form.text), "name": "dana", "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 303
    after = web.cookies.get(COOKIE, path="/clinic")
    assert after and after != before
    assert web.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 200
    # Whoever knew the id from before sign-in (planted or seen) holds nothing.
    planted = browser()
    planted.cookies.set(COOKIE, before, path="/clinic")
    answer = planted.get(clinic.url + "/", allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["location"] == "/clinic/signin"
    assert [user for _, user in _sessions(clinic)] == ["dana"]
    # The database keeps only a hash of the id.
    assert all(after not in id_hash for id_hash, _ in _sessions(clinic))


def test_secure_cookie_when_the_public_url_is_https(db_url: str) -> None:
    with run_clinic(db_url, public_url="https://triage.example.org") as clinic:
        form = browser().get(clinic.url + "/signin", timeout=10)
        assert "secure" in form.headers["set-cookie"].lower()


def test_csrf_refused_on_every_form(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    code = "AAAA-BBBB-CCCC"
    send(clinic, kit, referral_records(kit.kit_id, code))
    # Sign-in without the form's token, or with another browser's.
    web = browser()
    web.get(clinic.url + "/signin", timeout=10)
    other = csrf_of(browser().get(clinic.url + "/signin", timeout=10).text)
    for token in (None, other, ""):
        data = {"name": "dana", "password": PASSWORD}
        if token is not None:
            data["csrf"] = token
        refused = web.post(clinic.url + "/signin", data=data, allow_redirects=False, timeout=10)
        assert refused.status_code == 403
        assert web.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 303
    dana = sign_in(clinic, "dana")
    eve = sign_in(clinic, "cora")
    eve_token = page_csrf(clinic, eve)
    for kind, data in (
        ("attempt", {"result": "reached"}),
        ("decision", {"decision": "gp"}),
        ("closure", {"reason": "duplicate"}),
        ("note", {"note": "hello"}),
    ):
        for token in (None, eve_token, "x" * 43):
            form = dict(data) if token is None else {**data, "csrf": token}
            response = dana.post(
                clinic.url + f"/r/{kit.kit_id}/{code}/{kind}",
                data=form,
                allow_redirects=False,
                timeout=10,
            )
            assert response.status_code == 403, (kind, token)
    assert _events(clinic) == 0
    # Sign-out needs the token too: without it the session lives on.
    assert dana.post(clinic.url + "/signout", data={}, timeout=10).status_code == 403
    assert dana.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 200
    token = page_csrf(clinic, dana)
    out = dana.post(
        clinic.url + "/signout", data={"csrf": token}, allow_redirects=False, timeout=10
    )
    assert out.status_code == 303
    assert dana.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 303


def test_idle_timeout_ends_the_session(db_url: str) -> None:
    with run_clinic(db_url, session_idle_minutes=30) as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        web = sign_in(clinic, "dana")
        for _ in range(3):  # each request restarts the idle time
            clinic.clock.advance(minutes=29)
            assert web.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 200
        clinic.clock.advance(minutes=30, seconds=1)
        answer = web.get(clinic.url + "/", allow_redirects=False, timeout=10)
        assert answer.status_code == 303 and answer.headers["location"] == "/clinic/signin"
        assert _sessions(clinic) == []
        json_answer = web.get(clinic.url + "/worklist.json", timeout=10)
        assert json_answer.status_code == 401


def test_disabled_user_cannot_sign_in_and_loses_open_sessions(clinic: Clinic) -> None:
    web = sign_in(clinic, "dana")
    assert clinic.accounts.disable_user("dana")
    assert web.get(clinic.url + "/", allow_redirects=False, timeout=10).status_code == 303
    refused = try_sign_in(clinic, browser(), "dana", PASSWORD)
    assert refused.status_code == 401
    assert "wrong name or password, or the account is disabled" in refused.text
    assert _signed_in_users(clinic) == []


def _signed_in_users(clinic: Clinic) -> list[str]:
    return [u for _, u in _sessions(clinic) if u is not None]


def test_attempt_limit_per_account(db_url: str) -> None:
    with run_clinic(db_url, signin_failures_per_account=5, signin_lockout_minutes=15) as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        clinic.accounts.add_user("cora", "coordinator", PASSWORD)
        web = browser()
        for _ in range(5):
            assert try_sign_in(clinic, web, "dana", "wrong password!").status_code == 401
        locked = try_sign_in(clinic, web, "dana", PASSWORD)
        assert locked.status_code == 401 and "too many failed sign-ins" in locked.text
        assert _signed_in_users(clinic) == []
        # Another account from the same address is not locked by dana's failures.
        sign_in(clinic, "cora")
        clinic.clock.advance(minutes=15, seconds=1)
        sign_in(clinic, "dana")


def test_attempt_limit_per_address(db_url: str) -> None:
    with run_clinic(
        db_url, signin_failures_per_account=50, signin_failures_per_address=8
    ) as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        web = browser()
        for i in range(8):  # a different name each time: only the address counts them
            assert try_sign_in(clinic, web, f"guess{i}", "wrong password!").status_code == 401
        locked = try_sign_in(clinic, web, "dana", PASSWORD)
        assert "too many failed sign-ins" in locked.text
        with clinic.live.store.engine.connect() as conn:
            held = conn.execute(
                text("SELECT COUNT(*) FROM signin_attempt WHERE ok = 0")
            ).scalar_one()
        assert held == 8  # counted in the database, so every worker sees them
        clinic.clock.advance(minutes=16)
        sign_in(clinic, "dana")


def test_audit_entry_for_each_view_and_change(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    code = "AAAA-BBBB-CCCC"
    send(clinic, kit, referral_records(kit.kit_id, code))
    dana = sign_in(clinic, "dana")
    page = clinic.url + f"/r/{kit.kit_id}/{code}"
    for _ in range(2):
        assert dana.get(page, timeout=10).status_code == 200
    token = page_csrf(clinic, dana)
    dana.post(page + "/attempt", data={"csrf": token, "result": "no_answer"}, timeout=10)
    dana.post(page + "/note", data={"csrf": token, "note": "left a voicemail"}, timeout=10)
    cora = sign_in(clinic, "cora")
    assert dana.get(clinic.url + "/audit", timeout=10).status_code == 403
    assert dana.get(clinic.url + "/audit.json", timeout=10).status_code == 403
    exported = cora.get(clinic.url + "/audit.json", timeout=10)
    assert exported.status_code == 200
    mine = [e for e in exported.json() if e["referral_code"] == code]
    # Newest first: the two views, the attempt, the note (the redirect's view after each).
    actions = [e["action"] for e in reversed(mine)]
    assert actions == [
        "view_referral",
        "view_referral",
        "attempt",
        "view_referral",
        "note",
        "view_referral",
    ]
    assert all(e["user"] == "dana" and e["kit_id"] == kit.kit_id for e in mine)
    assert all(e["at"].endswith("Z") for e in mine)
    attempt = next(e for e in mine if e["action"] == "attempt")
    assert '"result": "no_answer"' in attempt["detail"]
    # The note's words stay in the referral's log, not in the audit.
    assert all("voicemail" not in e["detail"] for e in exported.json())
    page_html = cora.get(clinic.url + "/audit", timeout=10).text
    assert "view_referral" in page_html and code in page_html


def test_sessions_past_their_idle_time_are_removed(clinic: Clinic) -> None:
    for _ in range(3):  # anyone can open the sign-in form; each makes a session
        browser().get(clinic.url + "/signin", timeout=10)
    sign_in(clinic, "dana")
    assert len(_sessions(clinic)) == 4  # three forms, and dana's (her form's one ended)
    clinic.clock.advance(minutes=31)
    browser().get(clinic.url + "/signin", timeout=10)
    assert [user for _, user in _sessions(clinic)] == [None]


def test_the_worklists_own_refresh_does_not_keep_a_session_alive(db_url: str) -> None:
    with run_clinic(db_url, session_idle_minutes=30) as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        web = sign_in(clinic, "dana")
        for _ in range(59):  # the page polls every 30 s while nobody is at the screen
            clinic.clock.advance(seconds=30)
            assert web.get(clinic.url + "/worklist.json", timeout=10).status_code == 200
        clinic.clock.advance(seconds=31)
        assert web.get(clinic.url + "/worklist.json", timeout=10).status_code == 401
        answer = web.get(clinic.url + "/", allow_redirects=False, timeout=10)
        assert answer.status_code == 303 and answer.headers["location"] == "/clinic/signin"


def test_the_audit_page_shows_times_in_the_clinics_zone(sqlite_url: str) -> None:
    with run_clinic(sqlite_url, clinic_timezone="America/New_York") as clinic:
        clinic.accounts.add_user("cora", "coordinator", PASSWORD)
        cora = sign_in(clinic, "cora")
        page = cora.get(clinic.url + "/audit", timeout=10).text
        at = clinic.clock()
        local = at.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M %Z")
        assert local.endswith(("EST", "EDT")) and f">{local}</time>" in page
        assert f'datetime="{at.strftime("%Y-%m-%dT%H:%M")}' in page
        assert "times in America/New_York time" in page
