"""SQLModel tables of the kit's file: the one source of its schema.

A new store is created from these classes (:data:`KIT_TABLES`) and stamped at the newest
revision under ``popup_kit/store/migrations``; a change to them after that ships as a
revision there. Columns are TEXT as SQLite stores them, and every index, unique and CHECK
constraint is declared here, so a new store and one upgraded in the field are alike.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import CheckConstraint, Index, MetaData, Table, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from sync.outbox import OutboxRow

__all__ = [
    "KIT_TABLES",
    "AuditRow",
    "ConsentRow",
    "DraftRow",
    "OutboxRow",
    "TallyRow",
    "VisitRow",
    "VisitVersionRow",
    "kit_metadata",
]


class VisitRow(SQLModel, table=True):
    """One per visit: its fixed identity and which version is the latest."""

    __tablename__ = "visit"
    __table_args__ = (Index("visit_created", "created_at"),)

    visit_id: str = Field(primary_key=True, nullable=True, sa_type=Text)
    kit_id: str = Field(sa_type=Text)
    referral_code: str = Field(unique=True, sa_type=Text)
    created_at: str = Field(sa_type=Text)
    latest_version: int


class VisitVersionRow(SQLModel, table=True):
    """A version of a visit; corrections and voids add versions, nothing is edited."""

    __tablename__ = "visit_version"
    __table_args__ = (
        UniqueConstraint("visit_id", "version"),
        CheckConstraint("status IN ('active', 'void')"),
    )

    record_id: str = Field(primary_key=True, nullable=True, sa_type=Text)
    visit_id: str = Field(foreign_key="visit.visit_id", sa_type=Text)
    version: int
    supersedes: str | None = Field(default=None, sa_type=Text)
    created_at: str = Field(sa_type=Text)
    volunteer: str = Field(sa_type=Text)
    language: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text)
    void_reason: str | None = Field(default=None, sa_type=Text)
    note: str | None = Field(default=None, sa_type=Text)
    answers: str = Field(sa_type=Text)
    outcome: str = Field(sa_type=Text)
    triage: str = Field(sa_type=Text)
    forms_version: str = Field(sa_type=Text)
    contact_name: str | None = Field(default=None, sa_type=Text)
    contact_phone: str | None = Field(default=None, sa_type=Text)
    purged_at: str | None = Field(default=None, sa_type=Text)


class ConsentRow(SQLModel, table=True):
    __tablename__ = "consent_event"
    __table_args__ = (
        Index("consent_visit", "visit_id"),
        CheckConstraint("kind IN ('initial', 'withdrawal')"),
    )

    consent_id: str = Field(primary_key=True, nullable=True, sa_type=Text)
    visit_id: str = Field(foreign_key="visit.visit_id", sa_type=Text)
    kind: str = Field(sa_type=Text)
    items: str = Field(sa_type=Text)
    text_version: str = Field(sa_type=Text)
    text_hash: str = Field(sa_type=Text)
    language: str = Field(sa_type=Text)
    method: str = Field(sa_type=Text)
    volunteer: str = Field(sa_type=Text)
    created_at: str = Field(sa_type=Text)


class DraftRow(SQLModel, table=True):
    __tablename__ = "draft"

    draft_id: str = Field(primary_key=True, nullable=True, sa_type=Text)
    volunteer: str = Field(sa_type=Text)
    language: str = Field(sa_type=Text)
    state: str = Field(sa_type=Text)
    created_at: str = Field(sa_type=Text)
    updated_at: str = Field(sa_type=Text)


class TallyRow(SQLModel, table=True):
    """Anonymous count of a visit that stopped before consent (nothing else is kept)."""

    __tablename__ = "tally"
    __table_args__ = (
        Index("tally_created", "created_at"),
        CheckConstraint("kind IN ('ineligible', 'consent_refused')"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True, nullable=True)
    kind: str = Field(sa_type=Text)
    volunteer: str = Field(sa_type=Text)
    created_at: str = Field(sa_type=Text)


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit"
    __table_args__ = (Index("audit_visit", "visit_id"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, primary_key=True, nullable=True)
    at: str = Field(sa_type=Text)
    actor: str = Field(sa_type=Text)
    action: str = Field(sa_type=Text)
    visit_id: str | None = Field(default=None, sa_type=Text)
    detail: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": text("''")})


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


KIT_TABLES: tuple[Table, ...] = tuple(
    _table(model)
    for model in (VisitRow, VisitVersionRow, ConsentRow, DraftRow, TallyRow, AuditRow, OutboxRow)
)
"""Every table of the kit's file, parents first."""


def kit_metadata() -> MetaData:
    """A metadata holding the kit's tables only (for comparing a file against them)."""
    metadata = MetaData()
    for table in KIT_TABLES:
        table.to_metadata(metadata)
    return metadata
