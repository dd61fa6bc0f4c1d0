"""The phone-chase list /clinic/chase on the real server (SQLite and PostgreSQL): who is on
it and in what order, its refusal without a session, its access-audit entry; and in
Debian's Chromium at 1280x800 (screenshot to $POPUP_KIT_SHOTS)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync
from sqlalchemy import text

from printouts.codes import new_referral_code
from sync.server import reminders
from sync.server.settings import ServerSettings
from sync.server.store import iso
from tests.support.chromium import CHROMIUM, chromium
from tests.support.sms_gateway import sms_gateway
from tests.sync.clinic_support import (
    NOW,
    PASSWORD,
    Clinic,
    browser,
    referral_records,
    run_clinic,
    send,
    sign_in,
)
from tests.sync.live_server import enroll_kit, withdrawal_record

VISIT = NOW - timedelta(hours=1)
DAY = timedelta(days=1)
AT = VISIT + 15 * DAY


@pytest.fixture
def clinic(db_url: str) -> Iterator[Clinic]:
    with run_clinic(db_url, clinic_timezone="Europe/Madrid") as running:
        running.accounts.add_user("dana", "clinician", PASSWORD)
        running.accounts.add_user("cora", "coordinator", PASSWORD)
        yield running


def _fill(clinic: Clinic) -> dict[str, str]:
    """Referrals around the chase line at AT (chase after 3 days); returns their codes."""
    kit = enroll_kit(clinic.live, "booth-north")
    plan: dict[str, dict[str, Any]] = {
        "unreminded": {"visit_at": VISIT},  # w2 opened 4 days before AT
        "closing-first": {"visit_at": VISIT - 2 * DAY, "phone": "+34 612 345 678"},  # 6 days
        "week-6": {"visit_at": VISIT - 28 * DAY, "language": "es", "event": "Night market"},
        "too-soon": {"visit_at": VISIT - 25 * DAY},  # w6 opened 2 days before AT
        "responded": {"visit_at": VISIT - DAY},
        "no-c3": {"visit_at": VISIT, "c3": False},
        "withdrawn": {"visit_at": VISIT},
        "between-windows": {"visit_at": VISIT - 10 * DAY},  # w2 closed, w6 not open
    }
    codes = {name: new_referral_code() for name in plan}
    records: list[dict[str, Any]] = []
    for name, options in plan.items():
        records += referral_records(kit.kit_id, codes[name], **options)
    send(clinic, kit, records)
    visit_id = next(
        r["body"]["visit_id"]
        for r in records
        if r["record_type"] == "visit" and r["body"]["referral_code"] == codes["withdrawn"]
    )
    send(clinic, kit, [withdrawal_record(kit.kit_id, visit_id)])
    with clinic.live.store.engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO followup_response (kit_id, referral_code, "window", submitted_at, '
                "answers, warning) VALUES (:k, :c, 'w2', :t, '{}', 0)"
            ),
            {"k": kit.kit_id, "c": codes["responded"], "t": iso(AT - DAY)},
        )
    with sms_gateway() as gateway:
        settings = ServerSettings(database_url=clinic.live.db_url, sms_webhook_url=gateway.url)
        # Before "reminded"'s window opened: it never gets one (reminders off after).
        sent = reminders.run(
            clinic.live.store, settings, reminders.gateway_of(settings), VISIT + 10.5 * DAY
        )
    assert sent.sent == 2  # "closing-first" and "week-6"
    with clinic.live.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE followup_reminder SET status = 'failed' WHERE referral_code = :c"),
            {"c": codes["closing-first"]},
        )
    clinic.clock.now = AT
    return codes


def _cells(html: str) -> list[list[str]]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def test_chase_list_content_and_order(clinic: Clinic) -> None:
    codes = _fill(clinic)
    web = sign_in(clinic, "dana")
    page = web.get(clinic.url + "/chase", timeout=10)
    assert page.status_code == 200
    assert _cells(page.text) == [
        # Closing first: w2 of a visit 2 days before, closes visit + 18 d (CET, +01:00).
        [
            codes["closing-first"], "w2", "2026-12-02 12:00", "6", "2026-12-09 12:00",
            "+34 612 345 678", "en", "booth-north", "gateway failed",
        ],
        [
            codes["unreminded"], "w2", "2026-12-04 12:00", "4", "2026-12-11 12:00",
            "+44 7700 900123", "en", "booth-north", "none sent",
        ],
        [
            codes["week-6"], "w6", "2026-12-03 12:00", "5", "2026-12-12 12:00",
            "+44 7700 900123", "es", "booth-north · Night market", "sent",
        ],
    ]  # fmt: skip
    assert "Times in Europe/Madrid" in page.text
    for name in ("too-soon", "responded", "no-c3", "withdrawn", "between-windows"):
        assert codes[name] not in page.text, name
    # Linked from the worklist.
    assert 'href="/clinic/chase"' in web.get(clinic.url + "/", timeout=10).text
    # A coordinator sees it too.
    assert sign_in(clinic, "cora").get(clinic.url + "/chase", timeout=10).status_code == 200


def test_chase_list_refused_without_a_session_and_audited(clinic: Clinic) -> None:
    _fill(clinic)
    anonymous = browser().get(clinic.url + "/chase", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/clinic/signin"
    assert "+44" not in anonymous.text
    forged = browser()
    forged.cookies.set("popup_kit_session", "not-a-session")
    assert forged.get(clinic.url + "/chase", allow_redirects=False, timeout=10).status_code == 303
    web = sign_in(clinic, "dana")
    assert web.get(clinic.url + "/chase", timeout=10).status_code == 200
    entries = [e for e in clinic.accounts.audit_entries() if e.action == "view_chase"]
    assert [(e.user_name, e.detail) for e in entries] == [("dana", '{"rows": 3}')]


@pytest.mark.slow
def test_chase_page_in_chromium(sqlite_url: str, tmp_path: Path) -> None:
    chromium()
    shots = Path(os.environ.get("POPUP_KIT_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with run_clinic(sqlite_url, clinic_timezone="Europe/Madrid") as clinic:
        clinic.accounts.add_user("dana", "clinician", PASSWORD)
        codes = _fill(clinic)
        with playwright_sync.sync_playwright() as pw:
            chrome = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = chrome.new_page(viewport={"width": 1280, "height": 800})
            page.goto(clinic.url + "/signin")
            page.fill("input[name=name]", "dana")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(clinic.url + "/")
            page.click("text=Phone-chase list")
            page.wait_for_url(clinic.url + "/chase")
            rows = page.locator("tbody tr")
            assert rows.count() == 3
            assert rows.nth(0).locator("td").first.inner_text() == codes["closing-first"]
            page.screenshot(path=str(shots / "chase-1280x800.png"))
            chrome.close()
