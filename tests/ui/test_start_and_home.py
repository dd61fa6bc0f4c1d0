"""Start of day and home: the last volunteer remembered, the placeholder server said,
counts that follow the store, one honest sentence per sync state."""

from __future__ import annotations

import dataclasses
import re
import stat
from collections.abc import Callable

import pytest

from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.ui.screens.start import LAST_VOLUNTEER_FILE, StartScreen
from tests.ui.conftest import Recorded, fixed_clock
from tests.ui.driver import SELF_CARE, start_day

SIZE = (80, 24)


def text_of(app: BoothApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_the_last_volunteer_is_kept_with_enter_and_replaced_by_typing(
    config: KitConfig,
) -> None:
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app, "Dana K")
        assert app.volunteer == "Dana K"
    saved = config.data_dir / LAST_VOLUNTEER_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    # after a restart (or a crash): Enter keeps them
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        assert app.screen.query_one("#volunteer").value == "Dana K"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen) and app.volunteer == "Dana K"

    # typing replaces them, without deleting first
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app, "EF")
        assert app.volunteer == "EF"
    assert saved.read_text("utf-8") == "EF"


async def test_the_placeholder_server_is_said_at_start_of_day_and_at_home(
    config: KitConfig,
) -> None:
    assert config.server_is_placeholder
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause()
        assert "[server] base_url" in text_of(app, "#placeholder")
        assert "lead nowhere" in text_of(app, "#placeholder")
        await start_day(pilot, app)
        assert "lead nowhere" in text_of(app, "#placeholder")

    real = dataclasses.replace(config, server_base_url="https://triage.example.net")
    app = BoothApp(real, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause()
        assert not app.screen.query("#placeholder")
        await start_day(pilot, app)
        assert not app.screen.query("#placeholder")


async def test_home_counts_follow_another_process_and_say_where_records_are(
    config: KitConfig,
    stored: Callable[[], VisitService],
    recorded: Recorded,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(HomeScreen, "REFRESH_SECONDS", 0.2)
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        assert text_of(app, "#unsent") == "Nothing is waiting to be sent."
        assert "reached the triage server" not in text_of(app, "#unsent")

        # a visit saved by another process (the command line): home follows without a key
        recorded(SELF_CARE)
        for _ in range(50):
            await pilot.pause(0.1)
            if "1 visit" in text_of(app, "#unsent"):
                break
        assert isinstance(app.screen, HomeScreen)
        assert text_of(app, "#unsent").startswith("Only on this laptop: 1 visit (2 records)")
        assert "separate records" in text_of(app, "#unsent")
        assert re.search(r"Voided\s+0\b", text_of(app, "#counts"))

        # the coordinator voids it from the command line: home follows without a key
        other = stored()
        (visit,) = other.list_visits()
        other.void_visit(visit.visit_id, "duplicate", "coordinator")
        for _ in range(50):
            await pilot.pause(0.1)
            if re.search(r"Voided\s+1\b", text_of(app, "#counts")):
                break
        assert re.search(r"Voided\s+1\b", text_of(app, "#counts"))
