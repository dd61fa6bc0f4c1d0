"""The clinicians' worklist: which referrals need a call, in what order, by when; and the
append-only event log of each referral (attempts, decision, closure, notes) from which its
current state is derived.

A referral is a kit's visit by its referral code, shared with the centre (consent C2, not
withdrawn, not voided). It needs contact until a decision or a closure is recorded.
The phone number is shown only where C3 was granted.
"""

from __future__ import annotations

import json
import tomllib
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import text

from forms.engine import fill
from sync.bodies import age_band as ten_year_band
from sync.server import followups, visit_facts
from sync.server.store import ServerStore, iso
from sync.server.visit_facts import parse_time as parse_time

LEVELS = ("emergency", "urgent", "routine", "self_care")
LEVEL_NAMES = {
    "emergency": "Emergency: safety follow-up",
    "urgent": "Urgent",
    "routine": "Routine",
    "self_care": "Self-care call-back",
}
ATTEMPT_RESULTS = {
    "reached": "Reached",
    "no_answer": "No answer",
    "wrong_number": "Wrong number",
    "declined": "Declined",
}
CONSERVATIVE = {
    "advice": "Advice",
    "self_management": "Self-management",
    "physiotherapy": "Physiotherapy",
    "gp": "GP",
}
ESCALATED = {
    "emergency_department": "Emergency department",
    "urgent_in_person": "Urgent in-person review",
    "urgent_imaging": "Urgent imaging",
    "specialist": "Specialist",
}
DECISIONS = {**CONSERVATIVE, **ESCALATED}
KINDS = ("attempt", "decision", "closure", "note")
MAX_NOTE = 4000


class EventRefused(ValueError):
    """An event the log cannot take (unknown result, missing time...); says why."""


@dataclass(frozen=True)
class Deadlines:
    """How long after its start each level may wait for a first call."""

    emergency: timedelta = timedelta(hours=1)  # from reaching the server
    urgent: timedelta = timedelta(hours=24)  # from the booth visit
    routine: timedelta = timedelta(days=7)  # from the booth visit


@dataclass(frozen=True)
class Event:
    kind: str
    at: datetime
    recorded_at: datetime
    user_name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class State:
    """What the log says now."""

    attempts: int = 0
    last_attempt: str | None = None
    first_contact_at: datetime | None = None
    decision: str | None = None
    escalation_arranged_at: datetime | None = None
    closed_reason: str | None = None
    # When the latest decision or closure was logged.
    settled_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.decision is None and self.closed_reason is None


@dataclass(frozen=True)
class Alert:
    """A warning sign answered yes at a follow-up: the referral's current response for
    ``window``, given ``at``, to be acted on by ``due``."""

    window: str
    at: datetime
    due: datetime


@dataclass(frozen=True)
class Row:
    kit_id: str
    code: str
    level: str
    rules: tuple[str, ...]
    age_band: str
    language: str
    booth: str
    event: str
    visit_at: datetime
    received_at: datetime
    deadline: datetime
    callback: tuple[datetime, datetime] | None
    phone: str | None
    state: State = field(default_factory=State)
    alert: Alert | None = None
    booking: tuple[datetime, datetime] | None = None  # the booked call's start and end

    @property
    def alerting(self) -> bool:
        """A follow-up warning sign no decision or closure has followed yet (one logged at
        the very same moment is not known to have seen it)."""
        alert, settled = self.alert, self.state.settled_at
        return alert is not None and (settled is None or settled <= alert.at)

    @property
    def open(self) -> bool:
        """Needs contact: never decided or closed, or re-opened by a follow-up warning."""
        return self.state.open or self.alerting

    @property
    def flag(self) -> str | None:
        if not self.alerting or self.alert is None:
            return None
        return f"warning sign at follow-up ({followups.week_label(self.alert.window)})"

    @property
    def tier(self) -> int:
        return 0 if self.alerting else LEVELS.index(self.level)

    def breached(self, now: datetime) -> bool:
        return now > self.deadline

    def as_json(self, now: datetime, zone: tzinfo = UTC) -> dict[str, Any]:
        return {
            "kit_id": self.kit_id,
            "code": self.code,
            "level": self.level,
            "level_name": LEVEL_NAMES[self.level],
            "flag": self.flag,
            "rules": list(self.rules),
            "age_band": self.age_band,
            "language": self.language,
            "booth": self.booth,
            "event": self.event,
            "visit_at": iso(self.visit_at),
            "since_visit": duration(now - self.visit_at),
            "deadline": iso(self.deadline),
            "deadline_shown": shown(self.deadline, zone),
            "time_left": left(self.deadline - now),
            "breached": self.breached(now),
            "callback": None if self.callback is None else [iso(t) for t in self.callback],
            "callback_shown": (
                None
                if self.callback is None
                else " to ".join(shown(t, zone) for t in self.callback)
            ),
            "booking": None if self.booking is None else [iso(t) for t in self.booking],
            "booking_shown": (
                None if self.booking is None else " to ".join(shown(t, zone) for t in self.booking)
            ),
            "phone": self.phone,
            "attempts": self.state.attempts,
            "last_attempt": self.state.last_attempt,
        }


