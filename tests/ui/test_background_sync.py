"""The UI syncs in the background when the kit is enrolled, and says so honestly.

A timer starts a run every ``sync_interval`` seconds; each run is one thread worker that
reports by messages (started, progress, finished, failed). The tests await those
messages."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import pytest

from popup_kit.config import KitConfig, load_config
from popup_kit.services import VisitService
from popup_kit.slips import visit_url
from popup_kit.ui.app import BoothApp, SyncFailed, SyncFinished, SyncProgress, SyncStarted
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.vault import save_credentials
from tests.kit.conftest import visit_input
from tests.sync.live_server import enroll_kit, run_server
from tests.ui.conftest import Recorded, fixed_clock
from tests.ui.driver import SELF_CARE, start_day

SIZE = (80, 24)
SyncMessage = SyncStarted | SyncProgress | SyncFinished | SyncFailed


class WatchedApp(BoothApp):
    """The booth app, with every sync message it handles also put on a queue."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync_messages: asyncio.Queue[SyncMessage] = asyncio.Queue()

    # Textual calls these and then BoothApp's own handlers (it walks the class's MRO).
    def on_sync_started(self, message: SyncStarted) -> None:
        self.sync_messages.put_nowait(message)

    def on_sync_progress(self, message: SyncProgress) -> None:
        self.sync_messages.put_nowait(message)

    def on_sync_finished(self, message: SyncFinished) -> None:
        self.sync_messages.put_nowait(message)

    def on_sync_failed(self, message: SyncFailed) -> None:
        self.sync_messages.put_nowait(message)


M = TypeVar("M", SyncStarted, SyncProgress, SyncFinished, SyncFailed)


async def next_message(app: WatchedApp, pilot: Any, kind: type[M], seconds: float = 60.0) -> M:
    """The next sync message of ``kind`` (earlier ones of other kinds are skipped), once
    the app has handled it."""
    async with asyncio.timeout(seconds):
        while True:
            message = await app.sync_messages.get()
            if isinstance(message, kind):
                await pilot.pause()
                return message


async def run_ended(app: WatchedApp, pilot: Any) -> SyncFinished | SyncFailed:
    async with asyncio.timeout(60):
        while True:
            message = await app.sync_messages.get()
            if isinstance(message, SyncFinished | SyncFailed):
                await pilot.pause()
                return message


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


async def test_visits_reach_the_server_in_the_background(
    config: KitConfig, tmp_path: Path, recorded: Recorded
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        kit = enroll_kit(server, config.kit_id)
        save_credentials(config, kit.credentials)
        fast = dataclasses.replace(config, sync_interval=1)
        app = WatchedApp(fast, clock=fixed_clock)
        async with app.run_test(size=SIZE) as pilot:
            await start_day(pilot, app)
            recorded(SELF_CARE)  # a visit saved while the booth is open
            assert isinstance(app.screen, HomeScreen)
            # the timer's runs: the first that finds the visit's two records sends them
            while True:
                finished = await next_message(app, pilot, SyncFinished)
                if finished.summary.confirmed:
                    break
            assert finished.summary.confirmed == 2 and finished.summary.all_confirmed
            assert len(server.store.records()) == 2
            assert "Everything recorded here" in text_of(app, "#unsent")
            assert "last sync 18:30" in text_of(app, "#sync")
            assert not app.sync_running
        held = server.store.records()
        assert {r.record_type for r in held} == {"visit", "consent"}


async def test_sync_now_runs_at_once_and_reports_progress(
    config: KitConfig, tmp_path: Path
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        save_credentials(config, enroll_kit(server, config.kit_id).credentials)
        # the timer would not come again for an hour: only the key starts the second run
        hourly = dataclasses.replace(config, sync_interval=3600)
        app = WatchedApp(hourly, clock=fixed_clock)
        async with app.run_test(size=SIZE) as pilot:
            await start_day(pilot, app)
            first = await next_message(app, pilot, SyncFinished)
            assert first.summary.sent == 0  # the outbox was empty at start
            service = app.backend.service if app.backend is not None else None
            assert service is not None
            service.record_visit(visit_input())
            assert app.sync_messages.empty()
            await pilot.press("s")
            assert any("Syncing now" in str(n.message) for n in app._notifications)
            seen: list[SyncMessage] = []
            async with asyncio.timeout(60):
                while not isinstance(message := await app.sync_messages.get(), SyncFinished):
                    seen.append(message)
            await pilot.pause()
            assert isinstance(seen[0], SyncStarted)
            steps = [(m.done, m.total) for m in seen[1:] if isinstance(m, SyncProgress)]
            assert len(steps) == len(seen) - 1 and steps[0] == (0, 2) and steps[-1] == (2, 2)
            assert message.summary.confirmed == 2
            assert len(server.store.records()) == 2
            assert not app.sync_running
            assert "Everything recorded here" in text_of(app, "#unsent")


async def test_sync_now_while_a_run_is_going_starts_no_second(config: KitConfig) -> None:
    app = WatchedApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        app.sync_enrolled = True  # as if enrolled: the key only asks for a run
        app.sync_running = True  # a run is going
        await pilot.press("s")
        await pilot.pause()
        assert any("running already" in str(n.message) for n in app._notifications)
        assert app.sync_messages.empty()
        assert not [w for w in app.workers if w.group == "sync"]


async def test_server_unreachable_is_shown_not_hidden(
    config: KitConfig, tmp_path: Path, recorded: Recorded
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        save_credentials(config, enroll_kit(server, config.kit_id).credentials)
    # the server is gone now
    fast = dataclasses.replace(config, sync_interval=1)
    app = WatchedApp(fast, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        recorded(SELF_CARE)  # a visit saved while the booth is open
        # a run that found the outbox empty (before the save) may come first: wait for
        # the run that tried to send the visit
        while True:
            finished = await next_message(app, pilot, SyncFinished)
            if finished.summary.still_unsent:
                break
        assert "could not sync" in text_of(app, "#sync")
        assert "Not sent yet: 1 visit" in text_of(app, "#unsent")
        assert app.last_sync is not None and app.last_sync.summary is finished.summary
        assert not finished.summary.all_confirmed


async def test_withdrawal_on_the_slip_page_is_shown_at_the_booth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.kit.test_centre_withdrawal import withdraw_on_phone
    from tests.kit.test_sync_kit import enroll
    from tests.kit.test_withdrawal import LEAVING, with_

    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        toml = tmp_path / "kit.toml"
        toml.write_text(f'[server]\nbase_url = "{server.url}"\n')
        config = load_config(toml, data_dir=tmp_path / "data")
        enroll(config, server, capsys)  # as the coordinator does: the slip key goes too
        service = VisitService(config)
        try:
            leaving = service.record_visit(with_(LEAVING))
        finally:
            service.close()
        withdraw_on_phone(visit_url(config, leaving.code))

        app = WatchedApp(dataclasses.replace(config, sync_interval=3600), clock=fixed_clock)
        async with app.run_test(size=SIZE) as pilot:
            await start_day(pilot, app)
            finished = await next_message(app, pilot, SyncFinished)
            assert finished.summary.withdrawn_on_slip_page == [leaving.code]
            notices = [str(n.message) for n in app._notifications]
            assert (
                f"Consent withdrawn on the slip's page: {leaving.code}. Their contact details "
                "are removed from this laptop."
            ) in notices
            assert (
                f"Consent withdrawn on the slip's page: {leaving.code} (contact details "
                "removed from this laptop)."
            ) in text_of(app, "#sync")
            assert app.backend is not None
            visit = app.backend.service.get_visit(leaving.visit_id)
            assert visit is not None and visit.contact is None
