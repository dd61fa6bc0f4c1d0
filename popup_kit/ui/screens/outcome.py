"""After the questions: outcome, contact (only with consent C3), review, saved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from forms.texts import ces_warning, outcome_text
from popup_kit import logs
from popup_kit.ui.screens.printing import PrintingScreen, show_qr

if TYPE_CHECKING:
    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp
    from popup_kit.ui.backend import VisitSession

LEVEL_TITLES = {
    "emergency": "EMERGENCY",
    "urgent": "URGENT",
    "routine": "ROUTINE REFERRAL",
    "self_care": "SELF-CARE",
    "ineligible": "NOT SCREENED",
    "consent_refused": "NOT SCREENED",
}


def level_title(level: str, language: str) -> str:
    """The level as a heading in ``language`` (the kit's own words in English)."""
    if language == "en":
        return LEVEL_TITLES.get(level, level)
    from forms.texts import level_name

    return level_name(level, language).upper()


def bullet(lines: Iterable[str]) -> str:
    return "\n".join(f"• {line}" for line in lines)


@dataclass(frozen=True)
class OutcomeView:
    """What an outcome screen shows: from a visit in progress or from a stored visit."""

    level: str
    language: str
    reasons: tuple[tuple[str, str], ...]  # (reason in the visit's language, rule id)
    startback: tuple[int, int, str] | None = None  # total, psychosocial, risk

    @classmethod
    def of_session(cls, session: VisitSession) -> OutcomeView:
        from forms import localized

        lang = session.language
        outcome = session.flow.outcome()
        sb = outcome.startback
        return cls(
            str(outcome.triage),
            lang,
            tuple((localized(r.reason, lang), r.id) for r in outcome.rules),
            (sb.total, sb.psychosocial, str(sb.risk)) if sb is not None else None,
        )

    @classmethod
    def of_record(cls, visit: VisitRecord) -> OutcomeView:
        lang = visit.language
        sb = visit.startback
        startback = None
        if sb:
            startback = (int(sb["total"]), int(sb["psychosocial"]), str(sb["risk"]))
        return cls(
            visit.triage,
            lang,
            tuple((r.reason_in(lang), r.id) for r in visit.rules),
            startback,
        )


class OutcomeScreen(Screen[None]):
    """The outcome as the attendee sees it; Enter goes on (posts :class:`Continued`)."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "continue", "Continue", priority=True),
        Binding("p", "save_and_print", "Save and print"),
        Binding("escape", "back", "Back"),
    ]

    class Continued(Message):
        def __init__(self, purpose: str) -> None:
            super().__init__()
            self.purpose = purpose

    def __init__(self, view: OutcomeView | None = None, *, purpose: str = "visit") -> None:
        super().__init__()
        self._view = view
        self.purpose = purpose

    @property
    def view(self) -> OutcomeView:
        if self._view is None:
            session = self.app.visit
            assert session is not None
            self._view = OutcomeView.of_session(session)
        return self._view

    def compose(self) -> ComposeResult:
        from forms import screen_text

        backend = self.app.backend
        assert backend is not None
        view = self.view
        lang, level = view.language, view.level
        number = self.app.config.emergency_number
        title, instruction, steps = outcome_text(level, lang, emergency_number=number)
        yield Static(f"popup-kit · {level_title(level, lang)}", classes="title-bar")
        with VerticalScroll(classes="body", id="outcome-body"):
            yield Static(title, id="outcome-title", classes=f"level level-{level}")
            yield Static(instruction, id="outcome-instruction", classes="prompt")
            if steps:
                yield Static(bullet(steps), id="outcome-steps")
            reasons = [f"{reason} ({rule_id})" for reason, rule_id in view.reasons]
            if reasons:
                why = Text(screen_text("why", lang), style="bold")
                yield Static(Text.assemble(why, "\n", bullet(reasons)), id="outcome-reasons")
            if view.startback is not None:
                total, psychosocial, risk = view.startback
                yield Static(
                    screen_text(
                        "startback",
                        lang,
                        total=total,
                        psychosocial=psychosocial,
                        risk=screen_text(f"risk_{risk}", lang),
                    ),
                    id="outcome-startback",
                )
            heading, signs = ces_warning(lang)
            yield Static(
                Text.assemble(Text(heading, style="bold"), "\n", bullet(signs)), id="outcome-ces"
            )
        yield Static(screen_text("continue", lang), classes="hint")
        if self._saves_at_once():
            yield Static(
                "Volunteer: p saves and prints now · Enter: review the answers first",
                classes="hint volunteer",
            )
        yield Footer()

    def _saves_at_once(self) -> bool:
        """A first visit with nothing more to ask (no contact to take) can be saved here."""
        session = self.app.visit
        return (
            self.purpose == "visit" and session is not None and not session.flow.consent().get("c3")
        )

    def action_continue(self) -> None:
        self.post_message(self.Continued(self.purpose))

    def action_save_and_print(self) -> None:
        if not self._saves_at_once():
            self.action_continue()
            return
        save_visit_and_show(self)

    def action_back(self) -> None:
        if self.purpose != "visit":  # a saved correction is not undone by Esc
            return
        session = self.app.visit
        assert session is not None
        session.flow.back()
        self.app.switch_screen(self.app.controller.questions())


class ContactScreen(Screen[None]):
    """Name and phone, asked only when consent C3 was granted; leaving them empty is
    asked about once, since the person agreed to be called."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "skip", "Skip contact")]

    @property
    def language(self) -> str:
        session = self.app.visit
        return session.language if session is not None else self.app.config.default_language

    def compose(self) -> ComposeResult:
        from forms import screen_text

        lang = self.language
        yield Static(f"popup-kit · {screen_text('contact_title', lang)} (C3)", classes="title-bar")
        with Vertical(classes="body"):
            yield Static(screen_text("name", lang), classes="label")
            yield Input(id="contact-name", max_length=80)
            yield Static(screen_text("phone", lang), classes="label")
            yield Input(id="contact-phone", max_length=30, restrict=r"[0-9+() -]*")
            yield Static("", id="contact-error", classes="error")
            yield Static(screen_text("contact_hint", lang), classes="hint")
            yield Static(
                "Volunteer: Esc continues without contact (the person will not be called).",
                classes="volunteer-prompt",
            )
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
        from forms import screen_text
        from popup_kit.domain import Contact, VisitRefused
        from popup_kit.services import MIN_PHONE_DIGITS, check_contact

        session = self.app.visit
        assert session is not None
        lang = self.language
        name = self.query_one("#contact-name", Input).value
        phone = self.query_one("#contact-phone", Input).value
        if not name.strip() and not phone.strip():
            self.action_skip()
            return
        error = self.query_one("#contact-error", Static)
        if not name.strip():
            error.update(screen_text("contact_no_name", lang))
            self.query_one("#contact-name", Input).focus()
            return
        if sum(ch.isdigit() for ch in phone) < MIN_PHONE_DIGITS:
            error.update(screen_text("contact_short_phone", lang, digits=MIN_PHONE_DIGITS))
            return
        try:
            contact = check_contact(Contact(name, phone), session.flow.consent())
        except VisitRefused as exc:
            error.update(Text(f"{exc}"))
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
        from popup_kit.ui.screens.dialogs import ConfirmScreen

        def sure(yes: bool | None) -> None:
            if not yes:
                self.query_one("#contact-name", Input).focus()
                return
            session = self.app.visit
            assert session is not None
            session.contact = None
            self._keep()
            self.app.switch_screen(ReviewScreen())

        self.app.push_screen(
            ConfirmScreen(
                "The person agreed to be contacted (C3), but no name or phone is entered. "
                "Continue without contact? They will not be called."
            ),
            sure,
        )


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
            f"popup-kit · review · {level_title(level, session.language)}", classes="title-bar"
        )
        yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
        from forms import screen_text

        contact = session.contact
        label = screen_text("contact_title", session.language)
        shown = f"{contact.name}, {contact.phone}" if contact else "—"
        yield Static(f"{label}: {shown}", id="review-contact")
        yield Static("↑/↓ pick · c: change it · s/Enter: save", classes="hint volunteer")
        yield Footer()

    def on_mount(self) -> None:
        from forms import localized
        from popup_kit.ui.answers import display_value

        session = self.app.visit
        assert session is not None
        table = self.query_one(DataTable)
        from forms import screen_text

        lang = session.language
        table.add_columns(screen_text("question", lang), screen_text("answer", lang))
        for question, value in session.flow.answered():
            prompt = localized(question.prompt, lang).replace("\n", " ")
            if len(prompt) > 52:
                prompt = prompt[:51] + "…"
            table.add_row(prompt, display_value(question, value, lang), key=question.id)
        table.focus()

    def action_change(self) -> None:
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
        self.app.switch_screen(self.app.controller.questions())

    def action_save(self) -> None:
        save_visit_and_show(self)


