"""Follow-up check-in windows: which one a slip is in now, and when the next opens.

Day N after the booth visit is the 24 hours from ``visit_at + N days``, so a window of
days 11-17 is open from visit + 11 d up to (not including) visit + 18 d.

A response's ``answers`` (table ``followup_response``) use the screening reference's field
names: ``pain_nrs`` (back, 0-10), ``leg_pain_nrs`` (0-10, or null when there was no leg pain
at intake), ``sbi`` (``{sbi_leg_pain, sbi_numbness, sbi_weakness, sbi_sitting}`` 0-6, or
null when not asked at intake), ``global_change`` (one of ``GLOBAL_CHANGE``) and the four
``ces_*`` warning signs, each ``no`` or ``new_or_worsening``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from sync.server.store import ServerStore, iso
from sync.server.visit_facts import parse_time

GLOBAL_CHANGE = (
    "completely_recovered",
    "much_better",
    "slightly_better",
    "no_change",
    "slightly_worse",
    "much_worse",
    "worse_than_ever",
)
CES_FIELDS = (
    "ces_saddle_numbness",
    "ces_bladder_change",
    "ces_bowel_change",
    "ces_sexual_dysfunction",
)
# As the clinicians' pages name the warning signs.
CES_NAMES = {
    "ces_saddle_numbness": "saddle numbness",
    "ces_bladder_change": "bladder change",
    "ces_bowel_change": "bowel change",
    "ces_sexual_dysfunction": "sexual dysfunction",
}


@dataclass(frozen=True)
class Window:
    name: str
    first_day: int
    last_day: int

    def opens(self, visit_at: datetime) -> datetime:
        return visit_at + timedelta(days=self.first_day)

    def closes(self, visit_at: datetime) -> datetime:
        """The first moment after the window (exclusive end)."""
        return visit_at + timedelta(days=self.last_day + 1)

    def is_open(self, visit_at: datetime, now: datetime) -> bool:
        return self.opens(visit_at) <= now < self.closes(visit_at)


def week_label(name: str) -> str:
    """A window's name as the clinicians read it: 'w2' is 'week 2'."""
    return f"week {name[1:]}" if name[:1] == "w" and name[1:].isdigit() else name


def windows(config: Mapping[str, tuple[int, int]]) -> tuple[Window, ...]:
    """The configured windows in time order."""
    return tuple(
        sorted(
            (Window(name, first, last) for name, (first, last) in config.items()),
            key=lambda w: w.first_day,
        )
    )


def current(all_windows: tuple[Window, ...], visit_at: datetime, now: datetime) -> Window | None:
    """The window open at ``now``, if any."""
    return next((w for w in all_windows if w.is_open(visit_at, now)), None)


def next_window(
    all_windows: tuple[Window, ...], visit_at: datetime, now: datetime
) -> Window | None:
    """The first window that has not opened yet at ``now`` (None after the last)."""
    return next((w for w in all_windows if now < w.opens(visit_at)), None)


SBI_FIELDS = ("sbi_leg_pain", "sbi_numbness", "sbi_weakness", "sbi_sitting")
YES = "new_or_worsening"


@dataclass(frozen=True)
class Intake:
    """What the booth visit says that the check-in needs: when it was and what was asked."""

    visit_at: datetime
    leg_pain: bool
    sbi: bool


@dataclass(frozen=True)
class Stored:
    window: str
    submitted_at: datetime
    answers: dict[str, Any]
    warning: bool
    superseded_at: datetime | None


def intake(store: ServerStore, kit_id: str, code: str) -> Intake | None:
    """The latest version of ``kit_id``'s visit for ``code``, as the check-in reads it."""
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT body, created_at FROM record WHERE record_type = 'visit' "
                "AND referral_code = :c AND kit_id = :k AND scrubbed_at IS NULL "
                "ORDER BY visit_version DESC, created_at DESC LIMIT 1"
            ),
            {"c": code, "k": kit_id},
        ).first()
    if row is None:
        return None
    body = json.loads(row[0])
    body = body if isinstance(body, dict) else {}
    at = parse_time(body.get("visit_created_at")) or parse_time(body.get("created_at"))
    at = at or parse_time(row[1])
    if at is None:
        return None
    answers = body.get("answers")
    answers = answers if isinstance(answers, dict) else {}
    side = answers.get("leg_pain_side")
    leg = (isinstance(side, str) and side != "none") or answers.get("leg_pain_nrs") is not None
    return Intake(at, leg, isinstance(answers.get("sbi"), dict))


def _score(value: str | None, top: int) -> int | None:
    if value is None or not value.isdigit() or len(value) > 2:
        return None
    number = int(value)
    return number if 0 <= number <= top else None


