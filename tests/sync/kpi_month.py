"""A small hand-checked month for the KPI tests: referrals sent through the real ingest by
enrolled kits, contacts and decisions through the worklist's event log, a call-back
request through the booking functions, and week-2 follow-up responses.

The clock stands at NOW (2026-11-23 12:00 UTC). V1 is 53 days earlier (day 17 reached),
V2 under three days earlier (not reached). Times in hours after the visit.

Each line: booth, level (rules) and visit; first reached (h); decisions at h (escalation
arranged at h); intake back/leg NRS; week-2 back/leg NRS.
R1   north  urgent (UR1) V1       3       urgent_in_person 3.5 (3.5)        7/8  -/4
R2   north  urgent (UR4) V1       30      physiotherapy 30, specialist 960  6/-  5/-
R3   north  routine (RO1) V1      48      advice 48                         5/-  3/-
R4   south  routine (RO1) V1      never   -                                 4/-  -
R5   south  routine (RO1) V2      never   -                                 4/-  -
R6   south  emergency (EM1) V1    -       emergency_department 1 (1)        9/9  -/8
R7   north  emergency (EM6) V0    -       emergency_department 6 (6)        5/-  -
R8   north  self_care, call-back  21      self_management 21,               3/-  3/-, warning
            window 20-22 h, V1            urgent_imaging 293 (293)               at 288 h
R9   north  routine, C2 refused   -       -                                 -    -
R10  south  routine (RO1) V1      10      gp 10                             8/6  -/5 (and a
                                                                                 superseded -/2)
R11  south  urgent (UR2) V2       2       urgent_in_person 2 (2)            6/-  -

V0 is 2026-09-30 23:30 UTC: 1 October in the clinic's zone (Europe/London, BST).
R3 is at the event "fair"; every other at no event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from sync.server.bookings import Bookings
from sync.server.store import ServerStore, iso
from sync.server.worklist import record_event
from tests.sync.clinic_support import NOW, Clinic, referral_records, send
from tests.sync.live_server import enroll_kit

V1 = datetime(2026, 10, 1, 17, 0, tzinfo=UTC)
V2 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
V0 = datetime(2026, 9, 30, 23, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Spec:
    name: str
    booth: str
    level: str
    rules: tuple[str, ...]
    visit_at: datetime
    back: int | None
    leg: int | None
    c2: bool = True
    event: str = ""


SPECS = (
    Spec("R1", "north", "urgent", ("UR1",), V1, 7, 8),
    Spec("R2", "north", "urgent", ("UR4",), V1, 6, None),
    Spec("R3", "north", "routine", ("RO1",), V1, 5, None, event="fair"),
    Spec("R4", "south", "routine", ("RO1",), V1, 4, None),
    Spec("R5", "south", "routine", ("RO1",), V2, 4, None),
    Spec("R6", "south", "emergency", ("EM1",), V1, 9, 9),
    Spec("R7", "north", "emergency", ("EM6",), V0, 5, None),
    Spec("R8", "north", "self_care", (), V1, 3, None),
    Spec("R9", "north", "routine", ("RO1",), V1, 5, None, c2=False),
    Spec("R10", "south", "routine", ("RO1",), V1, 8, 6),
    Spec("R11", "south", "urgent", ("UR2",), V2, 6, None),
)


def code_of(name: str) -> str:
    return f"KP{int(name[1:]):02d}-TEST-CODE"


def answers_of(spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {"age_years": 50, "leg_pain_side": "none", "pain_nrs": spec.back}
    if spec.leg is not None:
        out.update(leg_pain_side="unilateral", leg_pain_nrs=spec.leg)
    return out


def send_visits(clinic: Clinic, specs: tuple[Spec, ...] = SPECS) -> dict[str, str]:
    """One enrolled kit per booth; returns each referral's kit id."""
    kits = {b: enroll_kit(clinic.live) for b in sorted({s.booth for s in specs})}
    kit_of = {}
    for spec in specs:
        kit = kits[spec.booth]
        records = referral_records(
            kit.kit_id,
            code_of(spec.name),
            level=spec.level,
            visit_at=spec.visit_at,
            c2=spec.c2,
            rules=spec.rules,
            booth=spec.booth,
            event=spec.event,
            answers=answers_of(spec),
        )
        send(clinic, kit, records)
        kit_of[spec.name] = kit.kit_id
    return kit_of