def save_visit_and_show(screen: Screen[None]) -> None:
    """Save the visit in progress and show it saved (its slip printing); on failure the
    visit stays open, in its draft, and the volunteer is told."""
    app: BoothApp = screen.app  # type: ignore[assignment]
    session = app.visit
    backend = app.backend
    assert session is not None and backend is not None
    try:
        summary = backend.save_visit(session, app.volunteer)
    except Exception as exc:  # nothing is lost: the visit stays open and in its draft
        logs.failure("saving a visit failed")
        screen.notify(
            f"The visit was NOT saved: {exc}. Press the key again to retry.",
            title="Save failed",
            severity="error",
            timeout=20,
        )
        return
    app.visit = None
    app.switch_screen(SavedScreen(summary))


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
        from forms import screen_text

        lang = self.visit.language
        yield Static("popup-kit · visit saved", classes="title-bar")
        with Vertical(classes="body"):
            yield Static(screen_text("referral_code", lang), classes="label")
            yield Static(" ".join(self.code), id="saved-code")
            yield Static(
                f"{screen_text('outcome', lang)}: {level_title(self.triage, lang)}",
                classes=f"level level-{self.triage}",
            )
            yield Static(screen_text("printing", lang), id="print-status", classes="volunteer")
            yield Static(
                "Enter: home · p: print again · c: consent copy · q: QR on screen",
                classes="hint volunteer",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.print_visit(self.visit)
        self._qr_offered = False

    def show_print_result(self, ok: bool, text: str) -> None:
        self.query_one("#print-status", Static).update(Text(text))
        # a booth with no printer: the QR comes up by itself, once (Esc shows this screen)
        if not ok and not self.app.config.printer_name and self.is_current and not self._qr_offered:
            self._qr_offered = True
            show_qr(self.app, self.visit, home_on_enter=True)

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


class CorrectedScreen(PrintingScreen):
    """A correction changed the outcome: the new slip prints, the old one is replaced."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,escape", "done", "Back to the visit", priority=True),
        Binding("p", "print", "Print again"),
        Binding("q", "qr", "QR on screen"),
    ]

    def __init__(self, before: VisitRecord, after: VisitRecord) -> None:
        super().__init__()
        self.before = before
        self.visit = after

    def compose(self) -> ComposeResult:
        before, after = self.before, self.visit
        old = LEVEL_TITLES.get(before.triage, before.triage)
        new = LEVEL_TITLES.get(after.triage, after.triage)
        yield Static(f"popup-kit · visit {after.code} corrected", classes="title-bar")
        with Vertical(classes="body"):
            yield Static(
                f"Saved as version {after.version}. The outcome changed: {old} → {new}.",
                id="corrected-change",
                classes="prompt",
            )
            yield Static(f"Outcome: {new}", classes=f"level level-{after.triage}")
            yield Static(
                f"The slip the person holds (version {before.version}, {old}) is REPLACED: "
                "take it back and give them the new one.",
                id="corrected-replaced",
                classes="warning",
            )
            yield Static("Printing the new slip…", id="print-status")
            yield Static(
                "Enter: back to the visit · p: print again · q: QR on screen", classes="hint"
            )
        yield Footer()

    def on_mount(self) -> None:
        self.print_visit(self.visit)

    def show_print_result(self, ok: bool, text: str) -> None:
        self.query_one("#print-status", Static).update(Text(text))

    def action_print(self) -> None:
        self.query_one("#print-status", Static).update("Printing the new slip…")
        self.print_visit(self.visit)

    def action_qr(self) -> None:
        show_qr(self.app, self.visit)

    def action_done(self) -> None:
        self.app.pop_screen()


class StoppedScreen(Screen[None]):
    """Ineligible or consent refused: safety advice only; nothing personal stored."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "home", "Done", priority=True),
        Binding("escape", "back", "Back to the answer"),
    ]

    def __init__(self, kind: str, language: str) -> None:
        super().__init__()
        self.kind = kind
        self.language = language

    def compose(self) -> ComposeResult:
        backend = self.app.backend
        assert backend is not None
        title, instruction, steps = outcome_text(
            self.kind, self.language, emergency_number=self.app.config.emergency_number
        )
        heading, signs = ces_warning(self.language)
        reason = (
            "Not screened: below the self-consent age or unable to consent."
            if self.kind == "ineligible"
            else "Not screened: consent C1 refused. Nothing personal was stored."
        )
        yield Static(f"popup-kit · {level_title(self.kind, self.language)}", classes="title-bar")
        with VerticalScroll(classes="body"):
            yield Static(title, id="stopped-title", classes="level level-self_care")
            yield Static(instruction, classes="prompt")
            if steps:
                yield Static(bullet(steps))
            yield Static(f"[b]{heading}[/b]\n" + bullet(signs))
        hint = f"{reason} Enter: done"
        if self.kind == "ineligible" and self.app.visit is not None:
            hint = f"{reason} Enter: done (counted) · Esc: back to the answer"
        yield Static(hint, classes="hint volunteer")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Only a mistyped age can be undone; a refused consent ends the visit.
        if action == "back":
            return self.kind == "ineligible"
        return True

    def action_back(self) -> None:
        session = self.app.visit
        if self.kind != "ineligible" or session is None:
            return
        session.flow.back()
        self.app.switch_screen(self.app.controller.questions())

    def action_home(self) -> None:
        session, backend = self.app.visit, self.app.backend
        if self.kind == "ineligible" and session is not None and backend is not None:
            try:
                backend.stop_visit(session, self.kind, self.app.volunteer)
            except Exception as exc:  # the advice was shown; the volunteer is told
                self.notify(f"Could not record the tally: {exc}", severity="error")
            self.app.visit = None
        self.app.go_home()
