"""The visit list: search (typed, or a USB scanner reading a slip), open, correct, void."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

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


class VisitListScreen(Screen[None]):
    app: BoothApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "home", "Home"),
        Binding("a", "toggle_all", "Today/all"),
        Binding("slash", "search", "Search"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.all_days = False

    def compose(self) -> ComposeResult:
        yield Static("popup-kit · visits · today", id="list-title", classes="title-bar")
        yield Input(placeholder="search: code (or scan the slip), volunteer, outcome", id="search")
        yield DataTable(id="visit-table", cursor_type="row", zebra_stripes=True)
        yield Static("Enter: open · /: search · a: today/all days · Esc: home", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Time", "Code", "Outcome", "By", "Ver", "Sync")
        self.reload()
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()

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
                outcome_word(v) + (" · VOID" if v.voided else ""),
                v.volunteer,
                str(v.version),
                SYNC_WORDS.get(v.sync_state, v.sync_state),
                key=v.visit_id,
            )
        self.query_one("#list-title", Static).update(
            f"popup-kit · visits · {'all days' if self.all_days else 'today'} · {len(visits)}"
        )

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
                self.notify(f"No visit with code {code} in this kit.", severity="warning")
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        visit_id = event.row_key.value
        if visit_id is not None:
            self.app.push_screen(VisitDetailScreen(visit_id))

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

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
        from popup_kit.ui.screens.visit import display_value

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
        for name, value in visit.answers.items():
            question = backend.question(name)
            lines.append(f"  {name:<38} {display_value(question, value, 'en')}")
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
        self.query_one("#detail-title", Static).update(
            f"popup-kit · visit {visit.code} · p: reprint · q: QR · c: correct · v: void"
        )

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_reprint(self) -> None:
        visit = self.record()
        if visit is not None:
            self.notify("Printing the slip…")
            self.print_visit(visit)

    def action_qr(self) -> None:
        visit = self.record()
        if visit is not None:
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
