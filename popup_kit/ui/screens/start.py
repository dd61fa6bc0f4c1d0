"""Start of day: who is on duty at this booth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from popup_kit import logs

if TYPE_CHECKING:
    from popup_kit.config import KitConfig
    from popup_kit.ui.app import BoothApp

LAST_VOLUNTEER_FILE = "last-volunteer"


def _last_volunteer_path(config: KitConfig) -> Path:
    return config.data_dir / LAST_VOLUNTEER_FILE


def last_volunteer(config: KitConfig) -> str:
    """The volunteer who started the last day (or the day before a crash), if any."""
    try:
        text = _last_volunteer_path(config).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    return text.strip()[:40]


def remember_volunteer(config: KitConfig, name: str) -> None:
    from sync.files import atomic_write

    try:
        atomic_write(_last_volunteer_path(config), name.encode("utf-8"))
    except OSError:  # only a convenience: the day goes on
        logs.failure("remembering the volunteer failed")


class StartScreen(Screen[None]):
    """The first screen: booth and event from kit.toml, and the volunteer's name.

    The last volunteer is filled in and selected: Enter keeps them, typing replaces them.
    """

    app: BoothApp

    def compose(self) -> ComposeResult:
        from popup_kit.ui.screens.home import PLACEHOLDER_WARNING

        cfg = self.app.config
        yield Static(f"popup-kit · {cfg.booth_name}", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("Start of day", classes="heading")
            yield Static(f"Booth: [b]{cfg.booth_name}[/b]\nEvent: [b]{cfg.event}[/b]")
            if cfg.server_is_placeholder:
                yield Static(Text(PLACEHOLDER_WARNING), id="placeholder", classes="warning")
            yield Static("Volunteer on duty (name or initials), then Enter:", classes="label")
            yield Input(
                value=last_volunteer(cfg), placeholder="e.g. AB", id="volunteer", max_length=40
            )
            yield Static("", id="start-error", classes="error")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if not name:
            self.query_one("#start-error", Static).update("Type your name or initials first.")
            return
        remember_volunteer(self.app.config, name)
        self.app.start_day(name)
