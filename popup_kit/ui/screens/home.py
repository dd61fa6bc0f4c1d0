"""Home: today's counts by outcome and what is still unsent."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from popup_kit import logs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popup_kit.domain import UnsentStatus
    from popup_kit.ui.app import BoothApp

PLACEHOLDER_WARNING = (
    "The QR codes lead nowhere yet: [server] base_url in kit.toml is still the example "
    "(triage.example.org). Slips say so; tell the coordinator."
)

COUNT_ROWS = (
    ("emergency", "Emergency"),
    ("urgent", "Urgent"),
    ("routine", "Routine"),
    ("self_care", "Self-care"),
    ("ineligible", "Ineligible"),
    ("consent_refused", "Consent refused"),
    ("void", "Voided"),
)


def age_words(delta: timedelta) -> str:
    """A short age such as "45m" or "2h"."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // (24 * 60)}d"


RECORDS_NOTE = "(a visit, its consent choices and each correction are sent as separate records)"


def unsent_line(unsent: UnsentStatus, now: datetime, *, enrolled: bool = True) -> str:
    """What is still only on this laptop, in words: one sentence per state, never
    "reached the server" for a kit that has no server."""
    if unsent.count == 0:
        line = (
            "Everything recorded here has reached the triage server."
            if enrolled
            else "Nothing is waiting to be sent."
        )
    else:
        visits = f"{unsent.visits} visit{'s' if unsent.visits != 1 else ''}"
        lead = "Not sent yet" if enrolled else "Only on this laptop"
        line = f"{lead}: {visits} ({unsent.count} records)"
        if unsent.oldest is not None:
            line += f", oldest {age_words(now - unsent.oldest)}"
        if unsent.count != unsent.visits:
            line += f"\n{RECORDS_NOTE}"
    if unsent.set_aside:
        line += f"\nSet aside (need a coordinator): {unsent.set_aside}"
    if unsent.last_error:
        line += f"\nLast sync problem: {unsent.last_error}"
    return line


def sync_line(
    *,
    enrolled: bool,
    running: bool,
    at: datetime | None,
    error: str | None,
    next_try: datetime | None,
    progress: tuple[int, int] | None = None,
    withdrawn: Sequence[str] = (),
) -> str:
    """How sync stands, honestly: never "sent" before the server's receipts say so."""
    if error and not enrolled:
        return f"Sync cannot start: {error}"
    if not enrolled:
        return "Not enrolled with a triage server: records stay here (popup-kit enroll)."
    parts = []
    if running:
        done_total = f" ({progress[0]} of {progress[1]})" if progress and progress[1] else ""
        parts.append(f"syncing now{done_total}…")
    if at is not None:
        parts.append(f"last sync {at.astimezone():%H:%M}")
    if error:
        parts.append(f"could not sync: {error}")
    if next_try is not None:
        parts.append(f"next try {next_try.astimezone():%H:%M}")
    line = "Sync: " + (" · ".join(parts) if parts else "waiting for the first run") + "."
    if withdrawn:
        line += (
            f"\nConsent withdrawn on the slip's page: {', '.join(withdrawn)} "
            "(contact details removed from this laptop)."
        )
    return line


class HomeScreen(Screen[None]):
    """The day at a glance; the counts follow the store on their own (another process,
    such as a command run by the coordinator, may add or void visits)."""

    app: BoothApp
    REFRESH_SECONDS: ClassVar[float] = 5.0

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "app.new_visit", "New visit"),
        Binding("l", "app.visit_list", "Visit list"),
        Binding("r", "resume", "Resume draft"),
        Binding("s", "app.sync_now", "Sync now"),
        Binding("q", "app.quit", "Quit"),
        *(Binding(str(i), f"app.new_visit_in({i})", show=False) for i in range(1, 10)),
    ]

    def compose(self) -> ComposeResult:
        cfg = self.app.config
        yield Static(f"popup-kit · {cfg.booth_name} · {cfg.event}", classes="title-bar")
        with Vertical(classes="body"):
            yield Static("", id="on-duty")
            yield Static("", id="counts")
            yield Static("", id="unsent", classes="status")
            yield Static("", id="sync")
            yield Static("", id="drafts", classes="warning")
            if cfg.server_is_placeholder:
                yield Static(Text(PLACEHOLDER_WARNING), id="placeholder", classes="warning")
            names = self.app.backend.forms.languages if self.app.backend is not None else {}
            languages = "   ".join(
                f"[b]\\[{i}][/b] {names.get(code, code)}"
                for i, code in enumerate(list(cfg.languages)[:9], 1)
            )
            yield Static(
                f"[b]\\[n][/b] new visit   {languages}   [b]\\[l][/b] visit list",
                classes="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_counts()
        self.set_interval(self.REFRESH_SECONDS, self._refresh_if_shown)

    def _refresh_if_shown(self) -> None:
        if self.is_current:
            self.refresh_counts()

    def on_screen_resume(self) -> None:
        self.refresh_counts()

    def refresh_counts(self) -> None:
        app = self.app
        self.query_one("#on-duty", Static).update(f"Volunteer on duty: [b]{app.volunteer}[/b]")
        backend = app.backend
        if backend is None:
            self.query_one("#counts", Static).update(
                app.backend_error or "Opening the visit store…"
            )
            return
        now = app.clock()
        today = app.today()
        try:
            counts = backend.service.counts_for_day(today)
            unsent = backend.service.unsent()
            drafts = len(backend.drafts())
        except Exception as exc:  # shown, never fatal
            logs.failure("reading the day counts failed")
            self.query_one("#counts", Static).update(f"Could not read the store: {exc}")
            return
        lines = [f"[b]Today ({today:%Y-%m-%d})[/b]"]
        for key, label in COUNT_ROWS:
            lines.append(f"  {label:<16} {counts.get(key, 0):>4}")
        self.query_one("#counts", Static).update("\n".join(lines))
        self.query_one("#unsent", Static).update(
            unsent_line(unsent, now, enrolled=app.sync_enrolled)
        )
        last = app.last_sync
        summary = last.summary if last is not None else None
        error = last.error if last is not None else None
        if summary is not None and not summary.all_confirmed and summary.last_error:
            error = summary.last_error
        self.query_one("#sync", Static).update(
            sync_line(
                enrolled=app.sync_enrolled,
                running=app.sync_running,
                at=last.at if last is not None else None,
                error=error,
                next_try=summary.next_attempt_at if summary is not None else None,
                progress=app.sync_progress,
                withdrawn=app.withdrawn_at_centre,
            )
        )
        self.query_one("#drafts", Static).update(
            f"{drafts} unfinished visit(s): press [b]r[/b] to resume" if drafts else ""
        )

    def action_resume(self) -> None:
        backend = self.app.backend
        if backend is None or not backend.drafts():
            self.notify("No unfinished visits.")
            return
        from popup_kit.ui.screens.resume import ResumeScreen

        self.app.push_screen(ResumeScreen())
