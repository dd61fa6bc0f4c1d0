"""After the questions: outcome, contact (only with consent C3), review, saved."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from popup_kit import logs
from popup_kit.ui.screens.printing import PrintingScreen, show_qr

if TYPE_CHECKING:
    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp

LEVEL_TITLES = {
    "emergency": "EMERGENCY",
    "urgent": "URGENT",
    "routine": "ROUTINE REFERRAL",
    "self_care": "SELF-CARE",
    "ineligible": "NOT SCREENED",
    "consent_refused": "NOT SCREENED",
}


def next_after_flow(app: BoothApp, stage: str) -> Screen[None]:
    """The screen after ``stage`` ("flow", "outcome", "contact")."""
    session = app.visit
    assert session is not None
    if stage == "flow" and session.flow.stopped != "emergency":
        return OutcomeScreen()
    if stage in ("flow", "outcome") and session.flow.consent().get("c3"):
        return ContactScreen()
    return ReviewScreen()


def bullet(lines: Iterable[str]) -> str:
    return "\n".join(f"• {line}" for line in lines)


class OutcomeScreen(Screen[None]):
    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "continue", "Continue", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def compose(self) -> ComposeResult:
        from forms import localized

        session = self.app.visit
        backend = self.app.backend
        assert session is not None and backend is not None
        lang = session.language
        outcome = session.flow.outcome()
        title, instruction, steps = backend.outcome_text(outcome.triage, lang)
        level = str(outcome.triage)
        yield Static(f"popup-kit · outcome · {LEVEL_TITLES.get(level, level)}", classes="title-bar")
        with VerticalScroll(classes="body", id="outcome-body"):
            yield Static(title, id="outcome-title", classes=f"level level-{level}")
            yield Static(instruction, id="outcome-instruction", classes="prompt")
            if steps:
                yield Static(bullet(steps), id="outcome-steps")
            reasons = [f"{localized(r.reason, lang)} ({r.id})" for r in outcome.rules]
            if reasons:
                yield Static("[b]Why[/b]\n" + bullet(reasons), id="outcome-reasons")
            sb = outcome.startback
            if sb is not None:
                yield Static(
                    f"STarT Back: total {sb.total}/9, psychosocial {sb.psychosocial}/5, "
                    f"risk {sb.risk}",
                    id="outcome-startback",
                )
            heading, signs = backend.ces_warning(lang)
            yield Static(f"[b]{heading}[/b]\n" + bullet(signs), id="outcome-ces")
        yield Static("Enter: continue", classes="hint")
        yield Footer()

    def action_continue(self) -> None:
        self.app.switch_screen(next_after_flow(self.app, "outcome"))

    def action_back(self) -> None:
        from popup_kit.ui.screens.visit import VisitScreen

        session = self.app.visit
        assert session is not None
        session.flow.back()
        self.app.switch_screen(VisitScreen())


class ContactScreen(Screen[None]):
    """Name and phone, asked only when consent C3 was granted."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "skip", "Skip contact")]

    def compose(self) -> ComposeResult:
        yield Static("popup-kit · contact for follow-up (consent C3 given)", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("Name", classes="label")
            yield Input(id="contact-name", max_length=80)
            yield Static("Phone", classes="label")
            yield Input(id="contact-phone", max_length=30, restrict=r"[0-9+() -]*")
            yield Static("", id="contact-error", classes="error")
            yield Static("Enter moves on · Esc: continue without contact", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        session = self.app.visit
        if session is not None and session.contact is not None:
            self.query_one("#contact-name", Input).value = session.contact.name
            self.query_one("#contact-phone", Input).value = session.contact.phone
        self.query_one("#contact-name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "contact-name":
            self.query_one("#contact-phone", Input).focus()
            return
        from popup_kit.domain import Contact, VisitRefused
        from popup_kit.services import check_contact

        session = self.app.visit
        assert session is not None
        name = self.query_one("#contact-name", Input).value
        phone = self.query_one("#contact-phone", Input).value
        try:
            contact = check_contact(Contact(name, phone), session.flow.consent())
        except VisitRefused as exc:
            self.query_one("#contact-error", Static).update(f"{exc}. Or press Esc to skip.")
            return
        session.contact = contact
        self._keep()
        self.app.switch_screen(ReviewScreen())

    def _keep(self) -> None:
        session, backend = self.app.visit, self.app.backend
        if session is not None and backend is not None:
            try:
                backend.save_draft(session, self.app.volunteer)
            except Exception as exc:
                logs.failure("saving a draft failed")
                self.notify(f"Draft not saved ({exc}).", severity="error")

    def action_skip(self) -> None:
        session = self.app.visit
        assert session is not None
        session.contact = None
        self._keep()
        self.app.switch_screen(ReviewScreen())


class ReviewScreen(Screen[None]):
    """Every answer; change one, or save."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s,enter", "save", "Save visit", priority=True),
        Binding("c", "change", "Change answer"),
    ]

    def compose(self) -> ComposeResult:
        session = self.app.visit
        assert session is not None
        outcome = session.flow.outcome()
        level = str(outcome.triage)
        yield Static(
            f"popup-kit · review · outcome {LEVEL_TITLES.get(level, level)}", classes="title-bar"
        )
        yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
        contact = session.contact
        contact_line = f"Contact: {contact.name}, {contact.phone}" if contact else "Contact: none"
        yield Static(contact_line, id="review-contact")
        yield Static("↑/↓ pick · c: change it · s/Enter: save", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        from forms import localized
        from popup_kit.ui.screens.visit import display_value

        session = self.app.visit
        assert session is not None
        table = self.query_one(DataTable)
        table.add_columns("Question", "Answer")
        lang = session.language
        for question, value in session.flow.answered():
            prompt = localized(question.prompt, lang).replace("\n", " ")
            if len(prompt) > 52:
                prompt = prompt[:51] + "…"
            table.add_row(prompt, display_value(question, value, lang), key=question.id)
        table.focus()

    def action_change(self) -> None:
        from popup_kit.ui.screens.visit import VisitScreen

        session = self.app.visit
        assert session is not None
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return
        target = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if target is None or not session.flow.revisit(target):
            return
        # a changed answer may change the outcome: an emergency is shown afresh
        session.emergency_acknowledged = False
        self.app.switch_screen(VisitScreen())

    def action_save(self) -> None:
        session = self.app.visit
        backend = self.app.backend
        assert session is not None and backend is not None
        try:
            summary = backend.save_visit(session, self.app.volunteer)
        except Exception as exc:  # nothing is lost: the visit stays open and in its draft
            logs.failure("saving a visit failed")
            self.notify(
                f"The visit was NOT saved: {exc}. Press s to try again.",
                title="Save failed",
                severity="error",
                timeout=20,
            )
            return
        self.app.visit = None
        self.app.switch_screen(SavedScreen(summary))


class SavedScreen(PrintingScreen):
    """The visit is stored: its code, and the slip printing (or the QR on screen)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,escape", "home", "Home", priority=True),
        Binding("p", "print", "Print again"),
        Binding("c", "consent_copy", "Consent copy"),
        Binding("q", "qr", "QR on screen"),
    ]

    def __init__(self, visit: VisitRecord) -> None:
        super().__init__()
        self.visit = visit
        self.code = visit.code
        self.triage = visit.triage

    def compose(self) -> ComposeResult:
        yield Static("popup-kit · visit saved", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("Referral code", classes="label")
            yield Static(" ".join(self.code), id="saved-code")
            yield Static(
                f"Outcome: {LEVEL_TITLES.get(self.triage, self.triage)}",
                classes=f"level level-{self.triage}",
            )
            yield Static("Printing the slip…", id="print-status")
            yield Static(
                "Enter: home · p: print again · c: consent copy · q: QR on screen",
                classes="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.print_visit(self.visit)

    def show_print_result(self, ok: bool, text: str) -> None:
        self.query_one("#print-status", Static).update(text)

    def action_print(self) -> None:
        self.query_one("#print-status", Static).update("Printing the slip…")
        self.print_visit(self.visit)

    def action_consent_copy(self) -> None:
        self.query_one("#print-status", Static).update("Printing the consent copy…")
        self.print_visit(self.visit, "consent")

    def action_qr(self) -> None:
        show_qr(self.app, self.visit)

    def action_home(self) -> None:
        self.app.go_home()


class StoppedScreen(Screen[None]):
    """Ineligible or consent refused: safety advice only; nothing personal stored."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "home", "Done", priority=True)]

    def __init__(self, kind: str, language: str) -> None:
        super().__init__()
        self.kind = kind
        self.language = language

    def compose(self) -> ComposeResult:
        backend = self.app.backend
        assert backend is not None
        title, instruction, steps = backend.outcome_text(self.kind, self.language)
        heading, signs = backend.ces_warning(self.language)
        reason = (
            "Not screened: below the self-consent age or unable to consent."
            if self.kind == "ineligible"
            else "Not screened: consent C1 refused. Nothing personal was stored."
        )
        yield Static(f"popup-kit · {reason}", classes="title-bar")
        with VerticalScroll(classes="body"):
            yield Static(title, id="stopped-title", classes="level level-self_care")
            yield Static(instruction, classes="prompt")
            if steps:
                yield Static(bullet(steps))
            yield Static(f"[b]{heading}[/b]\n" + bullet(signs))
        yield Static("Enter: done", classes="hint")
        yield Footer()

    def action_home(self) -> None:
        self.app.go_home()
