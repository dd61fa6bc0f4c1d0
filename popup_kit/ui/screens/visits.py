"""The visit list: search (typed, or a USB scanner reading a slip), open, correct, void."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from popup_kit import logs
from popup_kit.ui.screens.outcome import LEVEL_TITLES
from popup_kit.ui.screens.printing import PrintingScreen, show_qr

if TYPE_CHECKING:
    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp

SYNC_WORDS = {
    "pending": "not sent",
    "sent": "sending",
    "confirmed": "sent ✓",
    "set_aside": "SET ASIDE",
}


def outcome_word(visit: VisitRecord) -> str:
    return LEVEL_TITLES.get(visit.triage, visit.triage)


def one_slip_away(typed: str, code: str) -> bool:
    """True when ``typed`` (compact) is ``code`` (compact) with one character changed or
    two neighbours swapped: the mistakes the check character catches."""
    if len(typed) != len(code) or typed == code:
        return False
    diff = [i for i, (a, b) in enumerate(zip(typed, code, strict=True)) if a != b]
    if len(diff) == 1:
        return True
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and typed[diff[0]] == code[diff[1]]
        and typed[diff[1]] == code[diff[0]]
    )


def typed_symbols(text: str) -> str:
    """What was typed as a code, compact and upper case (look-alikes not folded)."""
    stripped = text.strip()
    marker = stripped.lower().rfind("/r/")
    if marker >= 0:
        stripped = stripped[marker + 3 :].split("?", 1)[0].split("#", 1)[0]
    return "".join(ch for ch in stripped.upper() if ch.isalnum())


class VisitListScreen(Screen[None]):
    """The search box has the keys from the start: a typed code or a scanner's whole slip
    URL lands in it, whatever has focus."""

    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "home", "Home"),
        Binding("ctrl+t", "toggle_all", "Today/all days"),
        Binding("down", "to_table", "List", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.all_days = False

    def compose(self) -> ComposeResult:
        yield Static("popup-kit · visits · today", id="list-title", classes="title-bar")
        yield Input(
            placeholder="type or scan: code, volunteer, outcome", id="search", select_on_focus=False
        )
        yield Static("", id="search-status", classes="warning")
        yield DataTable(id="visit-table", cursor_type="row", zebra_stripes=True)
        yield Static(
            "Type or scan a slip · ↓: the list · Enter: open · Ctrl+T: today/all · Esc: home",
            classes="hint",
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Time", "Code", "Outcome", "By", "Ver", "Sync")
        self.reload()
        self.query_one("#search", Input).focus()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_key(self, event: events.Key) -> None:
        # a key typed (or scanned) while the list has focus still belongs to the search
        search = self.query_one("#search", Input)
        if search.has_focus or not event.is_printable or event.character is None:
            return
        event.stop()
        event.prevent_default()
        search.focus()
        search.insert_text_at_cursor(event.character)

    def _search_text(self) -> str | None:
        raw = self.query_one("#search", Input).value.strip()
        if not raw:
            return None
        from printouts.codes import CodeError, extract_code

        try:
            return extract_code(raw)  # a whole slip URL from a scanner, or a typed code
        except CodeError:
            return raw

    def reload(self) -> None:
        backend = self.app.backend
        assert backend is not None
        day = None if self.all_days else self.app.today()
        try:
            visits = backend.service.list_visits(day=day, search=self._search_text())
        except Exception as exc:
            logs.failure("listing visits failed")
            self.notify(f"Could not list visits: {exc}", severity="error")
            return
        table = self.query_one(DataTable)
        table.clear()
        for v in visits:
            table.add_row(
                v.created_at.astimezone().strftime("%m-%d %H:%M" if self.all_days else "%H:%M"),
                v.code,
                Text.assemble(outcome_word(v), " ", ("VOID", "bold reverse"))
                if v.voided
                else outcome_word(v),
                v.volunteer,
                str(v.version),
                SYNC_WORDS.get(v.sync_state, v.sync_state),
                key=v.visit_id,
            )
        self.query_one("#list-title", Static).update(
            f"popup-kit · visits · {'all days' if self.all_days else 'today'} · {len(visits)}"
        )
        self.query_one("#search-status", Static).update(self._code_problem())

    def _code_problem(self) -> str:
        """What is wrong with a whole code that was typed, and the visit it may have meant."""
        from printouts.codes import CODE_LENGTH, CodeError, compact_code, extract_code

        raw = self.query_one("#search", Input).value.strip()
        typed = typed_symbols(raw)
        if len(typed) != CODE_LENGTH:
            return ""
        try:
            extract_code(raw)
        except CodeError as exc:
            if "check character" not in str(exc):
                return f"Not a referral code: {exc}."
        else:
            return ""
        backend = self.app.backend
        assert backend is not None
        near = [
            v.code
            for v in backend.service.list_visits()
            if one_slip_away(typed, compact_code(v.code))
        ]
        line = "The check character does not match: a character is mistyped or two are swapped."
        if len(near) == 1:
            return f"{line} Did you mean {near[0]}?"
        if near:
            return f"{line} Close to: {', '.join(near[:3])}."
        return line

    def on_input_changed(self, event: Input.Changed) -> None:
        self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        backend = self.app.backend
        text = event.value.strip()
        if backend is not None and text:
            from printouts.codes import CodeError, extract_code

            try:
                code = extract_code(text)
            except CodeError:
                code = None
            found = backend.service.find_by_code(code) if code else None
            if found is not None:
                event.input.value = ""
                self.app.push_screen(VisitDetailScreen(found.visit_id))
                return
            if code is not None:
                self.query_one("#search-status", Static).update(
                    f"No visit with code {code} in this kit."
                )
                return
        table = self.query_one(DataTable)
        if table.row_count == 1:  # the search narrowed it to one: open it
            row = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if row is not None:
                self.app.push_screen(VisitDetailScreen(row))
                return
        self.action_to_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        visit_id = event.row_key.value
        if visit_id is not None:
            self.app.push_screen(VisitDetailScreen(visit_id))

    def action_to_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_toggle_all(self) -> None:
        self.all_days = not self.all_days
        self.reload()

    def action_home(self) -> None:
        self.app.pop_screen()


class VisitDetailScreen(PrintingScreen):
    """One visit: answers, outcome and versions; reprint, correct or void it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("p", "reprint", "Reprint slip"),
        Binding("q", "qr", "QR on screen"),
        Binding("c", "correct", "Correct"),
        Binding("v", "void", "Void"),
        Binding("w", "withdraw", "Withdraw consent"),
    ]

    def __init__(self, visit_id: str) -> None:
        super().__init__()
        self.visit_id = visit_id

    def compose(self) -> ComposeResult:
        yield Static("popup-kit · visit", id="detail-title", classes="title-bar")
        with VerticalScroll(classes="body", id="detail-body"):
            yield Static("", id="detail-text")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#detail-body").focus()

    def on_screen_resume(self) -> None:
        self.reload()

    def record(self) -> VisitRecord | None:
        backend = self.app.backend
        assert backend is not None
        return backend.service.get_visit(self.visit_id)

    def reload(self) -> None:
        from popup_kit.ui.answers import display_value

        backend = self.app.backend
        assert backend is not None
        visit = self.record()
        if visit is None:
            self.query_one("#detail-text", Static).update("Visit not found.")
            return
        lang = visit.language
        created = visit.created_at.astimezone()
        lines = [
            f"[b]Code[/b] {visit.code}   [b]Outcome[/b] {outcome_word(visit)}   "
            f"[b]Version[/b] {visit.version}   [b]Sync[/b] "
            f"{SYNC_WORDS.get(visit.sync_state, visit.sync_state)}",
            f"{created:%Y-%m-%d %H:%M} · volunteer {visit.volunteer} · language {lang} · "
            f"rules {visit.ruleset_version}",
        ]
        if visit.voided:
            lines.append(f"[b reverse] VOID [/] {visit.void_reason or ''}")
        for rule in visit.rules:
            lines.append(f"  [b]{rule.id}[/b] {rule.reason_in('en')}")
        granted = [k.upper() for k, v in visit.consent.items() if v]
        lines.append(f"Consent given: {', '.join(granted) or 'none'}")
        if visit.contact is not None:
            lines.append(f"Contact: {visit.contact.name}, {visit.contact.phone}")
        lines.append("")
        from forms import localized

        kit_lang = self.app.config.default_language
        for name, value in visit.answers.items():
            question = backend.question(name)
            label = localized(question.prompt, kit_lang) if question is not None else name
            label = label.replace("\n", " ")
            if len(label) > 44:
                label = label[:43] + "…"
            shown = display_value(question, value, kit_lang)
            lines.append(Text(f"  {label:<45} {shown}").markup)
        if len(visit.history) > 1:
            lines.append("")
            lines.append("[b]Versions[/b]")
            for v in visit.history:
                note = f" · {v.note}" if v.note else ""
                lines.append(
                    f"  v{v.version} {v.at.astimezone():%H:%M} {v.volunteer} "
                    f"{LEVEL_TITLES.get(v.triage, v.triage)}"
                    f"{' VOID' if v.status == 'void' else ''}{note}"
                )
        self.query_one("#detail-text", Static).update("\n".join(lines))
        keys = "VOID: no reprint" if visit.voided else "p: reprint · q: QR · c: correct · v: void"
        self.query_one("#detail-title", Static).update(f"popup-kit · visit {visit.code} · {keys}")

    def action_close(self) -> None:
        self.app.pop_screen()

    def _refuse_if_void(self, visit: VisitRecord, what: str) -> bool:
        # a void visit's advice must not leave the booth again, on paper or on screen
        if not visit.voided:
            return False
        self.notify(
            f"Not {what}: visit {visit.code} is VOID ({visit.void_reason or 'no reason'}). "
            "Take back any slip the person holds; start a new visit if they need advice.",
            severity="error",
            timeout=15,
        )
        return True

    def action_reprint(self) -> None:
        visit = self.record()
        if visit is not None and not self._refuse_if_void(visit, "reprinted"):
            self.notify("Printing the slip…")
            self.print_visit(visit)

    def action_qr(self) -> None:
        visit = self.record()
        if visit is not None and not self._refuse_if_void(visit, "shown"):
            show_qr(self.app, visit)

    def action_correct(self) -> None:
        visit = self.record()
        if visit is None:
            return
        if visit.voided:
            self.notify("A void visit cannot be corrected.", severity="warning")
            return
        from popup_kit.ui.screens.correct import CorrectScreen

        self.app.push_screen(CorrectScreen(visit))

    def action_withdraw(self) -> None:
        from popup_kit.ui.screens.dialogs import ConfirmScreen

        visit = self.record()
        if visit is None:
            return

        def confirmed(sure: bool | None) -> None:
            if not sure:
                return
            backend = self.app.backend
            assert backend is not None
            try:
                backend.service.withdraw_consent(self.visit_id, self.app.volunteer)
            except Exception as exc:
                logs.failure("recording a withdrawal failed")
                self.notify(f"Not recorded: {exc}", severity="error")
                return
            self.notify("Consent withdrawn; contact details removed from this laptop.")
            self.reload()

        self.app.push_screen(
            ConfirmScreen(
                f"Withdraw all consent for {visit.code}? The centre will keep only the fact "
                "of withdrawal."
            ),
            confirmed,
        )

    def action_void(self) -> None:
        from popup_kit.ui.screens.dialogs import ConfirmScreen, ReasonScreen

        visit = self.record()
        if visit is None or visit.voided:
            self.notify("This visit is already void.", severity="warning")
            return

        def got_reason(reason: str | None) -> None:
            if not reason:
                return

            def confirmed(sure: bool | None) -> None:
                if not sure:
                    return
                backend = self.app.backend
                assert backend is not None
                try:
                    backend.service.void_visit(self.visit_id, reason, self.app.volunteer)
                except Exception as exc:
                    logs.failure("voiding a visit failed")
                    self.notify(f"Not voided: {exc}", severity="error")
                    return
                self.notify("Visit voided; the record and the reason are kept.")
                self.reload()

            self.app.push_screen(ConfirmScreen(f"Void this visit? Reason: {reason}"), confirmed)

        self.app.push_screen(ReasonScreen("Why is this visit void? (required)"), got_reason)
