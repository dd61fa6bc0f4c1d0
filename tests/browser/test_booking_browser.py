"""An attendee at 390x844 in Debian's Chromium opens the URL read from the QR of a real slip
PDF (printed by the kit's own slip code, rasterised, decoded), books a call, changes it and
cancels it.

The browser runs in a process of its own (booking_walk.py: Playwright driving Debian's
Chromium, tests/support/chromium.py).
Screenshots go to ``POPUP_KIT_SHOTS`` (default: the test's temporary folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from popup_kit.services import VisitService
from popup_kit.slips import render_visit, visit_url
from popup_kit.syncing import run_sync
from sync.server.bookings import Bookings
from tests.forms.answers import BENIGN, startback
from tests.kit.test_sync_kit import enroll, kit
from tests.kit.test_withdrawal import LEAVING, with_
from tests.support.chromium import chromium
from tests.support.slip_qr import qr_url
from tests.sync.live_server import run_server

pytestmark = pytest.mark.slow


def test_phone_books_changes_and_cancels_from_a_real_slip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium()
    shots = Path(os.environ.get("POPUP_KIT_SHOTS") or tmp_path / "shots")
    with run_server(
        f"sqlite:///{tmp_path / 'server.sqlite3'}", clock=lambda: datetime.now(UTC)
    ) as server:
        config = kit(tmp_path, "kit-a", server.url)
        enroll(config, server, capsys)
        service = VisitService(config)
        try:
            # Moderate STarT Back risk: a routine referral, offered call slots.
            routine = with_(LEAVING)
            answers = {**BENIGN, "startback": startback(4, 4)}
            visit = service.record_visit(replace(routine, answers=answers))
            assert visit.triage == "routine"
            pdf = render_visit(config, visit).pdf
            answers = {**BENIGN, "ces_bowel_change": "new_or_worsening"}
            urgent = service.record_visit(replace(routine, answers=answers))
            assert urgent.triage == "emergency"
            assert run_sync(config, service.store).all_confirmed
        finally:
            service.close()
        # The URL as a phone's camera reads it from the printed slip.
        url = qr_url(pdf)
        assert url == visit_url(config, visit.code)
        emergency_url = visit_url(config, urgent.code)
        calls = Bookings(server.store.engine, clock=server.store.clock)
        soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
        first = calls.add_slots(soon, 15, 1, weeks=1, zone=ZoneInfo("Europe/London"))[0]
        second = calls.add_slots(
            soon + timedelta(hours=1), 15, 1, weeks=1, zone=ZoneInfo("Europe/London")
        )[0]
        walked = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("booking_walk.py")),
                url,
                emergency_url,
                str(shots),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert walked.returncode == 0, walked.stderr
        seen = json.loads(walked.stdout)
        with server.store.engine.connect() as conn:
            rows = conn.execute(text("SELECT slot_id, status FROM call_booking ORDER BY id")).all()
            booked = conn.execute(text("SELECT id, booked FROM call_slot ORDER BY id")).all()
    assert "Book a call" in seen["01-landing"]
    assert len(json.loads(seen["slots"])) == 2
    assert "This time is held for you" in seen["03-held"]
    assert "Your call is booked" in seen["04-booked"]
    # The change moved the booking to the other slot; the cancel gave it back.
    assert [tuple(r) for r in rows] == [
        (first.slot_id, "cancelled"),
        (second.slot_id, "cancelled"),
    ]
    assert "Until you confirm, your call stays booked for" in seen["05-change-held"]
    assert "Your call is booked" in seen["06-changed"]
    assert "Your call is booked" not in seen["07-cancelled"]
    assert [tuple(r) for r in booked] == [(first.slot_id, 0), (second.slot_id, 0)]
    assert seen["tel"].startswith("tel:") and seen["forms"] == "0"
    assert "Do not wait for a call" in seen["10-emergency-call"]
    for name in ("01-landing", "04-booked", "07-cancelled", "10-emergency-call"):
        assert "112" in seen[name] or "999" in seen[name]
        assert (shots / f"{name}.png").stat().st_size > 10_000
