"""A clinician in Debian's Chromium at 1280x800: signs in, finds a referral at its place
in the worklist, records a failed attempt, then a reached call with an escalation; the
worklist refreshes itself when a referral arrives. Screenshots go to $POPUP_KIT_SHOTS.
Playwright drives Debian's Chromium (tests/support/chromium.py); no browser download.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync

from tests.support.chromium import CHROMIUM, chromium
from tests.sync.clinic_support import NOW, PASSWORD, referral_records, run_clinic, send
from tests.sync.live_server import enroll_kit

pytestmark = pytest.mark.slow


def test_clinician_works_a_referral_in_chromium(sqlite_url: str, tmp_path: Path) -> None:
    chromium()
    shots = Path(os.environ.get("POPUP_KIT_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with run_clinic(sqlite_url) as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        clinic.accounts.add_user("cora", "coordinator", PASSWORD)
        north, south = (
            enroll_kit(clinic.live, "booth-north"),
            enroll_kit(clinic.live, "booth-south"),
        )
        h = timedelta(hours=1)
        records: list[dict[str, Any]] = []
        for code, level, at, rules, c3 in (
            ("RTN1-K7M3-Q9P2", "routine", NOW - 30 * h, ("RO1",), True),
            ("URG1-X9P2-CAW4", "urgent", NOW - 26 * h, ("UR10",), True),
            ("URG2-T7K7-M3QX", "urgent", NOW - 3 * h, ("UR9",), True),
            ("RTN2-M3QX-9P2C", "routine", NOW - 50 * h, ("RO1",), False),
        ):
            records += referral_records(
                "booth-north",
                code,
                level=level,
                visit_at=at,
                rules=rules,
                c3=c3,
                event="Night market",
                age=58,
            )
        send(clinic, north, records)
        send(
            clinic,
            south,
            referral_records(
                "booth-south",
                "EMG1-AW4T-7K7M",
                level="emergency",
                visit_at=NOW - 2 * h,
                rules=("EM1",),
                event="Community centre",
                age=44,
            ),
        )
        target = "URG2-T7K7-M3QX"
        with playwright_sync.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.clock.install()
            page.goto(clinic.url + "/")
            assert page.url.endswith("/clinic/signin")
            page.screenshot(path=str(shots / "01-signin.png"))
            # Keyboard only: the name field has focus; Tab to the password; Enter signs in.
            page.keyboard.type("dana")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(clinic.url + "/")
            codes = page.locator("#rows a.code").all_inner_texts()
            # Emergency safety call first, then urgent by deadline (the breached one first).
            assert codes == [
                "EMG1-AW4T-7K7M",
                "URG1-X9P2-CAW4",
                target,
                "RTN2-M3QX-9P2C",
                "RTN1-K7M3-Q9P2",
            ]
            assert page.locator("tr.breached").count() == 1
            assert "70-79" not in page.content() and "50-59" in page.content()
            page.screenshot(path=str(shots / "02-worklist.png"), full_page=True)

            page.get_by_role("link", name=target).click()
            page.wait_for_url(f"**/clinic/r/booth-north/{target}")
            page.screenshot(path=str(shots / "03-referral.png"), full_page=True)
            clinic.clock.advance(minutes=4)
            page.get_by_label("No answer").check()
            page.locator("#attempt-note").fill("Rang twice, no voicemail.")
            page.get_by_role("button", name="Record attempt").click()
            page.wait_for_load_state()
            assert "No answer" in page.locator("#log").inner_text()
            page.screenshot(path=str(shots / "04-failed-attempt.png"), full_page=True)

            clinic.clock.advance(minutes=11)
            page.get_by_label("Reached").check()
            page.get_by_role("button", name="Record attempt").click()
            page.wait_for_load_state()
            page.locator("#decision-choice").select_option("urgent_imaging")
            page.locator("#arranged").fill("2026-11-23T12:10")
            page.locator("#decision-note").fill("New foot drop since yesterday; MRI booked today.")
            page.get_by_role("button", name="Record decision").click()
            page.wait_for_load_state()
            facts = page.locator(".facts").inner_text()
            assert "Urgent imaging, arranged 2026-11-23 12:10 GMT" in facts
            assert "First contact\n2026-11-23 12:15 GMT" in facts
            page.screenshot(path=str(shots / "05-escalated.png"), full_page=True)

            page.get_by_role("link", name="← Worklist").click()
            page.wait_for_url(clinic.url + "/")
            assert target not in page.locator("#rows").inner_text()
            # A new referral arrives: the page shows it at its next refresh, no reload.
            send(
                clinic,
                south,
                referral_records(
                    "booth-south",
                    "EMG2-QXC7-AW4T",
                    level="emergency",
                    visit_at=NOW,
                    rules=("EM3",),
                    event="Community centre",
                ),
            )
            assert "EMG2-QXC7-AW4T" not in page.locator("#rows").inner_text()
            page.clock.fast_forward("00:31")
            page.locator("#rows a.code", has_text="EMG2-QXC7-AW4T").wait_for()
            assert page.locator("#count").inner_text() == "5"
            page.screenshot(path=str(shots / "06-worklist-refreshed.png"), full_page=True)

            coordinator = browser.new_page(viewport={"width": 1280, "height": 800})
            coordinator.goto(clinic.url + "/signin")
            coordinator.locator("#name").fill("cora")
            coordinator.locator("#password").fill(PASSWORD)
            coordinator.get_by_role("button", name="Sign in").click()
            coordinator.get_by_role("link", name="Access audit").click()
            audit = coordinator.locator("table").inner_text()
            assert "decision" in audit and target in audit
            coordinator.screenshot(path=str(shots / "07-audit.png"), full_page=True)
            browser.close()
