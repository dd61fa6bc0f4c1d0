"""Issue 9's Done-when, end to end: a slip printed by the kit's own slip code, its QR read
back from the rasterised PDF, opened in Debian's Chromium at 390x844; the urgent attendee
asks for a call-back; a clinician at 1280x800 signs in, finds the referral at its place
among referrals of every level, records a failed attempt, then a reached call with an
urgent in-person review; the attendee's page, reloaded, says what was arranged.
Screenshots go to ``POPUP_KIT_SHOTS`` (default: the test's temporary folder)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright import sync_api as playwright_sync
from sqlalchemy import text

from popup_kit.services import VisitService
from popup_kit.slips import render_visit, visit_url
from popup_kit.syncing import run_sync
from sync.server.accounts import Accounts
from tests.forms.answers import BENIGN
from tests.kit.test_sync_kit import enroll, kit
from tests.kit.test_withdrawal import LEAVING, with_
from tests.support.chromium import CHROMIUM, chromium
from tests.support.slip_qr import qr_url
from tests.sync.clinic_support import PASSWORD, referral_records
from tests.sync.live_server import LiveServer, enroll_kit, ingest, run_server

pytestmark = pytest.mark.slow
LONDON = ZoneInfo("Europe/London")


def _seed(server: LiveServer, code: str, level: str, visit_at: datetime, rule: str) -> None:
    booth = enroll_kit(server, f"seed-{code[:4].lower()}")
    records = referral_records(
        booth.kit_id, code, level=level, visit_at=visit_at, rules=(rule,), event="Night market"
    )
    response = ingest(server, booth, records)
    response.raise_for_status()
    assert all(r["status"] == "accepted" for r in response.json()["results"]), response.text


def test_printed_slip_to_call_back_to_escalation_on_the_attendees_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium()
    shots = Path(os.environ.get("POPUP_KIT_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with run_server(
        f"sqlite:///{tmp_path / 'server.sqlite3'}", clock=lambda: datetime.now(UTC)
    ) as server:
        config = kit(tmp_path, "kit-a", server.url)
        enroll(config, server, capsys)
        service = VisitService(config)
        try:
            answers = {**BENIGN, "fever_or_rigors": True}
            visit = service.record_visit(replace(with_(LEAVING), answers=answers))
            assert visit.triage == "urgent"
            pdf = render_visit(config, visit).pdf
            assert run_sync(config, service.store).all_confirmed
        finally:
            service.close()
        url = qr_url(pdf)
        assert url == visit_url(config, visit.code)
        now = datetime.now(UTC)
        h = timedelta(hours=1)
        # Around the printed slip: one referral of each level before and after it.
        _seed(server, "EMG1-AW4T-7K7M", "emergency", now - 2 * h, "EM1")
        _seed(server, "URG1-X9P2-CAW4", "urgent", now - 23 * h, "UR10")
        _seed(server, "RTN1-K7M3-Q9P2", "routine", now - 72 * h, "RO1")
        time.sleep(1.1)  # visited after the printed slip, to the second
        _seed(server, "URG2-T7K7-M3QX", "urgent", datetime.now(UTC), "UR9")
        Accounts(server.store).add_user("dana", "clinician", PASSWORD)

        with playwright_sync.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
            ).new_page()
            phone.goto(url)
            phone.screenshot(path=str(shots / "01-slip-landing.png"), full_page=True)
            phone.click("p.book a.call")
            phone.wait_for_load_state()
            call_page = phone.url
            asked = phone.locator("main").inner_text()
            assert "No call times are free at the moment." in asked, asked
            assert "A clinician will call you within 24 hours, by" in asked
            assert phone.locator("button.slot").count() == 0  # urgent: no routine slot
            phone.screenshot(path=str(shots / "02-call-page.png"), full_page=True)
            phone.get_by_role("button", name="Ask for a call-back").click()
            phone.wait_for_load_state()
            requested = phone.locator("main").inner_text()
            phone.screenshot(path=str(shots / "03-call-back-asked.png"), full_page=True)

            desk = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            desk.goto(server.url + "/clinic/")
            assert desk.url.endswith("/clinic/signin")
            desk.screenshot(path=str(shots / "04-signin.png"))
            desk.locator("#name").fill("dana")
            desk.locator("#password").fill(PASSWORD)
            desk.get_by_role("button", name="Sign in").click()
            desk.wait_for_url(server.url + "/clinic/")
            codes = desk.locator("#rows a.code").all_inner_texts()
            # Emergency safety call, then urgent by deadline (24 h from each visit), then
            # routine: the printed slip between the urgent visit before it and the one after.
            assert codes == [
                "EMG1-AW4T-7K7M",
                "URG1-X9P2-CAW4",
                visit.code,
                "URG2-T7K7-M3QX",
                "RTN1-K7M3-Q9P2",
            ]
            row = desk.locator("#rows tr", has=desk.locator("a.code", has_text=visit.code))
            assert "to" in row.inner_text()  # the call-back window, not "none"
            desk.screenshot(path=str(shots / "05-worklist.png"), full_page=True)

            desk.get_by_role("link", name=visit.code).click()
            desk.wait_for_url(f"**/clinic/r/{config.kit_id}/{visit.code}")
            desk.screenshot(path=str(shots / "06-referral.png"), full_page=True)
            desk.get_by_label("No answer").check()
            desk.get_by_role("button", name="Record attempt").click()
            desk.wait_for_load_state()
            assert "No answer" in desk.locator("#log").inner_text()
            desk.screenshot(path=str(shots / "07-failed-attempt.png"), full_page=True)
            desk.get_by_label("Reached").check()
            desk.get_by_role("button", name="Record attempt").click()
            desk.wait_for_load_state()
            # Typed in the clinic's own time (the server's default zone, Europe/London).
            arranged = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(LONDON)
            desk.locator("#decision-choice").select_option("urgent_in_person")
            desk.locator("#arranged").fill(arranged.strftime("%Y-%m-%dT%H:%M"))
            desk.locator("#decision-note").fill("Fever with back pain: seen in clinic today.")
            desk.get_by_role("button", name="Record decision").click()
            desk.wait_for_load_state()
            facts = desk.locator(".facts").inner_text()
            desk.screenshot(path=str(shots / "08-escalated.png"), full_page=True)
            desk.get_by_role("link", name="← Worklist").click()
            desk.wait_for_url(server.url + "/clinic/")
            left = desk.locator("#rows a.code").all_inner_texts()

            phone.goto(call_page)
            after = phone.locator("main").inner_text()
            phone.screenshot(path=str(shots / "09-attendee-arranged.png"), full_page=True)
            browser.close()
        with server.store.engine.connect() as conn:
            kinds = conn.execute(
                text("SELECT kind FROM referral_event WHERE referral_code = :c ORDER BY id"),
                {"c": visit.code},
            ).all()
    assert "You asked for a call-back: a clinician will call you by" in requested, requested
    assert "If nobody has called you by" in requested
    shown = arranged.strftime("%Y-%m-%d %H:%M %Z")
    assert f"Urgent in-person review, arranged {shown}" in facts
    assert [k for (k,) in kinds] == ["attempt", "attempt", "decision"]
    assert visit.code not in left and "URG2-T7K7-M3QX" in left
    assert "What was arranged" in after and "An urgent in-person review" in after
    for name in ("01-slip-landing", "03-call-back-asked", "05-worklist", "09-attendee-arranged"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
