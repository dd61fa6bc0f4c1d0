"""An attendee withdraws on a 390x844 Chromium from a real slip's URL, in English and in
Spanish, before and after the visit synced; the kit's next sync removes the contacts.

The browser runs in a process of its own (tests/support/phone_browser.py, Playwright
driving Debian's Chromium), so that its event loop stays out of the test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from popup_kit.domain import Contact
from popup_kit.services import VisitService
from popup_kit.slips import visit_url
from sync.server.withdraw_pages import TEXTS
from tests.kit.conftest import CONSENT_ALL, visit_input
from tests.kit.test_centre_withdrawal import report, sync_and_read
from tests.kit.test_sync_kit import enroll, kit
from tests.support.chromium import chromium
from tests.sync.live_server import run_server

BROWSER = Path(__file__).resolve().parents[1] / "support" / "phone_browser.py"
PEOPLE = {
    "en-after": Contact("Zebulon Quixano", "+44 7700 900111"),
    "es-after": Contact("Marisol Ybarra", "+34 622 456 789"),
    "en-before": Contact("Quentin Oxley", "+44 7700 900222"),
    "es-before": Contact("Ximena Zuloaga", "+34 611 987 654"),
}

pytestmark = pytest.mark.slow


def _browser_python() -> str:
    chromium()
    return sys.executable


def test_withdrawal_on_a_phone_in_english_and_spanish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    python = _browser_python()
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        config = kit(tmp_path, "kit-a", server.url)
        enroll(config, server, capsys)
        service = VisitService(config)
        codes: dict[str, str] = {}
        try:
            for name in ("en-after", "es-after", "en-before", "es-before"):
                if name == "en-before":
                    sync_and_read(config)  # the first two reach the centre first
                visit = service.record_visit(
                    visit_input(language=name[:2], consent=dict(CONSENT_ALL), contact=PEOPLE[name])
                )
                codes[name] = visit.code
        finally:
            service.close()
        flows = {}
        for name, code in codes.items():
            lang = name[:2]
            # Before the visit arrives the server knows its language from the URL only.
            url = visit_url(config, code, language=lang)
            flows[name] = [url, TEXTS[lang]["offer"], TEXTS[lang]["confirm"]]
        job = tmp_path / "job.json"
        shots = Path(os.environ.get("POPUP_KIT_SHOTS", tmp_path / "shots"))
        job.write_text(json.dumps({"flows": flows, "shots": str(shots)}))
        run = subprocess.run(
            [python, str(BROWSER), str(job)], capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout)
        for name in codes:
            lang = name[:2]
            headings = {step: (h1, page_lang) for step, h1, page_lang in seen[name]}
            assert headings["2-confirm"] == (TEXTS[lang]["confirm_title"], lang)
            assert headings["3-done"] == (TEXTS[lang]["done_title"], lang)
            assert headings["4-afterwards"] == (TEXTS[lang]["done_title"], lang)
        held = sync_and_read(config)
        for contact in PEOPLE.values():
            assert contact.name.encode() not in held and contact.phone.encode() not in held
        summary = report(config, capsys)
        assert sorted(summary["withdrawn"]["on_slip_page"]) == sorted(codes.values())
