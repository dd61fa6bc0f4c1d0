"""What is asked and how it is scored: the versioned definitions and their engine.

``load_forms`` reads ``forms/definitions``; :class:`Flow` runs one visit a question at a
time; :meth:`Forms.screen` evaluates a whole answer set. Headless: no UI, no storage.
"""

from forms.engine import (
    ConsentDocument,
    DefinitionError,
    FieldSpec,
    Flow,
    Forms,
    load_forms,
    localized,
    score_startback,
)
from forms.model import AnswerError, Outcome, Question, StartBackScore
from forms.texts import ces_warning, emergency_number_line, outcome_text, screen_text

__all__ = [
    "AnswerError",
    "ConsentDocument",
    "DefinitionError",
    "FieldSpec",
    "Flow",
    "Forms",
    "Outcome",
    "Question",
    "StartBackScore",
    "ces_warning",
    "emergency_number_line",
    "load_forms",
    "localized",
    "outcome_text",
    "score_startback",
    "screen_text",
]
