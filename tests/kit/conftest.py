from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from popup_kit.config import KitConfig, load_config
from popup_kit.domain import Contact, VisitInput
from popup_kit.services import VisitService
from tests.forms.answers import BENIGN

T0 = datetime(2026, 11, 22, 18, 30, tzinfo=UTC)
CONSENT_ALL = {"c1": True, "c2": True, "c3": True, "c4": True, "c5": True}
CONSENT_MIN = {"c1": True, "c2": False, "c3": False, "c4": False, "c5": False}


class StepClock:
    """A fixed clock that moves one second per reading: distinct, repeatable times."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KitConfig:
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("POPUP_KIT_CONFIG", raising=False)
    return load_config()


@pytest.fixture
def service(config: KitConfig) -> Iterator[VisitService]:
    svc = VisitService(config, clock=StepClock())
    yield svc
    svc.close()


def visit_input(**changes: Any) -> VisitInput:
    fields: dict[str, Any] = {
        "answers": dict(BENIGN),
        "language": "en",
        "volunteer": "AB",
        "consent": dict(CONSENT_MIN),
        "contact": None,
    }
    fields.update(changes)
    return VisitInput(**fields)


def with_contact() -> VisitInput:
    return visit_input(consent=dict(CONSENT_ALL), contact=Contact("Ana Ruiz", "+34 600 111 222"))
