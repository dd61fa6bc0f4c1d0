"""Drives Debian's Chromium at 390x844 through the call page of a routine slip (book,
change, cancel) and an emergency slip's pages, with a screenshot of every page. Run with a
Python that has Playwright: ``python booking_walk.py ROUTINE_URL EMERGENCY_URL SHOTS_DIR``;
prints what it saw as JSON (the test checks it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(url: str, emergency: str, shots: Path) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 390, "height": 844})

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            seen[name] = page.inner_text("main")

        page.goto(url)
        shot("01-landing")
        page.click("p.book a.call")
        shot("02-call-page")
        slots = page.locator("button.slot")
        seen["slots"] = json.dumps(slots.all_inner_texts())
        slots.nth(0).click()
        shot("03-held")
        page.click("form[action='call'] button:not(.slot)")
        shot("04-booked")
        page.locator("button.slot").nth(0).click()
        shot("05-change-held")
        page.click("form[action='call'] button:not(.slot)")
        shot("06-changed")
        page.click("input[value='cancel'] ~ p button")
        shot("07-cancelled")
        page.click("a[href^='../']")
        shot("08-landing-after")
        # An emergency slip: the instruction and the number to call, nothing to book.
        page.goto(emergency)
        shot("09-emergency-landing")
        seen["tel"] = page.get_attribute("a.call", "href") or ""
        base, query = emergency.split("?", 1)
        page.goto(f"{base}/call?{query}")
        shot("10-emergency-call")
        seen["forms"] = str(page.locator("form").count())
        browser.close()
    sys.stdout.write(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
