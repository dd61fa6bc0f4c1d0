"""The visit list: search, open, void (reason required) and correct."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import DataTable

from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.correct import CorrectScreen, EditAnswerScreen
from popup_kit.ui.screens.dialogs import ConfirmScreen, ReasonScreen
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.ui.screens.visit import LanguageScreen
from popup_kit.ui.screens.visits import VisitDetailScreen, VisitListScreen
from tests.forms.answers import BENIGN
from tests.kit.conftest import CONSENT_MIN, visit_input
from tests.ui.conftest import Recorded
from tests.ui.driver import SELF_CARE, begin_visit, plan_for, start_day

SIZE = (80, 24)


def seed(stored: Callable[[], VisitService], *changes: dict[str, Any]) -> list[str]:
    """Visits recorded straight through the visit service before the app opens, one per
    ``changes`` to the benign person: these tests need rows in the list, not a typed visit."""
    service = stored()
    consent = {**CONSENT_MIN, "c2": True}
    return [
        service.record_visit(visit_input(answers={**BENIGN, **c}, consent=consent)).code
        for c in changes
    ]


@pytest.mark.slow  # typed key by key, over 10 s on two cores: CI's slow step
async def test_search_open_void_and_correct(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService], recorded: Recorded
) -> None:
    recorded(SELF_CARE)
    recorded(plan_for(osteoporosis=True))
    service = stored()
    codes = [v.code for v in service.list_visits()]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, VisitListScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        # part of a code narrows the list; a whole code (typed or scanned) opens the visit
        await pilot.press(*codes[1][-7:].lower())
        await pilot.pause()
        assert table.row_count == 1
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        assert app.screen.visit_id == service.list_visits(search=codes[1])[0].visit_id
        await pilot.press("escape")
        await pilot.pause()
        search = app.screen.query_one("#search")
        search.value = ""  # type: ignore[attr-defined]
        await pilot.press(*f"https://triage.example.org/r/{codes[1]}?s=ABC", "enter")
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
        await pilot.press(*codes[0], "enter")
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


def swap_two(code: str) -> str:
    """The code with its first two neighbouring characters that differ swapped."""
    chars = list(code)
    i = next(
        i for i in range(len(chars) - 1) if chars[i] != chars[i + 1] and "-" not in chars[i : i + 2]
    )
    chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def status_of(app: BoothApp) -> str:
    return str(app.screen.query_one("#search-status").render())


async def test_a_typed_code_lands_in_the_search_box_on_open(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService]
) -> None:
    codes = seed(stored, {}, {"osteoporosis": True})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("l")
        await pilot.pause()
        assert app.screen.query_one("#search").has_focus
        await pilot.press(*codes[0], "enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        assert app.screen.visit_id == stored().find_by_code(codes[0]).visit_id  # type: ignore[union-attr]


async def test_a_scanned_url_is_found_even_with_the_list_focused(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService]
) -> None:
    code = seed(stored, {}, {"osteoporosis": True})[1]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("l")
        await pilot.pause()
        await pilot.press("down")  # the volunteer moved to the list before scanning
        await pilot.pause()
        assert app.screen.query_one(DataTable).has_focus
        url = f"https://triage.example.org/r/{code.replace('-', '')}?s=AbC_d-1"
        await pilot.press(*url)
        await pilot.pause()
        assert app.screen.query_one("#search").value == url  # type: ignore[attr-defined]
        assert app.screen.query_one(DataTable).row_count == 1
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        visit = stored().find_by_code(code)
        assert visit is not None and app.screen.visit_id == visit.visit_id


async def test_two_swapped_characters_say_the_check_does_not_match(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService]
) -> None:
    (code,) = seed(stored, {})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("l")
        await pilot.pause()
        await pilot.press(*swap_two(code))
        await pilot.pause()
        assert app.screen.query_one(DataTable).row_count == 0
        status = status_of(app)
        assert "check character does not match" in status
        assert f"Did you mean {code}?" in status
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitListScreen)  # nothing opened on a wrong code
        app.screen.query_one("#search").value = ""  # type: ignore[attr-defined]
        await pilot.press(*code)
        await pilot.pause()
        assert status_of(app) == ""


async def test_a_void_visit_is_marked_in_the_list_and_cannot_be_reprinted(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService], config: Any
) -> None:
    seed(stored, {})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        visit = stored().list_visits()[0]
        stored().void_visit(visit.visit_id, "duplicate", "CD")  # voided elsewhere (the CLI)
        config.slips_dir.mkdir(parents=True, exist_ok=True)
        slips = sorted(config.slips_dir.iterdir())
        await pilot.press("l")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert "VOID" in str(table.get_row_at(0)[2])
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        for key in ("p", "q"):
            app._notifications.clear()
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert isinstance(app.screen, VisitDetailScreen)  # no QR drawn
            (note,) = [str(n.message) for n in app._notifications]
            assert "VOID" in note and "duplicate" in note and visit.code in note
        assert sorted(config.slips_dir.iterdir()) == slips  # no slip made


async def test_the_correction_screen_uses_the_visits_labels_keys_and_order(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService]
) -> None:
    seed(stored, {})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("l", "enter", "c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CorrectScreen)
        table = screen.query_one(DataTable)
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert not any("_" in label for label in labels), labels  # no field names
        backend = app.backend
        assert backend is not None
        asked = backend.forms.question("_ces_saddle")
        assert asked is not None
        row = table.get_row_index("ces_saddle_numbness")
        assert labels[row].rstrip("…") in asked.prompt["en"]
        assert labels[0].startswith("How old")  # the visit's first question first
        assert row < table.get_row_index("pain_nrs")
        await pilot.press(*["down"] * row, "enter")
        await pilot.pause()
        edit = app.screen
        assert isinstance(edit, EditAnswerScreen)
        assert sorted(c.key for c in edit.question.choices) == sorted(
            c.key for c in asked.choices
        )  # n/w/s as in the visit
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, CorrectScreen)
        assert screen.answers["ces_saddle_numbness"] == "new_or_worsening"
