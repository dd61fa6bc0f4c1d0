"""The visit controller: which screen comes next, screen to screen.

Screens post messages (an emergency acknowledged, an outcome read, a correction saved);
the app hands them here, so no screen needs to know which screen follows it and the
screens do not import one another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popup_kit import logs

if TYPE_CHECKING:
    from textual.screen import Screen

    from popup_kit.domain import VisitRecord
    from popup_kit.ui.app import BoothApp
    from popup_kit.ui.backend import VisitSession


def session_emergency_reasons(session: VisitSession) -> list[str]:
    from forms import localized

    lang = session.language
    rules = session.flow.outcome().rules
    return [localized(r.reason, lang) for r in rules if r.level == "emergency"]


def record_emergency_reasons(visit: VisitRecord) -> list[str]:
    return [r.reason_in(visit.language) for r in visit.rules if r.level == "emergency"]


class VisitController:
    """Owns the order of the screens of a visit and of a correction."""

    def __init__(self, app: BoothApp) -> None:
        self.app = app
        self.correction: tuple[VisitRecord, VisitRecord] | None = None

    # --- a first visit ---------------------------------------------------------------

    def questions(self) -> Screen[None]:
        """The question screen, at the flow's current question (after Esc or a change)."""
        from popup_kit.ui.screens.visit import VisitScreen

        return VisitScreen()

    def stopped(self, kind: str, language: str) -> Screen[None]:
        """The advice screen of a visit that stops before the questions (not screened, or
        consent refused)."""
        from popup_kit.ui.screens.outcome import StoppedScreen

        return StoppedScreen(kind, language)

    def after_questions(self) -> Screen[None]:
        """The screen once the questions stop: the emergency screen (until acknowledged),
        else the outcome."""
        session = self.app.visit
        assert session is not None
        if session.flow.stopped == "emergency" and not session.emergency_acknowledged:
            from popup_kit.ui.screens.emergency import EmergencyScreen

            return EmergencyScreen(session.language, session_emergency_reasons(session))
        if session.flow.stopped == "emergency":
            return self.after_outcome()
        from popup_kit.ui.screens.outcome import OutcomeScreen

        return OutcomeScreen()

    def after_outcome(self) -> Screen[None]:
        """Contact (only with consent C3), else the review."""
        from popup_kit.ui.screens.outcome import ContactScreen, ReviewScreen

        session = self.app.visit
        assert session is not None
        if session.flow.consent().get("c3"):
            return ContactScreen()
        return ReviewScreen()

    def emergency_acknowledged(self, purpose: str) -> None:
        app = self.app
        if purpose == "correction":
            self._corrected_slip()
            return
        session = app.visit
        if session is None:
            return
        session.emergency_acknowledged = True
        backend = app.backend
        if backend is not None:
            try:
                backend.save_draft(session, app.volunteer)
            except Exception as exc:
                logs.failure("saving a draft failed")
                app.notify(f"Draft not saved ({exc}).", severity="error")
        app.switch_screen(self.after_outcome())

    def outcome_read(self, purpose: str) -> None:
        if purpose == "correction":
            self._corrected_slip()
        else:
            self.app.switch_screen(self.after_outcome())

    # --- a correction ----------------------------------------------------------------

    def correction_saved(self, before: VisitRecord, after: VisitRecord) -> None:
        """Show a changed outcome as loudly as a first visit; then the new slip."""
        app = self.app
        if after.triage == before.triage:
            level = after.triage
            app.notify(
                f"Saved as version {after.version}; the outcome is unchanged ({level}). "
                "The slip the person holds still gives the right advice.",
                markup=False,
            )
            app.pop_screen()
            return
        self.correction = (before, after)
        if after.triage == "emergency":
            from popup_kit.ui.screens.emergency import EmergencyScreen

            app.switch_screen(
                EmergencyScreen(
                    after.language, record_emergency_reasons(after), purpose="correction"
                )
            )
            return
        from popup_kit.ui.screens.outcome import OutcomeScreen, OutcomeView

        app.switch_screen(OutcomeScreen(OutcomeView.of_record(after), purpose="correction"))

    def _corrected_slip(self) -> None:
        if self.correction is None:
            return
        from popup_kit.ui.screens.outcome import CorrectedScreen

        before, after = self.correction
        self.correction = None
        self.app.switch_screen(CorrectedScreen(before, after))
