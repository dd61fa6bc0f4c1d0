"""The new-visit flow: language, then the questions one at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from forms import localized, screen_text
from popup_kit import logs
from popup_kit.ui.answers import allowed, display_value
from popup_kit.ui.widgets import ChoiceBar, ChoiceButton

if TYPE_CHECKING:
    from textual.timer import Timer

    from forms import Question
    from popup_kit.ui.app import BoothApp
    from popup_kit.ui.backend import VisitSession


def section_name(section: str, language: str) -> str:
    try:
        return screen_text(f"section_{section}", language)
    except KeyError:
        return section


def out_of_range(question: Question, value: float) -> bool:
    return (question.minimum is not None and value < question.minimum) or (
        question.maximum is not None and value > question.maximum
    )


# A complete number waits this long before the question moves on, so a digit typed for
# it (200 typed fast for an age) reaches this question, where it is judged, and never
# lands on the next one. Any other key ends the wait at once and goes to the next one.
GRACE_SECONDS = 0.4


class NumberInput(Input):
    """The number box: keys that are not part of a number are left to the screen."""

    async def _on_key(self, event: events.Key) -> None:
        # Textual runs Input's own handler after this one unless the default is prevented
        char = event.character
        if event.is_printable and char is not None and not (char.isdigit() or char in ".,"):
            event.prevent_default()  # a key typed ahead: the screen gives it to the next question


def number_complete(question: Question, typed: str) -> bool:
    """True when no further digit could make a valid answer (so Enter is not needed)."""
    if question.kind != "integer" or not typed.isdigit() or question.maximum is None:
        return False
    return typed == "0" or int(typed) * 10 > question.maximum


class LanguageScreen(Screen[None]):
    """The visit's language: one key per language, names in their own language."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        backend = self.app.backend
        names = backend.forms.languages if backend is not None else {}
        yield Static("popup-kit · new visit", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("Language / Idioma", classes="prompt")
            yield ChoiceBar(
                [(str(i), names.get(c, c)) for i, c in enumerate(self._languages(), 1)], None
            )
        yield Footer()

    def _languages(self) -> list[str]:
        return list(self.app.config.languages)[:9]

    def on_key(self, event: events.Key) -> None:
        if event.character and event.character.isdigit():
            event.stop()
            self._pick(event.character)

    def on_choice_button_chosen(self, event: ChoiceButton.Chosen) -> None:
        self._pick(event.key)

    def _pick(self, key: str) -> None:
        languages = self._languages()
        index = int(key) - 1
        if not 0 <= index < len(languages) or self.app.backend is None:
            return
        self.app.visit = self.app.backend.new_visit(languages[index])
        self.app.switch_screen(VisitScreen())

    def action_cancel(self) -> None:
        self.app.pop_screen()


class ConsentInfoScreen(Screen[None]):
    """The information read aloud before the consent choices."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "continue", "Continue to consent", priority=True),
        Binding("space,pagedown", "page_down", "Next page", show=False),
        Binding("pageup", "page_up", "Previous page", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, script: str) -> None:
        super().__init__()
        self.script = script

    def compose(self) -> ComposeResult:
        yield Static("Consent · information (read aloud)", classes="title-bar")
        with VerticalScroll(id="script", classes="body"):
            yield Static(self.script, classes="script")
        yield Static(
            "Volunteer: read it aloud · ↑/↓ or space to scroll · Enter when read",
            classes="hint volunteer",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#script").focus()

    def action_page_down(self) -> None:
        self.query_one("#script", VerticalScroll).scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self.query_one("#script", VerticalScroll).scroll_page_up(animate=False)

    def action_continue(self) -> None:
        session = self.app.visit
        if session is not None:
            session.consent_info_seen = True
        self.app.switch_screen(VisitScreen())

    def action_back(self) -> None:
        session = self.app.visit
        if session is not None:
            session.flow.back()
        self.app.switch_screen(VisitScreen())


class VisitScreen(Screen[None]):
    """One question at a time; a choice key answers and moves on."""

    app: BoothApp
    AUTO_FOCUS = ""  # focus follows the question: the number box, or nothing for keys

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield Static("", id="visit-title", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("", id="progress", classes="progress")
            yield Static("", id="prompt", classes="prompt")
            yield Static("", id="volunteer-prompt", classes="volunteer-prompt")
            yield Vertical(id="choices")
            with Vertical(id="number-area"):
                yield NumberInput(id="number", classes="number")
                yield Static("", id="number-hint", classes="hint")
            yield Static("", id="message", classes="error")
        yield Static("", id="attribution", classes="hint")
        yield Footer()

    @property
    def session(self) -> VisitSession:
        assert self.app.visit is not None
        return self.app.visit

    @property
    def question(self) -> Question | None:
        return self.session.flow.current()

    def on_mount(self) -> None:
        self._pending: Timer | None = None
        self._typed = ""  # the number box as last seen, to tell typing from deleting
        self.advance()

    # --- routing ---------------------------------------------------------------------

    def advance(self) -> None:
        """Show what comes next: the next question, or where the visit stopped."""
        session = self.session
        flow = session.flow
        if flow.stopped == "emergency":
            self._to_after_flow()
            return
        if flow.stopped in ("ineligible", "consent_refused"):
            self._stop(str(flow.stopped))
            return
        question = flow.current()
        if question is None:
            self._to_after_flow()
            return
        if question.section == "consent" and not session.consent_info_seen:
            assert self.app.backend is not None
            self.app.switch_screen(
                ConsentInfoScreen(self.app.backend.consent_script(session.language))
            )
            return
        self.show(question)

    def _stop(self, kind: str) -> None:
        session = self.session
        assert self.app.backend is not None
        if kind == "ineligible":
            # the age may be a slip of the finger: counted only once the volunteer confirms
            self.app.switch_screen(self.app.controller.stopped(kind, session.language))
            return
        try:
            self.app.backend.stop_visit(session, kind, self.app.volunteer)
        except Exception as exc:  # the advice is still shown; the volunteer is told
            logs.failure("recording a tally failed")
            self.notify(f"Could not record the tally: {exc}", severity="error")
        self.app.visit = None
        self.app.switch_screen(self.app.controller.stopped(kind, session.language))

    def _to_after_flow(self) -> None:
        self.app.switch_screen(self.app.controller.after_questions())

    # --- drawing ---------------------------------------------------------------------

    def show(self, question: Question) -> None:
        session = self.session
        lang = session.language
        names = self.app.backend.forms.languages if self.app.backend else {}
        done, total = session.flow.section_progress(question.section)
        self.query_one("#visit-title", Static).update(
            f"popup-kit · visit · {names.get(lang, lang)} · {self.app.volunteer}"
        )
        section = section_name(question.section, lang)
        self.query_one("#progress", Static).update(
            f"{section} · {done + 1} {screen_text('of', lang)} {total}"
        )
        self.query_one("#prompt", Static).update(localized(question.prompt, lang))
        # guidance is for the volunteer: in the kit's language, whatever the visit's
        guidance = localized(question.volunteer_prompt, self.app.config.default_language)
        self.query_one("#volunteer-prompt", Static).update(guidance)
        self.query_one("#message", Static).update("")
        self.query_one("#attribution", Static).update(localized(question.attribution, lang))
        shown = session.flow.shown_answer(question.id)
        choices = self.query_one("#choices", Vertical)
        choices.remove_children()
        numbers = self.query_one("#number-area", Vertical)
        box = self.query_one("#number", Input)
        if question.kind == "choice":
            numbers.display = False
            selected = next(
                (
                    c.key
                    for c in question.choices
                    if shown is not None and c.value == shown and type(c.value) is type(shown)
                ),
                None,
            )
            choices.mount(
                ChoiceBar([(c.key, localized(c.label, lang)) for c in question.choices], selected)
            )
            self.set_focus(None)
        else:
            numbers.display = True
            box.restrict = r"[0-9]*[.,]?[0-9]*" if question.kind == "number" else r"[0-9]*"
            with box.prevent(Input.Changed):
                box.value = "" if shown is None else display_value(None, shown, lang)
            self._typed = box.value
            hint = screen_text("enter" if question.kind == "number" else "number_hint", lang)
            self.query_one("#number-hint", Static).update(f"{allowed(question, lang)} · {hint}")
            box.focus()

    # --- answering -------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        question = self.question
        if question is not None and question.kind != "choice" and event.is_printable:
            box = self.query_one("#number", Input)
            if self._pending is not None or number_complete(question, box.value):
                # the number is done: this key is for the next question
                self._flush_pending()
            else:  # an unfinished number never takes a key meant for another question
                return
        question = self.question
        if question is None or question.kind != "choice" or not event.character:
            return
        if question.choice_for_key(event.character.lower()) is not None:
            event.stop()
            event.prevent_default()
            self.pick(event.character.lower())

    def on_choice_button_chosen(self, event: ChoiceButton.Chosen) -> None:
        self.pick(event.key)

    def pick(self, key: str) -> None:
        question = self.question
        if question is None:
            return
        choice = question.choice_for_key(key)
        if choice is not None:
            self._answer(question, choice.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._cancel_pending()
        grew = len(event.value) > len(self._typed)
        self._typed = event.value
        question = self.question
        # only a digit typed moves on by itself: deleting back to a valid number (200
        # corrected to 20 on the way to 58) waits for the volunteer's Enter
        if question is None or not grew or not number_complete(question, event.value):
            return
        event.stop()
        from forms import AnswerError
        from forms.engine import check_answer

        try:
            check_answer(question, int(event.value))
        except (AnswerError, ValueError):  # no further digit can help: say so now
            self._submit_number(question, event.value)
            return
        typed = event.value
        self._pending = self.set_timer(
            GRACE_SECONDS, lambda: self._submit_pending(question.id, typed)
        )

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.stop()
            self._pending = None

    def _submit_pending(self, question_id: str, typed: str) -> None:
        self._pending = None
        question = self.question
        if question is not None and question.id == question_id:
            self._submit_number(question, typed)

    def _flush_pending(self) -> None:
        self._cancel_pending()
        question = self.question
        if question is not None and question.kind != "choice":
            self._submit_number(question, self.query_one("#number", Input).value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._cancel_pending()
        question = self.question
        if question is None or question.kind == "choice":
            return
        event.stop()
        self._submit_number(question, event.value)

    def _submit_number(self, question: Question, typed: str) -> None:
        raw = typed.strip().replace(",", ".")
        try:
            value: float | int = int(raw) if question.kind == "integer" else float(raw)
        except ValueError:
            lang = self.session.language
            self._error(screen_text("type_range", lang, allowed=allowed(question, lang)))
            return
        self._answer(question, value)

    def _error(self, text: str) -> None:
        self.query_one("#message", Static).update(text)

    def _answer(self, question: Question, value: Any) -> None:
        from forms import AnswerError

        lang = self.session.language
        if question.kind != "choice" and out_of_range(question, value):
            shown = display_value(None, value, lang)
            self._error(
                screen_text("out_of_range", lang, value=shown, allowed=allowed(question, lang))
            )
            return
        try:
            self.session.flow.answer(value)
        except AnswerError as exc:
            if lang == self.app.config.default_language:
                self._error(f"{exc.message}")
            else:  # the attendee reads their language; the detail is for the volunteer
                self._error(screen_text("implausible", lang))
                kit_lang = self.app.config.default_language
                field = self.app.backend.question(exc.field) if self.app.backend else None
                subject = localized(field.prompt, kit_lang) if field is not None else exc.field
                if len(subject) > 40:
                    subject = subject[:39] + "…"
                self.query_one("#volunteer-prompt", Static).update(
                    Text(f"Volunteer: {subject} {exc.message}")
                )
            return
        self.save_draft()
        self.advance()

    def save_draft(self) -> None:
        backend = self.app.backend
        if backend is None:
            return
        try:
            backend.save_draft(self.session, self.app.volunteer)
        except Exception as exc:  # the answer stays in memory; the volunteer is told
            logs.failure("saving a draft failed")
            self.notify(
                f"Draft not saved ({exc}). The answers are still here; carry on.",
                title="Draft",
                severity="error",
            )

    def action_back(self) -> None:
        if self._pending is not None:  # the number typed is an answer: back goes before it
            self._flush_pending()
        if self.session.flow.back():
            self.save_draft()
            self.advance()
            return
        from popup_kit.ui.screens.dialogs import ConfirmScreen

        def done(sure: bool | None) -> None:
            if not sure:
                return
            backend = self.app.backend
            session = self.app.visit
            if backend is not None and session is not None:
                try:
                    backend.discard_draft(session.draft_id, self.app.volunteer)
                except Exception as exc:
                    logs.failure("removing a draft failed")
                    self.notify(f"Draft not removed: {exc}", severity="error")
            self.app.visit = None
            self.app.go_home()

        self.app.push_screen(ConfirmScreen("Cancel this visit? Nothing is kept."), done)
