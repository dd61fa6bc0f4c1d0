"""The ``recorded`` fixture (visits saved without typing, for tests that need visits) stores
what the same plan keyed in stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from popup_kit.domain import VisitRecord
from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from tests.ui.conftest import Recorded
from tests.ui.driver import SELF_CARE, start_day, type_visit


def stored_as(visit: VisitRecord) -> dict[str, Any]:
    """What a visit holds, apart from what is its own (ids, code)."""
    return {
        "answers": visit.answers,
        "triage": visit.triage,
        "rules": visit.rules,
        "startback": visit.startback,
        "sbi_total": visit.sbi_total,
        "consent": visit.consent,
        "contact": visit.contact,
        "language": visit.language,
        "volunteer": visit.volunteer,
        "created_at": visit.created_at,
        "version": visit.version,
        "status": visit.status,
        "ruleset_version": visit.ruleset_version,
        "forms_version": visit.forms_version,
        "consent_version": visit.consent_version,
    }


async def test_a_recorded_visit_is_the_typed_one(
    make_app: Callable[[], BoothApp], stored: Callable[[], VisitService], recorded: Recorded
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await start_day(pilot, app)
        typed_code = await type_visit(pilot, app, SELF_CARE)
    typed = stored().find_by_code(typed_code)
    assert typed is not None
    seeded = recorded(SELF_CARE)
    assert seeded.code != typed.code
    assert stored_as(seeded) == stored_as(typed)
