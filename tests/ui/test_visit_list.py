"""The visit list: search, open, void (reason required) and correct."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.widgets import DataTable

from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.correct import CorrectScreen, EditAnswerScreen
from popup_kit.ui.screens.dialogs import ConfirmScreen, ReasonScreen
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.ui.screens.visit import LanguageScreen
from popup_kit.ui.screens.visits import VisitDetailScreen, VisitListScreen
from tests.ui.driver import SELF_CARE, answer_until_done, begin_visit, plan_for, start_day

SIZE = (80, 24)


async def record(pilot: Any, app: BoothApp, plan: dict[str, Any]) -> None:
    await begin_visit(pilot)
    await answer_until_done(pilot, app, plan)
    await pilot.press("enter", "s", "enter")
    await pilot.pause()
    assert isinstance(app.screen, HomeScreen)


async def test_search_open_void_and_correct(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService]
) -> None:
    app = make_app()
    service = stored()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await record(pilot, app, SELF_CARE)
        await record(pilot, app, plan_for(osteoporosis=True))
        codes = [v.code for v in service.list_visits()]

        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, VisitListScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        # part of a code narrows the list; a whole code (typed or scanned) opens the visit
        await pilot.press("slash", *codes[1][-7:].lower())
        await pilot.pause()
        assert table.row_count == 1
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        assert app.screen.visit_id == service.list_visits(search=codes[1])[0].visit_id
        await pilot.press("escape")
        await pilot.pause()
        search = app.screen.query_one("#search")
        search.value = ""  # type: ignore[attr-defined]
        await pilot.press("slash", *f"https://triage.example.org/r/{codes[1]}?s=ABC", "enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)

        # void: an empty reason is refused, then a reason and a confirmation
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.press(*"duplicate", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        voided = service.get_visit(app.screen.visit_id)
        assert voided is not None and voided.voided and voided.void_reason == "duplicate"

        # a void visit cannot be corrected: said, nothing opens
        await pilot.press("c")
        await pilot.pause()
        assert any("cannot be corrected" in str(n.message) for n in app._notifications)
        assert isinstance(app.screen, VisitDetailScreen)
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)

        # correct the other visit: the age becomes 55, saved as a new version
        await pilot.press("l")
        await pilot.pause()
        await pilot.press("slash", *codes[0], "enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CorrectScreen)
        await pilot.press("enter")  # the first row: age_years
        await pilot.pause()
        assert isinstance(app.screen, EditAnswerScreen)
        await pilot.press("end", "backspace", "backspace", "5", "5", "enter")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
    corrected = service.find_by_code(codes[0])
    assert corrected is not None
    assert corrected.answers["age_years"] == 55 and corrected.version == 2
    assert [h.version for h in corrected.history] == [1, 2]


async def test_command_palette_opens_new_visit(make_app: Callable[[], BoothApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"New visit")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LanguageScreen)


async def test_quit_during_a_visit_asks_first(make_app: Callable[[], BoothApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.visit is not None and not isinstance(app.screen, ConfirmScreen)