def duration(span: timedelta) -> str:
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def left(span: timedelta) -> str:
    if span < timedelta(0):
        return f"overdue by {duration(-span)}"
    return duration(span)


def shown(moment: datetime | None, zone: tzinfo = UTC) -> str:
    """The time in ``zone`` (the clinic's), labelled with the zone's abbreviation there."""
    return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


@cache
def _rule_set() -> tuple[dict[str, str], dict[str, str]]:
    """Each rule's reason in plain English and the default thresholds, from the forms'
    rule set."""
    import forms

    path = Path(forms.__file__).with_name("definitions") / "rules.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    words: dict[str, str] = {}
    for rule in data.get("rules", []):
        reason = rule.get("reason")
        if isinstance(reason, dict) and isinstance(reason.get("en"), str):
            words[str(rule["id"])] = reason["en"]
    thresholds = {str(k): str(v) for k, v in data.get("thresholds", {}).items()}
    return words, thresholds


def _thresholds(ruleset_version: Any) -> dict[str, str]:
    """The thresholds a visit was screened with: the defaults, with the kit's overrides
    that its ruleset version carries ("2026.11-1+night_pain_age=55")."""
    values = dict(_rule_set()[1])
    if isinstance(ruleset_version, str) and "+" in ruleset_version:
        for item in ruleset_version.split("+", 1)[1].split(","):
            name, sep, value = item.partition("=")
            if sep and name in values and value.isdigit():
                values[name] = value
    return values


def _rules(outcome: dict[str, Any]) -> tuple[str, ...]:
    fired = tuple(
        (str(f.get("id")), f.get("reason"))
        for f in outcome.get("fired", [])
        if isinstance(f, dict) and isinstance(f.get("reason"), str)
    )
    listed = outcome.get("rules")
    ids = tuple(str(i) for i in listed) if isinstance(listed, list) else tuple(i for i, _ in fired)
    version = outcome.get("ruleset_version")
    return _words(ids, version if isinstance(version, str) else "", fired)


@lru_cache(maxsize=4096)
def _words(
    ids: tuple[str, ...], ruleset_version: str, fired_reasons: tuple[tuple[str, str], ...]
) -> tuple[str, ...]:
    words = _rule_set()[0]
    values = _thresholds(ruleset_version)
    fired = dict(fired_reasons)
    out = []
    for rule_id in ids:
        known = words.get(str(rule_id))
        out.append(fill(known, values) if known else fired.get(str(rule_id)) or str(rule_id))
    return tuple(out)


def age_band(age: Any) -> str:
    """The ten-year band the rest of the product uses (``sync.bodies``)."""
    if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age < 150:
        return "unknown"
    return ten_year_band(age)


@dataclass
class _Visit:
    kit_id: str
    visit_id: str
    code: str
    version: int
    record_id: str
    first_received: str
    created_at: str
    facts: _Facts | None = None


