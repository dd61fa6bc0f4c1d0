"""SVG snapshots of each screen at 80x24 (fixed clock, fixed data)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from popup_kit.config import KitConfig
from popup_kit.ui.app import BoothApp
from tests.ui.conftest import Recorded, fixed_clock
from tests.ui.driver import (
    SELF_CARE,
    answer_one,
    answer_until_done,
    begin_visit,
    plan_for,
    start_day,
)

Snap = Callable[..., bool]


@pytest.fixture
def make_app(config: KitConfig) -> Callable[[], BoothApp]:
    """The app with its slips folder at a fixed place: the saved screen names it."""
    fixed = dataclasses.replace(config, save_dir="/tmp/popup-kit-snapshots/slips")

    def make() -> BoothApp:
        return BoothApp(fixed, clock=fixed_clock)

    return make


@pytest.fixture(autouse=True)
def _steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A focused box's cursor stays shown: blinking, the picture depended on how long the
    steps before it took (half a second more on a busy machine hid it)."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)


Step = Callable[[Pilot[None]], Awaitable[None]]


def steps(*chain: Step) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        for step in chain:
            await step(pilot)
        # the picture is taken once printing (a worker) has said how it went
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    return run


async def ready(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, BoothApp)
    await app.ready.wait()
    await pilot.pause()


async def day(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, BoothApp)
    await start_day(pilot, app)


async def visit(pilot: Pilot[None]) -> None:
    await begin_visit(pilot)


def answers(count: int, plan: dict[str, Any] = SELF_CARE) -> Step:
    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, BoothApp)
        for _ in range(count):
            await answer_one(pilot, app, plan)

    return run


def until_done(plan: dict[str, Any]) -> Step:
    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, BoothApp)
        await answer_until_done(pilot, app, plan)

    return run


async def wait_print(pilot: Pilot[None]) -> None:
    """The slip is made; with no printer the QR comes up by itself."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


Left = Callable[..., None]


async def reopen(pilot: Pilot[None]) -> None:
    """Start of day offers the visit left answered: Enter reopens it after its questions
    (the same screens as typing its answers gives; these pictures were taken that way)."""
    await pilot.press("enter")
    await pilot.pause()


def keys(*pressed: str) -> Step:
    async def run(pilot: Pilot[None]) -> None:
        await pilot.press(*pressed)
        await pilot.pause()

    return run


