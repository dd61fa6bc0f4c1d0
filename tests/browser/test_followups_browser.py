"""An attendee at 390x844 in Debian's Chromium opens the URL decoded from the QR of a real
slip PDF (the kit's own slip after a real sync), with the server's clock at day 12, and
completes the week-2 check-in; a second run answers a warning sign yes: the emergency page
shows, and the referral is first on a signed-in clinician's worklist at 1280x800 with its
flag. A Spanish slip's check-in is walked too. Screenshots go to ``POPUP_KIT_SHOTS``
(default: the test's temporary folder)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync

from popup_kit.services import VisitService
from popup_kit.slips import render_visit
from popup_kit.syncing import run_sync
from sync.server import worklist as wl
from tests.forms.answers import BENIGN, startback
from tests.kit.test_sync_kit import enroll, kit
from tests.kit.test_withdrawal import LEAVING, with_
from tests.support.chromium import CHROMIUM, chromium
from tests.support.slip_qr import qr_url
from tests.sync.clinic_support import PASSWORD, referral_records, run_clinic, send
from tests.sync.live_server import enroll_kit

pytestmark = pytest.mark.slow

LEG = {**BENIGN, "startback": startback(4, 4), "leg_pain_side": "unilateral"}
LEG = {**LEG, "pain_nrs": 6, "leg_pain_nrs": 7}


def _answer(page: Any, *, warning: bool) -> None:
    page.select_option("#pain_nrs", "3")
    page.select_option("#leg_pain_nrs", "2")
    page.check("input[name='global_change'][value='much_better']")
    for name in ("ces_saddle_numbness", "ces_bladder_change", "ces_bowel_change"):
        page.check(f"input[name='{name}'][value='no']")
    said = "yes" if warning else "no"
    page.check(f"input[name='ces_sexual_dysfunction'][value='{said}']")


def test_week_2_check_in_from_a_real_slip_then_a_warning_tops_the_worklist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium()
    shots = Path(os.environ.get("POPUP_KIT_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with run_clinic(f"sqlite:///{tmp_path / 'server.sqlite3'}") as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        clinic.clock.now = datetime.now(UTC)
        config = kit(tmp_path, "kit-a", clinic.live.url)
        enroll(config, clinic.live, capsys)
        service = VisitService(config)
        try:
            visit = service.record_visit(replace(with_(LEAVING), answers=LEG))
            spanish = service.record_visit(replace(with_(LEAVING), answers=LEG, language="es"))
            assert visit.triage == "routine" and spanish.triage == "routine"
            assert run_sync(config, service.store).all_confirmed
            url = qr_url(render_visit(config, visit).pdf)
            url_es = qr_url(render_visit(config, spanish).pdf)
        finally:
            service.close()
        # Day 12 after the booth visit; an urgent referral long overdue from another booth.
        clinic.clock.now = datetime.now(UTC) + timedelta(days=12)
        other = enroll_kit(clinic.live, "booth-south")
        overdue = "URG9-X9P2-CAW4"
        send(
            clinic,
            other,
            referral_records(
                "booth-south",
                overdue,
                level="urgent",
                visit_at=clinic.clock.now - timedelta(days=3),
            ),
        )
        # The slip's referral was already decided: the warning re-opens it.
        wl.record_event(
            clinic.live.store, config.kit_id, visit.code, "decision", "dana", {"decision": "advice"}
        )
        seen: dict[str, str] = {}
        with playwright_sync.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            phone = browser.new_page(viewport={"width": 390, "height": 844})

            def shot(name: str) -> None:
                phone.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                seen[name] = phone.inner_text("main")

            phone.goto(url)
            shot("01-landing")
            phone.click("p.checkin a.call")
            shot("02-checkin-form")
            phone.click("form[action='checkin'] button")
            shot("03-checkin-errors")
            _answer(phone, warning=False)
            phone.click("form[action='checkin'] button")
            shot("04-checkin-thanks")
            # The second run: a warning sign answered yes.
            phone.goto(url)
            phone.click("p.checkin a.call")
            shot("05-checkin-again")
            _answer(phone, warning=True)
            phone.click("form[action='checkin'] button")
            shot("06-warning-emergency")
            seen["tel"] = phone.get_attribute("a.call[href^='tel:']", "href") or ""
            # The Spanish slip.
            phone.goto(url_es)
            shot("07-es-landing")
            phone.click("p.checkin a.call")
            shot("08-es-checkin-form")
            phone.click("form[action='checkin'] button")
            shot("09-es-checkin-errors")

            desk = browser.new_page(viewport={"width": 1280, "height": 800})
            desk.goto(clinic.url + "/signin")
            desk.fill("input[name='name']", "dana")
            desk.fill("input[name='password']", PASSWORD)
            desk.press("input[name='password']", "Enter")
            desk.wait_for_url(clinic.url + "/")
            desk.screenshot(path=str(shots / "10-worklist.png"))
            first = desk.locator("#rows tr").first
            seen["first-row"] = first.inner_text()
            seen["codes"] = "|".join(desk.locator("#rows tr a.code").all_inner_texts())
            browser.close()
    assert "week 2" in seen["01-landing"]
    assert "A few questions on how your back is now, week 2" in seen["02-checkin-form"]
    assert "Please answer the questions marked below." in seen["03-checkin-errors"]
    assert "Your week 2 answers are saved." in seen["04-checkin-thanks"]
    assert "Your next check-in opens on" in seen["04-checkin-thanks"]
    assert "You answered on" in seen["05-checkin-again"]
    assert "Go to the emergency department now" in seen["06-warning-emergency"]
    assert "do not wait for their call" in seen["06-warning-emergency"]
    assert seen["tel"].startswith("tel:")
    assert "semana 2" in seen["07-es-landing"]
    assert "¿Cuánto le duele la espalda ahora mismo" in seen["08-es-checkin-form"]
    assert "Responda las preguntas marcadas abajo." in seen["09-es-checkin-errors"]
    assert seen["codes"].split("|")[:2] == [visit.code, overdue]
    assert "warning sign at follow-up (week 2)" in seen["first-row"]
