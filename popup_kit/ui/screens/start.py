"""Start of day: who is on duty at this booth."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

if TYPE_CHECKING:
    from popup_kit.ui.app import BoothApp


class StartScreen(Screen[None]):
    """The first screen: booth and event from kit.toml, and the volunteer's name."""

    app: BoothApp

    def compose(self) -> ComposeResult:
        cfg = self.app.config
        yield Static(f"popup-kit · {cfg.booth_name}", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("Start of day", classes="heading")
            yield Static(f"Booth: [b]{cfg.booth_name}[/b]\nEvent: [b]{cfg.event}[/b]")
            yield Static("Volunteer on duty (name or initials), then Enter:", classes="label")
            yield Input(placeholder="e.g. AB", id="volunteer", max_length=40)
            yield Static("", id="start-error", classes="error")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if not name:
            self.query_one("#start-error", Static).update("Type your name or initials first.")
            return
        self.app.start_day(name)