@dataclass(frozen=True)
class _Facts:
    """What a visit record says that the worklist shows, read from its body once."""

    level: Any
    void: bool
    rules: tuple[str, ...]
    age_band: str
    language: str
    booth: str | None
    event: str
    visit_at: datetime | None
    phone: str | None
    # The consent items the body was cut to at the booth (typed bodies carry them).
    scope: dict[str, bool]
    # For the KPIs (sync.server.kpis): the rule ids and the intake pain scores.
    rule_ids: frozenset[str] = frozenset()
    intake_back: int | None = None
    intake_leg: int | None = None

    @classmethod
    def of(cls, digest: dict[str, Any]) -> _Facts:
        """The facts a stored digest holds (``sync.server.visit_facts``); what only the
        worklist shows (rules in words, age band, language, phone) left blank."""
        scope = digest.get("scope")
        return cls(
            level=digest.get("level"),
            void=digest.get("void") is True,
            rules=(),
            age_band="",
            language="en",
            booth=digest.get("booth"),
            event=str(digest.get("event") or ""),
            visit_at=parse_time(digest.get("at")),
            phone=None,
            scope=dict(scope) if isinstance(scope, dict) else {},
            rule_ids=frozenset(digest.get("rules") or ()),
            intake_back=visit_facts.nrs(digest.get("back")),
            intake_leg=visit_facts.nrs(digest.get("leg")),
        )


def _facts(body: dict[str, Any]) -> _Facts:
    outcome = _dict(body.get("outcome"))
    answers = _dict(body.get("answers"))
    phone = _dict(body.get("contact")).get("phone")
    language = body.get("language")
    shown = _Facts.of(visit_facts.visit(body))
    return replace(
        shown,
        rules=_rules(outcome),
        age_band=age_band(answers.get("age_years", body.get("age_years"))),
        language=language if isinstance(language, str) else "en",
        phone=phone if isinstance(phone, str) and phone else None,
    )


_consent_items = visit_facts.consent


class _Bodies:
    """What each record's body says, by record id. A stored record never changes (a
    withdrawal scrubs it, and the queries leave scrubbed records out), so each body is read
    once per process; ids no longer asked for are dropped at each full read."""

    def __init__(self, digest: Callable[[dict[str, Any]], Any]) -> None:
        self.digest = digest
        self.parsed: dict[str, Any] = {}

    def get(self, store: ServerStore, ids: list[str], *, full: bool) -> dict[str, Any]:
        # Requests run in threads: work on one dict throughout, whatever another replaces.
        parsed = self.parsed
        missing = [i for i in ids if i not in parsed]
        with store.engine.connect() as conn:
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ", ".join(f":r{n}" for n in range(len(chunk)))
                for rid, body in conn.execute(
                    text(f"SELECT record_id, body FROM record WHERE record_id IN ({marks})"),
                    {f"r{n}": rid for n, rid in enumerate(chunk)},
                ):
                    parsed[rid] = self.digest(json.loads(body))
        found = {i: parsed[i] for i in ids if i in parsed}
        if full:
            self.parsed = dict(found)
        return found


_BODIES: weakref.WeakKeyDictionary[ServerStore, _Bodies] = weakref.WeakKeyDictionary()


_LIGHT: weakref.WeakKeyDictionary[ServerStore, dict[str, _Facts]] = weakref.WeakKeyDictionary()


def _bodies(store: ServerStore, ids: list[str], *, full: bool) -> dict[str, _Facts]:
    cache = _BODIES.get(store)
    if cache is None:
        cache = _BODIES[store] = _Bodies(_facts)
    return cache.get(store, ids, full=full)


def _one_referral(
    sql: str, kit_id: str | None, code: str | None, table: str = ""
) -> tuple[str, dict[str, Any]]:
    """``sql`` (ending in its WHERE clause) narrowed to one referral when ``kit_id`` is
    given; ``table``: the alias its columns are read from."""
    if kit_id is None:
        return sql, {}
    return f"{sql} AND {table}kit_id = :k AND {table}referral_code = :c", {"k": kit_id, "c": code}


