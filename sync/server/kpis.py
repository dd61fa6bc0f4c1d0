"""The four tele-triage KPIs, each defined once with its numerator and denominator, for a
period of visit dates (days in the clinic's time zone), a booth and an event.

What they read of each referral is kept one row a visit in ``kpi_fact`` (migration 0012):
the latest visit's facts, its consent to share (C2) and its log (call-backs, first
contact, week-2 answers, warnings, decisions). Triggers drop a visit's row and note it in
``kpi_stale`` whenever its sources change; each reading first works those out again
(``refresh``), then reads the table and works the KPIs out in one pass, the same on
SQLite and PostgreSQL.

Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the
value at rank ceil(p/100 * n) (1-based); no interpolation, so every figure shown is one
that was measured.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text

from sync.server import visit_facts
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

    @property
    def everything(self) -> bool:
        return self.start is None and self.end is None and not self.booth and not self.event

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


class Referral(NamedTuple):
    """One shared referral with what the KPIs need from its visit and its log (a tuple:
    a hundred thousand are built for a dashboard)."""

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

    @property
    def raised_at_followup(self) -> bool:
        """A self-care visit that became a referral only by a follow-up warning sign."""
        return self.level == "self_care" and not self.needs_contact


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
    that reached day 17 after the visit. A self-care visit that became a referral by its
    own follow-up answer is left out of both: it is counted only because it answered."""

    name = "early_improvement"
    numerator: int = 0
    denominator: int = 0
    respondents: int = 0
    reached_day17: int = 0

    def add(self, ref: Referral, now: datetime) -> None:
        if now < ref.visit_at + WEEK2_END or ref.raised_at_followup:
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
        self.time_to_first_contact.add(ref, now)
        self.appropriateness.add(ref, now)
        self.escalation_latency.add(ref, now)
        self.early_improvement.add(ref, now)

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
    found = referrals(store, deadlines)
    with _no_gc():
        if not period.everything:
            found = [ref for ref in found if period.keep(ref)]
        for ref in found:
            out.add(ref, now)
    return out


