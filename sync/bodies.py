"""The bodies of sync records (visit, consent, withdrawal), one definition for the kit
that builds them and the server that validates them.

Schema version 2 is what kits send now. Consent decides a visit body's shape:

- ``sharing: "referral"`` (C2 granted): answers, outcome, scores, language, code, booth;
  contact details only when C3 is granted too;
- ``sharing: "counts"`` (C2 refused): level, day, booth and the record's identity; with
  C4 granted, a de-identified ``evaluation`` (age band, answers without exact ages or
  free text, no contact).

Version 1 bodies (kits before typed bodies) are checked leniently and upgraded.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

BODY_VERSION = 2
Level = Literal["emergency", "urgent", "routine", "self_care"]
LEVELS: tuple[Level, ...] = ("emergency", "urgent", "routine", "self_care")
Sharing = Literal["referral", "counts"]

_Short = Annotated[str, Field(max_length=200)]
_Id = Annotated[str, Field(min_length=1, max_length=200)]
_Time = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z?$")]
_Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
_Lang = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
# Answers that stay in a de-identified record: coded values only, never an exact age.
_TOKEN = re.compile(r"^[a-z0-9_]{1,40}$")
IDENTIFYING_ANSWERS = frozenset({"age_years", "back_pain_onset_age"})


class BodyError(ValueError):
    """A body that cannot be accepted; the message says why, in words."""


class _Strict(BaseModel):
    # Strict types too: "yes" is no answer to a consent item, "1" no version number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- parts ---------------------------------------------------------------------------


class Booth(_Strict):
    """The booth that made the slip: what the attendee's page shows of it."""

    name: _Short
    event: _Short = ""
    emergency_number: Annotated[str, Field(min_length=1, max_length=40)]


class Contact(_Strict):
    name: _Short
    phone: Annotated[str, Field(max_length=60)]


class FiredRule(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=40)]
    level: Level
    reason: dict[str, Annotated[str, Field(max_length=2000)]] = Field(default_factory=dict)


class StartBack(_Strict):
    total: int = Field(ge=0, le=9)
    psychosocial: int = Field(ge=0, le=5)
    risk: Literal["low", "medium", "high"]


class Outcome(_Strict):
    triage: Level
    rules: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(max_length=100)
    ruleset_version: _Id
    startback: StartBack | None = None
    sbi_total: int | None = Field(default=None, ge=0, le=100)
    fired: list[FiredRule] = Field(default_factory=list, max_length=100)


class Scope(_Strict):
    """The consent items that decide what a visit body may carry."""

    c2: bool
    c3: bool
    c4: bool


class Evaluation(_Strict):
    """A de-identified visit for service evaluation (C2 refused, C4 granted)."""

    age_band: Annotated[str, Field(pattern=r"^\d{2,3}(-\d{2,3}|\+)$")]
    answers: dict[str, bool | int | float | str | dict[str, bool | int | str] | None]

    @model_validator(mode="after")
    def _no_identifying(self) -> Evaluation:
        found = sorted(IDENTIFYING_ANSWERS & set(self.answers))
        if found:
            raise ValueError(f"a de-identified record carries no {', '.join(found)}")
        for key, value in self.answers.items():
            if isinstance(value, str) and not _TOKEN.fullmatch(value):
                raise ValueError(f"answer {key} is free text; a de-identified record has none")
        return self


# --- visit bodies, version 2 ---------------------------------------------------------


class _VisitCommon(_Strict):
    visit_id: _Id
    version: int = Field(ge=1, le=100_000)
    supersedes: _Id | None = None
    status: Literal["active", "void"]
    referral_code: _Id
    booth: Booth
    consent: Scope


class ReferralVisit(_VisitCommon):
    """A visit shared with tele-triage (C2 granted)."""

    sharing: Literal["referral"] = "referral"
    void_reason: Annotated[str, Field(max_length=2000)] | None = None
    visit_created_at: _Time
    created_at: _Time
    volunteer: _Short
    language: _Lang
    answers: dict[str, Any]
    outcome: Outcome
    forms_version: _Short
    contact: Contact | None = None

    @model_validator(mode="after")
    def _consented(self) -> ReferralVisit:
        if not self.consent.c2:
            raise ValueError('a "referral" body needs consent C2; send "counts" without it')
        if self.contact is not None and not self.consent.c3:
            raise ValueError("contact details without consent C3 (contact for follow-up)")
        return self


class CountsVisit(_VisitCommon):
    """A visit not shared (C2 refused): what reconciliation and anonymous counts need."""

    sharing: Literal["counts"] = "counts"
    level: Level
    day: _Day
    evaluation: Evaluation | None = None

    @model_validator(mode="after")
    def _consented(self) -> CountsVisit:
        if self.consent.c2:
            raise ValueError('consent C2 is granted: send the "referral" body')
        if self.evaluation is not None and not self.consent.c4:
            raise ValueError("an evaluation record needs consent C4")
        return self


VisitBody = ReferralVisit | CountsVisit


# --- consent and withdrawal, version 2 -----------------------------------------------


class ConsentItems(_Strict):
    c1: bool
    c2: bool
    c3: bool
    c4: bool
    c5: bool


class ConsentBody(_Strict):
    visit_id: _Id
    consent_id: _Id
    kind: Literal["initial", "change", "withdrawal"]
    items: ConsentItems
    text_version: _Short
    text_hash: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]
    language: _Lang
    method: _Short
    volunteer: _Short
    at: _Time


class WithdrawalBody(_Strict):
    """The fact of withdrawal, and nothing else."""

    visit_id: _Id
    at: _Time


# --- version 1: checked leniently ----------------------------------------------------


class _OutcomeV1(_Lenient):
    triage: Level
    rules: list[str] | None = None
    ruleset_version: str | None = None


