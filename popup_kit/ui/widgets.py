"""Reusable booth widgets."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import HorizontalGroup
from textual.events import Click
from textual.message import Message
from textual.widgets import Static


class ChoiceButton(Static):
    """One answer, shown with the single key that picks it; clicking it picks it too."""

    DEFAULT_CSS = """
    ChoiceButton {
        width: auto;
        min-width: 10;
        height: auto;
        padding: 0 1;
        margin: 0 1 0 0;
        border: round $primary;
        content-align: center middle;
    }
    ChoiceButton:hover { background: $boost; }
    ChoiceButton.-selected { background: $accent; color: $text; border: heavy $accent-lighten-2; }
    """

    class Chosen(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, key: str, label: str, *, selected: bool = False) -> None:
        text = Text.assemble((f"[{key}]", "bold"), " ", label)
        super().__init__(text, classes="-selected" if selected else "")
        self.key = key

    def on_click(self, event: Click) -> None:
        event.stop()
        self.post_message(self.Chosen(self.key))


class ChoiceBar(HorizontalGroup):
    """The choices of one question, side by side (wrapping onto a second row if needed)."""

    DEFAULT_CSS = """
    ChoiceBar { height: auto; layout: grid; grid-size: 3; grid-gutter: 0 1; grid-rows: auto; }
    ChoiceBar.-two { grid-size: 2; }
    ChoiceBar.-four { grid-size: 2; }
    ChoiceBar > ChoiceButton { width: 1fr; margin: 0; }
    /* scales such as 0-10: one line per button so they fit in 80x24 */
    ChoiceBar.-compact { grid-size: 4; grid-gutter: 0 1; }
    ChoiceBar.-compact > ChoiceButton { border: none; height: 1; min-width: 0; padding: 0; }
    ChoiceBar.-compact > ChoiceButton.-selected { border: none; }
    """

    def __init__(self, choices: list[tuple[str, str]], selected: str | None, **kwargs: Any):
        super().__init__(**kwargs)
        self._choices = choices
        self._selected = selected
        if len(choices) == 2:
            self.add_class("-two")
        elif len(choices) == 4:
            self.add_class("-four")
        elif len(choices) > 6:
            self.add_class("-compact")

    def compose(self) -> Any:
        for key, label in self._choices:
            yield ChoiceButton(key, label, selected=key == self._selected)