def _score(value: Any) -> int | None:
    """An NRS answer as the database's JSON gives it (a number, or its text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        found = int(value) if isinstance(value, int) else int(str(value))
    except ValueError:
        return None
    return found if 0 <= found <= 10 else None


def _time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _maybe(value: str | None) -> datetime | None:
    return None if value is None else wl.parse_time(value)


class _Sql:
    """The queries that work the facts out: one row a visit, and the log keyed by slip.
    Scoped, they read one kit's given visits (``:kit``, ``:visits``) or slips (``:codes``).

    Only JSON reading differs between SQLite and PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def text(self, column: str, key: str) -> str:
        """A top-level JSON member as text (a number's digits, a string's value)."""
        if self.pg:
            return f"({column}::json ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def number(self, column: str, key: str) -> str:
        """A top-level JSON member when it is a number, else NULL."""
        if self.pg:
            return (
                f"CASE WHEN json_typeof({column}::json -> '{key}') = 'number' "
                f"THEN {column}::json ->> '{key}' END"
            )
        return (
            f"CASE WHEN json_type({column}, '$.{key}') = 'integer' "
            f"THEN json_extract({column}, '$.{key}') END"
        )

    def item(self, column: str, key: str) -> str:
        """A consent item: 'true' when granted, NULL when the record does not name it."""
        if self.pg:
            return f"((({column})::json -> 'items') -> '{key}')::text"
        return f"json_type({column}, '$.items.{key}')"

    @staticmethod
    def _visits(scoped: bool, alias: str = "") -> str:
        return f" AND {alias}kit_id = :kit AND {alias}visit_id IN :visits" if scoped else ""

    @staticmethod
    def _codes(scoped: bool) -> str:
        return " AND kit_id = :kit AND referral_code IN :codes" if scoped else ""

    def referrals(self, scoped: bool = False) -> str:
        # Hash joins and aggregates only: no window function, so nothing sorts a month of
        # text keys. A visit with two records of its latest version gives two rows
        # (``_one_a_visit``).
        return f"""
WITH versions AS (
  SELECT kit_id, visit_id, MAX(COALESCE(visit_version, 0)) AS version,
         MIN(received_at) AS first_received
  FROM record
  WHERE record_type = 'visit' AND referral_code IS NOT NULL AND visit_id IS NOT NULL
    AND scrubbed_at IS NULL{self._visits(scoped)}
  GROUP BY kit_id, visit_id
),
latest AS (
  SELECT r.kit_id, r.visit_id, r.referral_code, r.record_id, r.digest, r.created_at,
         v.first_received
  FROM record r JOIN versions v ON r.kit_id = v.kit_id AND r.visit_id = v.visit_id
       AND COALESCE(r.visit_version, 0) = v.version
  WHERE r.record_type = 'visit' AND r.referral_code IS NOT NULL
    AND r.scrubbed_at IS NULL{self._visits(scoped, "r.")}
),
consent AS (
  -- Which answers the visit's consent records give to C2. When they disagree, their
  -- order decides (``_c2_in_order``); the digest where there is one, else the body.
  SELECT kit_id, visit_id,
         MAX(CASE WHEN granted = 'true' THEN 1 ELSE 0 END) AS yes,
         MAX(CASE WHEN granted = 'true' THEN 0 ELSE 1 END) AS no
  FROM (SELECT kit_id, visit_id, {self.item("COALESCE(digest, body)", "c2")} AS granted
        FROM record WHERE record_type = 'consent' AND scrubbed_at IS NULL{self._visits(scoped)}
       ) AS named
  WHERE granted IS NOT NULL
  GROUP BY kit_id, visit_id
)
SELECT l.kit_id, l.referral_code, l.record_id, l.digest, l.created_at, l.first_received,
       consent.yes, consent.no, l.visit_id
FROM latest l
LEFT JOIN consent ON consent.kit_id = l.kit_id AND consent.visit_id = l.visit_id
WHERE NOT EXISTS (SELECT 1 FROM withdrawal w
                  WHERE w.kit_id = l.kit_id AND w.visit_id = l.visit_id)
"""

    def callbacks(self, scoped: bool = False) -> str:
        return (
            "SELECT kit_id, referral_code, window_end FROM callback_request WHERE id IN "
            "(SELECT MAX(id) FROM callback_request WHERE cancelled_at IS NULL"
            f"{self._codes(scoped)} GROUP BY kit_id, referral_code)"
        )

    def reached(self, scoped: bool = False) -> str:
        # record_event writes data with json.dumps(sort_keys=True): this reads exactly so,
        # and costs far less than parsing every attempt.
        return (
            "SELECT kit_id, referral_code, at FROM referral_event WHERE id IN "
            "(SELECT MIN(id) FROM referral_event WHERE kind = 'attempt' "
            f'AND data LIKE \'%"result": "reached"%\'{self._codes(scoped)} '
            "GROUP BY kit_id, referral_code)"
        )

    def warned(self, scoped: bool = False) -> str:
        return (
            "SELECT kit_id, referral_code, MIN(submitted_at) FROM followup_response "
            f"WHERE superseded_at IS NULL AND warning = 1{self._codes(scoped)} "
            "GROUP BY kit_id, referral_code"
        )

    def week2(self, scoped: bool = False) -> str:
        # One current response a window (a unique index).
        return (
            f"SELECT kit_id, referral_code, submitted_at, {self.number('answers', 'pain_nrs')}, "
            f"{self.number('answers', 'leg_pain_nrs')} FROM followup_response "
            f"WHERE superseded_at IS NULL AND \"window\" = 'w2'{self._codes(scoped)}"
        )

    def decisions(self, scoped: bool = False) -> str:
        return (
            f"SELECT kit_id, referral_code, at, {self.text('data', 'decision')}, "
            f"{self.text('data', 'escalation_arranged_at')} FROM referral_event "
            f"WHERE kind = 'decision'{self._codes(scoped)} ORDER BY id"
        )


Decided = tuple[str, datetime, datetime | None]
Params = dict[str, Any] | None


def _bound(sql: str, params: dict[str, Any]) -> Any:
    """``sql`` with each list among ``params`` bound as an IN list."""
    lists: list[Any] = [
        bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list)
    ]
    return text(sql).bindparams(*lists)


