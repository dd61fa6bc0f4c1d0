"""Correct a saved visit: change answers, then save them as a new version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from forms import localized
from popup_kit import logs
from popup_kit.ui.screens.visit import allowed, display_value
from popup_kit.ui.widgets import ChoiceBar, ChoiceButton

if TYPE_CHECKING:
    from forms import Question
    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp

MISSING = "—"


class EditAnswerScreen(ModalScreen[Any]):
    """Pick a new value for one answer (a choice key, or a number and Enter)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: Question, value: Any, language: str) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.language = language

    def compose(self) -> ComposeResult:
        q = self.question
        with Vertical(classes="dialog"):
            yield Static(localized(q.prompt, self.language), classes="prompt")
            if q.kind == "choice":
                selected = next(
                    (
                        c.key
                        for c in q.choices
                        if c.value == self.value and type(c.value) is type(self.value)
                    ),
                    None,
                )
                yield ChoiceBar(
                    [(c.key, localized(c.label, self.language)) for c in q.choices], selected
                )
            else:
                shown = "" if self.value is None else display_value(None, self.value, "en")
                yield Input(value=shown, placeholder=allowed(q), id="edit-value")
                yield Static(f"{allowed(q)} · Enter", classes="hint")
            yield Static("", id="edit-error", classes="error")
        yield Footer()

    def on_key(self, event: events.Key) -> None:
        if self.question.kind != "choice" or not event.character:
            return
        choice = self.question.choice_for_key(event.character.lower())
        if choice is not None:
            event.stop()
            self.dismiss(choice.value)

    def on_choice_button_chosen(self, event: ChoiceButton.Chosen) -> None:
        choice = self.question.choice_for_key(event.key)
        if choice is not None:
            self.dismiss(choice.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from forms import AnswerError
        from forms.engine import check_answer

        raw = event.value.strip().replace(",", ".")
        try:
            value: Any = int(raw) if self.question.kind == "integer" else float(raw)
            self.dismiss(check_answer(self.question, value))
        except ValueError:
            self.query_one("#edit-error", Static).update(f"Type {allowed(self.question)}.")
        except AnswerError as exc:
            self.query_one("#edit-error", Static).update(exc.message)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CorrectScreen(Screen[None]):
    """Every canonical answer of the visit; changes are saved as a new version."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "save", "Save correction"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, visit: VisitRecord) -> None:
        super().__init__()
        self.visit = visit
        self.answers: dict[str, Any] = {
            k: dict(v) if isinstance(v, dict) else v for k, v in visit.answers.items()
        }
        self.changed: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static(f"popup-kit · correct visit {self.visit.code}", classes="title-bar")
        yield DataTable(id="correct-table", cursor_type="row")
        yield Static(
            "Enter: change the answer · s: save as a new version · Esc: cancel", classes="hint"
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Field", "Answer", "")
        self._fill()
        table.focus()

    def _rows(self) -> list[tuple[str, Question | None, Any]]:
        """(row key, question, value): every field, instrument items one by one."""
        backend = self.app.backend
        assert backend is not None
        rows: list[tuple[str, Question | None, Any]] = []
        for name, spec in backend.forms.fields.items():
            if spec.keys:
                value = self.answers.get(name)
                if isinstance(value, dict):
                    for key, question in spec.keys:
                        rows.append((f"{name}.{key}", question, value.get(key)))
                continue
            rows.append((name, backend.question(name), self.answers.get(name)))
        return rows

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for key, question, value in self._rows():
            shown = MISSING if value is None else display_value(question, value, "en")
            table.add_row(key, shown, "changed" if key in self.changed else "", key=key)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        found = next((r for r in self._rows() if r[0] == key), None)
        if key is None or found is None or found[1] is None:
            return
        _, question, value = found
        assert question is not None

        def done(new: Any) -> None:
            if new is None or new == value:
                return
            name, _, item = key.partition(".")
            if item:
                self.answers[name][item] = new
            else:
                self.answers[name] = new
            self.changed.add(key)
            self._fill()

        self.app.push_screen(EditAnswerScreen(question, value, "en"), done)

    def action_save(self) -> None:
        if not self.changed:
            self.notify("Nothing changed.")
            return
        from popup_kit.ui.screens.dialogs import ConfirmScreen

        def confirmed(sure: bool | None) -> None:
            if not sure:
                return
            from forms import AnswerError
            from popup_kit.domain import VisitRefused

            backend = self.app.backend
            assert backend is not None
            try:
                saved = backend.service.correct_visit(
                    self.visit.visit_id, self.answers, self.app.volunteer, self.visit.contact
                )
            except (AnswerError, VisitRefused) as exc:
                self.notify(f"Correction not saved: {exc}", severity="error", timeout=15)
                return
            except Exception as exc:
                logs.failure("saving a correction failed")
                self.notify(f"Correction not saved: {exc}", severity="error", timeout=15)
                return
            self.app.controller.correction_saved(self.visit, saved)

        changed = ", ".join(sorted(self.changed))
        self.app.push_screen(ConfirmScreen(f"Save a new version changing: {changed}?"), confirmed)

    def action_cancel(self) -> None:
        self.app.pop_screen()
