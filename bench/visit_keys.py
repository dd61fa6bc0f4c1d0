"""Keystrokes and time for complete self-care visits, driven by Pilot through the real app.

Counts every key from the home screen back to the home screen (the language key that
starts the visit, answers, the consent information, p on the outcome to save and print,
Enter for home) against the questions asked; the slip is printed (here: saved as a PDF,
no printer being set) within those keys. The time
per visit is set beside a bare Textual app that receives the same number of key presses
in the same run, so the ratio shows what the booth's screens and store add.
Usage: uv run python bench/visit_keys.py [--visits N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_KEYS_PER_QUESTION = 1.2
TARGET_KEYS_PER_VISIT = 44


async def booth_visits(visits: int) -> tuple[list[float], int, int]:
    from popup_kit.config import load_config
    from popup_kit.ui.app import BoothApp
    from popup_kit.ui.screens.home import HomeScreen
    from popup_kit.ui.screens.visit import ConsentInfoScreen, VisitScreen
    from tests.ui.driver import SELF_CARE, answer_one, start_day

    app = BoothApp(load_config())
    times: list[float] = []
    keys = questions = 0
    async with app.run_test(size=(80, 24)) as pilot:
        await start_day(pilot, app)
        for _ in range(visits):
            keys = questions = 0
            started = time.perf_counter()
            await pilot.press("1")  # a new visit in the first language, from home
            keys += 1
            questions += 1  # the language is a question asked
            while True:
                if isinstance(app.screen, ConsentInfoScreen):
                    await pilot.press("enter")
                    keys += 1
                    continue
                if not isinstance(app.screen, VisitScreen):
                    break
                keys += await answer_one(pilot, app, SELF_CARE)
                questions += 1
            await pilot.press("p")  # save and print from the outcome
            await app.workers.wait_for_complete()  # the slip is made (printed or saved)
            await pilot.press("enter")  # back home
            keys += 2
            await pilot.pause()
            assert isinstance(app.screen, HomeScreen), app.screen
            times.append(time.perf_counter() - started)
    return times, keys, questions


async def bare_keys(count: int, rounds: int) -> list[float]:
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Static

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("question")
            yield Footer()

        def on_key(self, event: Any) -> None:
            self.query_one(Static).update(f"key {event.key}")

    times: list[float] = []
    app = Bare()
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(count):
                await pilot.press("y")
                await pilot.pause()
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["POPUP_KIT_DATA_DIR"] = data_dir
        os.environ.pop("POPUP_KIT_CONFIG", None)
        # a throwaway store: opened with this passphrase instead of the start-of-day screen
        os.environ.setdefault("POPUP_KIT_PASSPHRASE", "bench passphrase, throwaway store")
        times, keys, questions = asyncio.run(booth_visits(args.visits))
    bare = asyncio.run(bare_keys(keys, args.visits))
    per_question = keys / questions
    visit = statistics.median(times)
    baseline = statistics.median(bare)
    verdict = "meets" if per_question <= TARGET_KEYS_PER_QUESTION else "MISSES"
    total = "meets" if keys <= TARGET_KEYS_PER_VISIT else "MISSES"
    print(
        f"self-care visit: {questions} questions asked, {keys} keys from home to home, "
        f"printing included (target <= {TARGET_KEYS_PER_VISIT}: {total})"
    )
    print(
        f"keys per question: {per_question:.2f} (target <= {TARGET_KEYS_PER_QUESTION}: {verdict})"
    )
    print(f"time per visit (Pilot, {args.visits} visits): median {visit * 1000:.0f} ms")
    print(f"bare Textual app, same {keys} keys:       median {baseline * 1000:.0f} ms")
    print(f"ratio visit/bare: {visit / baseline:.2f}")


if __name__ == "__main__":
    main()
