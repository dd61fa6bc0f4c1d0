"""A Spanish visit through every screen the attendee sees: no text of the English
catalogue (advice, warning card, screen texts, questions, answers, ranges) is shown."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.widgets import DataTable, Footer, Input, Static

from forms.engine import DEFINITIONS
from forms.texts import range_text
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.emergency import EmergencyScreen
from popup_kit.ui.screens.outcome import (
    ContactScreen,
    OutcomeScreen,
    ReviewScreen,
    SavedScreen,
    StoppedScreen,
)
from popup_kit.ui.screens.printing import QrScreen
from popup_kit.ui.screens.visit import ConsentInfoScreen, VisitScreen
from tests.ui.driver import answer_one, answer_until_done, begin_visit, plan_for, start_day

SIZE = (80, 24)
SPANISH = "2"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
# The volunteer's own guidance stays in the kit's language, set apart on screen.
VOLUNTEER_CLASSES = ("volunteer-prompt", "volunteer")


def _pairs(node: Any) -> Iterator[tuple[str, str]]:
    """(English, Spanish) for every text in a definitions table, lists line by line."""
    if isinstance(node, dict):
        if "en" in node and "es" in node:
            en, es = node["en"], node["es"]
            if isinstance(en, str) and isinstance(es, str):
                yield en, es
            elif isinstance(en, list) and isinstance(es, list):
                yield from zip((str(x) for x in en), (str(x) for x in es), strict=False)
            return
        for value in node.values():
            yield from _pairs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _pairs(value)


def english_catalogue(app: BoothApp) -> set[str]:
    """Every English text an attendee could be shown, in the parts (between placeholders)
    that the Spanish does not share."""
    pairs: list[tuple[str, str]] = []
    for name in (
        "texts.toml",
        "screen.toml",
        "eligibility.toml",
        "consent.toml",
        "instruments.toml",
        "choices.toml",
        "rules.toml",
    ):
        doc = tomllib.loads((DEFINITIONS / name).read_text("utf-8"))
        doc.pop("languages", None)
        for key in ("questions", "items"):
            for question in doc.get(key, []):
                if isinstance(question, dict):
                    question.pop("volunteer", None)  # the volunteer's guidance
        pairs.extend(_pairs(doc))
    backend = app.backend
    assert backend is not None
    for question in backend.forms.questions:
        if question.kind != "choice":
            lo, hi = question.minimum, question.maximum
            pairs.append(
                (range_text(question.kind, lo, hi, "en"), range_text(question.kind, lo, hi, "es"))
            )
    catalogue: set[str] = set()
    for en, es in pairs:
        for line in en.splitlines():
            for part in PLACEHOLDER.split(line):
                part = " ".join(part.strip(" .,:;").split())
                if part and part not in es:
                    catalogue.add(part)
    return catalogue


def shown_to_attendee(app: BoothApp) -> str:
    """Everything on screen but the footer of keys and the volunteer's guidance."""
    shown: list[str] = []
    for widget in app.screen.walk_children():
        if isinstance(widget, Footer) or any(widget.has_class(c) for c in VOLUNTEER_CLASSES):
            continue
        if isinstance(widget, Static):
            shown.append(str(widget.render()))
        elif isinstance(widget, Input):
            shown.extend([widget.value, str(widget.placeholder)])
        elif isinstance(widget, DataTable):
            shown.extend(str(c.label) for c in widget.ordered_columns)
            for row in range(widget.row_count):
                shown.extend(str(cell) for cell in widget.get_row_at(row))
    return "\n".join(shown)


class Seen:
    def __init__(self, app: BoothApp) -> None:
        self.app = app
        self.catalogue = english_catalogue(app)
        self.screens: set[str] = set()

    def check(self) -> None:
        text = " ".join(shown_to_attendee(self.app).split())
        self.screens.add(type(self.app.screen).__name__)
        found = []
        for part in self.catalogue:
            if re.search(rf"(?<!\w){re.escape(part)}(?!\w)", text):
                found.append(part)
        assert not found, f"English on {type(self.app.screen).__name__}: {found}\n{text}"


