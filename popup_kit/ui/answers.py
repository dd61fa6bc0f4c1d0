"""How an answer reads on screen, shared by the visit, review, correction and list screens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forms import localized
from forms.texts import range_text

if TYPE_CHECKING:
    from forms import Question

__all__ = ["allowed", "display_value"]


def display_value(question: Question | None, value: Any, language: str) -> str:
    """An answer as the volunteer saw it (the choice label), else the value itself."""
    if question is not None:
        for choice in question.choices:
            if choice.value == value and type(choice.value) is type(value):
                return localized(choice.label, language)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return ", ".join(f"{k} {display_value(None, v, language)}" for k, v in value.items())
    return str(value)


def allowed(question: Question, language: str) -> str:
    return range_text(question.kind, question.minimum, question.maximum, language)
