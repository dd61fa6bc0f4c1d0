"""A failure the booth handles is in the log with its traceback, and nothing personal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from popup_kit import logs
from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from tests.ui.driver import begin_visit, start_day

NAME, PHONE, AGE = "Zebulon Quartermaine", "+447700900461", "aged 40 years"


@pytest.fixture
def booth_log(config: KitConfig) -> Iterator[Path]:
    logs.teardown()
    yield logs.setup(config.data_dir)
    logs.teardown()


async def test_a_failed_draft_save_is_logged_without_what_was_typed(
    make_app: Callable[[], BoothApp], monkeypatch: pytest.MonkeyPatch, booth_log: Path
) -> None:
    def disk_full(*_args: Any) -> None:
        # A lower layer that quotes its input in its error, as some do.
        raise OSError(f"disk full writing {NAME} {PHONE} {AGE}")

    monkeypatch.setattr(VisitService, "save_draft", disk_full)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("4", "0")
        await pilot.pause(0.6)  # a complete number waits a moment for a digit typed ahead
        await pilot.pause()
    raw = booth_log.read_bytes()
    assert b"saving a draft failed" in raw
    assert b"in disk_full" in raw and b"builtins.OSError (message withheld)" in raw
    for secret in (NAME, PHONE, AGE):
        assert secret.encode() not in raw


async def test_a_store_that_cannot_even_be_loaded_is_said_and_logged(
    make_app: Callable[[], BoothApp], monkeypatch: pytest.MonkeyPatch, booth_log: Path
) -> None:
    import sys

    # An installation missing a part: the import itself fails in the opening worker.
    monkeypatch.setitem(sys.modules, "popup_kit.ui.backend", None)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        # Before, the worker died unseen and the booth waited for ever: a hang guard only.
        await asyncio.wait_for(app.ready.wait(), 120)
        await pilot.pause()
        assert app.backend is None
        assert app.backend_error is not None and "ModuleNotFoundError" in app.backend_error
    assert "loading the kit store failed" in booth_log.read_text()