def _visits(store: ServerStore, kit_id: str | None = None, code: str | None = None) -> list[_Visit]:
    """The latest version of each visit that names a referral code."""
    sql = (
        "SELECT kit_id, visit_id, referral_code, visit_version, record_id, received_at, "
        "created_at FROM record WHERE record_type = 'visit' "
        "AND referral_code IS NOT NULL AND visit_id IS NOT NULL AND scrubbed_at IS NULL"
    )
    sql, params = _one_referral(sql, kit_id, code)
    latest: dict[tuple[str, str], _Visit] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    for kit, visit_id, ref, version, rid, received, created in rows:
        key = (kit, visit_id)
        seen = latest.get(key)
        version = int(version or 0)
        if seen is None:
            latest[key] = _Visit(kit, visit_id, ref, version, rid, received, created)
            continue
        seen.first_received = min(seen.first_received, received)
        if (version, created) > (seen.version, seen.created_at):
            seen.version, seen.created_at, seen.code, seen.record_id = (
                version,
                created,
                ref,
                rid,
            )
    visits = list(latest.values())
    bodies = _bodies(store, [v.record_id for v in visits], full=kit_id is None)
    for visit in visits:
        visit.facts = bodies.get(visit.record_id)
    return visits


def _consents(
    store: ServerStore,
    kit_id: str | None = None,
    visit_id: str | None = None,
) -> dict[tuple[str, str], dict[str, bool]]:
    """The consent items each visit holds now: the latest event naming an item wins."""
    sql = (
        "SELECT kit_id, visit_id, record_id FROM record WHERE record_type = 'consent' "
        "AND scrubbed_at IS NULL"
    )
    params: dict[str, Any] = {}
    if kit_id is not None:
        sql += " AND kit_id = :k AND visit_id = :v"
        params = {"k": kit_id, "v": visit_id}
    sql += " ORDER BY created_at, record_id"
    with store.engine.connect() as conn:
        listed = conn.execute(text(sql), params).all()
    bodies = _consent_bodies(store, [r for _, _, r in listed], full=kit_id is None)
    out: dict[tuple[str, str], dict[str, bool]] = {}
    for kit, visit, rid in listed:
        items = bodies.get(rid)
        if items:
            out.setdefault((kit, visit), {}).update(items)
    return out


_CONSENT_BODIES: weakref.WeakKeyDictionary[ServerStore, _Bodies] = weakref.WeakKeyDictionary()


def _consent_bodies(store: ServerStore, ids: list[str], *, full: bool) -> dict[str, Any]:
    cache = _CONSENT_BODIES.get(store)
    if cache is None:
        cache = _CONSENT_BODIES[store] = _Bodies(_consent_items)
    return cache.get(store, ids, full=full)


def _withdrawn(store: ServerStore) -> set[tuple[str, str]]:
    with store.engine.connect() as conn:
        return {(k, v) for k, v in conn.execute(text("SELECT kit_id, visit_id FROM withdrawal"))}


def _events(
    store: ServerStore, kit_id: str | None = None, code: str | None = None
) -> dict[tuple[str, str], list[Event]]:
    sql = "SELECT kit_id, referral_code, kind, at, recorded_at, user_name, data FROM referral_event"
    params: dict[str, Any] = {}
    if kit_id is not None:
        sql += " WHERE kit_id = :k AND referral_code = :c"
        params = {"k": kit_id, "c": code}
    sql += " ORDER BY id"
    out: dict[tuple[str, str], list[Event]] = {}
    with store.engine.connect() as conn:
        for kit, ref, kind, at, recorded, user, data in conn.execute(text(sql), params):
            out.setdefault((kit, ref), []).append(
                Event(kind, _utc(at), _utc(recorded), user, json.loads(data))
            )
    return out


def _callbacks(
    store: ServerStore, kit_id: str | None = None, code: str | None = None
) -> dict[tuple[str, str], tuple[datetime, datetime]]:
    """Each referral's latest call-back request window."""
    sql = (
        "SELECT kit_id, referral_code, window_start, window_end FROM callback_request "
        "WHERE cancelled_at IS NULL"
    )
    sql, params = _one_referral(sql, kit_id, code)
    with store.engine.connect() as conn:
        return {
            (k, c): (_utc(start), _utc(end))
            for k, c, start, end in conn.execute(text(sql + " ORDER BY id"), params)
        }


def _bookings(
    store: ServerStore, kit_id: str | None = None, code: str | None = None
) -> dict[tuple[str, str], tuple[datetime, datetime]]:
    """Each referral's booked call: its slot's start and end."""
    sql = (
        "SELECT b.kit_id, b.referral_code, s.starts_at, s.minutes FROM call_booking AS b "
        "JOIN call_slot AS s ON s.id = b.slot_id WHERE b.status = 'booked'"
    )
    sql, params = _one_referral(sql, kit_id, code, "b.")
    out = {}
    with store.engine.connect() as conn:
        for k, c, start, minutes in conn.execute(text(sql + " ORDER BY b.id"), params):
            begins = _utc(start)
            out[(k, c)] = (begins, begins + timedelta(minutes=int(minutes)))
    return out


