"""The four tele-triage KPIs, each defined once with its numerator and denominator, for a
period of visit dates (days in the clinic's time zone), a booth and an event.

Everything is read in a few queries (visits, consents, withdrawals, call-back requests,
the event log, follow-up responses) and worked out in one pass over the referrals, so the
figures are the same on SQLite and PostgreSQL.

Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the
value at rank ceil(p/100 * n) (1-based); no interpolation, so every figure shown is one
that was measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from sync.server import worklist as wl
from sync.server.store import ServerStore, iso

# Rules that mean suspected cauda equina at the booth.
CES_RULES = frozenset({"EM1", "EM2", "UR1", "UR2"})
APPROPRIATE_WITHIN = timedelta(weeks=12)
CES_WITHIN = timedelta(hours=4)
WEEK2_END = timedelta(days=17)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _share(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


@dataclass(frozen=True)
class Period:
    """Visit dates from/to (inclusive, clinic days), booth and event; empty means all."""

    start: date | None = None
    end: date | None = None
    booth: str = ""
    event: str = ""
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/London"))

    def keep(self, ref: Referral) -> bool:
        day = ref.visit_at.astimezone(self.zone).date()
        return (
            (self.start is None or day >= self.start)
            and (self.end is None or day <= self.end)
            and (not self.booth or ref.booth == self.booth)
            and (not self.event or ref.event == self.event)
        )


@dataclass(frozen=True)
class Response:
    submitted_at: datetime
    back_nrs: int | None
    leg_nrs: int | None
    warning: bool


@dataclass(frozen=True)
class Referral:
    """One shared referral with what the KPIs need from its visit and its log."""

    kit_id: str
    code: str
    level: str
    rule_ids: frozenset[str]
    booth: str
    event: str
    visit_at: datetime
    deadline: datetime
    needs_contact: bool
    first_contact_at: datetime | None
    # Decisions in the order they were logged: (decision, at, escalation_arranged_at).
    decisions: tuple[tuple[str, datetime, datetime | None], ...]
    intake_back: int | None
    intake_leg: int | None
    week2: Response | None
    warning_at: datetime | None  # the first follow-up answer that raised a warning sign


@dataclass(frozen=True)
class Breach:
    kit_id: str
    code: str
    level: str
    booth: str
    deadline: datetime
    reached_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "kit_id": self.kit_id,
            "code": self.code,
            "level": self.level,
            "booth": self.booth,
            "deadline": iso(self.deadline),
            "reached_at": None if self.reached_at is None else iso(self.reached_at),
        }


@dataclass
class TimeToFirstContact:
    """Referrals needing contact (urgent, routine, any with a call-back request): hours
    from the visit to the first attempt reached. The share counts those reached by their
    level's deadline over those reached plus those not reached and past their deadline
    (each of the latter a breach, listed). Not yet reached and not yet due: left out."""

    name = "time_to_first_contact"
    hours: list[float] = field(default_factory=list)
    numerator: int = 0
    denominator: int = 0
    breaches: list[Breach] = field(default_factory=list)

    def add(self, ref: Referral, now: datetime) -> None:
        if not ref.needs_contact:
            return
        reached = ref.first_contact_at
        if reached is not None:
            self.hours.append((reached - ref.visit_at).total_seconds() / 3600)
            self.denominator += 1
            if reached <= ref.deadline:
                self.numerator += 1
            else:
                self.breaches.append(_breach(ref, reached))
        elif now > ref.deadline:
            self.denominator += 1
            self.breaches.append(_breach(ref, None))

    @property
    def value(self) -> float | None:
        return _share(self.numerator, self.denominator)

    def as_json(self) -> dict[str, Any]:
        return {
            "kpi": self.name,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.value,
            "p50_hours": percentile(self.hours, 50),
            "p90_hours": percentile(self.hours, 90),
            "reached": len(self.hours),
            "breaches": [
                b.as_json()
                for b in sorted(self.breaches, key=lambda b: (b.deadline, b.kit_id, b.code))
            ],
        }


def _breach(ref: Referral, reached: datetime | None) -> Breach:
    return Breach(ref.kit_id, ref.code, ref.level, ref.booth, ref.deadline, reached)


@dataclass
class Appropriateness:
    """Among referrals with a recorded triage decision, the share whose first decision
    was conservative and that had no escalated decision within 12 weeks of the visit.
    Beside it, the safety line: conservative first, escalated by a later decision."""

    name = "appropriateness"
    numerator: int = 0
    denominator: int = 0
    escalated_later: int = 0

    def add(self, ref: Referral, now: datetime) -> None:
        if not ref.decisions:
            return
        self.denominator += 1
        first = ref.decisions[0][0]
        if first not in wl.CONSERVATIVE:
            return
        later = [at for d, at, _ in ref.decisions[1:] if d in wl.ESCALATED]
        if later:
            self.escalated_later += 1
        if not any(at <= ref.visit_at + APPROPRIATE_WITHIN for at in later):
            self.numerator += 1

    @property
    def value(self) -> float | None:
        return _share(self.numerator, self.denominator)

    def as_json(self) -> dict[str, Any]:
        return {
            "kpi": self.name,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.value,
            "escalated_later": self.escalated_later,
        }


@dataclass
class EscalationLatency:
    """Hours from the red flag (the visit for emergency and urgent levels; else the first
    follow-up answer with a warning sign) to the escalation being arranged (the first
    escalated decision after the flag). The share is within 4 h among suspected cauda
    equina (rules EM1, EM2, UR1, UR2, or a follow-up warning sign)."""

    name = "escalation_latency"
    hours: list[float] = field(default_factory=list)
    numerator: int = 0
    denominator: int = 0

    def add(self, ref: Referral, now: datetime) -> None:
        if ref.level in ("emergency", "urgent"):
            flag: datetime | None = ref.visit_at
        else:
            flag = ref.warning_at
        if flag is None:
            return
        arranged = next(
            (a for d, _, a in ref.decisions if d in wl.ESCALATED and a is not None and a >= flag),
            None,
        )
        if arranged is None:
            return
        span = arranged - flag
        self.hours.append(span.total_seconds() / 3600)
        if ref.rule_ids & CES_RULES or ref.warning_at is not None:
            self.denominator += 1
            if span <= CES_WITHIN:
                self.numerator += 1

    @property
    def value(self) -> float | None:
        return _share(self.numerator, self.denominator)

    def as_json(self) -> dict[str, Any]:
        return {
            "kpi": self.name,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.value,
            "p50_hours": percentile(self.hours, 50),
            "p90_hours": percentile(self.hours, 90),
            "escalations": len(self.hours),
        }


@dataclass
class EarlyImprovement:
    """Among week-2 respondents with an intake score, the share whose leg pain NRS (the
    back NRS when there was no leg pain score at intake) fell by at least 30 % and at
    least 2 points. With it the week-2 response rate: respondents over the referrals
    that reached day 17 after the visit."""

    name = "early_improvement"
    numerator: int = 0
    denominator: int = 0
    respondents: int = 0
    reached_day17: int = 0

    def add(self, ref: Referral, now: datetime) -> None:
        if now < ref.visit_at + WEEK2_END:
            return
        self.reached_day17 += 1
        response = ref.week2
        if response is None:
            return
        self.respondents += 1
        before: int | None
        after: int | None
        if ref.intake_leg is not None:
            before, after = ref.intake_leg, response.leg_nrs
        else:
            before, after = ref.intake_back, response.back_nrs
        if before is None or after is None:
            return
        self.denominator += 1
        fall = before - after
        if fall >= 2 and fall >= 0.3 * before:
            self.numerator += 1

    @property
    def value(self) -> float | None:
        return _share(self.numerator, self.denominator)

    @property
    def response_rate(self) -> float | None:
        return _share(self.respondents, self.reached_day17)

    def as_json(self) -> dict[str, Any]:
        return {
            "kpi": self.name,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.value,
            "respondents": self.respondents,
            "reached_day17": self.reached_day17,
            "response_rate": self.response_rate,
        }


@dataclass
class Kpis:
    time_to_first_contact: TimeToFirstContact = field(default_factory=TimeToFirstContact)
    appropriateness: Appropriateness = field(default_factory=Appropriateness)
    escalation_latency: EscalationLatency = field(default_factory=EscalationLatency)
    early_improvement: EarlyImprovement = field(default_factory=EarlyImprovement)

    def add(self, ref: Referral, now: datetime) -> None:
        for kpi in self.all():
            kpi.add(ref, now)

    def all(
        self,
    ) -> tuple[TimeToFirstContact, Appropriateness, EscalationLatency, EarlyImprovement]:
        return (
            self.time_to_first_contact,
            self.appropriateness,
            self.escalation_latency,
            self.early_improvement,
        )

    def as_json(self) -> list[dict[str, Any]]:
        return [k.as_json() for k in self.all()]


def compute(
    store: ServerStore,
    deadlines: wl.Deadlines,
    period: Period | None = None,
    now: datetime | None = None,
) -> Kpis:
    """The four KPIs as they stand at ``now`` (default: the store's clock)."""
    period = period or Period()
    now = now or store.clock()
    out = Kpis()
    for ref in referrals(store, deadlines):
        if period.keep(ref):
            out.add(ref, now)
    return out


def _score(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        return None
    return value


def _responses(store: ServerStore) -> dict[tuple[str, str], list[tuple[str, Response]]]:
    """Current (not superseded) follow-up responses by referral, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                'SELECT kit_id, referral_code, "window", submitted_at, answers, warning '
                "FROM followup_response WHERE superseded_at IS NULL ORDER BY submitted_at, id"
            )
        ).all()
    out: dict[tuple[str, str], list[tuple[str, Response]]] = {}
    for kit, code, window, at, answers, warning in rows:
        data = json.loads(answers)
        data = data if isinstance(data, dict) else {}
        out.setdefault((kit, code), []).append(
            (
                str(window),
                Response(
                    wl._utc(at),
                    _score(data.get("pain_nrs")),
                    _score(data.get("leg_pain_nrs")),
                    bool(warning),
                ),
            )
        )
    return out


Decided = tuple[str, datetime, datetime | None]


def _log(
    store: ServerStore,
) -> tuple[dict[tuple[str, str], datetime], dict[tuple[str, str], list[Decided]]]:
    """From the event log, in order: each referral's first attempt reached, as the
    worklist's ``derive`` has it (found by the database), and its decisions."""
    with store.engine.connect() as conn:
        # record_event writes data with json.dumps(sort_keys=True): the result reads
        # exactly so, and the first such attempt by id is the one derive() takes.
        reached = conn.execute(
            text(
                "SELECT e.kit_id, e.referral_code, e.at FROM referral_event e JOIN "
                "(SELECT MIN(id) AS id FROM referral_event WHERE kind = 'attempt' "
                'AND data LIKE \'%"result": "reached"%\' GROUP BY kit_id, referral_code) f '
                "ON e.id = f.id"
            )
        ).all()
        decided = conn.execute(
            text(
                "SELECT kit_id, referral_code, at, data FROM referral_event "
                "WHERE kind = 'decision' ORDER BY id"
            )
        ).all()
    contacts = {(kit, code): wl._utc(at) for kit, code, at in reached}
    decisions: dict[tuple[str, str], list[Decided]] = {}
    for kit, code, at, data in decided:
        found = json.loads(data)
        decisions.setdefault((kit, code), []).append(
            (
                str(found.get("decision")),
                wl._utc(at),
                wl.parse_time(found.get("escalation_arranged_at")),
            )
        )
    return contacts, decisions


def referrals(store: ServerStore, deadlines: wl.Deadlines) -> list[Referral]:
    """Every shared referral (open or not), the worklist's own way of deciding which."""
    consents = wl._consents(store, light=True)
    withdrawn = wl._withdrawn(store)
    callbacks = wl._callbacks(store)
    contacts, decisions = _log(store)
    responses = _responses(store)
    visits = wl._visits(store, light=True)
    out = []
    for visit in visits:
        key = (visit.kit_id, visit.visit_id)
        ref_key = (visit.kit_id, visit.code)
        callback = callbacks.get(ref_key)
        row = wl._row(visit, consents.get(key, {}), key in withdrawn, callback, [], deadlines)
        intake = visit.facts
        if row is None or intake is None:
            continue
        answered = responses.get(ref_key, [])
        week2 = next((r for w, r in answered if w == "w2"), None)
        warning_at = next((r.submitted_at for _, r in answered if r.warning), None)
        out.append(
            Referral(
                kit_id=row.kit_id,
                code=row.code,
                level=row.level,
                rule_ids=intake.rule_ids,
                booth=row.booth,
                event=row.event,
                visit_at=row.visit_at,
                deadline=row.deadline,
                needs_contact=row.level in ("urgent", "routine") or callback is not None,
                first_contact_at=contacts.get(ref_key),
                decisions=tuple(decisions.get(ref_key, ())),
                intake_back=intake.intake_back,
                intake_leg=intake.intake_leg,
                week2=week2,
                warning_at=warning_at,
            )
        )
    return out


def _shown(value: float | None, unit: str = "%") -> str:
    if value is None:
        return "-"
    return f"{value * 100:.1f} %" if unit == "%" else f"{value:.1f} h"


def _hours(values: list[float], p: float) -> str:
    return _shown(percentile(values, p), "h")


def text_lines(found: Kpis) -> list[str]:
    """The four KPIs as a plain table, the same figures as the JSON."""
    t, a, e, i = found.all()
    rows = [
        ("KPI", "value", "numerator/denominator", "details"),
        (
            "time to first contact",
            _shown(t.value),
            f"{t.numerator}/{t.denominator} in time",
            f"p50 {_hours(t.hours, 50)}, p90 {_hours(t.hours, 90)}, {len(t.breaches)} breaches",
        ),
        (
            "appropriateness",
            _shown(a.value),
            f"{a.numerator}/{a.denominator} conservative",
            f"{a.escalated_later} conservative then escalated",
        ),
        (
            "escalation latency",
            _shown(e.value),
            f"{e.numerator}/{e.denominator} CES in 4 h",
            f"p50 {_hours(e.hours, 50)}, p90 {_hours(e.hours, 90)}, {len(e.hours)} escalations",
        ),
        (
            "early improvement (w2)",
            _shown(i.value),
            f"{i.numerator}/{i.denominator} improved",
            f"response rate {_shown(i.response_rate)} ({i.respondents}/{i.reached_day17})",
        ),
    ]
    widths = [max(len(r[n]) for r in rows) for n in range(3)]
    lines = ["  ".join(r[n].ljust(widths[n]) for n in range(3)) + "  " + r[3] for r in rows]
    for b in sorted(t.breaches, key=lambda b: (b.deadline, b.kit_id, b.code)):
        reached = "not reached" if b.reached_at is None else f"reached {iso(b.reached_at)}"
        lines.append(f"breach: {b.kit_id} {b.code} {b.level} due {iso(b.deadline)}, {reached}")
    return lines


@dataclass
class Breakdown:
    """The KPIs for the whole selection, by week of the visit (Monday, clinic time zone)
    and by booth, from one pass over the referrals."""

    overall: Kpis
    weeks: dict[date, Kpis]
    booths: dict[str, Kpis]
    booth_names: list[str]
    event_names: list[str]


def breakdown(
    store: ServerStore,
    deadlines: wl.Deadlines,
    period: Period | None = None,
    now: datetime | None = None,
) -> Breakdown:
    period = period or Period()
    now = now or store.clock()
    found = Breakdown(Kpis(), {}, {}, [], [])
    booths, events = set(), set()
    for ref in referrals(store, deadlines):
        booths.add(ref.booth)
        if ref.event:
            events.add(ref.event)
        if not period.keep(ref):
            continue
        day = ref.visit_at.astimezone(period.zone).date()
        week = day - timedelta(days=day.weekday())
        found.overall.add(ref, now)
        found.weeks.setdefault(week, Kpis()).add(ref, now)
        found.booths.setdefault(ref.booth, Kpis()).add(ref, now)
    found.weeks = dict(sorted(found.weeks.items()))
    found.booths = dict(sorted(found.booths.items()))
    found.booth_names, found.event_names = sorted(booths), sorted(events)
    return found
