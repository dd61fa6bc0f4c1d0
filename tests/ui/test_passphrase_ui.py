"""The booth passphrase in the UI: first run with the recovery key shown once, start of
day with a wrong then right passphrase, the idle lock, and the coordinator's change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from popup_kit.config import KitConfig
from popup_kit.store import Store
from popup_kit.store.keys import WrongPassphrase, key_path, remember_passphrase, verify
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.ui.screens.unlock import (
    ChangePassphraseScreen,
    LockScreen,
    PassphraseScreen,
    RecoveryKeyScreen,
)
from tests.ui.conftest import fixed_clock

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def _no_env_passphrase(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("POPUP_KIT_PASSPHRASE")
    yield
    remember_passphrase(None)


async def wait_for(pilot: Any, kind: type, tries: int = 200) -> None:
    for _ in range(tries):
        if isinstance(pilot.app.screen, kind):
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{kind.__name__} never shown; on {type(pilot.app.screen).__name__}")


async def type_line(pilot: Any, text: str) -> None:
    await pilot.press(*text, "enter")
    await pilot.pause()


async def test_first_run_sets_the_passphrase_and_shows_the_recovery_key(
    config: KitConfig,
) -> None:
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, PassphraseScreen)
        await type_line(pilot, "booth one")
        await type_line(pilot, "booth two")  # differs: asked again, nothing made
        assert isinstance(app.screen, PassphraseScreen)
        assert not key_path(config.db_path).exists()
        await type_line(pilot, "booth one")
        await wait_for(pilot, RecoveryKeyScreen)
        shown = app.screen.recovery_key  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
    assert key_path(config.db_path).exists()
    verify(config.db_path, "booth one")
    Store(config.db_path, passphrase="booth one").close()
    from popup_kit.store.keys import KeyFile

    KeyFile.load(key_path(config.db_path)).unwrap_recovery(shown)


async def test_start_of_day_refuses_a_wrong_passphrase_then_opens(config: KitConfig) -> None:
    Store(config.db_path, passphrase="booth passphrase").close()
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, PassphraseScreen)
        await type_line(pilot, "not the one")
        for _ in range(200):  # the refusal is said on a new passphrase screen
            screen = app.screen
            if isinstance(screen, PassphraseScreen) and screen.error:
                break
            await pilot.pause(0.05)
        assert "Wrong passphrase" in app.screen.error  # type: ignore[attr-defined]
        assert app.backend is None
        await type_line(pilot, "booth passphrase")
        await asyncio.wait_for(app.ready.wait(), 30)
        assert app.backend is not None
        await type_line(pilot, "AB")
        await wait_for(pilot, HomeScreen)


async def test_the_lock_hides_everything_until_the_passphrase(config: KitConfig) -> None:
    Store(config.db_path, passphrase="booth passphrase").close()
    remember_passphrase("booth passphrase")
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.ready.wait(), 30)
        await type_line(pilot, "AB")
        await wait_for(pilot, HomeScreen)
        app._last_input -= config.idle_lock_minutes * 60 + 1  # as if idle that long
        app._lock_if_idle()
        await wait_for(pilot, LockScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert titles == ["Quit"]  # no way around the lock from the palette
        await pilot.press("n")  # a home-screen key does nothing under the lock
        await pilot.pause()
        assert isinstance(app.screen, LockScreen)
        await type_line(pilot, "wrong wrong")
        for _ in range(200):
            if "wrong" in str(app.screen.query_one("#lock-error").render()):
                break
            await pilot.pause(0.05)
        assert isinstance(app.screen, LockScreen)
        await type_line(pilot, "booth passphrase")
        await wait_for(pilot, HomeScreen)
        assert not app.locked


async def test_the_coordinator_changes_the_passphrase(config: KitConfig) -> None:
    Store(config.db_path, passphrase="booth passphrase").close()
    remember_passphrase("booth passphrase")
    app = BoothApp(config, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.ready.wait(), 30)
        await type_line(pilot, "AB")
        await wait_for(pilot, HomeScreen)
        app.action_change_passphrase()
        await wait_for(pilot, ChangePassphraseScreen)
        await type_line(pilot, "not current")
        await type_line(pilot, "new booth pass")
        await type_line(pilot, "new booth pass")
        for _ in range(200):
            if "wrong" in str(app.screen.query_one("#change-error").render()):
                break
            await pilot.pause(0.05)
        assert isinstance(app.screen, ChangePassphraseScreen)
        app.screen.query_one("#current").value = "booth passphrase"  # type: ignore[attr-defined]
        app.screen.query_one("#current").focus()
        await pilot.press("enter")
        await wait_for(pilot, HomeScreen)
    verify(config.db_path, "new booth pass")
    with pytest.raises(WrongPassphrase):
        verify(config.db_path, "booth passphrase")