def parse(form: Mapping[str, str], asked: Intake) -> tuple[dict[str, Any], list[str]]:
    """The answers of a submitted form, and the fields that are missing or wrong (in the
    form's order); the answers are complete only when that list is empty."""
    answers: dict[str, Any] = {}
    errors: list[str] = []
    answers["pain_nrs"] = _score(form.get("pain_nrs"), 10)
    if answers["pain_nrs"] is None:
        errors.append("pain_nrs")
    answers["leg_pain_nrs"] = None
    if asked.leg_pain:
        answers["leg_pain_nrs"] = _score(form.get("leg_pain_nrs"), 10)
        if answers["leg_pain_nrs"] is None:
            errors.append("leg_pain_nrs")
    answers["sbi"] = None
    if asked.sbi:
        sbi = {name: _score(form.get(name), 6) for name in SBI_FIELDS}
        errors.extend(name for name, value in sbi.items() if value is None)
        answers["sbi"] = sbi
    change = form.get("global_change")
    answers["global_change"] = change if change in GLOBAL_CHANGE else None
    if answers["global_change"] is None:
        errors.append("global_change")
    for name in CES_FIELDS:
        said = form.get(name)
        answers[name] = {"yes": YES, "no": "no"}.get(said or "")
        if answers[name] is None:
            errors.append(name)
    return answers, errors


def has_warning(answers: Mapping[str, Any]) -> bool:
    return any(answers.get(name) == YES for name in CES_FIELDS)


def submit(
    store: ServerStore, kit_id: str, code: str, window: str, answers: dict[str, Any]
) -> Stored:
    """Store the slip's response for ``window``: the current one, if any, is superseded in
    the same transaction, so there is always exactly one current row and the history stays."""
    now = store.clock()
    warning = has_warning(answers)
    with store.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # Two submissions at once would both find the same current row to supersede.
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"followup|{kit_id}|{code}"},
            )
        conn.execute(
            text(
                "UPDATE followup_response SET superseded_at = :now WHERE kit_id = :k "
                'AND referral_code = :c AND "window" = :w AND superseded_at IS NULL'
            ),
            {"now": iso(now), "k": kit_id, "c": code, "w": window},
        )
        conn.execute(
            text(
                'INSERT INTO followup_response (kit_id, referral_code, "window", submitted_at, '
                "answers, warning) VALUES (:k, :c, :w, :at, :a, :x)"
            ),
            {
                "k": kit_id,
                "c": code,
                "w": window,
                "at": iso(now),
                "a": json.dumps(answers, sort_keys=True),
                "x": int(warning),
            },
        )
    return Stored(window, now, answers, warning, None)


def history(store: ServerStore, kit_id: str, code: str) -> list[Stored]:
    """Every response of the slip, superseded ones included, in the order given."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                'SELECT "window", submitted_at, answers, warning, superseded_at '
                "FROM followup_response WHERE kit_id = :k AND referral_code = :c ORDER BY id"
            ),
            {"k": kit_id, "c": code},
        ).all()
    out = []
    for window, at, answers, warning, superseded in rows:
        data = json.loads(answers)
        out.append(
            Stored(
                str(window),
                _utc(at),
                data if isinstance(data, dict) else {},
                bool(warning),
                parse_time(superseded),
            )
        )
    return out


def latest(store: ServerStore, kit_id: str, code: str, window: str) -> Stored | None:
    """The current response for ``window``, if any."""
    found = [
        r for r in history(store, kit_id, code) if r.window == window and r.superseded_at is None
    ]
    return found[-1] if found else None


def warnings(
    store: ServerStore, kit_id: str | None = None, code: str | None = None
) -> dict[tuple[str, str], tuple[str, datetime]]:
    """Each referral's latest current response that answered a warning sign yes: its
    window and when it was given."""
    sql = (
        'SELECT kit_id, referral_code, "window", submitted_at FROM followup_response '
        "WHERE warning = 1 AND superseded_at IS NULL"
    )
    params: dict[str, Any] = {}
    if kit_id is not None:
        sql += " AND kit_id = :k AND referral_code = :c"
        params = {"k": kit_id, "c": code}
    out: dict[tuple[str, str], tuple[str, datetime]] = {}
    with store.engine.connect() as conn:
        for kit, ref, window, at in conn.execute(text(sql + " ORDER BY submitted_at, id"), params):
            out[(kit, ref)] = (str(window), _utc(at))
    return out


def _utc(value: str) -> datetime:
    moment = parse_time(value)
    if moment is None:  # pragma: no cover - the server writes every time itself
        raise ValueError(f"unreadable time {value!r}")
    return moment
