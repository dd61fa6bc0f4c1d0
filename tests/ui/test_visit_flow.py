"""Whole visits driven by key presses through the real app at 80x24, on a real store."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.emergency import EmergencyScreen
from popup_kit.ui.screens.home import RECORDS_NOTE, HomeScreen
from popup_kit.ui.screens.outcome import (
    ContactScreen,
    OutcomeScreen,
    ReviewScreen,
    SavedScreen,
    StoppedScreen,
)
from popup_kit.ui.screens.printing import QrScreen
from popup_kit.ui.screens.resume import ResumeScreen
from popup_kit.ui.screens.visit import GRACE_SECONDS, VisitScreen
from popup_kit.ui.widgets import ChoiceButton
from tests.ui.conftest import fixed_clock
from tests.ui.driver import (
    SELF_CARE,
    answer_until_done,
    begin_visit,
    moved_on,
    plan_for,
    start_day,
)

SIZE = (80, 24)
Stored = Callable[[], VisitService]


async def finish_from_outcome(pilot: Any, app: BoothApp) -> None:
    assert isinstance(app.screen, OutcomeScreen)
    await pilot.press("enter")
    await pilot.pause()


async def save_from_review(pilot: Any, app: BoothApp) -> str:
    assert isinstance(app.screen, ReviewScreen)
    await pilot.press("s")
    await pilot.pause()
    saved = next(s for s in app.screen_stack if isinstance(s, SavedScreen))
    code = saved.code
    await app.workers.wait_for_complete()
    await pilot.pause()
    assert isinstance(app.screen, QrScreen)  # no printer: the QR by itself
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, HomeScreen)
    return code


def text_of(app: BoothApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_self_care_visit_is_saved_without_contact(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        assert isinstance(app.screen, HomeScreen)
        await begin_visit(pilot)
        asked = await answer_until_done(pilot, app, SELF_CARE)
        assert asked[:3] == ["age_years", "_capacity", "c1"]
        assert "sb9" in asked and "sbi_leg_pain" not in asked
        assert "SELF-CARE" in text_of(app, ".title-bar")
        await finish_from_outcome(pilot, app)
        code = await save_from_review(pilot, app)
        counts = text_of(app, "#counts")
        assert re.search(r"Self-care\s+1\b", counts)
        assert re.search(r"Urgent\s+0\b", counts)
        # the visit and its consent record
        assert text_of(app, "#unsent").splitlines() == [
            "Only on this laptop: 1 visit (2 records), oldest 0m",
            RECORDS_NOTE,
        ]
    service = stored()
    (visit,) = service.list_visits()
    assert visit.code == code and visit.triage == "self_care"
    assert visit.volunteer == "AB" and visit.language == "en"
    assert visit.consent == {"c1": True, "c2": True, "c3": False, "c4": False, "c5": False}
    assert visit.contact is None
    assert visit.answers["age_years"] == 40 and visit.startback is not None
    assert service.counts_for_day(NOW_DAY) == {"self_care": 1}
    assert service.load_drafts() == []


NOW_DAY = fixed_clock().date()


@pytest.mark.slow  # typed key by key, over 10 s on two cores: CI's slow step
async def test_urgent_visit_with_contact_consent(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    plan = {
        **plan_for(leg_pain_side="bilateral"),
        "c3": True,
        "leg_pain_nrs": 7,
        "sbi_leg_pain": 5,
        "sbi_numbness": 3,
        "sbi_weakness": 0,
        "sbi_sitting": 4,
    }
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        asked = await answer_until_done(pilot, app, plan)
        assert "sbi_sitting" in asked
        assert isinstance(app.screen, OutcomeScreen)
        assert "URGENT" in text_of(app, ".title-bar")
        assert "UR3" in text_of(app, "#outcome-reasons")
        await finish_from_outcome(pilot, app)
        assert isinstance(app.screen, ContactScreen)
        await pilot.press(*"Ana Diaz", "enter", *"0712", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ContactScreen)  # too few digits: said, kept
        assert "6 digits" in text_of(app, "#contact-error")
        await pilot.press(*" 345 678", "enter")
        await pilot.pause()
        await save_from_review(pilot, app)
    (visit,) = stored().list_visits()
    assert visit.triage == "urgent" and visit.rule_ids == ["UR3"]
    assert visit.consent["c3"] is True
    assert visit.contact is not None
    assert (visit.contact.name, visit.contact.phone) == ("Ana Diaz", "0712 345 678")
    assert visit.sbi_total == 12 and visit.answers["leg_pain_nrs"] == 7


async def test_routine_visit(make_app: Callable[[], BoothApp], stored: Stored) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, plan_for(osteoporosis=True))
        await finish_from_outcome(pilot, app)
        await save_from_review(pilot, app)
    (visit,) = stored().list_visits()
    assert visit.triage == "routine" and visit.rule_ids == ["RO1"]


async def test_emergency_screen_survives_stray_keys(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    plan = plan_for(ces_bladder_change="new_or_worsening")
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot, "2")  # Spanish
        asked = await answer_until_done(pilot, app, plan)
        assert asked[-1] == "_ces_bladder"
        assert isinstance(app.screen, EmergencyScreen)
        assert "Urgencias" in text_of(app, "#emergency-instruction")
        assert "cola de caballo" in text_of(app, "#emergency-reasons")
        for key in ("escape", "q", "enter", "space", "n", "ctrl+c", "s", "backspace", "enter"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, EmergencyScreen), key
        await pilot.press("O", "K", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        await save_from_review(pilot, app)
    (visit,) = stored().list_visits()
    assert visit.triage == "emergency" and visit.rule_ids == ["EM1"]
    assert visit.startback is None and "pain_nrs" not in visit.answers
    assert visit.contact is None and visit.language == "es"


async def test_under_age_stores_only_a_tally(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, {**SELF_CARE, "age_years": 15})
        assert isinstance(app.screen, StoppedScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert re.search(r"Ineligible\s+1\b", text_of(app, "#counts"))
        assert app.visit is None
    service = stored()
    assert service.list_visits() == []
    assert service.counts_for_day(NOW_DAY) == {"ineligible": 1}
    assert service.load_drafts() == []
    assert service.unsent().count == 0


async def test_refused_consent_stores_only_a_tally(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        asked = await answer_until_done(pilot, app, {**SELF_CARE, "c1": False})
        assert asked[-1] == "c1"
        assert isinstance(app.screen, StoppedScreen)
        assert "nothing about you has been recorded" in text_of(app, ".prompt")
    service = stored()
    assert service.list_visits() == []
    assert service.counts_for_day(NOW_DAY) == {"consent_refused": 1}
    assert service.load_drafts() == []


@pytest.mark.slow  # typed key by key, over 10 s on two cores: CI's slow step
async def test_visit_resumes_from_draft_after_teardown(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    first = make_app()
    async with first.run_test(size=SIZE) as pilot:
        await start_day(pilot, first)
        await begin_visit(pilot)
        await pilot.press("4", "0", "y", "enter", "y", "y")
        await pilot.pause()
        assert first.visit is not None
        where = first.visit.flow.current()
        answered = [(q.id, v) for q, v in first.visit.flow.answered()]
    assert where is not None and where.id == "c3" and len(answered) == 4

    # a new app on the same data directory, as after a crash
    second = make_app()
    async with second.run_test(size=SIZE) as pilot:
        await start_day(pilot, second, "CD")
        assert isinstance(second.screen, ResumeScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(second.screen, VisitScreen)
        assert second.visit is not None
        current = second.visit.flow.current()
        assert current is not None and current.id == where.id
        assert [(q.id, v) for q, v in second.visit.flow.answered()] == answered
        await answer_until_done(pilot, second, SELF_CARE)
        await finish_from_outcome(pilot, second)
        await save_from_review(pilot, second)
    service = stored()
    (visit,) = service.list_visits()
    assert visit.answers["age_years"] == 40 and visit.volunteer == "CD"
    assert service.load_drafts() == []


async def test_back_shows_previous_answer_and_changes_it(make_app: Callable[[], BoothApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("4", "0", "y")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.visit is not None
        question = app.visit.flow.current()
        assert question is not None and question.id == "_capacity"
        selected = [b.key for b in app.screen.query(ChoiceButton) if b.has_class("-selected")]
        assert selected == ["y"]
        await pilot.press("escape")
        await pilot.pause()
        number = app.screen.query_one("#number")
        assert number.value == "40"  # type: ignore[attr-defined]
        await pilot.press("backspace", "backspace", "6", "2")
        await pilot.pause(GRACE_SECONDS + 0.1)
        assert dict((q.id, v) for q, v in app.visit.flow.answered())["age_years"] == 62


@pytest.mark.slow  # typed key by key, over 10 s on two cores: CI's slow step
async def test_review_change_reopens_one_question(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, SELF_CARE)
        await finish_from_outcome(pilot, app)
        assert isinstance(app.screen, ReviewScreen)
        table = app.screen.query_one("#review-table")
        rows = [str(k.value) for k in table.rows]  # type: ignore[attr-defined]
        table.move_cursor(row=rows.index("osteoporosis"))  # type: ignore[attr-defined]
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, VisitScreen)
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, OutcomeScreen)  # straight back: nothing else to ask
        assert "ROUTINE" in text_of(app, ".title-bar")
        await finish_from_outcome(pilot, app)
        await save_from_review(pilot, app)
    (visit,) = stored().list_visits()
    assert visit.triage == "routine" and visit.answers["osteoporosis"] is True


async def test_click_on_a_choice_answers_it(make_app: Callable[[], BoothApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("4", "0")
        await pilot.pause(GRACE_SECONDS + 0.1)
        assert app.visit is not None
        await moved_on(pilot, app, "age_years")
        await pilot.pause()
        yes = next(b for b in app.screen.query(ChoiceButton) if b.key == "y")
        assert await pilot.click(yes)
        await pilot.pause()
        answers = dict((q.id, v) for q, v in app.visit.flow.answered())
        assert answers["_capacity"] is True


async def test_bad_number_keeps_what_was_typed(
    make_app: Callable[[], BoothApp], left_answered: Callable[..., None]
) -> None:
    left_answered(SELF_CARE, until="symptom_duration_weeks")  # the questions before, answered
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("enter")  # reopen it at the question
        await pilot.pause()
        assert isinstance(app.screen, VisitScreen)
        await pilot.press("9", "9", "9", "9", "9", "enter")
        await pilot.pause()
        assert app.visit is not None
        current = app.visit.flow.current()
        assert current is not None and current.id == "symptom_duration_weeks"
        assert "5200" in text_of(app, "#message")
        assert app.screen.query_one("#number").value == "99999"  # type: ignore[attr-defined]


async def test_failed_draft_save_keeps_the_answer_and_says_so(
    make_app: Callable[[], BoothApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(VisitService, "save_draft", disk_full)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("4", "0")
        await pilot.pause(GRACE_SECONDS + 0.1)
        assert app.visit is not None
        assert [(q.id, v) for q, v in app.visit.flow.answered()] == [("age_years", 40)]
        assert any("disk full" in str(n.message) for n in app._notifications)


async def test_escape_on_first_question_cancels_after_confirm(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("4", "0")
        await pilot.press("escape", "escape")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert app.visit is None
    assert stored().load_drafts() == []


async def test_min_age_from_kit_toml(tmp_path: Any, config: KitConfig, stored: Stored) -> None:
    kit = tmp_path / "kit.toml"
    kit.write_text("[screening]\nmin_self_consent_age = 18\n")
    from popup_kit.config import load_config

    app = BoothApp(load_config(kit), clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, {**SELF_CARE, "age_years": 17})
        assert isinstance(app.screen, StoppedScreen)
        await pilot.press("enter")  # the volunteer confirms the age: only then counted
        await pilot.pause()
    assert stored().counts_for_day(NOW_DAY) == {"ineligible": 1}


async def test_escape_from_not_screened_returns_to_the_age_and_counts_nothing(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await pilot.press("1", "5", "enter")  # meant 51
        await pilot.pause()
        assert isinstance(app.screen, StoppedScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, VisitScreen)
        assert app.visit is not None
        question = app.visit.flow.current()
        assert question is not None and question.id == "age_years"
        assert app.screen.query_one("#number").value == "15"  # type: ignore[attr-defined]
        await pilot.press("backspace", "backspace", "5", "1")
        await pilot.pause(GRACE_SECONDS + 0.1)
        question = app.visit.flow.current()
        assert question is not None and question.id == "_capacity"
    assert stored().counts_for_day(NOW_DAY) == {}


async def test_c3_with_no_contact_entered_asks_before_going_on(
    make_app: Callable[[], BoothApp], stored: Stored
) -> None:
    from popup_kit.ui.screens.dialogs import ConfirmScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, {**SELF_CARE, "c3": True})
        await finish_from_outcome(pilot, app)
        assert isinstance(app.screen, ContactScreen)
        await pilot.press("enter", "enter")  # both boxes left empty
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "will not be called" in str(app.screen.query_one(".dialog-text").render())
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, ContactScreen)  # back to fill them in
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # Esc asks the same
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        await save_from_review(pilot, app)
    (visit,) = stored().list_visits()
    assert visit.consent["c3"] is True and visit.contact is None


async def test_a_queue_visit_home_digit_then_p_saves_and_prints(
    make_app: Callable[[], BoothApp], stored: Stored, config: KitConfig
) -> None:
    """A language key on home starts the visit; p on the outcome saves and prints."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, VisitScreen)
        assert app.visit is not None and app.visit.language == "es"
        await answer_until_done(pilot, app, SELF_CARE)
        assert isinstance(app.screen, OutcomeScreen)
        await pilot.press("p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, QrScreen)  # no printer: the QR comes up by itself
        await pilot.press("escape")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SavedScreen)
        assert "no printer set" in text_of(app, "#print-status")
        code = screen.code
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
    (visit,) = stored().list_visits()
    assert visit.code == code and visit.language == "es" and visit.triage == "self_care"
    assert (config.slips_dir / f"{code}-receipt80.pdf").exists()


async def test_p_on_the_outcome_still_takes_the_contact_first(
    make_app: Callable[[], BoothApp],
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, {**SELF_CARE, "c3": True})
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, ContactScreen)


async def test_the_consent_information_pages_with_space(
    make_app: Callable[[], BoothApp],
) -> None:
    from popup_kit.ui.screens.visit import ConsentInfoScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await begin_visit(pilot)
        await answer_until_done(pilot, app, SELF_CARE, until="_capacity")
        await pilot.press("y")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConsentInfoScreen)
        script = screen.query_one("#script")
        assert script.max_scroll_y > 0
        await pilot.press("space")  # one key for a page, not a press per line
        await pilot.pause()
        assert script.scroll_y == min(script.max_scroll_y, script.size.height)
        await pilot.press("pageup")
        await pilot.pause()
        assert script.scroll_y == 0
        await pilot.press("pagedown")
        await pilot.pause()
        assert script.scroll_y == min(script.max_scroll_y, script.size.height)
