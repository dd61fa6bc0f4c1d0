"""Drives Chromium at 390x844 through the withdrawal on the slip's page, as a phone.

Run by a Python that has Playwright (not a dependency of the project): ``python
phone_browser.py JOB.json``. JOB holds ``{"flows": {name: [url, link, button]}, "shots":
dir}``; the answer, per flow the page headings and languages seen, goes to stdout as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright


def _flow(browser: Any, shots: Path, name: str, url: str, link: str, button: str) -> list[Any]:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    steps: list[Any] = []

    def note(step: str) -> None:
        page.screenshot(path=str(shots / f"{name}-{step}.png"), full_page=True)
        heading = page.locator("h1").inner_text()
        steps.append([step, heading, page.locator("html").get_attribute("lang") or ""])

    page.goto(url)
    note("1-page")
    page.get_by_role("link", name=link).click()
    page.wait_for_load_state()
    note("2-confirm")
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()
    note("3-done")
    page.goto(url)
    note("4-afterwards")
    context.close()
    return steps


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    shots = Path(job["shots"])
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=job.get("chromium", "/usr/bin/chromium"), args=["--no-sandbox"]
        )
        seen = {
            name: _flow(browser, shots, name, url, link, button)
            for name, (url, link, button) in job["flows"].items()
        }
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
