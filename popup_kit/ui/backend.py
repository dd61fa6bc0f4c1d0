"""What the screens use below them: the forms and the visit service.

Imported only after the first frame is drawn (it pulls in SQLModel and the forms).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forms import Flow, Forms, Question
from popup_kit.config import KitConfig
from popup_kit.domain import Contact, Draft, VisitInput, VisitRecord
from popup_kit.services import VisitService

Clock = Callable[[], datetime]
UI_STATE = "_ui"


@dataclass
class VisitSession:
    """The visit in progress: its flow, and what is gathered after the questions."""

    draft_id: str
    language: str
    flow: Flow
    contact: Contact | None = None
    emergency_acknowledged: bool = False
    consent_info_seen: bool = False

    def ui_state(self) -> dict[str, Any]:
        return {
            "emergency_acknowledged": self.emergency_acknowledged,
            "consent_info_seen": self.consent_info_seen,
            "contact": [self.contact.name, self.contact.phone] if self.contact else None,
        }


class Backend:
    """The forms and the store, opened once per app."""

    def __init__(self, config: KitConfig, service: VisitService) -> None:
        self.config = config
        self.service = service
        self.forms: Forms = service.forms

    @classmethod
    def open(cls, config: KitConfig, clock: Clock) -> Backend:
        return cls(config, VisitService(config, clock=clock))

    def close(self) -> None:
        self.service.close()

    # --- visits in progress ----------------------------------------------------------

    def new_visit(self, language: str) -> VisitSession:
        return VisitSession(uuid.uuid4().hex, language, Flow(self.forms, language))

    def resume(self, draft: Draft) -> VisitSession:
        state = dict(draft.state)
        ui = dict(state.pop(UI_STATE, {}) or {})
        session = VisitSession(
            draft.draft_id, draft.language, Flow(self.forms, draft.language, state=state)
        )
        session.emergency_acknowledged = bool(ui.get("emergency_acknowledged", False))
        session.consent_info_seen = bool(ui.get("consent_info_seen", False))
        contact = ui.get("contact")
        if isinstance(contact, list) and len(contact) == 2:
            session.contact = Contact(str(contact[0]), str(contact[1]))
        return session

    def save_draft(self, session: VisitSession, volunteer: str) -> None:
        state = dict(session.flow.to_state())
        state[UI_STATE] = session.ui_state()
        self.service.save_draft(session.draft_id, volunteer, session.language, state)

    def drafts(self) -> list[Draft]:
        return self.service.load_drafts()

    def discard_draft(self, draft_id: str, volunteer: str = "") -> None:
        self.service.discard_draft(draft_id, volunteer)

    def save_visit(self, session: VisitSession, volunteer: str) -> VisitRecord:
        """Record the visit; its draft goes in the same transaction."""
        flow = session.flow
        consent = flow.consent()
        visit = VisitInput(
            answers=flow.canonical_answers(),
            language=session.language,
            volunteer=volunteer,
            consent=consent,
            contact=session.contact if consent.get("c3") else None,
        )
        return self.service.record_visit(visit, draft_id=session.draft_id)

    def stop_visit(self, session: VisitSession, kind: str, volunteer: str) -> None:
        """Ineligible or consent refused: keep only an anonymous tally, drop the draft."""
        self.service.record_tally(kind, volunteer)
        self.service.discard_draft(session.draft_id)

    # --- texts -----------------------------------------------------------------------

    def consent_script(self, language: str) -> str:
        return self.forms.consent_information(language)

    def question(self, field_id: str) -> Question | None:
        return self.forms.field_question(field_id)
