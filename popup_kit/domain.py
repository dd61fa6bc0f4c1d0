"""The booth's records as the screens, the command line and the printouts see them.

Kept apart from the SQLModel tables (``popup_kit.store.tables``): the store turns rows
into these, and nothing above the store touches a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

VisitStatus = Literal["active", "void"]
SyncState = Literal["pending", "sent", "confirmed", "set_aside"]
TallyKind = Literal["ineligible", "consent_refused"]
TALLY_KINDS: tuple[TallyKind, ...] = ("ineligible", "consent_refused")
CONSENT_ITEMS = ("c1", "c2", "c3", "c4", "c5")
# How a withdrawal was made, as its consent event records it.
AT_THE_BOOTH = "withdrawn at the booth"
ON_THE_SLIP_PAGE = "withdrawn on the slip's page"


class VisitRefused(ValueError):
    """A visit that must not be stored as given; the message says why and what to do."""


@dataclass(frozen=True)
class Contact:
    name: str
    phone: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "phone": self.phone}


@dataclass(frozen=True)
class VisitInput:
    """Everything a finished visit records, from the UI or from `popup-kit visit add`."""

    answers: dict[str, Any]
    language: str
    volunteer: str
    consent: dict[str, bool]
    contact: Contact | None = None
    consent_method: str = "read aloud, answered by key"


@dataclass(frozen=True)
class RuleHit:
    """A rule that fired, as recorded with the visit (its reason in every language)."""

    id: str
    level: str
    reason: dict[str, str]

    def reason_in(self, language: str) -> str:
        return self.reason.get(language) or self.reason.get("en") or self.id


@dataclass(frozen=True)
class VisitVersion:
    version: int
    at: datetime
    volunteer: str
    triage: str
    status: VisitStatus
    note: str = ""


@dataclass(frozen=True)
class VisitRecord:
    """The latest version of a visit, with its consent and where it is in sync."""

    visit_id: str
    version: int
    record_id: str
    code: str
    kit_id: str
    created_at: datetime
    updated_at: datetime
    volunteer: str
    language: str
    answers: dict[str, Any]
    triage: str
    rules: tuple[RuleHit, ...]
    ruleset_version: str
    forms_version: str
    startback: dict[str, Any] | None
    sbi_total: int | None
    consent: dict[str, bool]
    contact: Contact | None
    status: VisitStatus
    void_reason: str | None
    sync_state: SyncState
    purged: bool = False
    history: tuple[VisitVersion, ...] = field(default_factory=tuple)
    consent_version: str = ""

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    @property
    def voided(self) -> bool:
        return self.status == "void"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.visit_id,
            "version": self.version,
            "code": self.code,
            "created_at": self.created_at.isoformat(),
            "volunteer": self.volunteer,
            "language": self.language,
            "triage": self.triage,
            "rules": self.rule_ids,
            "ruleset_version": self.ruleset_version,
            "startback": self.startback,
            "sbi_total": self.sbi_total,
            "consent": dict(self.consent),
            "contact": self.contact.as_json() if self.contact else None,
            "status": self.status,
            "void_reason": self.void_reason,
            "sync": self.sync_state,
            "answers": dict(self.answers),
        }


@dataclass(frozen=True)
class Draft:
    """A visit in progress, saved after every answer."""

    draft_id: str
    volunteer: str
    language: str
    state: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UnsentStatus:
    """What is still only on this laptop (outbox rows not yet confirmed by the server)."""

    count: int  # records (visit versions, consent events) not yet confirmed
    oldest: datetime | None
    set_aside: int = 0
    last_error: str | None = None
    visits: int = 0  # visits with at least one such record
