"""Correct a saved visit: change answers, then save them as a new version."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from forms import localized
from popup_kit import logs
from popup_kit.ui.answers import allowed, display_value
from popup_kit.ui.widgets import ChoiceBar, ChoiceButton

if TYPE_CHECKING:
    from forms import Forms, Question
    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp

MISSING = "—"


def correction_question(forms: Forms, name: str) -> Question | None:
    """The question to correct canonical field ``name``, with the keys the visit used.

    A derived field (the cauda equina answers, weight loss) is corrected by value, but
    each value keeps the key of the visit's answer that gives it (n/w/s as in the visit);
    only values no single answer gives get a number."""
    question = forms.field_question(name)
    derivation = next((d for d in forms.derivations if d.field == name), None)
    if question is None or derivation is None or question.kind != "choice":
        return question
    source = forms.question(derivation.source_question)
    if source is None:
        return question
    env = forms.base_env()
    keys: dict[Any, str] = {}
    for choice in source.choices:
        value = derivation.value({**env, source.id: choice.value})
        if value is not None and value not in keys:
            keys[value] = choice.key
    spare_keys = [c.key for c in source.choices if c.key not in keys.values()]
    spare_values = [c.value for c in question.choices if c.value not in keys]
    if len(spare_keys) == 1 and len(spare_values) == 1:
        keys[spare_values[0]] = spare_keys[0]
    numbers = (str(i) for i in range(1, 10) if str(i) not in keys.values())
    for value in spare_values:
        keys.setdefault(value, next(numbers))
    order = {key: i for i, key in enumerate(c.key for c in source.choices)}
    choices = sorted(
        (dataclasses.replace(c, key=keys[c.value]) for c in question.choices),
        key=lambda c: (order.get(c.key, len(order)), c.key),
    )
    return dataclasses.replace(question, choices=tuple(choices))


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
                yield Input(value=shown, placeholder=allowed(q, self.language), id="edit-value")
                yield Static(f"{allowed(q, self.language)} · Enter", classes="hint")
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
            self.query_one("#edit-error", Static).update(
                f"Type {allowed(self.question, self.language)}."
            )
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
        table.add_columns("Question", "Answer", "")
        self._fill()
        table.focus()

    @property
    def language(self) -> str:
        return self.app.config.default_language

    def _rows(self) -> list[tuple[str, Question | None, Any]]:
        """(row key, question, value): every field in the order the visit asks it,
        instrument items one by one."""
        backend = self.app.backend
        assert backend is not None
        forms = backend.forms
        asked = {qid: i for i, qid in enumerate(forms.by_id)}
        sources = {d.field: d.source_question for d in forms.derivations}
        rows: list[tuple[int, str, Question | None, Any]] = []
        for name, spec in forms.fields.items():
            if spec.keys:
                value = self.answers.get(name)
                if isinstance(value, dict):
                    for key, question in spec.keys:
                        place = asked.get(question.id, len(asked))
                        rows.append((place, f"{name}.{key}", question, value.get(key)))
                continue
            place = asked.get(sources.get(name, name), len(asked))
            rows.append((place, name, correction_question(forms, name), self.answers.get(name)))
        rows.sort(key=lambda row: row[0])
        return [(key, question, value) for _, key, question, value in rows]

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        lang = self.language
        for key, question, value in self._rows():
            shown = MISSING if value is None else display_value(question, value, lang)
            label = key if question is None else localized(question.prompt, lang)
            label = label.replace("\n", " ")
            if len(label) > 50:
                label = label[:49] + "…"
            table.add_row(label, shown, "changed" if key in self.changed else "", key=key)
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

        self.app.push_screen(EditAnswerScreen(question, value, self.language), done)

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
            except AnswerError as exc:
                self.notify(self._not_saved(exc), severity="error", timeout=20)
                return
            except VisitRefused as exc:
                self.notify(f"Correction not saved: {exc}", severity="error", timeout=15)
                return
            except Exception as exc:
                logs.failure("saving a correction failed")
                self.notify(f"Correction not saved: {exc}", severity="error", timeout=15)
                return
            self.app.controller.correction_saved(self.visit, saved)

        labels = {key: q for key, q, _ in self._rows()}
        changed = "; ".join(
            _short(localized(q.prompt, self.language), 60) if (q := labels.get(key)) else key
            for key in sorted(self.changed)
        )
        self.app.push_screen(ConfirmScreen(f"Save a new version changing: {changed}?"), confirmed)

    def _not_saved(self, exc: Any) -> str:
        """Why, in the question's words, with the cursor put on its row. A correction out
        of an emergency needs the questions the visit skipped at the red screen."""
        field = getattr(exc, "field", "")
        rows = self._rows()
        where = next((i for i, (key, _, _) in enumerate(rows) if key == field), None)
        if where is None:
            return f"Correction not saved: {exc}"
        key, question, value = rows[where]
        self.query_one(DataTable).move_cursor(row=where)
        label = _short(localized(question.prompt, self.language), 60) if question else key
        if value is None:
            return (
                f"Correction not saved: '{label}' is not answered yet (the visit stopped "
                f"before it). Answer the rows marked {MISSING}: Enter on each, then s."
            )
        return f"Correction not saved: '{label}': {getattr(exc, 'message', exc)}"

    def action_cancel(self) -> None:
        self.app.pop_screen()


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"
