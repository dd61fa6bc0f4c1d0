"""Types shared by the forms engine and everything that asks or records answers.

The canonical answer schema is section 1.4 of the clinical reference: answers are a
plain ``dict[str, Any]`` keyed by those field names (plus the instrument fields
``leg_pain_nrs`` and ``sbi``), exactly as they travel in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["emergency", "urgent", "routine", "self_care", "ineligible"]
# Most severe first; the outcome is the most severe level any rule fired.
LEVELS: tuple[Level, ...] = ("emergency", "urgent", "routine", "self_care")
Section = Literal["eligibility", "consent", "screen", "instrument"]
Stop = Literal["ineligible", "consent_refused", "emergency"]
Kind = Literal["choice", "integer", "number", "text"]
Risk = Literal["low", "medium", "high"]

Text = dict[str, str]
"""A text in several languages, keyed by language code ("en", "es", ...)."""


class AnswerError(ValueError):
    """An answer set does not fit the schema: names the field and what is allowed."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Choice:
    """One allowed answer, picked with a single key shown on screen."""

    value: Any
    key: str
    label: Text


@dataclass(frozen=True)
class Question:
    """One question, asked one at a time.

    ``id`` is the canonical field it fills, or for a follow-up/auxiliary step a name
    starting with ``_`` whose answer feeds a derived canonical field.
    """

    id: str
    section: Section
    kind: Kind
    prompt: Text
    volunteer_prompt: Text | None = None
    choices: tuple[Choice, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    ask_if: str | None = None
    attribution: Text | None = None

    def choice_for_key(self, key: str) -> Choice | None:
        return next((c for c in self.choices if c.key == key), None)


@dataclass(frozen=True)
class StartBackScore:
    total: int
    psychosocial: int
    risk: Risk

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "psychosocial": self.psychosocial, "risk": self.risk}


@dataclass(frozen=True)
class FiredRule:
    id: str
    level: Level
    reason: Text
    source: str


@dataclass(frozen=True)
class Outcome:
    triage: Level
    rules: tuple[FiredRule, ...]
    ruleset_version: str
    startback: StartBackScore | None = None
    sbi_total: int | None = None

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def as_json(self) -> dict[str, Any]:
        """The `popup-kit screen --json` shape."""
        return {
            "triage": self.triage,
            "rules": self.rule_ids,
            "ruleset_version": self.ruleset_version,
            "startback": self.startback.as_json() if self.startback else None,
        }

    def as_record(self) -> dict[str, Any]:
        """What a stored visit keeps of its outcome."""
        return {**self.as_json(), "sbi_total": self.sbi_total}
