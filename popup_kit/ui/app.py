"""The booth terminal app: start of day, home, the visit flow and the visit list.

Module-level imports stay minimal so the first frame is drawn quickly; the store and
the forms engine are opened after that frame, in a thread worker that reports back
through a message.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message

from popup_kit import logs
from popup_kit.ui.controller import VisitController

if TYPE_CHECKING:
    from textual.screen import Screen

    from popup_kit.config import KitConfig
    from popup_kit.ui.backend import Backend, VisitSession
    from popup_kit.ui.screens.emergency import EmergencyScreen
    from popup_kit.ui.screens.outcome import OutcomeScreen
    from sync.client import SyncSummary

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BackendReady(Message):
    """The store and forms are open."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend


class StoreLocked(Message):
    """The store needs the booth passphrase (or a first one)."""

    def __init__(self, first_run: bool, error: str) -> None:
        super().__init__()
        self.first_run = first_run
        self.error = error


class BackendFailed(Message):
    """The store or forms could not be opened."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


@dataclass(frozen=True)
class SyncOutcome:
    """How the last background sync run ended (``error`` when it could not run at all)."""

    at: datetime
    summary: SyncSummary | None
    error: str | None


class SyncStarted(Message):
    """A background sync run began."""


class SyncProgress(Message):
    """Records settled so far in the running sync, out of those queued."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class SyncFinished(Message):
    """A background sync run ended; the summary says what it did."""

    def __init__(self, at: datetime, summary: SyncSummary) -> None:
        super().__init__()
        self.at = at
        self.summary = summary


class SyncFailed(Message):
    """A background sync run could not run at all."""

    def __init__(self, at: datetime, error: str) -> None:
        super().__init__()
        self.at = at
        self.error = error


