"""Advice per outcome level and the cauda equina warning card, by language.

One source (``definitions/texts.toml``) for the screens, the slips and the server's
landing page. Unknown languages fall back to English.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from forms.engine import DEFINITIONS, fill, localized

TEXT_LEVELS = ("emergency", "urgent", "routine", "self_care", "ineligible", "consent_refused")


@lru_cache(maxsize=1)
def _texts(path: Path = DEFINITIONS / "texts.toml") -> dict[str, Any]:
    return tomllib.loads(path.read_text("utf-8"))


def _lines(value: Any, language: str) -> list[str]:
    if isinstance(value, dict):
        chosen = value.get(language) or value.get("en") or []
        return [str(v) for v in chosen]
    return []


def outcome_text(
    level: str, language: str, *, emergency_number: str = "", **values: Any
) -> tuple[str, str, list[str]]:
    """(title, instruction, next steps) for ``level`` in ``language``.

    ``emergency_number`` fills "call {emergency_number}"; without one (blank), the text
    reads "call the local emergency number" in ``language``: the one fallback for the
    screens, the slips and the server's page. Other ``values`` fill other placeholders.
    Raises KeyError for a level that has no advice.
    """
    number = emergency_number.strip() or screen_text("local_emergency_number", language)
    values = {**values, "emergency_number": number}
    entry = _texts()["outcomes"][level]
    title = fill(localized(entry["title"], language), values)
    instruction = fill(localized(entry["instruction"], language), values)
    steps = [fill(s, values) for s in _lines(entry.get("steps"), language)]
    return title, instruction, steps


def level_name(level: str, language: str) -> str:
    """The short name of an outcome level in ``language`` (``level`` itself if unknown)."""
    entry = _texts()["outcomes"].get(level)
    if not isinstance(entry, dict) or "name" not in entry:
        return level
    return localized(entry["name"], language)


def ces_warning(language: str) -> tuple[str, list[str]]:
    """(heading, warning signs) of the cauda equina card in ``language``."""
    card = _texts()["ces"]
    return localized(card["heading"], language), _lines(card["signs"], language)


def screen_text(key: str, language: str, **values: Any) -> str:
    """A text the booth screen shows the attendee, in ``language`` (English if missing).

    Placeholders absent from ``values`` stay as written; an unknown key raises KeyError."""
    entry = _texts()["screen"][key]
    return fill(localized(entry, language), values)


def page_text(key: str, language: str) -> str:
    """A text of the triage server's attendee pages, in ``language`` (English if missing)."""
    return localized(_texts()["page"][key], language)


def emergency_number_line(language: str, number: str) -> str:
    """The emergency number line; with no number set, the attendee is sent to the volunteer."""
    if not number.strip():
        return screen_text("no_emergency_number", language)
    return screen_text("emergency_number", language, emergency_number=number.strip())


def range_text(kind: str, lo: float | None, hi: float | None, language: str) -> str:
    """What a number question allows, in ``language``: "un número entero de 0 a 120"."""

    def num(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    what = screen_text("range_integer" if kind == "integer" else "range_number", language)
    if lo is not None and hi is not None:
        return screen_text("range_between", language, what=what, lo=num(lo), hi=num(hi))
    if lo is not None:
        return screen_text("range_at_least", language, what=what, lo=num(lo))
    return what


def language_names() -> dict[str, str]:
    return {str(k): str(v) for k, v in _texts().get("languages", {}).items()}