def _alerts(
    store: ServerStore, deadlines: Deadlines, kit_id: str | None = None, code: str | None = None
) -> dict[tuple[str, str], Alert]:
    """Each referral's latest current follow-up with a warning sign answered yes."""
    return {
        ref: Alert(window, at, at + deadlines.emergency)
        for ref, (window, at) in followups.warnings(store, kit_id, code).items()
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _utc(value: str) -> datetime:
    moment = parse_time(value)
    if moment is None:  # pragma: no cover - the server writes every time itself
        raise ValueError(f"unreadable time {value!r}")
    return moment


def derive(events: Iterable[Event]) -> State:
    """The referral's state now, from its log in order."""
    attempts, last, first, decision, arranged, closed = 0, None, None, None, None, None
    settled = None
    for e in events:
        if e.kind == "attempt":
            attempts += 1
            last = str(e.data.get("result"))
            if last == "reached" and first is None:
                first = e.at
        elif e.kind == "decision":
            decision = str(e.data.get("decision"))
            arranged = parse_time(e.data.get("escalation_arranged_at"))
            settled = e.recorded_at
        elif e.kind == "closure":
            closed = str(e.data.get("reason"))
            settled = e.recorded_at
    return State(attempts, last, first, decision, arranged, closed, settled)


def listed(level: Any, void: bool, c2: bool, callback_end: datetime | None, warned: bool) -> bool:
    """Whether a visit is a referral the centre works: shared (C2), not void, of a known
    level, and a self-care visit only with a call-back request or a follow-up warning."""
    if void or not c2 or level not in LEVELS:
        return False
    return level != "self_care" or callback_end is not None or warned


def contact_deadline(
    level: str,
    visit_at: datetime,
    received_at: datetime,
    callback_end: datetime | None,
    alert: Alert | None,
    deadlines: Deadlines,
) -> datetime:
    """When a listed referral must have been called: per level, or the end of its
    call-back window when that comes first (self-care: the window, else the warning's due)."""
    if level == "emergency":
        deadline = received_at + deadlines.emergency
    elif level == "urgent":
        deadline = visit_at + deadlines.urgent
    elif level == "routine":
        deadline = visit_at + deadlines.routine
    elif callback_end is not None:
        deadline = callback_end
    else:
        assert alert is not None
        deadline = alert.due
    if callback_end is not None and level in ("urgent", "routine"):
        deadline = min(deadline, callback_end)
    return deadline


def _row(
    visit: _Visit,
    consent: dict[str, bool],
    withdrawn: bool,
    callback: tuple[datetime, datetime] | None,
    events: list[Event],
    deadlines: Deadlines,
    alert: Alert | None = None,
) -> Row | None:
    facts = visit.facts
    if facts is None:
        return None
    # Consent records, in order, decide; a typed body's own scope stands where none has.
    consent = {**facts.scope, **consent}
    level = facts.level
    callback_end = None if callback is None else callback[1]
    c2 = consent.get("c2", False)
    if withdrawn or not listed(level, facts.void, c2, callback_end, alert is not None):
        return None
    received = _utc(visit.first_received)
    visit_at = facts.visit_at or _utc(visit.created_at)
    deadline = contact_deadline(level, visit_at, received, callback_end, alert, deadlines)
    row = Row(
        kit_id=visit.kit_id,
        code=visit.code,
        level=level,
        rules=facts.rules,
        age_band=facts.age_band,
        language=facts.language,
        booth=facts.booth or visit.kit_id,
        event=facts.event,
        visit_at=visit_at,
        received_at=received,
        deadline=deadline,
        callback=callback,
        phone=facts.phone if consent.get("c3", False) else None,
        state=derive(events) if events else _EMPTY,
        alert=alert,
    )
    # A follow-up warning is due as an emergency is, from the response.
    return replace(row, deadline=alert.due) if alert is not None and row.alerting else row


_EMPTY = State()


@dataclass(frozen=True)
class Filters:
    booth: str = ""
    event: str = ""
    day: str = ""  # YYYY-MM-DD of the visit, in ``zone``
    zone: tzinfo = UTC

    def keep(self, row: Row) -> bool:
        return (
            (not self.booth or row.booth == self.booth)
            and (not self.event or row.event == self.event)
            and (not self.day or row.visit_at.astimezone(self.zone).date().isoformat() == self.day)
        )


def order_key(row: Row) -> tuple[int, datetime, datetime, str, str]:
    # A follow-up warning's deadline is its own (set in _row), so it sorts among emergencies.
    return (row.tier, row.deadline, row.visit_at, row.kit_id, row.code)


def _data_version(store: ServerStore) -> tuple[Any, ...]:
    """Changes whenever anything the worklist is made from changes: a record arrives or is
    scrubbed, an event is logged, a call-back is requested, a follow-up is answered."""
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM record), (SELECT MAX(received_at) FROM record), "
                "(SELECT COUNT(*) FROM record WHERE scrubbed_at IS NOT NULL), "
                "(SELECT MAX(id) FROM referral_event), (SELECT COUNT(*) FROM referral_event), "
                "(SELECT MAX(id) FROM callback_request), "
                "(SELECT COUNT(*) FROM callback_request WHERE cancelled_at IS NOT NULL), "
                "(SELECT COUNT(*) FROM withdrawal), "
                "(SELECT MAX(id) FROM followup_response), "
                "(SELECT COUNT(*) FROM followup_response WHERE superseded_at IS NOT NULL), "
                # Booked calls: a new booking row, or one booked or given back.
                "(SELECT MAX(id) FROM call_booking), "
                "(SELECT COUNT(*) FROM call_booking WHERE status = 'booked')"
            )
        ).one()
    return tuple(row)


