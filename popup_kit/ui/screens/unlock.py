"""The booth passphrase: chosen on first run, typed at start of day and after an idle lock,
changed by the coordinator; and the recovery key, shown once."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

MIN_PASSPHRASE = 8  # as popup_kit.store.keys, which is not imported before the first frame


class PassphraseScreen(ModalScreen[str]):
    """Ask for the passphrase: once to open the store, twice to choose one (first run)."""

    def __init__(self, *, first_run: bool, error: str = "") -> None:
        super().__init__()
        self.first_run = first_run
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            if self.first_run:
                yield Static(
                    "First run: the coordinator chooses the booth passphrase. It encrypts "
                    f"every visit on this laptop (at least {MIN_PASSPHRASE} characters).",
                    classes="dialog-text",
                )
                yield Input(placeholder="new passphrase", password=True, id="first")
                yield Input(placeholder="the same again", password=True, id="again")
            else:
                yield Static("Booth passphrase (start of day):", classes="dialog-text")
                yield Input(placeholder="passphrase", password=True, id="first")
            yield Static(self.error, id="pass-error", classes="error")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        first = self.query_one("#first", Input).value
        if not first:
            return
        if not self.first_run:
            self.dismiss(first)
            return
        if len(first.strip()) < MIN_PASSPHRASE:
            self._say(f"At least {MIN_PASSPHRASE} characters, please.")
            return
        again = self.query_one("#again", Input)
        if event.input.id == "first":
            again.focus()
            return
        if again.value != first:
            again.value = ""
            self._say("The two passphrases differ: type it again.")
            return
        self.dismiss(first)

    def _say(self, text: str) -> None:
        self.query_one("#pass-error", Static).update(text)


class LockScreen(ModalScreen[None]):
    """The booth locked after idle time: only the passphrase opens it again."""

    def __init__(self, db_path: Path) -> None:
        super().__init__()
        self.db_path = db_path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                "Locked after idle time. Booth passphrase to go on:", classes="dialog-text"
            )
            yield Input(placeholder="passphrase", password=True, id="unlock")
            yield Static("", id="lock-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value:
            self.query_one("#lock-error", Static).update("Checking...")
            self._check(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _check(self, passphrase: str) -> None:
        from popup_kit.store.keys import verify

        try:
            verify(self.db_path, passphrase)
        except Exception as exc:  # wrong or unreadable: said, and the lock stays
            self.app.call_from_thread(self._refused, str(exc))
        else:
            self.app.call_from_thread(self.dismiss, None)

    def _refused(self, why: str) -> None:
        self.query_one("#lock-error", Static).update(why)
        self.query_one("#unlock", Input).value = ""


class RecoveryKeyScreen(ModalScreen[None]):
    """The recovery key, shown once, to be written down and kept apart from the laptop."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "done", "Written down")]

    def __init__(self, recovery_key: str, *, upgraded: bool) -> None:
        super().__init__()
        self.recovery_key = recovery_key
        self.upgraded = upgraded

    def compose(self) -> ComposeResult:
        upgraded = (
            "The visit store is now encrypted; its unsent records are kept.\n\n"
            if self.upgraded
            else ""
        )
        with Vertical(classes="dialog"):
            yield Static(
                f"{upgraded}Recovery key (shown only now):\n\n  {self.recovery_key}\n\n"
                "Write it down and keep it apart from this laptop. With it a coordinator "
                "can set a new passphrase: popup-kit passphrase recover.",
                classes="dialog-text",
                markup=False,
            )
            yield Static("[b]Enter[/b] written down", classes="dialog-keys")
        yield Footer()

    def action_done(self) -> None:
        self.dismiss(None)


class ChangePassphraseScreen(ModalScreen[bool]):
    """The coordinator changes the booth passphrase (the store is not rewritten)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, db_path: Path) -> None:
        super().__init__()
        self.db_path = db_path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Change the booth passphrase", classes="dialog-text")
            yield Input(placeholder="current passphrase", password=True, id="current")
            yield Input(placeholder="new passphrase", password=True, id="new")
            yield Input(placeholder="new passphrase again", password=True, id="again")
            yield Static("", id="change-error", classes="error")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        ids = ["current", "new", "again"]
        values = {i: self.query_one(f"#{i}", Input).value for i in ids}
        for i in ids:
            if not values[i]:
                self.query_one(f"#{i}", Input).focus()
                return
        if len(values["new"].strip()) < MIN_PASSPHRASE:
            self._say(f"The new passphrase needs at least {MIN_PASSPHRASE} characters.")
            return
        if values["new"] != values["again"]:
            self._say("The two new passphrases differ.")
            return
        self._say("Changing...")
        self._change(values["current"], values["new"])

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _change(self, current: str, new: str) -> None:
        from popup_kit.store.keys import change_passphrase

        try:
            change_passphrase(self.db_path, current, new)
        except Exception as exc:  # wrong current passphrase, unwritable key file: said
            self.app.call_from_thread(self._say, str(exc))
        else:
            self.app.call_from_thread(self.dismiss, True)

    def _say(self, text: str) -> None:
        self.query_one("#change-error", Static).update(text)

    def action_cancel(self) -> None:
        self.dismiss(False)
