"""Drive whole visits through the real screens, one key press at a time, as a volunteer."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.emergency import EmergencyScreen
from popup_kit.ui.screens.home import HomeScreen
from popup_kit.ui.screens.outcome import ContactScreen, ReviewScreen
from popup_kit.ui.screens.visit import (
    GRACE_SECONDS,
    ConsentInfoScreen,
    LanguageScreen,
    VisitScreen,
    number_complete,
)
from tests.forms.answers import BENIGN, flow_answers

# A person with no red flags who agrees to screening and to sharing only.
SELF_CARE: dict[str, Any] = {**flow_answers(BENIGN), "c2": True}


def plan_for(**canonical: Any) -> dict[str, Any]:
    """What the volunteer keys in for the benign person with ``canonical`` changed."""
    return {**flow_answers({**BENIGN, **canonical}), "c2": True}


async def start_day(pilot: Pilot[None], app: BoothApp, volunteer: str = "AB") -> None:
    await app.ready.wait()
    await pilot.press(*volunteer, "enter")
    await pilot.pause()


async def begin_visit(pilot: Pilot[None], language_key: str = "1") -> None:
    await pilot.press("n")
    await pilot.pause()
    assert isinstance(pilot.app.screen, LanguageScreen)
    await pilot.press(language_key)
    await pilot.pause()


async def answer_one(pilot: Pilot[None], app: BoothApp, plan: dict[str, Any]) -> int:
    """Answer the current question by key presses; returns how many keys were pressed."""
    assert app.visit is not None
    question = app.visit.flow.current()
    assert question is not None
    assert question.id in plan, f"no planned answer for {question.id}"
    value = plan[question.id]
    if question.kind == "choice":
        key = next(
            c.key for c in question.choices if c.value == value and type(c.value) is type(value)
        )
        await pilot.press(key)
        pressed = 1
    else:
        text = str(int(value)) if float(value).is_integer() else str(value)
        await pilot.press(*text)
        pressed = len(text)
        if not number_complete(question, text):
            await pilot.press("enter")
            pressed += 1
        else:  # a complete number moves on by itself, after a moment for one more digit
            await moved_on(pilot, app, question.id, tries=int((GRACE_SECONDS + 5) / 0.05))
    await pilot.pause()
    return pressed


async def moved_on(pilot: Pilot[None], app: BoothApp, question_id: str, tries: int = 100) -> None:
    """Wait until the visit has left question ``question_id``: the moment's timer fires late
    on a busy machine."""
    for _ in range(tries):
        current = app.visit.flow.current() if app.visit is not None else None
        if current is None or current.id != question_id:
            return
        await pilot.pause(0.05)


async def answer_until_done(
    pilot: Pilot[None],
    app: BoothApp,
    plan: dict[str, Any],
    limit: int = 80,
    until: str | None = None,
) -> list[str]:
    """Answer until the flow leaves the question screen (or reaches question ``until``);
    returns the question ids asked."""
    asked: list[str] = []
    for _ in range(limit):
        screen = app.screen
        if isinstance(screen, ConsentInfoScreen):
            await pilot.press("enter")
            await pilot.pause()
            continue
        if not isinstance(screen, VisitScreen):
            return asked
        assert app.visit is not None
        question = app.visit.flow.current()
        assert question is not None
        if question.id == until:
            return asked
        asked.append(question.id)
        await answer_one(pilot, app, plan)
    raise AssertionError(f"flow did not end after {limit} answers: {asked}")


async def type_visit(
    pilot: Pilot[None], app: BoothApp, plan: dict[str, Any], language: str = "1"
) -> str:
    """Key in a whole visit and save it; back home, returns its code."""
    await begin_visit(pilot, language)
    await answer_until_done(pilot, app, plan)
    if isinstance(app.screen, EmergencyScreen):
        await pilot.press("O", "K", "enter")
    else:
        await pilot.press("enter")
    await pilot.pause()
    if isinstance(app.screen, ContactScreen):
        await pilot.press("escape")
        await pilot.pause()
    assert isinstance(app.screen, ReviewScreen)
    await pilot.press("s")
    await pilot.pause()
    code = app.screen.code  # type: ignore[attr-defined]
    await app.workers.wait_for_complete()
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, HomeScreen)
    return str(code)
