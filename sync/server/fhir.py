"""HL7 FHIR R4 resources for the referrals the centre may share (clinical reference 4.1).

Pure mapping: a :class:`SharedReferral` (what the centre holds for one visit the attendee
agreed to share, C2) becomes a pseudonymous Patient, a Consent with a provision per
item, a QuestionnaireResponse per instrument, coded Observations and, where the level
asks for contact, a ServiceRequest. Nothing personal: no name, no phone, an age band
instead of a birth date.

The centre's work on it follows from the referral's event log and bookings:

- a Task for the worklist state of a referral owed a call (status from
  ``worklist.derive``: requested, in-progress once a call was tried, completed on a
  decision, cancelled on a closure). Each contact
  attempt is a ``Task.output`` (its result coded, ``valueDateTime`` = when it was made)
  rather than a note: outputs stay machine-readable and ordered, and the clinicians' free
  text (notes, closure reasons) never leaves, since it may name people.
- the triage decision as a further ``Task.output`` (coded, so conservative decisions are
  carried too) and, for every escalation recorded, a ServiceRequest of its own
  (``basedOn`` the referral, ``authoredOn`` = the time the escalation was arranged, which
  the arranging KPI measures): an escalation is an order for further care, and a
  ServiceRequest is the resource a receiving system acts on. The Task output references it.
- an Appointment for each call booking, booked or cancelled (live and expired holds
  were never appointments; ``call_booking`` does not tell a cancelled hold from a
  cancelled booking, and a cancelled Appointment fits both);
- a QuestionnaireResponse for each current follow-up check-in (``authored`` = when it was
  submitted) with its pain NRS Observations (LOINC 72514-3) effective at the same time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.server.followups import CES_FIELDS
from sync.server.store import iso
from sync.server.worklist import ESCALATED, Event, State, derive

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CODE_SYSTEM = "urn:popup-kit:fhir:CodeSystem"
REFERRAL_CODE = "urn:popup-kit:fhir:referral-code"
AGE_BAND = "urn:popup-kit:fhir:StructureDefinition/age-band"
QUESTIONNAIRE = "urn:popup-kit:fhir:Questionnaire"

# The order the bulk-data files are written in; every resource lands in one of them.
RESOURCE_TYPES = (
    "Patient",
    "Consent",
    "QuestionnaireResponse",
    "Observation",
    "ServiceRequest",
    "Task",
    "Appointment",
)

# STarT Back items 1-9 (LOINC 91340-0 ... 91348-3, in the order of the tool).
STARTBACK_ITEMS = (
    ("sb1", "91340-0"),
    ("sb2", "91341-8"),
    ("sb3", "91342-6"),
    ("sb4", "91343-4"),
    ("sb5", "91344-2"),
    ("sb6", "91345-9"),
    ("sb7", "91346-7"),
    ("sb8", "91347-5"),
    ("sb9", "91348-3"),
)
STARTBACK_PANEL = "91349-1"
STARTBACK_DISTRESS = "91350-9"  # the kit's psychosocial subscore
STARTBACK_TOTAL = "91351-7"
STARTBACK_RISK = "91352-5"
RISK_ANSWERS = {
    "low": ("LA9194-7", "Low risk"),
    "medium": ("LA8982-6", "Medium risk"),
    "high": ("LA9193-9", "High risk"),
}
PAIN_NRS = "72514-3"
SBI_ITEMS = ("leg_pain", "numbness", "weakness", "sitting")
# Request priority (http://hl7.org/fhir/request-priority); self-care asks for no contact.
PRIORITY = {"emergency": "stat", "urgent": "asap", "routine": "routine"}
CONSENT_ITEMS = {
    "c1": "screening and recording at the booth",
    "c2": "sharing with the tele-triage provider",
    "c3": "being contacted",
    "c4": "de-identified service evaluation",
    "c5": "being approached about research",
}
RESEARCH_ITEMS = frozenset({"c4", "c5"})
INSTRUMENT_FIELDS = frozenset({"pain_nrs", "leg_pain_nrs", "startback", "sbi"})
EXACT_AGE = frozenset({"age_years", "back_pain_onset_age"})
# Anything outside FHIR's id alphabet (ASCII only: str.isalnum would let "é" through).
_NOT_ID = re.compile(r"[^A-Za-z0-9.\-]")
FOLLOWUP_SBI = ("sbi_leg_pain", "sbi_numbness", "sbi_weakness", "sbi_sitting")


@dataclass(frozen=True)
class BookedCall:
    """One call booking (table ``call_booking`` with its slot), times in UTC."""

    booking_id: int
    status: str
    starts_at: str
    minutes: int
    created_at: str


@dataclass(frozen=True)
class FollowUpResponse:
    """The current response of one follow-up window (table ``followup_response``)."""

    window: str
    submitted_at: str
    answers: Mapping[str, Any]
    warning: bool


@dataclass(frozen=True)
class SharedReferral:
    code: str
    kit_id: str
    visit_id: str
    visit_created_at: str
    language: str
    answers: Mapping[str, Any]
    outcome: Mapping[str, Any]
    consent: Mapping[str, bool]
    consent_at: str
    consent_text_version: str
    consent_text_hash: str
    events: tuple[Event, ...] = ()
    bookings: tuple[BookedCall, ...] = ()
    followups: tuple[FollowUpResponse, ...] = ()
    callback_requested: bool = False

    @property
    def on_worklist(self) -> bool:
        """Whether the centre owes it a call: every level but self-care, and self-care once
        a call-back was asked for (or the centre has already acted on it)."""
        return (
            str(self.outcome.get("triage")) in PRIORITY
            or self.callback_requested
            or bool(self.bookings or self.events)
        )


def loinc(code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": LOINC, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def local(code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": CODE_SYSTEM, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def fhir_id(*parts: str) -> str:
    """A resource id (FHIR: letters, digits, '-' and '.', at most 64)."""
    return _NOT_ID.sub("-", "-".join(parts))[:64]


def age_band(age: object) -> str | None:
    if not isinstance(age, int) or isinstance(age, bool):
        return None
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def resources(ref: SharedReferral) -> dict[str, list[dict[str, Any]]]:
    """Every FHIR resource for one shared referral, by resource type."""
    patient_id = fhir_id(ref.code)
    subject = {"reference": f"Patient/{patient_id}"}
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in RESOURCE_TYPES}
    out["Patient"].append(_patient(ref, patient_id))
    out["Consent"].append(_consent(ref, patient_id, subject))
    responses = _responses(ref, subject)
    out["QuestionnaireResponse"].extend(responses)
    by_questionnaire = {r["questionnaire"].rsplit("/", 1)[-1]: r for r in responses}
    out["Observation"].extend(_observations(ref, subject, by_questionnaire))
    request = _service_request(ref, subject, out["QuestionnaireResponse"], out["Observation"])
    state = derive(ref.events)
    if request is not None:
        # the call it orders is done once decided, and called off by a closure
        if state.closed_reason is not None:
            request["status"] = "revoked"
        elif state.decision is not None:
            request["status"] = "completed"
        out["ServiceRequest"].append(request)
    for followup in ref.followups:
        response = _followup_response(ref, subject, followup)
        out["QuestionnaireResponse"].append(response)
        out["Observation"].extend(_followup_observations(ref, subject, followup, response))
    escalations = _escalations(ref, subject, request)
    out["ServiceRequest"].extend(escalations)
    if ref.on_worklist:  # no Task where no call is owed: it would read as work to do
        out["Task"].append(_task(ref, state, subject, request, escalations))
    out["Appointment"].extend(_appointment(ref, subject, b, request) for b in ref.bookings)
    return out


def _patient(ref: SharedReferral, patient_id: str) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": REFERRAL_CODE, "value": ref.code}],
        "communication": [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": ref.language}]},
                "preferred": True,
            }
        ],
    }
    band = age_band(ref.answers.get("age_years"))
    if band is not None:
        patient["extension"] = [{"url": AGE_BAND, "valueString": band}]
    return patient


def _consent(ref: SharedReferral, patient_id: str, subject: dict[str, str]) -> dict[str, Any]:
    provisions = []
    for item, purpose in CONSENT_ITEMS.items():
        provisions.append(
            {
                "type": "permit" if ref.consent.get(item) else "deny",
                "code": [local(f"consent-{item}", purpose)],
                "purpose": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "HRESCH" if item in RESEARCH_ITEMS else "TREAT",
                    }
                ],
            }
        )
    return {
        "resourceType": "Consent",
        "id": fhir_id(ref.code, "consent"),
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [loinc("59284-0", "Patient Consent")],
        "patient": subject,
        "dateTime": ref.consent_at,
        "policyRule": local("gdpr-art-9-2-a", "Explicit consent (GDPR Art. 9(2)(a))"),
        # The version and SHA-256 of the information text the attendee was shown.
        "sourceAttachment": {
            "title": f"Consent information text, version {ref.consent_text_version}",
            "url": f"urn:popup-kit:consent-text:{ref.consent_text_version}:"
            f"sha256:{ref.consent_text_hash}",
        },
        "provision": {"type": "permit", "provision": provisions},
    }


def _answer(value: Any) -> dict[str, Any] | None:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, str) and value:
        return {"valueCoding": {"system": CODE_SYSTEM, "code": value}}
    return None


def _items(values: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    items = []
    for link_id, value in values:
        answer = _answer(value)
        if answer is not None:
            items.append({"linkId": link_id, "answer": [answer]})
    return items


def _responses(ref: SharedReferral, subject: dict[str, str]) -> list[dict[str, Any]]:
    emergency = ref.outcome.get("triage") == "emergency"
    screen = sorted(
        (k, v) for k, v in ref.answers.items() if k not in INSTRUMENT_FIELDS | EXACT_AGE
    )
    age, onset = ref.answers.get("age_years"), ref.answers.get("back_pain_onset_age")
    if isinstance(age, int) and isinstance(onset, int):
        # an exact age would identify; the age band is on the Patient
        screen.append(("years_since_back_pain_onset", max(0, age - onset)))
    made = [("red-flag-screen", _items(screen), "stopped" if emergency else "completed")]
    startback = ref.answers.get("startback")
    if isinstance(startback, Mapping):
        made.append(("startback", _items((k, startback.get(k)) for k, _ in STARTBACK_ITEMS), ""))
    nrs = [(k, ref.answers.get(k)) for k in ("pain_nrs", "leg_pain_nrs")]
    if any(v is not None for _, v in nrs):
        made.append(("pain-nrs", _items(nrs), ""))
    sbi = ref.answers.get("sbi")
    if isinstance(sbi, Mapping):
        made.append(("sbi", _items((f"sbi_{k}", sbi.get(k)) for k in SBI_ITEMS), ""))
    out = []
    for name, items, status in made:
        if not items:
            continue
        out.append(
            {
                "resourceType": "QuestionnaireResponse",
                "id": fhir_id(ref.code, "intake", name),
                "questionnaire": f"{QUESTIONNAIRE}/{name}",
                "status": status or "completed",
                "subject": subject,
                "authored": ref.visit_created_at,
                "item": items,
            }
        )
    return out


def _observation(
    ref: SharedReferral,
    subject: dict[str, str],
    name: str,
    code: dict[str, Any],
    value: dict[str, Any],
    derived_from: dict[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id(ref.code, "intake", name),
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": code,
        "subject": subject,
        "effectiveDateTime": ref.visit_created_at,
        **value,
        **extra,
    }
    if derived_from is not None:
        obs["derivedFrom"] = [{"reference": f"QuestionnaireResponse/{derived_from['id']}"}]
    return obs


def _observations(
    ref: SharedReferral, subject: dict[str, str], responses: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    scores = ref.outcome.get("startback")
    answers = ref.answers.get("startback")
    if isinstance(scores, Mapping) and isinstance(answers, Mapping):
        qr = responses.get("startback")
        members = [
            _observation(
                ref,
                subject,
                "startback-total",
                loinc(STARTBACK_TOTAL, "STarT Back total score"),
                {"valueInteger": int(scores["total"])},
                qr,
            ),
            _observation(
                ref,
                subject,
                "startback-distress",
                loinc(STARTBACK_DISTRESS, "STarT Back distress subscore"),
                {"valueInteger": int(scores["psychosocial"])},
                qr,
            ),
        ]
        risk = RISK_ANSWERS.get(str(scores.get("risk")))
        if risk is not None:
            members.append(
                _observation(
                    ref,
                    subject,
                    "startback-risk",
                    loinc(STARTBACK_RISK, "STarT Back risk level"),
                    {"valueCodeableConcept": loinc(*risk)},
                    qr,
                )
            )
        components = []
        for key, item_code in STARTBACK_ITEMS:
            value = answers.get(key)
            if isinstance(value, bool):
                components.append({"code": loinc(item_code), "valueBoolean": value})
            elif isinstance(value, str):
                components.append({"code": loinc(item_code), "valueString": value})
        out.append(
            _observation(
                ref,
                subject,
                "startback",
                loinc(STARTBACK_PANEL, "STarT Back Screening Tool panel"),
                {},
                qr,
                component=components,
                hasMember=[{"reference": f"Observation/{m['id']}"} for m in members],
            )
        )
        out.extend(members)
    nrs_qr = responses.get("pain-nrs")
    for key, site in (("pain_nrs", "back"), ("leg_pain_nrs", "leg")):
        value = ref.answers.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(
                _observation(
                    ref,
                    subject,
                    f"pain-nrs-{site}",
                    loinc(PAIN_NRS, "Pain severity 0-10 verbal numeric rating [Score] - Reported"),
                    {"valueInteger": value},
                    nrs_qr,
                    bodySite={"text": site},
                )
            )
    sbi = ref.answers.get("sbi")
    if isinstance(sbi, Mapping):
        items = {k: sbi.get(k) for k in SBI_ITEMS}
        if all(isinstance(v, int) for v in items.values()):
            out.append(
                _observation(
                    ref,
                    subject,
                    "sbi",
                    local("sbi-total", "Sciatica Bothersomeness Index, total 0-24"),
                    {"valueInteger": sum(int(v) for v in items.values() if v is not None)},
                    responses.get("sbi"),
                    component=[
                        {"code": local(f"sbi-{k}"), "valueInteger": int(v)}
                        for k, v in items.items()
                        if v is not None
                    ],
                )
            )
    return out


def _service_request(
    ref: SharedReferral,
    subject: dict[str, str],
    responses: list[dict[str, Any]],
    observations: list[dict[str, Any]],
) -> dict[str, Any] | None:
    level = str(ref.outcome.get("triage"))
    priority = PRIORITY.get(level)
    if priority is None:
        return None
    rules = [str(r) for r in ref.outcome.get("rules", [])]
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": fhir_id(ref.code, "referral"),
        "identifier": [{"system": REFERRAL_CODE, "value": ref.code}],
        "status": "active",
        "intent": "order",
        "priority": priority,
        "code": local("tele-triage", "Tele-triage call for back pain"),
        "subject": subject,
        "authoredOn": ref.visit_created_at,
        "reasonCode": [{"coding": [{"system": SNOMED, "code": "279039007"}], "text": "Back pain"}],
        "supportingInfo": [
            {"reference": f"{r['resourceType']}/{r['id']}"} for r in [*responses, *observations]
        ],
    }
    ruleset = ref.outcome.get("ruleset_version")
    note = f"Booth screen level {level}"
    if rules:
        note += f"; rules {', '.join(rules)}"
    if ruleset:
        note += f"; ruleset {ruleset}"
    request["note"] = [{"text": note}]
    return request


def _reference(resource: Mapping[str, Any]) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _escalations(
    ref: SharedReferral, subject: dict[str, str], request: dict[str, Any] | None
) -> list[dict[str, Any]]:
    out = []
    for n, event in enumerate(e for e in ref.events if e.kind == "decision"):
        decision = str(event.data.get("decision"))
        arranged = event.data.get("escalation_arranged_at")
        if decision not in ESCALATED or not isinstance(arranged, str):
            continue
        escalation: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": fhir_id(ref.code, "escalation", str(n + 1)),
            "status": "active",
            "intent": "order",
            "priority": "urgent" if decision != "specialist" else "routine",
            "code": local(f"escalation-{decision}", ESCALATED[decision]),
            "subject": subject,
            "authoredOn": arranged,
            "occurrenceDateTime": arranged,
            "reasonCode": [local("tele-triage-decision", "Decision after the tele-triage call")],
        }
        if request is not None:
            escalation["basedOn"] = [_reference(request)]
        out.append(escalation)
    return out


def _task(
    ref: SharedReferral,
    state: State,
    subject: dict[str, str],
    request: dict[str, Any] | None,
    escalations: list[dict[str, Any]],
) -> dict[str, Any]:
    if state.closed_reason is not None:
        status, business = "cancelled", "closed"
    elif state.decision is not None:
        status, business = "completed", "decided"
    elif state.first_contact_at is not None:
        status, business = "in-progress", "reached"
    elif state.attempts:
        status, business = "in-progress", "attempting"
    else:
        status, business = "requested", "awaiting-call"
    outputs: list[dict[str, Any]] = [
        {
            "type": local(f"contact-attempt-{e.data.get('result')}", "Contact attempt"),
            "valueDateTime": iso(e.at),
        }
        for e in ref.events
        if e.kind == "attempt"
    ]
    decisions = [e for e in ref.events if e.kind == "decision"]
    if decisions and state.decision is not None:
        outputs.append(
            {
                "type": local("triage-decision", "Triage decision"),
                "valueCodeableConcept": local(f"decision-{state.decision}"),
            }
        )
    outputs.extend(
        {"type": local("escalation"), "valueReference": _reference(e)} for e in escalations
    )
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": fhir_id(ref.code, "task"),
        "identifier": [{"system": REFERRAL_CODE, "value": ref.code}],
        "status": status,
        "businessStatus": local(business),
        "intent": "order",
        "code": local("tele-triage-contact", "Contact the attendee and decide"),
        "for": subject,
        "authoredOn": ref.visit_created_at,
        "lastModified": max([ref.visit_created_at, *(iso(e.recorded_at) for e in ref.events)]),
    }
    if request is not None:
        task["focus"] = _reference(request)
    ends = [e.at for e in ref.events if e.kind in {"decision", "closure"}]
    starts = [e.at for e in ref.events if e.kind == "attempt"]
    if starts or ends:
        period: dict[str, str] = {"start": iso(min(starts or ends))}
        if ends and status in {"completed", "cancelled"}:
            period["end"] = iso(max(ends))
        task["executionPeriod"] = period
    if outputs:
        task["output"] = outputs
    return task


def _appointment(
    ref: SharedReferral,
    subject: dict[str, str],
    booking: BookedCall,
    request: dict[str, Any] | None,
) -> dict[str, Any]:
    start = parse_utc(booking.starts_at)
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": fhir_id(ref.code, "call", str(booking.booking_id)),
        "status": "booked" if booking.status == "booked" else "cancelled",
        "serviceType": [local("tele-triage", "Tele-triage call for back pain")],
        "start": iso(start),
        "end": iso(start + timedelta(minutes=booking.minutes)),
        "minutesDuration": booking.minutes,
        "created": booking.created_at,
        "participant": [{"actor": subject, "required": "required", "status": "accepted"}],
    }
    if request is not None:
        appointment["basedOn"] = [_reference(request)]
    return appointment


def parse_utc(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _followup_response(
    ref: SharedReferral, subject: dict[str, str], followup: FollowUpResponse
) -> dict[str, Any]:
    answers = followup.answers
    values: list[tuple[str, Any]] = [
        ("pain_nrs", answers.get("pain_nrs")),
        ("leg_pain_nrs", answers.get("leg_pain_nrs")),
    ]
    sbi = answers.get("sbi")
    if isinstance(sbi, Mapping):
        values += [(k, sbi.get(k)) for k in FOLLOWUP_SBI]
    values.append(("global_change", answers.get("global_change")))
    values += [(k, answers.get(k)) for k in CES_FIELDS]
    values.append(("warning", followup.warning))
    return {
        "resourceType": "QuestionnaireResponse",
        "id": fhir_id(ref.code, "followup", followup.window),
        "questionnaire": f"{QUESTIONNAIRE}/followup-{followup.window}",
        "status": "completed",
        "subject": subject,
        "authored": followup.submitted_at,
        "item": _items(values),
    }


def _followup_observations(
    ref: SharedReferral,
    subject: dict[str, str],
    followup: FollowUpResponse,
    response: dict[str, Any],
) -> list[dict[str, Any]]:
    out = []
    for key, site in (("pain_nrs", "back"), ("leg_pain_nrs", "leg")):
        value = followup.answers.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            obs = _observation(
                ref,
                subject,
                f"pain-nrs-{site}",
                loinc(PAIN_NRS, "Pain severity 0-10 verbal numeric rating [Score] - Reported"),
                {"valueInteger": value},
                response,
                bodySite={"text": site},
            )
            obs["id"] = fhir_id(ref.code, "followup", followup.window, f"pain-nrs-{site}")
            obs["effectiveDateTime"] = followup.submitted_at
            out.append(obs)
    return out
