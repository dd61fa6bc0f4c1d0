"""Debian's Chromium for the browser tests (Playwright drives it; nothing is downloaded).

Missing, the tests skip, except where ``POPUP_KIT_REQUIRE_BROWSER=1`` (``.ci/run``
installs the package and sets it): there a missing browser is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox"]


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("POPUP_KIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.skip("Debian's chromium is not installed")
