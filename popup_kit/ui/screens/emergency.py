"""The emergency screen: fills the terminal and cannot be dismissed by a stray key."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Digits, Footer, Input, Static

from forms import localized
from popup_kit import logs
from popup_kit.ui.screens.outcome import next_after_flow

if TYPE_CHECKING:
    from popup_kit.ui.app import BoothApp

CONFIRM_WORD = "OK"


class EmergencyScreen(Screen[None]):
    """Instruction first, reasons in plain words, the local emergency number.

    No bindings: the only way on is typing the confirm word and pressing Enter.
    """

    app: BoothApp
    BINDINGS: ClassVar[list[BindingType]] = []
    AUTO_FOCUS = "#ack"

    def compose(self) -> ComposeResult:
        session = self.app.visit
        backend = self.app.backend
        assert session is not None and backend is not None
        lang = session.language
        title, instruction, steps = backend.outcome_text("emergency", lang)
        outcome = session.flow.outcome()
        reasons = [localized(r.reason, lang) for r in outcome.rules if r.level == "emergency"]
        with VerticalScroll(id="emergency-body"):
            yield Static(instruction or title, id="emergency-instruction")
            if title and instruction:
                yield Static(title, id="emergency-title")
            yield Static("\n".join(f"• {r}" for r in reasons), id="emergency-reasons")
            number = self.app.config.emergency_number
            yield Static(f"Emergency number: {number}", id="emergency-number")
            if number.replace(" ", "").isdigit() and len(number) <= 6:
                yield Digits(number.replace(" ", ""), id="emergency-digits")
            if steps:
                yield Static("\n".join(steps), id="emergency-steps")
        with Vertical(id="emergency-ack"):
            yield Static(
                f"Volunteer: once the person knows to go now, type {CONFIRM_WORD} and press Enter.",
                id="emergency-ack-help",
            )
            yield Input(id="ack", max_length=8, placeholder=CONFIRM_WORD)
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip().upper() != CONFIRM_WORD:
            event.input.value = ""
            self.query_one("#emergency-ack-help", Static).update(
                f"Type {CONFIRM_WORD} (the letters O and K) and press Enter to continue."
            )
            return
        session = self.app.visit
        assert session is not None
        session.emergency_acknowledged = True
        backend = self.app.backend
        if backend is not None:
            try:
                backend.save_draft(session, self.app.volunteer)
            except Exception as exc:
                logs.failure("saving a draft failed")
                self.notify(f"Draft not saved ({exc}).", severity="error")
        self.app.switch_screen(next_after_flow(self.app, "outcome"))