@dataclass
class _List:
    version: tuple[Any, ...]
    deadlines: Deadlines
    rows: list[Row]


_LISTS: weakref.WeakKeyDictionary[ServerStore, _List] = weakref.WeakKeyDictionary()
_EVENTS = 3  # where the newest event id sits in the data version


def worklist(store: ServerStore, deadlines: Deadlines, filters: Filters | None = None) -> list[Row]:
    """Every open referral: by tier, then contact-by deadline, then age (oldest first).
    Worked out again only when its sources have changed since the last time; when only
    the event log has grown, only the referrals with new events are."""
    filters = filters or Filters()
    version = _data_version(store)
    cached = _LISTS.get(store)
    if cached is None or cached.deadlines != deadlines:
        rows = _worklist(store, deadlines)
    elif cached.version == version:
        rows = cached.rows
    else:
        found = None
        if _only_events(cached.version, version):
            grown = version[_EVENTS + 1] - cached.version[_EVENTS + 1]
            found = _with_new_events(store, cached.rows, cached.version[_EVENTS] or 0, grown)
        rows = found if found is not None else _worklist(store, deadlines)
    _LISTS[store] = _List(version, deadlines, rows)
    return [r for r in rows if filters.keep(r)]


def _only_events(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    return old[:_EVENTS] == new[:_EVENTS] and old[_EVENTS + 2 :] == new[_EVENTS + 2 :]


def _with_new_events(
    store: ServerStore, rows: list[Row], since: int, grown: int
) -> list[Row] | None:
    """``rows`` with the state of each referral that has events after ``since`` derived
    again from its whole log; those now decided or closed leave. None when the events
    after ``since`` are not all the log has gained (ids are handed out before commit, so
    one may land below ``since``): then the whole list is worked out again."""
    with store.engine.connect() as conn:
        newer = conn.execute(
            text("SELECT kit_id, referral_code FROM referral_event WHERE id > :i"),
            {"i": since},
        ).all()
    if len(newer) != grown:
        return None
    touched = {(k, c) for k, c in newer}
    out = []
    for row in rows:
        ref = (row.kit_id, row.code)
        if ref in touched:
            row = replace(row, state=derive(_events(store, *ref).get(ref, [])))
            if not row.open:
                continue
        out.append(row)
    return out


def _worklist(store: ServerStore, deadlines: Deadlines) -> list[Row]:
    consents = _consents(store)
    withdrawn = _withdrawn(store)
    callbacks = _callbacks(store)
    events = _events(store)
    alerts = _alerts(store, deadlines)
    bookings = _bookings(store)
    rows = []
    for visit in _visits(store):
        key = (visit.kit_id, visit.visit_id)
        ref = (visit.kit_id, visit.code)
        row = _row(
            visit,
            consents.get(key, {}),
            key in withdrawn,
            callbacks.get(ref),
            events.get(ref, []),
            deadlines,
            alerts.get(ref),
        )
        if row is not None and row.open:
            rows.append(replace(row, booking=bookings.get(ref)))
    return sorted(rows, key=order_key)


@dataclass(frozen=True)
class Detail:
    row: Row
    events: list[Event]


def referral(store: ServerStore, deadlines: Deadlines, kit_id: str, code: str) -> Detail | None:
    """One shared referral with its log (open or not); None when it is not shared."""
    visits = _visits(store, kit_id, code)
    if not visits:
        return None
    visit = max(visits, key=lambda v: (v.version, v.created_at))
    key = (kit_id, visit.visit_id)
    withdrawn = key in _withdrawn(store)
    events = _events(store, kit_id, code).get((kit_id, code), [])
    callback = _callbacks(store, kit_id, code).get((kit_id, code))
    consent = _consents(store, kit_id, visit.visit_id).get(key, {})
    alert = _alerts(store, deadlines, kit_id, code).get((kit_id, code))
    row = _row(visit, consent, withdrawn, callback, events, deadlines, alert)
    if row is None:
        return None
    booking = _bookings(store, kit_id, code).get((kit_id, code))
    return Detail(replace(row, booking=booking), events)


def record_event(
    store: ServerStore,
    kit_id: str,
    code: str,
    kind: str,
    user_name: str,
    data: dict[str, Any],
    at: datetime | None = None,
) -> Event:
    """Append one event to the referral's log (nothing in the log is ever changed)."""
    now = store.clock()
    at = at or now
    checked = _check(kind, data, now)
    if at > now + timedelta(minutes=5):
        raise EventRefused("the time of an event cannot be in the future")
    with store.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        conn.execute(
            text(
                "INSERT INTO referral_event (kit_id, referral_code, kind, at, recorded_at, "
                "user_name, data) VALUES (:k, :c, :kind, :at, :r, :u, :d)"
            ),
            {
                "k": kit_id,
                "c": code,
                "kind": kind,
                "at": iso(at),
                "r": iso(now),
                "u": user_name,
                "d": json.dumps(checked, sort_keys=True),
            },
        )
    return Event(kind, at, now, user_name, checked)


def _check(kind: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    note = str(data.get("note") or "").strip()
    if len(note) > MAX_NOTE:
        raise EventRefused(f"a note holds at most {MAX_NOTE} characters")
    if kind == "attempt":
        result = data.get("result")
        if result not in ATTEMPT_RESULTS:
            raise EventRefused("an attempt's result must be one of " + ", ".join(ATTEMPT_RESULTS))
        return {"result": result, "note": note}
    if kind == "decision":
        decision = data.get("decision")
        if decision not in DECISIONS:
            raise EventRefused("the decision must be one of " + ", ".join(DECISIONS))
        out: dict[str, Any] = {"decision": decision, "note": note}
        if decision in ESCALATED:
            arranged = data.get("escalation_arranged_at")
            moment = arranged if isinstance(arranged, datetime) else parse_time(arranged)
            if moment is None:
                raise EventRefused("an escalation needs the time it was arranged")
            if moment > now + timedelta(minutes=5):
                raise EventRefused("the time the escalation was arranged cannot be in the future")
            out["escalation_arranged_at"] = iso(moment)
        return out
    if kind == "closure":
        reason = str(data.get("reason") or "").strip()
        if not reason:
            raise EventRefused("a closure needs its reason")
        if len(reason) > 500:
            raise EventRefused("a closure's reason holds at most 500 characters")
        return {"reason": reason, "note": note}
    if kind == "note":
        if not note:
            raise EventRefused("a note cannot be empty")
        return {"note": note}
    raise EventRefused(f"unknown event kind {kind!r}")
