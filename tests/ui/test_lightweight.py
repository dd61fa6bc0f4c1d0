"""Pure parts of the UI, and the promise that the app module imports little."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from popup_kit.ui.screens.home import age_words, unsent_line


def test_unsent_line_gives_count_and_age_of_oldest() -> None:
    now = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
    assert unsent_line(0, None, now) == "unsent: 0"
    assert unsent_line(3, now - timedelta(hours=2, minutes=5), now) == "unsent: 3 (oldest 2h)"
    assert unsent_line(1, now - timedelta(minutes=45), now) == "unsent: 1 (oldest 45m)"
    assert age_words(timedelta(days=3)) == "3d"


def test_app_module_leaves_the_store_and_forms_for_later() -> None:
    code = (
        "import sys, popup_kit.ui.app\n"
        "heavy = [m for m in ('sqlmodel', 'sqlalchemy', 'forms', 'popup_kit.services', 'reportlab',"
        " 'qrcode', 'pyzbar', 'requests', 'textual.widgets._data_table') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
