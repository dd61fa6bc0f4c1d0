"""Offer to resume visits left unfinished (a crash or a closed window)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from popup_kit import logs

if TYPE_CHECKING:
    from popup_kit.domain import Draft
    from popup_kit.ui.app import BoothApp


def draft_label(draft: Draft) -> str:
    when = draft.updated_at.astimezone()
    return f"{when:%H:%M}  by {draft.volunteer}  ({draft.language})"


class ResumeScreen(Screen[None]):
    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "discard", "Discard"),
        Binding("escape", "later", "Later"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("popup-kit · unfinished visits", classes="title-bar")
        with Vertical(classes="body"):
            yield Static(
                "These visits were not finished. Enter resumes the highlighted one "
                "exactly where it stopped.",
                classes="label",
            )
            yield OptionList(id="drafts")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    def _load(self) -> None:
        assert self.app.backend is not None
        options = self.query_one(OptionList)
        options.clear_options()
        self._drafts = self.app.backend.drafts()
        for draft in self._drafts:
            label = Text(draft_label(draft))
            try:
                session = self.app.backend.resume(draft)
                asked, total = session.flow.progress()
                label.append(f"  · {asked} of {total} answered")
                if session.flow.stopped == "emergency" and not session.emergency_acknowledged:
                    # the person may not have been told to go now: this one first
                    label.append("\n  ")
                    label.append(
                        " EMERGENCY NOT ACKNOWLEDGED: reopens on the emergency screen ",
                        style="bold white on #b00000",
                    )
            except Exception:  # an unreadable draft is still listed, so it can be discarded
                logs.failure("reading a draft failed")
                label.append("  · cannot be read")
            options.add_option(Option(label, id=draft.draft_id))
        if self._drafts:
            options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        draft = next(d for d in self._drafts if d.draft_id == event.option_id)
        from popup_kit.ui.screens.visit import VisitScreen

        assert self.app.backend is not None
        session = self.app.backend.resume(draft)
        self.app.visit = session
        self.app.switch_screen(VisitScreen())

    def action_discard(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not self._drafts:
            return
        draft = self._drafts[options.highlighted]
        from popup_kit.ui.screens.dialogs import ConfirmScreen

        def done(sure: bool | None) -> None:
            if sure and self.app.backend is not None:
                self.app.backend.discard_draft(draft.draft_id, self.app.volunteer)
                self._load()
                if not self._drafts:
                    self.app.pop_screen()

        self.app.push_screen(ConfirmScreen("Discard this unfinished visit for good?"), done)

    def action_later(self) -> None:
        self.app.pop_screen()