class _VisitV1(_Lenient):
    visit_id: _Id
    version: int | None = Field(default=None, ge=0, le=100_000)
    status: Literal["active", "void"] | None = None
    referral_code: _Id | None = None
    language: str | None = Field(default=None, max_length=20)
    answers: dict[str, Any] | None = None
    outcome: _OutcomeV1 | None = None
    contact: dict[str, str | None] | None = None


class _ConsentV1(_Lenient):
    visit_id: _Id
    kind: str | None = Field(default=None, max_length=40)
    items: dict[str, bool] | None = None


class _WithdrawalV1(_Lenient):
    visit_id: _Id


_MODELS: dict[tuple[str, int], tuple[type[BaseModel], ...]] = {
    ("visit", 1): (_VisitV1,),
    ("consent", 1): (_ConsentV1,),
    ("consent_withdrawal", 1): (_WithdrawalV1,),
    ("visit", 2): (ReferralVisit, CountsVisit),
    ("consent", 2): (ConsentBody,),
    ("consent_withdrawal", 2): (WithdrawalBody,),
}


def _words(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(x) for x in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"body.{where}: {message}" if where != "body" else message)
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def check_body(record_type: str, schema_version: int, body: dict[str, Any]) -> None:
    """Raise ``BodyError`` (with the reason in words) unless ``body`` is a valid body of
    that record type and schema version."""
    models = _MODELS.get((record_type, schema_version))
    if models is None:
        raise BodyError(f"no {record_type} body of schema version {schema_version} exists")
    if len(models) > 1:
        # Visit bodies say which shape they are; judge them by that one.
        sharing = body.get("sharing")
        chosen = [m for m in models if m.model_fields["sharing"].default == sharing]
        if not chosen:
            raise BodyError('body.sharing must be "referral" or "counts"')
        models = tuple(chosen)
    try:
        models[0].model_validate(body)
    except ValidationError as exc:
        raise BodyError(f"invalid {record_type} body: {_words(exc)}") from None


def upgrade_v1(record_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """A version 1 body as version 2 keeps it: visits were always sent whole (as if C2
    were granted); the server cuts them to what the visit's consent allows on arrival."""
    if record_type == "visit":
        return {**body, "sharing": "referral", "legacy": True}
    return dict(body)


# --- building (the kit) --------------------------------------------------------------


def age_band(age: int) -> str:
    """Ten-year bands from 16 (the adult pathway's lower bound), 80 and over together."""
    if age >= 80:
        return "80+"
    low = max(16, age - age % 10) if age >= 16 else 0
    high = (age - age % 10 + 9) if age >= 20 else (19 if age >= 16 else 15)
    return f"{low:02d}-{high:02d}"


def deidentified_answers(answers: dict[str, Any]) -> dict[str, Any]:
    """Answers without exact ages or free text (coded values, numbers, scores stay)."""
    out: dict[str, Any] = {}
    for key, value in answers.items():
        if key in IDENTIFYING_ANSWERS:
            continue
        if isinstance(value, str) and not _TOKEN.fullmatch(value):
            continue
        out[key] = value
    return out


def visit_body(
    *,
    visit_id: str,
    version: int,
    supersedes: str | None,
    status: str,
    void_reason: str | None,
    referral_code: str,
    visit_created_at: str,
    created_at: str,
    volunteer: str,
    language: str,
    answers: dict[str, Any],
    outcome: dict[str, Any],
    forms_version: str,
    booth: Booth,
    consent: dict[str, bool],
    contact: Contact | None,
) -> dict[str, Any]:
    """The body consent allows for one visit version, as JSON."""
    scope = Scope(
        c2=consent.get("c2") is True, c3=consent.get("c3") is True, c4=consent.get("c4") is True
    )
    common: dict[str, Any] = {
        "visit_id": visit_id,
        "version": version,
        "supersedes": supersedes,
        "status": status,
        "referral_code": referral_code,
        "booth": booth,
        "consent": scope,
    }
    model: BaseModel
    if scope.c2:
        model = ReferralVisit(
            **common,
            void_reason=void_reason,
            visit_created_at=visit_created_at,
            created_at=created_at,
            volunteer=volunteer,
            language=language,
            answers=answers,
            outcome=Outcome.model_validate(outcome),
            forms_version=forms_version,
            contact=contact if scope.c3 else None,
        )
    else:
        evaluation = None
        age = answers.get("age_years")
        if scope.c4 and isinstance(age, int):
            evaluation = Evaluation(age_band=age_band(age), answers=deidentified_answers(answers))
        model = CountsVisit(
            **common,
            level=outcome["triage"],
            day=visit_created_at[:10],
            evaluation=evaluation,
        )
    return model.model_dump(mode="json")


def counts_from(body: dict[str, Any], *, recorded: str = "") -> dict[str, Any]:
    """What the centre keeps of a stored visit body once C2 is refused (any version): the
    counts shape, without an evaluation record (that one only the kit builds).
    ``recorded`` (the envelope's time) gives the day when the body has none."""
    outcome = body.get("outcome")
    level = body.get("level")
    if level is None and isinstance(outcome, dict):
        level = outcome.get("triage")
    created = body.get("visit_created_at") or body.get("created_at") or body.get("day") or recorded
    kept: dict[str, Any] = {
        "sharing": "counts",
        "visit_id": body.get("visit_id"),
        "version": body.get("version"),
        "supersedes": body.get("supersedes"),
        "status": body.get("status"),
        "referral_code": body.get("referral_code"),
        "level": level if level in LEVELS else None,
        "day": str(created)[:10],
    }
    if "booth" in body:
        kept["booth"] = body["booth"]
    if "legacy" in body:
        kept["legacy"] = True
    return kept
