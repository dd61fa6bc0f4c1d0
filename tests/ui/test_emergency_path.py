"""The emergency path: a correction into an emergency is shown as a first visit is, and the
emergency screen cannot be stalled or pushed off a small terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import DataTable, Input, OptionList

from forms import Flow
from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.correct import CorrectScreen, EditAnswerScreen
from popup_kit.ui.screens.dialogs import ConfirmScreen
from popup_kit.ui.screens.emergency import EmergencyScreen
from popup_kit.ui.screens.outcome import (
    CorrectedScreen,
    OutcomeScreen,
    ReviewScreen,
)
from popup_kit.ui.screens.resume import ResumeScreen
from popup_kit.ui.screens.visit import GRACE_SECONDS
from popup_kit.ui.screens.visits import VisitDetailScreen
from tests.ui.conftest import Recorded, fixed_clock
from tests.ui.driver import SELF_CARE, answer_until_done, begin_visit, plan_for, start_day

SIZE = (80, 24)
Stored = Callable[[], VisitService]
# the longest emergency reason (cauda equina) in every language
LONGEST = plan_for(ces_saddle_numbness="new_or_worsening")


LANGUAGE_KEYS = {"1": "en", "2": "es"}


def text_of(app: BoothApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def reopen(pilot: Any) -> None:
    """Start of day offers the visit left unfinished: Enter reopens it where it was left
    (these tests are about the screen there, not the answers that lead to it)."""
    assert isinstance(pilot.app.screen, ResumeScreen)
    await pilot.press("enter")
    await pilot.pause()


async def open_correction(pilot: Any, app: BoothApp, code: str) -> CorrectScreen:
    await pilot.press("l")
    await pilot.pause()
    await pilot.press(*code, "enter")
    await pilot.pause()
    assert isinstance(app.screen, VisitDetailScreen)
    await pilot.press("c")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, CorrectScreen)
    return screen


async def change_answer(pilot: Any, app: BoothApp, field: str, value: Any) -> None:
    """Move down to ``field`` in the correction table and pick ``value`` by its key."""
    screen = app.screen
    assert isinstance(screen, CorrectScreen)
    table = screen.query_one(DataTable)
    target = table.get_row_index(field)
    while table.cursor_row != target:
        await pilot.press("down" if table.cursor_row < target else "up")
    await pilot.press("enter")
    await pilot.pause()
    edit = app.screen
    assert isinstance(edit, EditAnswerScreen)
    key = next(c.key for c in edit.question.choices if c.value == value)
    await pilot.press(key)
    await pilot.pause()


async def save_correction(pilot: Any, app: BoothApp) -> None:
    await pilot.press("s")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmScreen)
    await pilot.press("y")
    await pilot.pause()


async def test_correction_into_an_emergency_is_shown_as_a_first_visit(
    make_app: Callable[[], BoothApp], stored: Stored, recorded: Recorded
) -> None:
    code = recorded(SELF_CARE).code
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await open_correction(pilot, app, code)
        await change_answer(pilot, app, "ces_saddle_numbness", "new_or_worsening")
        await save_correction(pilot, app)
        # the red screen with its OK step, as on a first visit; a stray Tab changes nothing
        assert isinstance(app.screen, EmergencyScreen)
        assert text_of(app, "#emergency-instruction") == (
            "Go to the Emergency Department now. Show this slip."
        )
        assert "cauda equina" in text_of(app, "#emergency-reasons")
        await pilot.press("enter", "tab", "escape")
        await pilot.pause()
        assert isinstance(app.screen, EmergencyScreen)
        await pilot.press("O", "K", "enter")
        await pilot.pause()
        # then the new slip, and the old one said to be replaced
        assert isinstance(app.screen, CorrectedScreen)
        assert text_of(app, "#corrected-change") == (
            "Saved as version 2. The outcome changed: SELF-CARE → EMERGENCY."
        )
        assert "(version 1, SELF-CARE) is REPLACED" in text_of(app, "#corrected-replaced")
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = text_of(app, "#print-status")
        assert status.startswith("Not printed:") and "[printer]" in status
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
    visit = stored().find_by_code(code)
    assert visit is not None and visit.triage == "emergency" and visit.version == 2


async def test_correction_down_a_tier_shows_the_outcome_then_the_slip(
    make_app: Callable[[], BoothApp], stored: Stored, recorded: Recorded
) -> None:
    code = recorded(plan_for(osteoporosis=True)).code
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await open_correction(pilot, app, code)
        await change_answer(pilot, app, "osteoporosis", False)
        await save_correction(pilot, app)
        assert isinstance(app.screen, OutcomeScreen)
        assert text_of(app, "#outcome-title") == "Self-care"
        await pilot.press("escape")  # the saved correction is not undone
        await pilot.pause()
        assert isinstance(app.screen, OutcomeScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, CorrectedScreen)
        assert "ROUTINE REFERRAL → SELF-CARE" in text_of(app, "#corrected-change")
    visit = stored().find_by_code(code)
    assert visit is not None and visit.triage == "self_care"


async def test_correction_out_of_an_emergency_asks_for_the_skipped_questions(
    make_app: Callable[[], BoothApp],
    stored: Stored,
    monkeypatch: pytest.MonkeyPatch,
    recorded: Recorded,
) -> None:
    said: list[str] = []
    code = recorded(plan_for(ces_saddle_numbness="new_or_worsening")).code
    app = make_app()
    monkeypatch.setattr(app, "notify", lambda message, **_: said.append(str(message)))
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        screen = await open_correction(pilot, app, code)
        await change_answer(pilot, app, "ces_saddle_numbness", "no")
        await save_correction(pilot, app)
        # Not saved, and why in the question's words, never a field name; the cursor is on
        # the first question the visit skipped at the red screen.
        assert isinstance(app.screen, CorrectScreen)
        assert said and "Correction not saved" in said[-1] and "not answered yet" in said[-1]
        table = screen.query_one(DataTable)
        row = table.get_row_at(table.cursor_row)
        assert row[1] == "—"
        assert "_" not in said[-1].split("'")[1]  # the question's words, not its field
    visit = stored().find_by_code(code)
    assert visit is not None and visit.triage == "emergency" and visit.version == 1


async def test_unchanged_outcome_after_a_correction_says_so(
    make_app: Callable[[], BoothApp], recorded: Recorded
) -> None:
    code = recorded(SELF_CARE).code
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await open_correction(pilot, app, code)
        await change_answer(pilot, app, "iv_drug_use", False)  # no change: nothing to save
        await change_answer(pilot, app, "leg_pain_side", "unilateral")
        await save_correction(pilot, app)
        assert isinstance(app.screen, VisitDetailScreen)
        assert any("outcome is unchanged" in str(n.message) for n in app._notifications)


@pytest.mark.parametrize("focus_change", ["tab", "shift+tab", "click"])
async def test_emergency_screen_cannot_be_stalled_by_focus(
    make_app: Callable[[], BoothApp], focus_change: str
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, LONGEST)
        assert isinstance(app.screen, EmergencyScreen)
        await pilot.press("O")
        if focus_change == "click":
            await pilot.click("#emergency-reasons")
            await pilot.click("#ack")
        else:
            await pilot.press(focus_change, focus_change)
        await pilot.press("K")
        assert text_of(app, "#ack") == "> OK▏"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)


@pytest.mark.parametrize(
    ("language", "size", "instruction", "number"),
    [
        ("1", (80, 24), "Go to the Emergency Department now.", "Emergency number: 999"),
        ("2", (80, 24), "Vaya a Urgencias ahora.", "Teléfono de emergencias: 999"),
        ("1", (60, 20), "Go to the Emergency Department now.", "Emergency number: 999"),
        ("2", (60, 20), "Vaya a Urgencias ahora.", "Teléfono de emergencias: 999"),
    ],
)
async def test_every_instruction_is_on_screen_with_the_longest_reason(
    make_app: Callable[[], BoothApp],
    left_answered: Callable[..., None],
    language: str,
    size: tuple[int, int],
    instruction: str,
    number: str,
) -> None:
    left_answered(LONGEST, LANGUAGE_KEYS[language])
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await start_day(pilot, app)
        await reopen(pilot)
        screen = app.screen
        assert isinstance(screen, EmergencyScreen)
        assert text_of(app, "#emergency-instruction").startswith(instruction)
        assert text_of(app, "#emergency-number") == number
        steps = text_of(app, "#emergency-steps")
        assert "999" in steps.splitlines()[-1]
        width, height = size
        for selector in (
            "#emergency-title",
            "#emergency-instruction",
            "#emergency-steps",
            "#emergency-number",
            "#emergency-ack-help",
            "#ack",
        ):
            widget = screen.query_one(selector)
            region = widget.region
            assert region.height >= 1 and region.bottom <= height, selector
            assert region.right <= width, selector
            # nothing cut: the widget has the height its wrapped text needs
            lines = widget.get_content_height(region.size, region.size, region.width)
            assert widget.content_region.height >= lines, selector
        # the reasons are there too, scrolling if they must
        assert screen.query_one("#emergency-body").region.height >= 2


def emergency_draft(config: KitConfig, language: str = "en") -> None:
    """A draft left on the emergency screen, as a crash would leave it (not acknowledged)."""
    service = VisitService(config, clock=fixed_clock)
    try:
        flow = Flow(service.forms, language)
        while flow.stopped is None and (question := flow.current()) is not None:
            flow.answer(LONGEST[question.id])
        assert flow.stopped == "emergency"
        state = {**flow.to_state(), "_ui": {"emergency_acknowledged": False}}
        service.save_draft("d-emergency", "AB", language, state)
        service.save_draft("d-other", "AB", language, {"answers": {"age_years": 52}})
    finally:
        service.close()


async def test_draft_stopped_on_an_emergency_is_flagged_and_reopens_on_it(
    make_app: Callable[[], BoothApp], config: KitConfig
) -> None:
    emergency_draft(config)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        screen = app.screen
        assert isinstance(screen, ResumeScreen)
        options = screen.query_one(OptionList)
        labels = {
            str(options.get_option_at_index(i).id): str(options.get_option_at_index(i).prompt)
            for i in range(options.option_count)
        }
        assert "EMERGENCY NOT ACKNOWLEDGED" in labels["d-emergency"]
        assert "EMERGENCY" not in labels["d-other"]
        options.highlighted = next(
            i
            for i in range(options.option_count)
            if options.get_option_at_index(i).id == "d-emergency"
        )
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EmergencyScreen)
        assert "cauda equina" in text_of(app, "#emergency-reasons")
        await pilot.press("O", "K", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)


async def test_200_typed_fast_for_the_age_stays_on_the_age(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("2", "0", "0")
        await pilot.pause(GRACE_SECONDS + 0.2)
        assert app.visit is not None
        question = app.visit.flow.current()
        assert question is not None and question.id == "age_years"
        assert app.screen.query_one("#number", Input).value == "200"
        assert "200" not in str(app.visit.flow.canonical_answers())
        assert text_of(app, "#message") == (
            "200 is not possible here: type a whole number from 0 to 120."
        )
        # corrected in place: the next question gets only its own key
        await pilot.press("backspace", "backspace", "backspace", "4", "0")
        await pilot.pause(GRACE_SECONDS + 0.2)
        question = app.visit.flow.current()
        assert question is not None and question.id == "_capacity"
        assert app.visit.flow.canonical_answers()["age_years"] == 40
        assert app.visit.flow.shown_answer("_capacity") is None


async def test_a_choice_key_typed_ahead_answers_the_next_question(
    make_app: Callable[[], BoothApp],
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        assert app.visit is not None
        capacity = app.visit.flow.forms.question("_capacity")
        assert capacity is not None
        yes = next(c.key for c in capacity.choices if c.value is True)
        await pilot.press("4", "0", yes)  # no pause: the number is done when the key comes
        await pilot.pause()
        answers = app.visit.flow.canonical_answers()
        assert answers["age_years"] == 40
        current = app.visit.flow.current()
        assert current is not None and current.id != "_capacity"


async def test_impossible_onset_is_refused_on_screen(
    make_app: Callable[[], BoothApp], left_answered: Callable[..., None]
) -> None:
    left_answered(plan_for(age_years=58, symptom_duration_weeks=10), until="back_pain_onset_age")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await reopen(pilot)
        await pilot.press("8", "0")
        await pilot.pause(GRACE_SECONDS + 0.2)
        assert app.visit is not None
        question = app.visit.flow.current()
        assert question is not None and question.id == "back_pain_onset_age"
        assert text_of(app, "#message") == "is more than the age now (58): give at most 58"


async def test_deleting_back_to_a_valid_age_never_answers_it(
    make_app: Callable[[], BoothApp],
) -> None:
    """200 refused, one backspace shows 20: that is not an answer until Enter."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("2", "0", "0")
        await pilot.pause()
        await pilot.press("backspace")
        await pilot.pause(GRACE_SECONDS + 0.3)
        assert app.visit is not None
        question = app.visit.flow.current()
        assert question is not None and question.id == "age_years"
        assert "age_years" not in app.visit.flow.canonical_answers()
        await pilot.press("backspace", "backspace", "5", "8")
        await pilot.pause(GRACE_SECONDS + 0.3)
        assert app.visit.flow.canonical_answers()["age_years"] == 58


@pytest.mark.parametrize(
    ("language", "step", "number"),
    [
        (
            "1",
            "If you cannot get there safely, call the local emergency number.",
            "Emergency number: ask the volunteer",
        ),
        (
            "2",
            "Si no puede llegar con seguridad, llame al número local de emergencias.",
            "Teléfono de emergencias: pregunte al voluntario",
        ),
    ],
)
async def test_without_an_emergency_number_the_screen_says_the_local_one(
    config: KitConfig, left_answered: Callable[..., None], language: str, step: str, number: str
) -> None:
    import dataclasses

    left_answered(LONGEST, LANGUAGE_KEYS[language])
    app = BoothApp(dataclasses.replace(config, emergency_number=" "), clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await reopen(pilot)
        assert isinstance(app.screen, EmergencyScreen)
        steps = text_of(app, "#emergency-steps")
        assert steps.splitlines()[-1].endswith(step), steps
        assert " call ." not in steps and "llame al ." not in steps
        assert text_of(app, "#emergency-number") == number