def test_start_of_day(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    assert snap_compare(make_app(), run_before=ready)


def test_home(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    assert snap_compare(make_app(), run_before=steps(ready, day))


def test_question(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    assert snap_compare(make_app(), run_before=steps(ready, day, visit, answers(1)))


def test_consent_information(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    assert snap_compare(make_app(), run_before=steps(ready, day, visit, answers(2)))


def test_consent_item(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    assert snap_compare(make_app(), run_before=steps(ready, day, visit, answers(2), keys("enter")))


def test_red_flag_question_in_spanish(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    async def spanish(pilot: Pilot[None]) -> None:
        await begin_visit(pilot, "2")

    assert snap_compare(
        make_app(),
        run_before=steps(ready, day, spanish, answers(2), keys("enter"), answers(5)),
    )


def test_number_question(
    snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left
) -> None:
    left_answered(SELF_CARE, until="symptom_duration_weeks")
    assert snap_compare(make_app(), run_before=steps(ready, day, reopen))


def test_contact(snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left) -> None:
    left_answered({**plan_for(fever_or_rigors=True), "c3": True})
    assert snap_compare(make_app(), run_before=steps(ready, day, reopen, keys("enter")))


def test_refused_consent(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    plan = {**SELF_CARE, "c1": False}
    assert snap_compare(make_app(), run_before=steps(ready, day, visit, until_done(plan)))


def test_saved(snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left) -> None:
    left_answered(SELF_CARE)
    assert snap_compare(
        make_app(),
        run_before=steps(ready, day, reopen, keys("enter", "s"), wait_print, keys("escape")),
    )


def test_emergency(
    snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left
) -> None:
    left_answered(plan_for(ces_saddle_numbness="new_or_worsening"))
    assert snap_compare(make_app(), run_before=steps(ready, day, reopen))


def test_outcome(snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left) -> None:
    left_answered(plan_for(osteoporosis=True, night_pain_non_mechanical=True, age_years=61))
    assert snap_compare(make_app(), run_before=steps(ready, day, reopen))


def test_review(snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left) -> None:
    left_answered(SELF_CARE)
    assert snap_compare(make_app(), run_before=steps(ready, day, reopen, keys("enter")))


# The screens after a visit show visits saved before the app opens, as the booth saves them
# (same answers, clock and codes as the typed visits these pictures were first taken from).


def test_visit_list(
    snap_compare: Snap, make_app: Callable[[], BoothApp], recorded: Recorded
) -> None:
    recorded(SELF_CARE)
    recorded(
        {
            **plan_for(leg_pain_side="bilateral"),
            "leg_pain_nrs": 6,
            "sbi_leg_pain": 4,
            "sbi_numbness": 2,
            "sbi_weakness": 1,
            "sbi_sitting": 3,
        }
    )
    assert snap_compare(make_app(), run_before=steps(ready, day, keys("l")))


def test_visit_detail(
    snap_compare: Snap, make_app: Callable[[], BoothApp], recorded: Recorded
) -> None:
    recorded(plan_for(history_of_cancer=True, weight_loss="unexplained"))
    assert snap_compare(make_app(), run_before=steps(ready, day, keys("l", "enter")))


def test_language(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    assert snap_compare(make_app(), run_before=steps(ready, day, keys("n")))


def test_not_screened_under_age(snap_compare: Snap, make_app: Callable[[], BoothApp]) -> None:
    plan = {**SELF_CARE, "age_years": 15}
    assert snap_compare(make_app(), run_before=steps(ready, day, visit, until_done(plan)))


def test_resume(snap_compare: Snap, make_app: Callable[[], BoothApp], config: KitConfig) -> None:
    from popup_kit.services import VisitService

    service = VisitService(config, clock=fixed_clock)
    service.save_draft("d1", "AB", "es", {"answers": {"age_years": 52, "_capacity": True}})
    service.close()
    assert snap_compare(make_app(), run_before=steps(ready, day))


def test_correct(snap_compare: Snap, make_app: Callable[[], BoothApp], recorded: Recorded) -> None:
    recorded(SELF_CARE)
    assert snap_compare(make_app(), run_before=steps(ready, day, keys("l", "enter", "c")))


def test_qr_on_screen(
    snap_compare: Snap, make_app: Callable[[], BoothApp], config: KitConfig, left_answered: Left
) -> None:
    import json

    from popup_kit.vault import PLAIN_SLIP_KEY

    # a fixed slip key, so the signed URL (and so the QR) is the same every run: written
    # as an earlier release wrote it, and sealed by the kit on first use
    config.data_dir.mkdir(parents=True, exist_ok=True)
    key = {"version": 1, "kit_id": "kit-snapshot", "secret": "ab" * 32}
    (config.data_dir / PLAIN_SLIP_KEY).write_text(json.dumps(key), "ascii")
    left_answered(SELF_CARE)
    assert snap_compare(
        make_app(), run_before=steps(ready, day, reopen, keys("enter", "s"), wait_print)
    )


def test_emergency_in_spanish(
    snap_compare: Snap, make_app: Callable[[], BoothApp], left_answered: Left
) -> None:
    """The longest emergency reason in Spanish: instruction, steps and number all on screen."""
    left_answered(plan_for(ces_saddle_numbness="new_or_worsening"), "es")
    assert snap_compare(make_app(), run_before=steps(ready, day, reopen))


async def correct_into_emergency(pilot: Pilot[None]) -> None:
    from textual.widgets import DataTable

    app = pilot.app
    await pilot.press("l", "enter", "c")
    await pilot.pause()
    table = app.screen.query_one(DataTable)
    target = table.get_row_index("ces_saddle_numbness")
    await pilot.press(*["down"] * target, "enter")
    await pilot.pause()
    question = app.screen.question  # type: ignore[attr-defined]
    key = next(c.key for c in question.choices if c.value == "new_or_worsening")
    await pilot.press(key, "s", "y")
    await pilot.pause()


def test_correction_into_emergency(
    snap_compare: Snap, make_app: Callable[[], BoothApp], recorded: Recorded
) -> None:
    recorded(SELF_CARE)
    assert snap_compare(make_app(), run_before=steps(ready, day, correct_into_emergency))


def test_correction_into_emergency_slip(
    snap_compare: Snap, make_app: Callable[[], BoothApp], recorded: Recorded
) -> None:
    recorded(SELF_CARE)
    assert snap_compare(
        make_app(),
        run_before=steps(ready, day, correct_into_emergency, keys("O", "K", "enter")),
    )


def test_resume_with_an_unacknowledged_emergency(
    snap_compare: Snap, make_app: Callable[[], BoothApp], config: KitConfig
) -> None:
    from tests.ui.test_emergency_path import emergency_draft

    emergency_draft(config, "es")
    assert snap_compare(make_app(), run_before=steps(ready, day))


def test_voided_visit(
    snap_compare: Snap, make_app: Callable[[], BoothApp], recorded: Recorded
) -> None:
    """A void visit: VOID in its detail, and the refusal of a reprint."""
    recorded(SELF_CARE)
    assert snap_compare(
        make_app(),
        run_before=steps(
            ready,
            day,
            keys("l", "down", "enter", "v", *"duplicate", "enter", "y"),
            keys("p"),
        ),
    )
