"""SQLModel tables of the kit's file. The schema itself is made by the migrations in
``db.py``; a test keeps these classes and the migrated schema in step."""

from __future__ import annotations

from sqlmodel import Field, SQLModel

from sync.outbox import OutboxRow

__all__ = [
    "AuditRow",
    "ConsentRow",
    "DraftRow",
    "OutboxRow",
    "TallyRow",
    "VisitRow",
    "VisitVersionRow",
]


class VisitRow(SQLModel, table=True):
    """One per visit: its fixed identity and which version is the latest."""

    __tablename__ = "visit"

    visit_id: str = Field(primary_key=True)
    kit_id: str
    referral_code: str = Field(unique=True)
    created_at: str = Field(index=True)
    latest_version: int


class VisitVersionRow(SQLModel, table=True):
    """A version of a visit; corrections and voids add versions, nothing is edited."""

    __tablename__ = "visit_version"

    record_id: str = Field(primary_key=True)
    visit_id: str = Field(foreign_key="visit.visit_id")
    version: int
    supersedes: str | None = None
    created_at: str
    volunteer: str
    language: str
    status: str
    void_reason: str | None = None
    note: str | None = None
    answers: str
    outcome: str
    triage: str
    forms_version: str
    contact_name: str | None = None
    contact_phone: str | None = None
    purged_at: str | None = None


class ConsentRow(SQLModel, table=True):
    __tablename__ = "consent_event"

    consent_id: str = Field(primary_key=True)
    visit_id: str = Field(foreign_key="visit.visit_id", index=True)
    kind: str
    items: str
    text_version: str
    text_hash: str
    language: str
    method: str
    volunteer: str
    created_at: str


class DraftRow(SQLModel, table=True):
    __tablename__ = "draft"

    draft_id: str = Field(primary_key=True)
    volunteer: str
    language: str
    state: str
    created_at: str
    updated_at: str


class TallyRow(SQLModel, table=True):
    """Anonymous count of a visit that stopped before consent (nothing else is kept)."""

    __tablename__ = "tally"

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    volunteer: str
    created_at: str = Field(index=True)


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    at: str
    actor: str
    action: str
    visit_id: str | None = Field(default=None, index=True)
    detail: str = ""