class BoothApp(App[None]):
    """The volunteer's app for one booth laptop."""

    CSS_PATH = Path(__file__).with_name("booth.tcss")
    TITLE = "popup-kit"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, config: KitConfig, *, clock: Clock | None = None) -> None:
        super().__init__()
        self.config = config
        self.clock: Clock = clock or _utc_now
        self.backend: Backend | None = None
        self.backend_error: str | None = None
        self.ready = asyncio.Event()
        self.volunteer = ""
        self.visit: VisitSession | None = None
        self.controller = VisitController(self)
        self.sync_enrolled = False
        # Written on the app's thread only: set when a run is started, cleared by its
        # finished or failed message.
        self.sync_running = False
        self.sync_progress: tuple[int, int] | None = None
        self.last_sync: SyncOutcome | None = None
        self.withdrawn_at_centre: list[str] = []
        """Codes whose withdrawal on the slip's page a background run applied here."""
        self._sync_stop = threading.Event()
        self.locked = False
        self._chose_passphrase = False  # typed on the first-run screen: show the recovery key
        self._last_input = time.monotonic()

    # start-up -------------------------------------------------------------------------

    def on_mount(self) -> None:
        from popup_kit.ui.screens.start import StartScreen

        self.push_screen(StartScreen())
        self.call_after_refresh(self._open_backend)
        if self.config.idle_lock_minutes > 0:
            self.set_interval(15, self._lock_if_idle)

    @work(thread=True, exclusive=True, exit_on_error=False, group="backend")
    def _open_backend(self) -> None:
        try:
            from popup_kit.store.keys import PassphraseNeeded, WrongPassphrase, store_state
            from popup_kit.ui.backend import Backend
        except Exception as exc:  # the except clauses below need these names
            logs.failure("loading the kit store failed")
            self.post_message(BackendFailed(f"{type(exc).__name__}: {exc}"))
            return
        try:
            backend = Backend.open(self.config, self.clock)
        except (PassphraseNeeded, WrongPassphrase) as exc:
            first = store_state(self.config.db_path) != "encrypted"
            self.post_message(StoreLocked(first, "" if first else str(exc)))
        except Exception as exc:  # any failure is shown, never crashes the booth
            logs.failure("opening the kit store failed")
            self.post_message(BackendFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(BackendReady(backend))

    def on_store_locked(self, message: StoreLocked) -> None:
        from popup_kit.ui.screens.unlock import PassphraseScreen

        wrong = "Wrong passphrase: try again." if "wrong" in message.error else ""

        def typed(passphrase: str | None) -> None:
            from popup_kit.store.keys import remember_passphrase

            remember_passphrase(passphrase)
            self._chose_passphrase = message.first_run
            self._open_backend()

        self.push_screen(PassphraseScreen(first_run=message.first_run, error=wrong), typed)

    def on_backend_ready(self, message: BackendReady) -> None:
        self.backend = message.backend
        self.ready.set()
        self.start_background_sync()
        store = self.backend.service.store
        if store.recovery_key and self._chose_passphrase:
            from popup_kit.ui.screens.unlock import RecoveryKeyScreen

            self.push_screen(RecoveryKeyScreen(store.recovery_key, upgraded=store.encrypted_plain))

    # idle lock ------------------------------------------------------------------------

    async def on_event(self, event: Any) -> None:
        from textual import events

        if isinstance(event, (events.Key, events.MouseDown)):
            self._last_input = time.monotonic()
        await super().on_event(event)

    def _lock_if_idle(self) -> None:
        idle = time.monotonic() - self._last_input
        if self.locked or self.backend is None or idle < self.config.idle_lock_minutes * 60:
            return
        self.lock()

    def lock(self) -> None:
        """Cover every screen until the booth passphrase is typed again."""
        from popup_kit.ui.screens.unlock import LockScreen

        def unlocked(_: None) -> None:
            self.locked = False
            self._last_input = time.monotonic()

        self.locked = True
        self.push_screen(LockScreen(self.config.db_path), unlocked)

    def action_change_passphrase(self) -> None:
        if self.backend is None or self.locked:
            return
        from popup_kit.ui.screens.unlock import ChangePassphraseScreen

        def changed(done: bool | None) -> None:
            if done:
                self.notify("Booth passphrase changed.")

        self.push_screen(ChangePassphraseScreen(self.config.db_path), changed)

    def on_unmount(self) -> None:
        self._sync_stop.set()
        if self.backend is not None:
            self.backend.close()

    # the visit flow: screens post, the controller decides what comes next -----------

    def on_emergency_screen_acknowledged(self, message: EmergencyScreen.Acknowledged) -> None:
        self.controller.emergency_acknowledged(message.purpose)

    def on_outcome_screen_continued(self, message: OutcomeScreen.Continued) -> None:
        self.controller.outcome_read(message.purpose)

    # background sync ------------------------------------------------------------------

    def start_background_sync(self) -> None:
        """Sync in a thread whenever the kit is enrolled: visits never wait for it. A timer
        starts a run every ``sync_interval`` seconds unless one is running."""
        from popup_kit.enrolment import enrolled_with

        try:
            self.sync_enrolled = enrolled_with(self.config) is not None
        except ValueError as exc:  # damaged credentials: said on the home screen
            self.last_sync = SyncOutcome(self.clock(), None, str(exc))
            return
        if self.sync_enrolled and self.config.sync_interval > 0:
            self.set_interval(self.config.sync_interval, self.start_sync_run)
            self.start_sync_run()

    def start_sync_run(self) -> bool:
        """Start one background run now; False when one is running already."""
        if self.sync_running or self.backend is None or self._sync_stop.is_set():
            return False
        self.sync_running = True
        self.sync_progress = None
        self._sync_run()
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="sync")
    def _sync_run(self) -> None:
        from popup_kit.syncing import run_sync
        from sync.client import SyncConfig

        backend = self.backend
        assert backend is not None
        settings = SyncConfig(total_time=min(120.0, self.config.sync_interval * 2))
        self.post_message(SyncStarted())

        def progress(done: int, total: int) -> None:
            self.post_message(SyncProgress(done, total))

        try:
            summary = run_sync(
                self.config,
                backend.service.store,
                sync_config=settings,
                progress=progress,
                stop=self._sync_stop,
            )
        except Exception as exc:  # shown on the home screen; the booth goes on
            logs.failure("background sync failed")
            self.post_message(SyncFailed(self.clock(), f"{exc}"))
        else:
            self.post_message(SyncFinished(self.clock(), summary))

    def on_sync_started(self, _message: SyncStarted) -> None:
        self._refresh_home()

    def on_sync_progress(self, message: SyncProgress) -> None:
        self.sync_progress = (message.done, message.total)
        self._refresh_home()

    def on_sync_finished(self, message: SyncFinished) -> None:
        self.sync_running = False
        self.last_sync = SyncOutcome(message.at, message.summary, None)
        codes = message.summary.withdrawn_on_slip_page
        if codes:
            self.withdrawn_at_centre.extend(c for c in codes if c not in self.withdrawn_at_centre)
            self.notify(
                f"Consent withdrawn on the slip's page: {', '.join(codes)}. "
                "Their contact details are removed from this laptop.",
                title="Withdrawal",
                timeout=30,
            )
        self._refresh_home()

    def on_sync_failed(self, message: SyncFailed) -> None:
        self.sync_running = False
        self.last_sync = SyncOutcome(message.at, None, message.error)
        self._refresh_home()

    def _refresh_home(self) -> None:
        from popup_kit.ui.screens.home import HomeScreen

        if isinstance(self.screen, HomeScreen):
            self.screen.refresh_counts()

    def action_sync_now(self) -> None:
        if not self.sync_enrolled:
            self.notify(
                "This kit is not enrolled with a triage server (popup-kit enroll).",
                severity="warning",
            )
            return
        if self.start_sync_run():
            self.notify("Syncing now…")
        else:
            self.notify("A sync is running already.")

    def today(self) -> date:
        """The booth's calendar day (the laptop's time zone)."""
        return self.clock().astimezone().date()

    def on_backend_failed(self, message: BackendFailed) -> None:
        self.backend_error = message.error
        self.ready.set()
        self.notify(
            f"Could not open the visit store: {message.error}",
            title="Store error",
            severity="error",
            timeout=30,
        )

    # navigation -----------------------------------------------------------------------

    def start_day(self, volunteer: str) -> None:
        """The volunteer on duty is known: go home, offering any unfinished visits."""
        self.volunteer = volunteer
        self._after_start()

    @work(exclusive=True, group="start")
    async def _after_start(self) -> None:
        await self.ready.wait()
        from popup_kit.ui.screens.home import HomeScreen

        self.switch_screen(HomeScreen())
        if self.backend is not None and self.backend.drafts():
            from popup_kit.ui.screens.resume import ResumeScreen

            self.push_screen(ResumeScreen())

    def go_home(self) -> None:
        """Drop every screen above home (used after a visit ends)."""
        from popup_kit.ui.screens.home import HomeScreen

        while len(self.screen_stack) > 2 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()
        if isinstance(self.screen, HomeScreen):
            self.screen.refresh_counts()

    def _can_work(self) -> bool:
        if not self.volunteer:
            self.notify("Enter the volunteer on duty first.", severity="warning")
            return False
        if self.backend is None:
            why = self.backend_error or "still opening"
            self.notify(f"The visit store is not available: {why}", severity="error")
            return False
        return True

    def action_new_visit(self) -> None:
        if not self._can_work():
            return
        if self.visit is not None:
            self.notify("A visit is already in progress.", severity="warning")
            return
        from popup_kit.ui.screens.visit import LanguageScreen

        self.go_home()
        self.push_screen(LanguageScreen())

    def action_new_visit_in(self, number: int) -> None:
        """A new visit straight from home in the kit's language ``number`` (as numbered on
        the language screen): one key fewer per visit for a queue."""
        languages = list(self.config.languages)[:9]
        if not 1 <= number <= len(languages) or not self._can_work():
            return
        if self.visit is not None:
            self.notify("A visit is already in progress.", severity="warning")
            return
        from popup_kit.ui.screens.visit import VisitScreen

        assert self.backend is not None
        self.go_home()
        self.visit = self.backend.new_visit(languages[number - 1])
        self.push_screen(VisitScreen())

    def action_visit_list(self) -> None:
        if not self._can_work():
            return
        if self.visit is not None:
            self.notify("Finish or save the visit in progress first.", severity="warning")
            return
        from popup_kit.ui.screens.visits import VisitListScreen

        self.go_home()
        self.push_screen(VisitListScreen())

    def action_home(self) -> None:
        if self.visit is not None:
            self.notify("A visit is in progress: it is kept as a draft.", severity="warning")
            return
        if self.volunteer:
            self.go_home()

    async def action_quit(self) -> None:
        if self.visit is None:
            self.exit()
            return
        from popup_kit.ui.screens.dialogs import ConfirmScreen

        def done(sure: bool | None) -> None:
            if sure:
                self.exit()

        self.push_screen(
            ConfirmScreen(
                "A visit is in progress. Quit anyway? Its answers are kept as a draft "
                "and can be resumed at the next start."
            ),
            done,
        )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        if self.locked:  # nothing behind the lock is reachable
            yield SystemCommand("Quit", "Close popup-kit", self.action_quit)
            return
        yield SystemCommand(
            "Change passphrase", "The booth passphrase (coordinator)", self.action_change_passphrase
        )
        yield SystemCommand("New visit", "Start a new visit", self.action_new_visit)
        yield SystemCommand("Visit list", "Find, correct or void a visit", self.action_visit_list)
        yield SystemCommand("Home", "Today's counts and unsent records", self.action_home)
        yield SystemCommand(
            "Sync now", "Send unsent records to the triage server", self.action_sync_now
        )
        yield SystemCommand("Quit", "Close popup-kit", self.action_quit)
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # ours asks first when a visit is open
                yield command
