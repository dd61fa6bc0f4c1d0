"""`popup-kit server export --fhir DIR`: the shared referrals as FHIR R4 bulk-data NDJSON,
one file per resource type.

Only what the attendee agreed to share leaves: the latest active version of each visit
whose latest consent grants C2; nothing for a refused C2, a withdrawal or a voided visit.
The event log, the bookings and the follow-up responses are each read once per export
(one query per table), not once per referral.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, text

from sync.server.fhir import (
    RESOURCE_TYPES,
    BookedCall,
    FollowUpResponse,
    SharedReferral,
    resources,
)
from sync.server.worklist import Event, parse_time

Key = tuple[str, str]


def _time(value: str) -> datetime:
    moment = parse_time(value)
    if moment is None:  # pragma: no cover - the server writes every time itself
        raise ValueError(f"unreadable time {value!r}")
    return moment


def _events(conn: Connection) -> dict[Key, list[Event]]:
    out: dict[Key, list[Event]] = {}
    for kit, code, kind, at, recorded, user, data in conn.execute(
        text(
            "SELECT kit_id, referral_code, kind, at, recorded_at, user_name, data "
            "FROM referral_event ORDER BY id"
        )
    ):
        out.setdefault((str(kit), str(code)), []).append(
            Event(str(kind), _time(at), _time(recorded), str(user), json.loads(data))
        )
    return out


def _bookings(conn: Connection) -> dict[Key, list[BookedCall]]:
    out: dict[Key, list[BookedCall]] = {}
    for booking_id, kit, code, status, starts_at, minutes, created in conn.execute(
        text(
            "SELECT b.id, b.kit_id, b.referral_code, b.status, s.starts_at, s.minutes, "
            "b.created_at FROM call_booking b JOIN call_slot s ON s.id = b.slot_id "
            "WHERE b.status IN ('booked', 'cancelled') ORDER BY b.id"
        )
    ):
        out.setdefault((str(kit), str(code)), []).append(
            BookedCall(int(booking_id), str(status), str(starts_at), int(minutes), str(created))
        )
    return out


def _followups(conn: Connection) -> dict[Key, list[FollowUpResponse]]:
    out: dict[Key, list[FollowUpResponse]] = {}
    for kit, code, window, submitted, answers, warning in conn.execute(
        text(
            'SELECT kit_id, referral_code, "window", submitted_at, answers, warning '
            "FROM followup_response WHERE superseded_at IS NULL ORDER BY submitted_at, id"
        )
    ):
        out.setdefault((str(kit), str(code)), []).append(
            FollowUpResponse(str(window), str(submitted), json.loads(answers), bool(warning))
        )
    return out


def day_bounds(since: date | None, until: date | None) -> tuple[str | None, str | None]:
    """UTC text bounds for visits made from ``since`` to ``until`` inclusive."""

    def at(day: date) -> str:
        moment = datetime.combine(day, time(0), tzinfo=UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return (
        at(since) if since else None,
        at(until + timedelta(days=1)) if until else None,
    )


def shared_referrals(
    engine: Engine, *, since: date | None = None, until: date | None = None
) -> Iterator[SharedReferral]:
    low, high = day_bounds(since, until)
    with engine.connect() as conn:
        withdrawn = {
            (str(k), str(v))
            for k, v in conn.execute(text("SELECT kit_id, visit_id FROM withdrawal"))
        }
        consents: dict[tuple[str, str], dict[str, Any]] = {}
        for kit_id, visit_id, body in conn.execute(
            text(
                "SELECT kit_id, visit_id, body FROM record WHERE record_type = 'consent' "
                "AND scrubbed_at IS NULL ORDER BY created_at, received_at"
            )
        ):
            consents[(str(kit_id), str(visit_id))] = json.loads(body)  # the latest wins
        events, bookings, followups = _events(conn), _bookings(conn), _followups(conn)
        callbacks = {
            (str(k), str(c))
            for k, c in conn.execute(
                text(
                    "SELECT kit_id, referral_code FROM callback_request WHERE cancelled_at IS NULL"
                )
            )
        }
        latest: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        for kit_id, visit_id, version, body in conn.execute(
            text(
                "SELECT kit_id, visit_id, visit_version, body FROM record "
                "WHERE record_type = 'visit' AND scrubbed_at IS NULL ORDER BY visit_id"
            )
        ):
            key = (str(kit_id), str(visit_id))
            held = latest.get(key)
            if held is None or int(version or 0) > held[0]:
                latest[key] = (int(version or 0), json.loads(body))
    for key in sorted(latest, key=lambda k: (latest[k][1].get("visit_created_at", ""), k)):
        body = latest[key][1]
        consent = consents.get(key)
        created = str(body.get("visit_created_at") or body.get("created_at") or "")
        if (
            key in withdrawn
            or consent is None
            or body.get("status") != "active"
            or body.get("sharing") == "counts"
        ):
            continue
        items = consent.get("items")
        if not isinstance(items, dict) or items.get("c2") is not True:
            continue
        if (low and created < low) or (high and created >= high):
            continue
        code = str(body["referral_code"])
        of = (key[0], code)
        yield SharedReferral(
            code=code,
            kit_id=key[0],
            visit_id=key[1],
            visit_created_at=created,
            language=str(body.get("language") or "en"),
            answers=body.get("answers") or {},
            outcome=body.get("outcome") or {},
            consent={k: v is True for k, v in items.items()},
            consent_at=str(consent.get("at") or created),
            consent_text_version=str(consent.get("text_version") or ""),
            consent_text_hash=str(consent.get("text_hash") or ""),
            events=tuple(events.get(of, ())),
            bookings=tuple(bookings.get(of, ())),
            followups=tuple(followups.get(of, ())),
            callback_requested=of in callbacks,
        )


def export_fhir(
    engine: Engine,
    out_dir: Path,
    *,
    since: date | None = None,
    until: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write ``<ResourceType>.ndjson`` files in ``out_dir``; returns the count per type.
    Each file appears whole or not at all (written aside, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    counts = dict.fromkeys(RESOURCE_TYPES, 0)
    handles: dict[str, tuple[TextIO, Path]] = {}
    try:
        for kind in RESOURCE_TYPES:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{kind}.", dir=out_dir)
            handles[kind] = (os.fdopen(fd, "w", encoding="utf-8"), Path(tmp_name))
        for n, referral in enumerate(shared_referrals(engine, since=since, until=until), 1):
            for kind, made in resources(referral).items():
                fh = handles[kind][0]
                for resource in made:
                    fh.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")))
                    fh.write("\n")
                    counts[kind] += 1
            if progress is not None and n % 500 == 0:
                progress(n)
        for kind, (fh, tmp) in handles.items():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, out_dir / f"{kind}.ndjson")
    finally:
        for fh, tmp in handles.values():
            if not fh.closed:
                fh.close()
            tmp.unlink(missing_ok=True)
    return counts
