"""The UI syncs in the background when the kit is enrolled, and says so honestly."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from popup_kit.config import KitConfig
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.ui.screens.printing import QrScreen
from popup_kit.vault import save_credentials
from tests.sync.live_server import enroll_kit, run_server
from tests.ui.conftest import fixed_clock
from tests.ui.driver import SELF_CARE, answer_until_done, begin_visit, start_day

SIZE = (80, 24)


async def wait_for(condition: object, pilot: object, seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def text_of(app: BoothApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_not_enrolled_says_records_stay_here(config: KitConfig) -> None:
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        assert "Not enrolled" in text_of(app, "#sync")
        await pilot.press("s")
        await pilot.pause()
        assert any("not enrolled" in str(n.message) for n in app._notifications)


async def test_visits_reach_the_server_in_the_background(config: KitConfig, tmp_path: Path) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        kit = enroll_kit(server, config.kit_id)
        save_credentials(config, kit.credentials)
        fast = dataclasses.replace(config, sync_interval=1)
        app = BoothApp(fast, clock=fixed_clock)
        async with app.run_test(size=SIZE) as pilot:
            await start_day(pilot, app)
            await begin_visit(pilot)
            await answer_until_done(pilot, app, SELF_CARE)
            await pilot.press("enter", "s")
            # the slip worker has said how printing went (the sync loop never "completes"):
            # with no printer, the QR comes up by itself
            await wait_for(lambda: isinstance(app.screen, QrScreen), pilot)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, HomeScreen)
            await wait_for(lambda: len(server.store.records()) == 2, pilot)
            await wait_for(lambda: "Everything recorded here" in text_of(app, "#unsent"), pilot)
            assert "last sync" in text_of(app, "#sync")
        held = server.store.records()
        assert {r.record_type for r in held} == {"visit", "consent"}


async def test_server_unreachable_is_shown_not_hidden(config: KitConfig, tmp_path: Path) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        save_credentials(config, enroll_kit(server, config.kit_id).credentials)
    # the server is gone now
    fast = dataclasses.replace(config, sync_interval=1)
    app = BoothApp(fast, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, SELF_CARE)
        await pilot.press("enter", "s", "enter")
        await pilot.pause()
        # a run that found the outbox empty (before the save) may come first: wait for
        # the run that tried to send the visit
        await wait_for(lambda: "could not sync" in text_of(app, "#sync"), pilot, 60)
        assert "Not sent yet: 1 visit" in text_of(app, "#unsent")
        assert app.last_sync is not None and app.last_sync.summary is not None
        assert not app.last_sync.summary.all_confirmed
