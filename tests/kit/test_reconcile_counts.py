"""The reconciliation counted in SQL agrees, field by field, with a plain walk over every
outbox row, on a store whose records are in every state."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text

from popup_kit.services import VisitService, local_day_bounds
from popup_kit.store.db import iso
from popup_kit.syncing import Reconciliation, reconcile
from tests.kit.conftest import visit_input, with_contact


def walk(service: VisitService, bounds: tuple[datetime, datetime] | None) -> dict[str, Any]:
    """The reference: every row read back and sorted out one at a time, in outbox order."""
    where, params = "", {}
    if bounds is not None:
        where = "WHERE v.created_at >= :s AND v.created_at < :u"
        params = {"s": iso(bounds[0]), "u": iso(bounds[1])}
    with service.store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.record_id, o.record_type, o.state, o.sent_at, o.last_error, "
                f"v.referral_code FROM outbox o JOIN visit v ON v.visit_id = o.visit_id {where} "
                "ORDER BY o.id"
            ),
            params,
        ).all()
    out: dict[str, Any] = {
        "records": 0,
        "sent": 0,
        "confirmed": 0,
        "conflicts": [],
        "set_aside": [],
        "only_here": 0,
        "only_here_codes": [],
        "last_error": None,
    }
    for record_id, record_type, state, sent_at, last_error, code in rows:
        out["records"] += 1
        if sent_at is not None or state == "confirmed":
            out["sent"] += 1
        if state == "confirmed":
            out["confirmed"] += 1
        elif state == "set_aside":
            entry = {"record_id": record_id, "type": record_type, "code": code}
            entry["reason"] = last_error or ""
            kind = "conflicts" if (last_error or "").startswith("conflict") else "set_aside"
            out[kind].append(entry)
        else:
            out["only_here"] += 1
            if code not in out["only_here_codes"]:
                out["only_here_codes"].append(code)
            out["last_error"] = last_error or out["last_error"]
    return out


FIELDS = ("records", "sent", "confirmed", "conflicts", "set_aside", "only_here")
FIELDS += ("only_here_codes", "last_error")


def fields(report: Reconciliation) -> dict[str, Any]:
    return {key: getattr(report, key) for key in FIELDS}


def test_sql_counts_match_a_row_by_row_walk(service: VisitService) -> None:
    rng = random.Random(7)
    for i in range(60):
        service.record_visit(with_contact() if i % 3 else visit_input())
    states = ["pending", "sent", "confirmed", "set_aside"]
    errors = [None, "", "server unreachable", "conflict: another body", "rejected: bad body"]
    with service.store.write_engine.begin() as conn:
        ids = list(conn.execute(text("SELECT id, visit_id FROM outbox ORDER BY id")))
        for row_id, _visit in ids:
            state = rng.choice(states)
            conn.execute(
                text(
                    "UPDATE outbox SET state = :st, last_error = :e, "
                    "sent_at = CASE WHEN :sent THEN created_at END WHERE id = :id"
                ),
                {"st": state, "e": rng.choice(errors), "sent": rng.random() < 0.5, "id": row_id},
            )
        # a third of the visits on the day before, so a day's bounds leave some out
        for _row_id, visit_id in ids[::3]:
            conn.execute(
                text(
                    "UPDATE visit SET created_at = strftime('%Y-%m-%dT%H:%M:%f000Z', "
                    "created_at, '-1 day') WHERE visit_id = :v"
                ),
                {"v": visit_id},
            )
    today: date = service.today()
    for day, bounds in ((None, None), (today, local_day_bounds(today))):
        report = reconcile(service.config, service.store, day, bounds=bounds)
        expected = walk(service, bounds)
        assert fields(report) == expected
    assert expected["only_here"] and expected["set_aside"] and expected["conflicts"]
    yesterday = today - timedelta(days=1)
    older = reconcile(service.config, service.store, yesterday, bounds=local_day_bounds(yesterday))
    assert 0 < older.records < reconcile(service.config, service.store, None, bounds=None).records
