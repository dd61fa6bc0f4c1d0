"""The emergency screen: fills the terminal and cannot be dismissed or stalled by a stray key.

The screen reads every key itself (nothing on it takes focus), so Tab, a click or any
other focus change cannot leave the volunteer typing into nowhere: ``OK`` + Enter always
goes on. The instruction, its steps and the emergency number sit above the reasons, so
they stay on screen however long the reasons are; the reasons scroll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Digits, Static

from forms import emergency_number_line, outcome_text, screen_text

if TYPE_CHECKING:
    from popup_kit.ui.app import BoothApp

CONFIRM_WORD = "OK"
# below this height the large digits give way to the text (the number line stays)
DIGITS_MIN_HEIGHT = 24


class EmergencyScreen(Screen[None]):
    """Instruction first, the emergency number, then the reasons in plain words.

    No bindings: the only way on is typing the confirm word and pressing Enter. The
    screen posts :class:`EmergencyScreen.Acknowledged`; whoever opened it decides what
    comes next (the rest of a first visit, or the corrected visit's slip).
    """

    app: BoothApp
    BINDINGS: ClassVar[list[BindingType]] = []
    AUTO_FOCUS = None

    class Acknowledged(Message):
        """The volunteer typed OK and Enter: the person knows to go now."""

        def __init__(self, purpose: str) -> None:
            super().__init__()
            self.purpose = purpose

    def __init__(self, language: str, reasons: list[str], *, purpose: str = "visit") -> None:
        super().__init__()
        self.language = language
        self.reasons = reasons
        self.purpose = purpose
        self.typed = ""

    def compose(self) -> ComposeResult:
        backend = self.app.backend
        assert backend is not None
        lang = self.language
        number = self.app.config.emergency_number
        title, instruction, steps = outcome_text("emergency", lang, emergency_number=number)
        with Vertical(id="emergency-top"):
            yield Static(title.upper(), id="emergency-title")
            yield Static(instruction or title, id="emergency-instruction")
            if steps:
                yield Static("\n".join(steps), id="emergency-steps")
            yield Static(emergency_number_line(lang, number), id="emergency-number")
            plain = number.replace(" ", "")
            if plain.isdigit() and len(plain) <= 6:
                yield Digits(plain, id="emergency-digits")
        with VerticalScroll(id="emergency-body", can_focus=False):
            yield Static(
                f"{screen_text('why', lang)}:\n" + "\n".join(f"• {r}" for r in self.reasons),
                id="emergency-reasons",
            )
        with Vertical(id="emergency-ack"):
            yield Static(
                f"Volunteer: once the person knows to go now, type {CONFIRM_WORD} and Enter.",
                id="emergency-ack-help",
                classes="volunteer",
            )
            yield Static(self._ack_text(), id="ack")

    def on_mount(self) -> None:
        self.set_focus(None)
        self._fit(self.size.height)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.height)

    def _fit(self, height: int) -> None:
        for digits in self.query("#emergency-digits"):
            digits.display = height >= DIGITS_MIN_HEIGHT

    def _ack_text(self) -> str:
        return f"> {self.typed}▏"

    def _show_typed(self) -> None:
        self.query_one("#ack", Static).update(self._ack_text())

    def on_key(self, event: events.Key) -> None:
        # every key is this screen's: no binding or focus change can take it elsewhere
        event.stop()
        event.prevent_default()
        body = self.query_one("#emergency-body", VerticalScroll)
        if event.key in ("pagedown", "down"):
            body.scroll_page_down() if event.key == "pagedown" else body.scroll_down()
            return
        if event.key in ("pageup", "up"):
            body.scroll_page_up() if event.key == "pageup" else body.scroll_up()
            return
        if event.key == "backspace":
            self.typed = self.typed[:-1]
            self._show_typed()
            return
        if event.key == "enter":
            self._submit()
            return
        if event.character and event.character.isprintable() and len(self.typed) < 8:
            self.typed += event.character
            self._show_typed()

    def _submit(self) -> None:
        if self.typed.strip().upper() != CONFIRM_WORD:
            self.typed = ""
            self._show_typed()
            self.query_one("#emergency-ack-help", Static).update(
                f"Type {CONFIRM_WORD} (the letters O and K) and press Enter to continue."
            )
            return
        self.post_message(self.Acknowledged(self.purpose))
