"""The few facts the centre reads from a visit or consent body again and again.

They are worked out once, at ingest, and kept beside the record (``record.digest``), so
that the KPIs over a whole month read a line of JSON per record instead of every body.
A record stored before the digest existed, or whose digest is of an older ``VERSION``,
is read from its body instead.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

VERSION = 1


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def nrs(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        return None
    return value


def rule_ids(outcome: dict[str, Any]) -> frozenset[str]:
    listed = outcome.get("rules")
    if isinstance(listed, list):
        return frozenset(str(i) for i in listed)
    fired = outcome.get("fired")
    return (
        frozenset(str(f.get("id")) for f in fired if isinstance(f, dict))
        if isinstance(fired, list)
        else frozenset()
    )


def visit(body: dict[str, Any]) -> dict[str, Any]:
    """A visit body's level, booth, time, consent scope, rules and intake scores."""
    outcome = _dict(body.get("outcome"))
    answers = _dict(body.get("answers"))
    booth = _dict(body.get("booth"))
    name, event = booth.get("name"), booth.get("event")
    scope = _dict(body.get("consent"))
    at = next(
        (
            value
            for value in (body.get("visit_created_at"), body.get("created_at"))
            if parse_time(value) is not None
        ),
        None,
    )
    return {
        "v": VERSION,
        # A "counts" body (C2 refused at the booth) is no referral.
        "level": None if body.get("sharing") == "counts" else outcome.get("triage"),
        "void": body.get("status") == "void",
        "booth": name if isinstance(name, str) and name else None,
        "event": event if isinstance(event, str) else "",
        "at": at,
        "scope": {k: scope[k] is True for k in ("c2", "c3") if k in scope},
        "rules": sorted(rule_ids(outcome)),
        "back": nrs(answers.get("pain_nrs")),
        "leg": nrs(answers.get("leg_pain_nrs")),
    }


def consent(body: dict[str, Any]) -> dict[str, bool]:
    """The consent items C2 and C3 a consent record names."""
    items = body.get("items")
    if not isinstance(items, dict):
        return {}
    return {key: items[key] is True for key in ("c2", "c3") if key in items}


def digest(record_type: str, body: dict[str, Any]) -> str | None:
    """The stored digest of a record, or None for record types that need none."""
    if record_type == "visit":
        return json.dumps(visit(body), separators=(",", ":"), sort_keys=True)
    if record_type == "consent":
        return json.dumps({"v": VERSION, "items": consent(body)}, separators=(",", ":"))
    return None


def read(stored: str | None) -> dict[str, Any] | None:
    """A stored digest of the current version, else None (read the body instead)."""
    if not stored:
        return None
    found = json.loads(stored)
    return found if isinstance(found, dict) and found.get("v") == VERSION else None
