"""Fixtures for driving the real booth app with Pilot at 80x24 on a real SQLite file."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from popup_kit.config import KitConfig, load_config
from popup_kit.domain import Contact, VisitRecord
from popup_kit.services import VisitService
from popup_kit.ui.app import BoothApp
from popup_kit.ui.backend import Backend, VisitSession
from printouts import codes

NOW = datetime(2026, 11, 22, 18, 30, tzinfo=UTC)


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The booth's day and the times on screen use the laptop's zone: pin it.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(autouse=True)
def _repeatable_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Referral codes in order, so snapshots do not change from run to run."""
    counter = itertools.count(1)

    def next_code() -> str:
        body = f"{next(counter):014d}"
        return codes.format_code(body + codes.check_character(body))

    monkeypatch.setattr(codes, "new_referral_code", next_code)


@pytest.fixture
def config(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> KitConfig:
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(tmp_path) + "/data")
    monkeypatch.delenv("POPUP_KIT_CONFIG", raising=False)
    return load_config()


@pytest.fixture
def make_app(config: KitConfig) -> Callable[[], BoothApp]:
    def make() -> BoothApp:
        return BoothApp(config, clock=fixed_clock)

    return make


@pytest.fixture
def stored(config: KitConfig) -> Iterator[Callable[[], VisitService]]:
    """What is on disk, read through a service of its own (as another process would)."""
    opened: list[VisitService] = []

    def read() -> VisitService:
        service = VisitService(config, clock=fixed_clock)
        opened.append(service)
        return service

    yield read
    for service in opened:
        service.close()


Recorded = Callable[..., VisitRecord]


@pytest.fixture
def recorded(config: KitConfig) -> Iterator[Recorded]:
    """Visits saved as the booth saves them (its backend, the flow answered from a plan, the
    same clock), without keying them in: for tests that need visits, not the typing."""
    backend = Backend.open(config, fixed_clock)

    def record(
        plan: Mapping[str, Any],
        language: str = "en",
        volunteer: str = "AB",
        contact: Contact | None = None,
    ) -> VisitRecord:
        session = answered(backend, plan, language)
        session.contact = contact
        return backend.save_visit(session, volunteer)

    yield record
    backend.close()


def answered(
    backend: Backend, plan: Mapping[str, Any], language: str, until: str | None = None
) -> VisitSession:
    """A visit with every question it asks answered from ``plan``, as keyed in (or those
    before question ``until``)."""
    session = backend.new_visit(language)
    session.consent_info_seen = True  # the volunteer read it out on the way
    flow = session.flow
    while flow.stopped is None and (question := flow.current()) is not None:
        if question.id == until:
            return session
        flow.answer(plan[question.id])
    assert until is None, f"question {until} was not asked"
    assert flow.stopped in (None, "emergency"), flow.stopped
    return session


@pytest.fixture
def left_answered(config: KitConfig) -> Iterator[Callable[..., None]]:
    """A visit answered to its last question (or up to question ``until``) and left in its
    draft, as the booth keeps it after every answer (a closed window, say): start of day
    offers it, and Enter reopens it where it was left. For tests of the screens there."""
    backend = Backend.open(config, fixed_clock)

    def leave(
        plan: Mapping[str, Any],
        language: str = "en",
        volunteer: str = "AB",
        until: str | None = None,
    ) -> None:
        backend.save_draft(answered(backend, plan, language, until), volunteer)

    yield leave
    backend.close()