def respond(
    store: ServerStore,
    kit_id: str,
    code: str,
    at: datetime,
    *,
    back: int | None,
    leg: int | None,
    warning: bool = False,
    superseded: bool = False,
) -> None:
    """A week-2 follow-up response in the shared schema (table ``followup_response``)."""
    answers = {"pain_nrs": back, "leg_pain_nrs": leg, "sbi": None, "global_change": "no_change"}
    with store.engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO followup_response (kit_id, referral_code, "window", submitted_at, '
                "answers, warning, superseded_at) VALUES (:k, :c, 'w2', :at, :a, :w, :s)"
            ),
            {
                "k": kit_id,
                "c": code,
                "at": iso(at),
                "a": json.dumps(answers),
                "w": int(warning),
                "s": iso(at + timedelta(hours=1)) if superseded else None,
            },
        )


def build(clinic: Clinic) -> dict[str, str]:
    store = clinic.live.store
    kit_of = send_visits(clinic)

    def ev(name: str, kind: str, hours: float, **data: Any) -> None:
        spec = next(s for s in SPECS if s.name == name)
        at = spec.visit_at + timedelta(hours=hours)
        if "escalation_arranged_at" in data:
            data["escalation_arranged_at"] = spec.visit_at + timedelta(
                hours=data["escalation_arranged_at"]
            )
        record_event(store, kit_of[name], code_of(name), kind, "clin", data, at=at)

    def reached(name: str, hours: float) -> None:
        ev(name, "attempt", hours, result="reached")

    def w2(name: str, hours: float, **kw: Any) -> None:
        spec = next(s for s in SPECS if s.name == name)
        respond(store, kit_of[name], code_of(name), spec.visit_at + timedelta(hours=hours), **kw)

    clinic.clock.now = V1 + timedelta(hours=1)
    Bookings(store.engine, clock=clinic.clock).request_callback(
        kit_of["R8"],
        code_of("R8"),
        (V1 + timedelta(hours=20), V1 + timedelta(hours=22)),
        V1 + timedelta(hours=22),
        "+44 7700 900123",
    )
    clinic.clock.now = NOW

    reached("R1", 3)
    ev("R1", "decision", 3.5, decision="urgent_in_person", escalation_arranged_at=3.5)
    ev("R2", "attempt", 5, result="no_answer")
    reached("R2", 30)
    ev("R2", "decision", 30, decision="physiotherapy")
    ev("R2", "decision", 960, decision="specialist", escalation_arranged_at=960)
    reached("R3", 48)
    ev("R3", "decision", 48, decision="advice")
    ev("R4", "attempt", 50, result="no_answer")
    ev("R6", "decision", 1, decision="emergency_department", escalation_arranged_at=1)
    ev("R7", "decision", 6, decision="emergency_department", escalation_arranged_at=6)
    reached("R8", 21)
    ev("R8", "decision", 21, decision="self_management")
    ev("R8", "decision", 293, decision="urgent_imaging", escalation_arranged_at=293)
    reached("R10", 10)
    ev("R10", "decision", 10, decision="gp")
    reached("R11", 2)
    ev("R11", "decision", 2, decision="urgent_in_person", escalation_arranged_at=2)

    w2("R1", 13 * 24, back=None, leg=4)
    w2("R2", 13 * 24, back=5, leg=None)
    w2("R3", 12 * 24, back=3, leg=None)
    w2("R6", 14 * 24, back=None, leg=8)
    w2("R8", 288, back=3, leg=None, warning=True)
    w2("R10", 12 * 24, back=None, leg=2, superseded=True)
    w2("R10", 12 * 24 + 2, back=None, leg=5)
    return kit_of
