"""Pure parts of the UI, and the promise that the app module imports little."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from popup_kit.domain import UnsentStatus
from popup_kit.ui.screens.home import RECORDS_NOTE, age_words, unsent_line


def test_unsent_line_gives_count_and_age_of_oldest() -> None:
    now = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
    assert unsent_line(UnsentStatus(0, None), now).startswith("Everything recorded here")
    two_hours = UnsentStatus(6, now - timedelta(hours=2, minutes=5), visits=3)
    assert unsent_line(two_hours, now).splitlines() == [
        "Not sent yet: 3 visits (6 records), oldest 2h",
        RECORDS_NOTE,
    ]
    # a kit with no server never hears that its records reached one
    assert unsent_line(UnsentStatus(0, None), now, enrolled=False) == (
        "Nothing is waiting to be sent."
    )
    assert unsent_line(two_hours, now, enrolled=False).startswith(
        "Only on this laptop: 3 visits (6 records), oldest 2h"
    )
    one = UnsentStatus(
        2,
        now - timedelta(minutes=45),
        visits=1,
        set_aside=1,
        last_error="the server refused the kit's credential",
    )
    assert unsent_line(one, now).splitlines() == [
        "Not sent yet: 1 visit (2 records), oldest 45m",
        RECORDS_NOTE,
        "Set aside (need a coordinator): 1",
        "Last sync problem: the server refused the kit's credential",
    ]
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
