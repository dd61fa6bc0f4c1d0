"""The visit service: what the screens and the command line call to record and find
visits. It applies the forms (validation, triage), makes referral codes, builds the sync
records and hands everything to the store in one transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from forms import Forms, Outcome
from popup_kit.config import KitConfig
from popup_kit.domain import (
    AT_THE_BOOTH,
    CONSENT_ITEMS,
    TALLY_KINDS,
    Contact,
    Draft,
    UnsentStatus,
    VisitInput,
    VisitRecord,
    VisitRefused,
)
from popup_kit.kit_forms import kit_forms
from popup_kit.store import Store
from popup_kit.store.db import iso, utc_now
from popup_kit.store.tables import ConsentRow, VisitRow, VisitVersionRow
from sync import bodies
from sync.records import make_record

Clock = Callable[[], datetime]
MIN_PHONE_DIGITS = 6


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """The booth's calendar day (the laptop's time zone) as an aware range."""
    start = datetime.combine(day, time(0)).astimezone()
    end = datetime.combine(day + timedelta(days=1), time(0)).astimezone()
    return start, end


def check_contact(contact: Contact | None, consent: Mapping[str, bool]) -> Contact | None:
    if contact is None:
        return None
    name, phone = contact.name.strip(), contact.phone.strip()
    if not name and not phone:
        return None
    if not consent.get("c3"):
        raise VisitRefused(
            "contact details were given but consent C3 (contact for follow-up) was not: "
            "remove the contact or record C3 as granted"
        )
    if not name:
        raise VisitRefused("contact: the name is empty")
    if sum(ch.isdigit() for ch in phone) < MIN_PHONE_DIGITS:
        raise VisitRefused(f"contact: the phone number needs at least {MIN_PHONE_DIGITS} digits")
    return Contact(name, phone)


def _outcome_json(outcome: Outcome, language: str) -> dict[str, Any]:
    return {
        **outcome.as_record(),
        "fired": [{"id": r.id, "level": r.level, "reason": r.reason} for r in outcome.rules],
    }


class VisitService:
    """Visits of one kit, on its store."""

    def __init__(
        self,
        config: KitConfig,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        forms: Forms | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or utc_now
        self.store = store or Store(config.db_path, clock=self.clock)
        self.forms = forms or kit_forms(config)
        self.kit_id = config.kit_id

    def close(self) -> None:
        self.store.close()

    # --- recording ---------------------------------------------------------------------

    def evaluate(self, answers: Mapping[str, Any]) -> tuple[dict[str, Any], Outcome]:
        """Checked canonical answers and their outcome (raises forms.AnswerError)."""
        checked = self.forms.validate(answers)
        return checked, self.forms.evaluate(checked)

    def record_visit(self, visit: VisitInput, *, draft_id: str | None = None) -> VisitRecord:
        """Store a finished visit: answers, outcome, consent, contact, outbox rows, audit;
        the draft it came from is removed in the same transaction."""
        from printouts.codes import new_referral_code

        consent = self._consent(visit.consent)
        if not consent["c1"]:
            raise VisitRefused(
                "consent C1 (screening and recording) was refused: nothing may be stored; "
                "give the safety advice only"
            )
        if visit.language not in self.config.languages:
            raise VisitRefused(
                f"language {visit.language!r} is not offered by this kit "
                f"(kit.toml [screening] languages: {', '.join(self.config.languages)})"
            )
        volunteer = visit.volunteer.strip()
        if not volunteer:
            raise VisitRefused("the volunteer's name or initials are missing")
        contact = check_contact(visit.contact, consent)
        answers, outcome = self.evaluate(visit.answers)
        if outcome.triage == "ineligible":
            raise VisitRefused(
                f"age {answers.get('age_years')} is below the self-consent age "
                f"({self.forms.min_self_consent_age}): no screening is recorded; give the "
                "safety advice and direct the person to their GP or guardian"
            )
        now = self.clock()
        visit_id = str(uuid.uuid4())
        record_id = str(uuid.uuid4())
        code = new_referral_code()
        document = self.forms.consent_document(visit.language)
        visit_row = VisitRow(
            visit_id=visit_id,
            kit_id=self.kit_id,
            referral_code=code,
            created_at=iso(now),
            latest_version=1,
        )
        version_row = self._version_row(
            record_id=record_id,
            visit_id=visit_id,
            version=1,
            supersedes=None,
            now=now,
            volunteer=volunteer,
            language=visit.language,
            answers=answers,
            outcome=outcome,
            contact=contact,
        )
        consent_row = ConsentRow(
            consent_id=str(uuid.uuid4()),
            visit_id=visit_id,
            kind="initial",
            items=json.dumps(consent, sort_keys=True),
            text_version=document.version,
            text_hash=document.sha256,
            language=visit.language,
            method=visit.consent_method,
            volunteer=volunteer,
            created_at=iso(now),
        )
        records = [
            self._visit_record(visit_row, version_row, consent),
            self._consent_record(consent_row),
        ]
        self.store.add_visit(visit_row, version_row, consent_row, records, draft_id=draft_id)
        found = self.store.visit(visit_id, history=False)
        assert found is not None
        return found

    def correct_visit(
        self,
        visit_id: str,
        answers: Mapping[str, Any],
        volunteer: str,
        contact: Contact | None = None,
        *,
        note: str = "",
    ) -> VisitRecord:
        """A new version with changed answers (and contact); the outcome is re-evaluated."""
        current = self._existing(visit_id)
        if current.voided:
            raise VisitRefused(f"visit {current.code} is void and cannot be corrected")
        checked, outcome = self.evaluate(answers)
        if outcome.triage == "ineligible":
            raise VisitRefused("the corrected age is below the self-consent age")
        contact = check_contact(contact, current.consent)
        now = self.clock()
        row = self._version_row(
            record_id=str(uuid.uuid4()),
            visit_id=visit_id,
            version=current.version + 1,
            supersedes=current.record_id,
            now=now,
            volunteer=volunteer.strip() or current.volunteer,
            language=current.language,
            answers=checked,
            outcome=outcome,
            contact=contact,
            note=note,
        )
        changed = sorted(
            k
            for k in set(checked) | set(current.answers)
            if checked.get(k) != current.answers.get(k)
        )
        self.store.add_version(
            row,
            self._visit_record_for(current, row),
            action="visit_corrected",
            detail={"fields": changed, "triage": [current.triage, outcome.triage]},
        )
        return self._existing(visit_id)

    def void_visit(self, visit_id: str, reason: str, volunteer: str) -> VisitRecord:
        """A new version marked void, keeping everything else and the reason."""
        reason = reason.strip()
        if not reason:
            raise VisitRefused("a void needs a reason")
        current = self._existing(visit_id)
        if current.voided:
            raise VisitRefused(f"visit {current.code} is already void")
        # the latest version as stored, marked void: answers, outcome and contact unchanged
        stored = self.store.version_row(current.record_id).model_dump()
        row = VisitVersionRow(
            **{
                **stored,
                "record_id": str(uuid.uuid4()),
                "version": current.version + 1,
                "supersedes": current.record_id,
                "created_at": iso(self.clock()),
                "volunteer": volunteer.strip() or current.volunteer,
                "status": "void",
                "void_reason": reason,
                "note": None,
            }
        )
        self.store.add_version(
            row,
            self._visit_record_for(current, row),
            action="visit_voided",
            detail={"reason": reason},
        )
        return self._existing(visit_id)

    def withdraw_consent(
        self, visit_id: str, volunteer: str, *, method: str = AT_THE_BOOTH
    ) -> VisitRecord:
        """The person withdraws: a withdrawal event (every item refused) goes to the centre,
        which then keeps only the fact of withdrawal; contact details go from here now."""
        current = self._existing(visit_id)
        if not any(current.consent.values()):
            raise VisitRefused(f"consent for visit {current.code} is already withdrawn")
        now = self.clock()
        row = ConsentRow(
            consent_id=str(uuid.uuid4()),
            visit_id=visit_id,
            kind="withdrawal",
            items=json.dumps({item: False for item in CONSENT_ITEMS}, sort_keys=True),
            text_version=current.consent_version or self.forms.consent_version,
            text_hash="",
            language=current.language,
            method=method,
            volunteer=volunteer.strip() or "booth",
            created_at=iso(now),
        )
        self.store.withdraw(row, self._consent_record(row))
        return self._existing(visit_id)

    def record_tally(self, kind: str, volunteer: str = "") -> None:
        """A visit that stopped before consent: only that it happened is kept."""
        if kind not in TALLY_KINDS:
            raise ValueError(f"unknown tally {kind!r}")
        self.store.add_tally(kind, volunteer)

    # --- drafts ------------------------------------------------------------------------

    def save_draft(
        self, draft_id: str, volunteer: str, language: str, state: Mapping[str, Any]
    ) -> None:
        self.store.save_draft(draft_id, volunteer, language, json.dumps(state, sort_keys=True))

    def load_drafts(self) -> list[Draft]:
        return self.store.drafts()

    def discard_draft(self, draft_id: str, volunteer: str = "") -> None:
        self.store.delete_draft(draft_id, actor=volunteer, why="draft_discarded")

    # --- finding -----------------------------------------------------------------------

    def get_visit(self, visit_id: str) -> VisitRecord | None:
        return self.store.visit(visit_id)

    def find_by_code(self, code: str) -> VisitRecord | None:
        """The visit with this referral code, typed in any forgiving spelling."""
        from printouts.codes import CodeError, normalize_code

        try:
            canonical = normalize_code(code)
        except CodeError:
            return None
        return self.store.visit_by_code(canonical)

    def list_visits(self, day: date | None = None, search: str | None = None) -> list[VisitRecord]:
        since, until = local_day_bounds(day) if day is not None else (None, None)
        return self.store.visits(since=since, until=until, search=search)

    def counts_for_day(self, day: date) -> dict[str, int]:
        return self.store.counts(*local_day_bounds(day))

    def consent_counts_for_day(self, day: date) -> dict[str, int]:
        return self.store.consent_counts(*local_day_bounds(day))

    def unsent(self) -> UnsentStatus:
        return self.store.unsent()

    def today(self) -> date:
        return self.clock().astimezone().date()

    # --- helpers -----------------------------------------------------------------------

    def _existing(self, visit_id: str) -> VisitRecord:
        found = self.store.visit(visit_id)
        if found is None:
            raise VisitRefused(f"no visit {visit_id} in this kit's store")
        return found

    @staticmethod
    def _consent(raw: Mapping[str, Any]) -> dict[str, bool]:
        unknown = sorted(set(raw) - set(CONSENT_ITEMS))
        if unknown:
            raise VisitRefused(f"consent: unknown item(s) {', '.join(unknown)} (use c1 to c5)")
        out: dict[str, bool] = {}
        for item in CONSENT_ITEMS:
            value = raw.get(item)
            if not isinstance(value, bool):
                raise VisitRefused(
                    f"consent.{item}: must be true or false (each item is an explicit choice)"
                )
            out[item] = value
        return out

    def _version_row(
        self,
        *,
        record_id: str,
        visit_id: str,
        version: int,
        supersedes: str | None,
        now: datetime,
        volunteer: str,
        language: str,
        answers: dict[str, Any],
        outcome: Outcome,
        contact: Contact | None,
        note: str = "",
    ) -> VisitVersionRow:
        return VisitVersionRow(
            record_id=record_id,
            visit_id=visit_id,
            version=version,
            supersedes=supersedes,
            created_at=iso(now),
            volunteer=volunteer,
            language=language,
            status="active",
            note=note or None,
            answers=json.dumps(answers, sort_keys=True),
            outcome=json.dumps(_outcome_json(outcome, language), sort_keys=True),
            triage=outcome.triage,
            forms_version=self.forms.forms_version,
            contact_name=contact.name if contact else None,
            contact_phone=contact.phone if contact else None,
        )

    def _visit_record(
        self, visit: VisitRow, row: VisitVersionRow, consent: Mapping[str, bool]
    ) -> dict[str, Any]:
        """The visit version's sync record: consent decides what its body carries."""
        contact = None
        if row.contact_name is not None or row.contact_phone is not None:
            contact = bodies.Contact(name=row.contact_name or "", phone=row.contact_phone or "")
        body = bodies.visit_body(
            visit_id=row.visit_id,
            version=row.version,
            supersedes=row.supersedes,
            status=row.status,
            void_reason=row.void_reason,
            referral_code=visit.referral_code,
            visit_created_at=visit.created_at,
            created_at=row.created_at,
            volunteer=row.volunteer,
            language=row.language,
            answers=json.loads(row.answers),
            outcome=json.loads(row.outcome),
            forms_version=row.forms_version,
            booth=bodies.Booth(
                name=self.config.booth_name_in(row.language),
                event=self.config.event_in(row.language),
                emergency_number=self.config.emergency_number,
            ),
            consent=dict(consent),
            contact=contact,
        )
        return make_record(
            record_id=row.record_id,
            record_type="visit",
            kit_id=visit.kit_id,
            created_at=row.created_at,
            body=body,
        )

    def _visit_record_for(self, current: VisitRecord, row: VisitVersionRow) -> dict[str, Any]:
        visit = VisitRow(
            visit_id=current.visit_id,
            kit_id=current.kit_id,
            referral_code=current.code,
            created_at=iso(current.created_at),
            latest_version=row.version,
        )
        return self._visit_record(visit, row, current.consent)

    def _consent_record(self, row: ConsentRow) -> dict[str, Any]:
        body = bodies.ConsentBody.model_validate(
            {
                "visit_id": row.visit_id,
                "consent_id": row.consent_id,
                "kind": row.kind,
                "items": json.loads(row.items),
                "text_version": row.text_version,
                "text_hash": row.text_hash,
                "language": row.language,
                "method": row.method,
                "volunteer": row.volunteer,
                "at": row.created_at,
            }
        )
        return make_record(
            record_id=row.consent_id,
            record_type="consent",
            kit_id=self.kit_id,
            created_at=row.created_at,
            body=body.model_dump(mode="json"),
        )