async def walk(pilot: Any, app: BoothApp, seen: Seen, plan: dict[str, Any]) -> None:
    """Answer until the questions end, checking every screen on the way."""
    for _ in range(80):
        seen.check()
        screen = app.screen
        if isinstance(screen, ConsentInfoScreen):
            await pilot.press("enter")
            await pilot.pause()
            continue
        if not isinstance(screen, VisitScreen):
            return
        await answer_one(pilot, app, plan)
    raise AssertionError("the visit did not end")


URGENT_WITH_CONTACT: dict[str, Any] = {
    **plan_for(leg_pain_side="bilateral"),
    "c3": True,
    "leg_pain_nrs": 7,
    "sbi_leg_pain": 5,
    "sbi_numbness": 3,
    "sbi_weakness": 0,
    "sbi_sitting": 4,
}


@pytest.mark.slow  # typed key by key, over 10 s on two cores: CI's slow step
async def test_a_spanish_visit_shows_no_english_to_the_attendee(
    make_app: Callable[[], BoothApp],
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        seen = Seen(app)
        await begin_visit(pilot, SPANISH)
        # a number out of range, and one that is not a number's beginning
        await answer_until_done(pilot, app, URGENT_WITH_CONTACT, until="pain_nrs")
        await pilot.press("1", "1")
        await pilot.pause()
        message = str(app.screen.query_one("#message").render())
        assert message == "11 no es posible aquí: escriba un número entero de 0 a 10."
        seen.check()
        await pilot.press("backspace", "backspace")
        await walk(pilot, app, seen, URGENT_WITH_CONTACT)

        assert isinstance(app.screen, OutcomeScreen)
        assert "PREFERENTE" in str(app.screen.query_one(".title-bar").render())
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ContactScreen)
        seen.check()
        await pilot.press("enter", "1", "2", "enter")  # a name left out, a short phone
        await pilot.pause()
        assert str(app.screen.query_one("#contact-error").render()) == "Indique un nombre."
        seen.check()
        await pilot.press(*"Ana", "enter", "enter")
        await pilot.pause()
        error = str(app.screen.query_one("#contact-error").render())
        assert error == "El teléfono necesita al menos 6 cifras."
        seen.check()
        await pilot.press(*"3456789", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        seen.check()
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, QrScreen)  # no printer: the QR by itself
        seen.check()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, SavedScreen)
        seen.check()
        await pilot.press("enter")
        await pilot.pause()

        # an emergency, in Spanish
        await begin_visit(pilot, SPANISH)
        await walk(pilot, app, seen, plan_for(ces_bladder_change="new_or_worsening"))
        assert isinstance(app.screen, EmergencyScreen)
        await pilot.press("O", "K", "enter")
        await pilot.pause()
        seen.check()
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()

        # too young to be screened: the safety advice
        await begin_visit(pilot, SPANISH)
        await pilot.press("1", "2", "enter")
        await pilot.pause()
        assert isinstance(app.screen, StoppedScreen)
        seen.check()
    assert {
        "VisitScreen",
        "ConsentInfoScreen",
        "OutcomeScreen",
        "ContactScreen",
        "ReviewScreen",
        "SavedScreen",
        "QrScreen",
        "EmergencyScreen",
        "StoppedScreen",
    } <= seen.screens


async def test_the_catalogue_check_catches_english(make_app: Callable[[], BoothApp]) -> None:
    """The check fails on an English text shown in a Spanish visit."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        seen = Seen(app)
        await begin_visit(pilot, SPANISH)
        seen.check()
        app.screen.query_one("#message", Static).update("Enter: continue")
        try:
            seen.check()
        except AssertionError as exc:
            assert "Enter: continue" in str(exc)
        else:
            raise AssertionError("English went unnoticed")
