"""Printing from the screens (in a worker thread, never blocking a visit) and the QR
drawn on screen for when the printer is out of paper."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from popup_kit import logs

if TYPE_CHECKING:
    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp


class Printed(Message):
    """A print job ended: ``ok`` and the one-line result for the volunteer."""

    def __init__(self, ok: bool, text: str) -> None:
        super().__init__()
        self.ok = ok
        self.text = text


class PrintingScreen(Screen[None]):
    """A screen that prints a visit's slip or consent copy without blocking."""

    app: BoothApp

    @work(thread=True, exclusive=True, exit_on_error=False, group="print")
    def print_visit(self, visit: VisitRecord, kind: str = "slip") -> None:
        from popup_kit.slips import print_visit

        what = "consent copy" if kind == "consent" else "slip"
        try:
            result = print_visit(
                self.app.config, visit, kind="consent" if kind == "consent" else "slip"
            )
        except Exception as exc:  # printing must never take the booth down
            logs.failure("making a printout failed")
            self.post_message(Printed(False, f"The {what} could not be made: {exc}"))
            return
        if result.printed:
            self.post_message(Printed(True, f"The {what} is printing ({result.message})."))
        else:
            self.post_message(
                Printed(False, f"Not printed: {result.message}. Press q to show the QR code.")
            )

    def on_printed(self, message: Printed) -> None:
        self.show_print_result(message.ok, message.text)

    def show_print_result(self, ok: bool, text: str) -> None:
        self.notify(text, severity="information" if ok else "warning", timeout=12)


class QrScreen(ModalScreen[None]):
    """The visit's QR drawn in the terminal: the attendee scans the screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close"),
        Binding("enter", "enter", "Done"),
    ]

    def __init__(
        self, code: str, url: str, language: str = "en", *, home_on_enter: bool = False
    ) -> None:
        super().__init__()
        self.code = code
        self.url = url
        self.language = language
        # shown by itself at the end of a visit: Enter ends the visit as it would have
        self.home_on_enter = home_on_enter

    def compose(self) -> ComposeResult:
        from forms import screen_text
        from printouts.qr import qr_text_art

        scan = screen_text("scan_qr", self.language)
        yield Static(f"{scan} · {self.code}", classes="title-bar")
        with Center():
            # black on white set by the stylesheet, so the dark modules are the blocks
            yield Static(qr_text_art(self.url, dark_on_light=False), id="qr-art")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_enter(self) -> None:
        if self.home_on_enter:
            self.app.go_home()  # type: ignore[attr-defined]
            return
        self.dismiss(None)


def show_qr(app: BoothApp, visit: VisitRecord, *, home_on_enter: bool = False) -> None:
    from popup_kit.slips import visit_url

    url = visit_url(app.config, visit.code, language=visit.language)
    app.push_screen(QrScreen(visit.code, url, visit.language, home_on_enter=home_on_enter))