def _all(conn: Any, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
    """Plain tuples: unscoped through the driver (a hundred thousand rows, no per-row
    wrapper), scoped with the lists bound as they are."""
    if params is not None:
        return [tuple(row) for row in conn.execute(_bound(sql, params), params)]
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Collection passes over a hundred thousand new tuples that hold no cycle cost more
    than the work itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _one_a_visit(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row a visit, as worklist._visits chooses: of the latest version's records, the
    one created last (then the first record id)."""
    kept: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in rows:
        key = (row[0], row[8])
        seen = kept.get(key)
        if seen is None or _rank(row) > _rank(seen):
            kept[key] = row
    return list(kept.values()) if len(kept) < len(rows) else rows


def _rank(row: tuple[Any, ...]) -> tuple[str, tuple[int, ...]]:
    # Created later wins; then the smaller record id.
    return (row[4], tuple(-ord(c) for c in row[2]))


Intake = tuple[
    Any, bool, str | None, str, datetime | None, frozenset[str], int | None, int | None, bool
]


def _of_body(digest: dict[str, Any]) -> Intake:
    """The facts the KPIs read from a visit's digest (``visit_facts.visit``): level, void,
    booth, event, time, rules, intake back and leg NRS, and the C2 its body was cut to."""
    scope = digest.get("scope")
    return (
        digest.get("level"),
        digest.get("void") is True,
        digest.get("booth") or None,
        str(digest.get("event") or ""),
        wl.parse_time(digest.get("at")),
        frozenset(digest.get("rules") or ()),
        visit_facts.nrs(digest.get("back")),
        visit_facts.nrs(digest.get("leg")),
        isinstance(scope, dict) and scope.get("c2") is True,
    )


def _intakes(conn: Any, rows: list[tuple[Any, ...]]) -> dict[str, Intake]:
    """Each latest visit's facts: from its digest, or from its body where the digest is
    missing or of an older version (then worked out as the ingest would)."""
    found: dict[str, Intake] = {}
    unread: list[str] = []
    for row in rows:
        digest = visit_facts.read(row[3])
        if digest is None:
            unread.append(row[2])
        else:
            found[row[2]] = _of_body(digest)
    for start in range(0, len(unread), 500):
        listed = _all(
            conn,
            "SELECT record_id, body FROM record WHERE record_id IN :ids",
            {"ids": unread[start : start + 500]},
        )
        for rid, body in listed:
            data = json.loads(body) if body else {}
            found[rid] = _of_body(visit_facts.visit(data if isinstance(data, dict) else {}))
    return found


def _tuned(conn: Any, sql: _Sql) -> None:
    if sql.pg:
        # The planner cannot know that each subquery keeps one row a referral and picks
        # nested loops or sorted merges over them; hashing is linear.
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        # The hashes of a month of referrals fit in memory (default: 4 MB).
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


Key = tuple[str, str]


@dataclass(frozen=True)
class _Log:
    """Each referral's call-back window end, first contact, week-2 response, first
    follow-up warning and decisions."""

    callbacks: dict[Key, datetime]
    reached: dict[Key, datetime]
    week2: dict[Key, Response]
    warned: dict[Key, datetime]
    decisions: dict[Key, list[Decided]]


def _log_on(conn: Any, sql: _Sql, params: Params) -> _Log:
    scoped = params is not None
    decisions: dict[Key, list[Decided]] = {}
    for kit, code, at, decision, arranged in _all(conn, sql.decisions(scoped), params):
        decisions.setdefault((kit, code), []).append((str(decision), _time(at), _maybe(arranged)))
    return _Log(
        {(k, c): _time(end) for k, c, end in _all(conn, sql.callbacks(scoped), params)},
        {(k, c): _time(at) for k, c, at in _all(conn, sql.reached(scoped), params)},
        {
            (k, c): Response(_time(at), _score(back), _score(leg))
            for k, c, at, back, leg in _all(conn, sql.week2(scoped), params)
        },
        {(k, c): _time(at) for k, c, at in _all(conn, sql.warned(scoped), params)},
        decisions,
    )


def _log(store: ServerStore, sql: _Sql) -> _Log:
    with store.engine.connect() as conn:
        _tuned(conn, sql)
        return _log_on(conn, sql, None)


# kpi_fact's columns, in the order ``_facts`` gives them.
COLUMNS = (
    "kit_id",
    "visit_id",
    "referral_code",
    "level",
    "rules",
    "booth",
    "event",
    "visit_at",
    "received_at",
    "callback_end",
    "reached_at",
    "first_decision",
    "first_decision_at",
    "first_arranged_at",
    "later_decisions",
    "intake_back",
    "intake_leg",
    "week2_at",
    "week2_back",
    "week2_leg",
    "warned_at",
)
Fact = tuple[Any, ...]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


def _facts(
    store: ServerStore,
    conn: Any,
    rows: list[tuple[Any, ...]],
    log: _Log,
) -> Iterator[Fact]:
    """The kpi_fact rows of the listed referrals among ``rows`` (``wl.listed``): the
    visit's facts and its log, every time in UTC as ``iso`` writes it."""
    intakes = _intakes(conn, rows)
    mixed = _c2_in_order(store, [(r[0], r[8]) for r in rows if r[6] and r[7]])
    for kit, code, rid, _, created, received, yes, no, visit_id in rows:
        intake = intakes.get(rid)
        if intake is None:
            continue
        level, void, booth, event, at, rules, back, leg, scope_c2 = intake
        if yes is None:
            c2 = scope_c2
        elif yes and no:
            c2 = mixed.get((kit, visit_id), False)
        else:
            c2 = bool(yes)
        key = (kit, code)
        window_end = log.callbacks.get(key)
        warned = log.warned.get(key)
        if not wl.listed(level, void, c2, window_end, warned is not None):
            continue
        week2 = log.week2.get(key)
        decided = [(d, iso(at), _iso(arranged)) for d, at, arranged in log.decisions.get(key, ())]
        first = decided[0] if decided else (None, None, None)
        yield (
            kit,
            visit_id,
            code,
            level,
            " ".join(sorted(rules)),
            booth or kit,
            event,
            iso(at or _time(created)),
            iso(_time(received)),
            _iso(window_end),
            _iso(log.reached.get(key)),
            *first,
            # Most referrals have one decision: only the later ones are JSON.
            json.dumps(decided[1:]) if len(decided) > 1 else "",
            back,
            leg,
            None if week2 is None else iso(week2.submitted_at),
            None if week2 is None else week2.back_nrs,
            None if week2 is None else week2.leg_nrs,
            _iso(warned),
        )


def _c2_in_order(store: ServerStore, visits: list[Key]) -> dict[Key, bool]:
    """C2 for the few visits whose consent records disagree: the latest naming it wins."""
    return {(k, v): wl._consents(store, k, v).get((k, v), {}).get("c2", False) for k, v in visits}


# From this many changed visits (or slips) on, and a fifth of those kept, every fact is
# worked out again in one pass rather than visit by visit (at 100,000 referrals on
# PostgreSQL: about 10 s whole, 0.4 ms a visit): the first reading, or a very large sync.
WHOLE_AT = 5_000
_BATCH = 500


def refresh(store: ServerStore) -> int:
    """Work out again the facts of the visits changed since the last reading (noted in
    kpi_stale by the triggers); returns how many visits or slips were noted."""
    sql = _Sql(store.engine.dialect.name)
    with store.engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM kpi_stale LIMIT 1")).first() is None:
            return 0
    writer = store.engine.connect().execution_options(sqlite_immediate=True)
    with _no_gc(), writer as conn, conn.begin():
        if sql.pg:
            # One refresh at a time; writers are not held up (their triggers only delete).
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('kpi_fact'))")
        # Taken and removed in one statement: a change committed after it stays noted.
        marks = conn.execute(
            text("DELETE FROM kpi_stale RETURNING kit_id, visit_id, referral_code")
        ).all()
        visits = {(k, v) for k, v, _ in marks if v is not None}
        codes = {(k, c) for k, v, c in marks if v is None and c is not None}
        noted = len(visits) + len(codes)
        kept = conn.execute(text("SELECT COUNT(*) FROM kpi_fact")).scalar_one()
        if max(len(visits), len(codes)) >= max(WHOLE_AT, kept // 5):
            _whole(store, conn, sql)
            return noted
        visits |= _visits_of(conn, codes)
        for kit, ids in _by_kit(visits).items():
            for start in range(0, len(ids), _BATCH):
                _some(store, conn, sql, kit, ids[start : start + _BATCH])
        return noted


def _by_kit(keys: set[Key]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kit, value in sorted(keys):
        out.setdefault(kit, []).append(value)
    return out


def _visits_of(conn: Any, codes: set[Key]) -> set[Key]:
    found: set[Key] = set()
    for kit, listed in _by_kit(codes).items():
        for start in range(0, len(listed), _BATCH):
            found.update(
                _all(
                    conn,
                    "SELECT DISTINCT kit_id, visit_id FROM record WHERE kit_id = :kit "
                    "AND referral_code IN :codes AND visit_id IS NOT NULL",
                    {"kit": kit, "codes": listed[start : start + _BATCH]},
                )
            )
    return found


def _some(store: ServerStore, conn: Any, sql: _Sql, kit: str, visits: list[str]) -> None:
    params: dict[str, Any] = {"kit": kit, "visits": visits}
    rows = _one_a_visit(_all(conn, sql.referrals(scoped=True), params))
    codes = sorted({r[1] for r in rows})
    log = _log_on(conn, sql, {"kit": kit, "codes": codes}) if codes else _Log({}, {}, {}, {}, {})
    found = list(_facts(store, conn, rows, log))
    conn.execute(
        _bound("DELETE FROM kpi_fact WHERE kit_id = :kit AND visit_id IN :visits", params), params
    )
    _insert(conn, sql, found)


def _whole(store: ServerStore, conn: Any, sql: _Sql) -> None:
    conn.exec_driver_sql("DELETE FROM kpi_fact")
    _tuned(conn, sql)
    with ThreadPoolExecutor(max_workers=1) as beside:
        # On PostgreSQL the log is read on a second connection while the visits are read
        # and their digests parsed: the two servers' work and this process's overlap.
        pending = beside.submit(_log, store, sql) if sql.pg else None
        rows = _one_a_visit(_all(conn, sql.referrals()))
        log = pending.result() if pending is not None else _log_on(conn, sql, None)
    _insert(conn, sql, list(_facts(store, conn, rows, log)))


def _insert(conn: Any, sql: _Sql, found: list[Fact]) -> None:
    if not found:
        return
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if sql.pg:
            with cursor.copy(f"COPY kpi_fact ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for fact in found:
                    copy.write_row(fact)
        else:
            marks = ", ".join("?" for _ in COLUMNS)
            cursor.executemany(
                f"INSERT INTO kpi_fact ({', '.join(COLUMNS)}) VALUES ({marks})", found
            )
    finally:
        cursor.close()


def referrals(store: ServerStore, deadlines: wl.Deadlines) -> list[Referral]:
    """Every shared referral (open or not), as the worklist lists it (``wl.listed``,
    ``wl.contact_deadline``), from kpi_fact once it is brought up to date."""
    refresh(store)
    read = ", ".join(c for c in COLUMNS if c != "visit_id")
    with store.engine.connect() as conn:
        rows = _all(conn, f"SELECT {read} FROM kpi_fact")
    with _no_gc():
        return list(_referrals(rows, deadlines))


def source_referrals(store: ServerStore, deadlines: wl.Deadlines) -> list[Referral]:
    """The same referrals worked out from the records and the log, ignoring kpi_fact
    (what the table must always agree with)."""
    sql = _Sql(store.engine.dialect.name)
    with _no_gc(), store.engine.connect() as conn, conn.begin():
        _tuned(conn, sql)
        rows = _one_a_visit(_all(conn, sql.referrals()))
        found = [f[:1] + f[2:] for f in _facts(store, conn, rows, _log_on(conn, sql, None))]
    return list(_referrals(found, deadlines))


def _referrals(rows: list[tuple[Any, ...]], deadlines: wl.Deadlines) -> Iterator[Referral]:
    parse = datetime.fromisoformat
    make = Referral._make
    rule_sets: dict[str, frozenset[str]] = {}
    deadline = wl.contact_deadline
    for (
        kit,
        code,
        level,
        rules,
        booth,
        event,
        visit_text,
        received,
        callback_end,
        reached,
        first,
        first_at,
        first_arranged,
        later,
        back,
        leg,
        week2_at,
        week2_back,
        week2_leg,
        warned,
    ) in rows:
        rule_set = rule_sets.get(rules)
        if rule_set is None:
            rule_set = rule_sets[rules] = frozenset(rules.split())
        visit_at = parse(visit_text)
        window_end = None if callback_end is None else parse(callback_end)
        warned_at = warned and parse(warned)
        alert = None
        if level == "self_care" and window_end is None:
            # Listed by its follow-up warning: due as the worklist has it.
            alert = wl.Alert("", warned_at, warned_at + deadlines.emergency)
        decided: tuple[Decided, ...] = ()
        if first is not None:
            decided = ((first, parse(first_at), first_arranged and parse(first_arranged)),)
            if later:
                decided += _decided(later)
        yield make(
            (
                kit,
                code,
                level,
                rule_set,
                booth,
                event,
                visit_at,
                deadline(level, visit_at, parse(received), window_end, alert, deadlines),
                level in ("urgent", "routine") or window_end is not None,
                reached and parse(reached),
                decided,
                back,
                leg,
                week2_at and Response(parse(week2_at), week2_back, week2_leg),
                warned_at,
            )
        )


def _decided(stored: str) -> tuple[Decided, ...]:
    parse = datetime.fromisoformat
    return tuple(
        (d, parse(at), None if arranged is None else parse(arranged))
        for d, at, arranged in json.loads(stored)
    )


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
    booths: set[str] = set()
    events: set[str] = set()
    found_refs = referrals(store, deadlines)
    with _no_gc():
        _break_down(found, found_refs, period, now, booths, events)
    found.weeks = dict(sorted(found.weeks.items()))
    found.booths = dict(sorted(found.booths.items()))
    found.booth_names, found.event_names = sorted(booths), sorted(events)
    return found


def _break_down(
    found: Breakdown,
    refs: list[Referral],
    period: Period,
    now: datetime,
    booths: set[str],
    events: set[str],
) -> None:
    for ref in refs:
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
