"""Call slots, bookings and call-back requests: the attendee's side of tele-triage.

A slot's place is taken by one UPDATE that raises ``booked`` only while it is below
``capacity`` (and a CHECK refuses any row above it), so concurrent attendees on SQLite or
PostgreSQL can never overbook. A chosen slot is held for a few minutes while the attendee
confirms; expired holds give their place back before any new one is taken.
Everything is keyed by the slip (kit and referral code): nothing here is found by anything
a slip holder does not already hold.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

Clock = Callable[[], datetime]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Slot:
    slot_id: int
    series: str
    starts_at: datetime
    minutes: int
    capacity: int
    booked: int

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.minutes)

    @property
    def free(self) -> int:
        return self.capacity - self.booked


@dataclass(frozen=True)
class Booking:
    ref: str
    slot: Slot
    status: str
    held_until: datetime | None
    changing: bool


@dataclass(frozen=True)
class Callback:
    window_start: datetime
    window_end: datetime
    deadline: datetime
    created_at: datetime


@dataclass(frozen=True)
class Arranged:
    """A triage decision recorded after the call: its kind and, for an escalation, when it
    was arranged."""

    decision: str
    escalation_at: datetime | None


HoldResult = Literal["held", "taken"]


def weekly_starts(start: datetime, weeks: int, zone: ZoneInfo) -> list[datetime]:
    """``start`` and the same local time in ``zone`` on each of the next ``weeks`` - 1 weeks:
    a weekly slot keeps its wall-clock time across daylight-saving changes."""
    local = start.astimezone(zone)
    out = []
    for week in range(weeks):
        # Aware arithmetic in one zone is wall-clock arithmetic; the offset is recomputed.
        moment = (local.replace(tzinfo=None) + timedelta(weeks=week)).replace(tzinfo=zone)
        out.append(moment.astimezone(UTC))
    return out


class Bookings:
    def __init__(self, engine: Engine, *, clock: Clock, hold_minutes: float = 10.0) -> None:
        self.engine = engine
        self.clock = clock
        self.hold_for = timedelta(minutes=hold_minutes)
        # SQLite takes one writer at a time: queueing here is cheaper than its busy handler.
        self._writers: AbstractContextManager[Any] = (
            nullcontext() if engine.dialect.name == "postgresql" else threading.Lock()
        )

    def _write(self) -> Connection:
        return self.engine.connect().execution_options(sqlite_immediate=True)

    # --- slots (published by the centre) ------------------------------------------------

    def add_slots(
        self, start: datetime, minutes: int, capacity: int, *, weeks: int, zone: ZoneInfo
    ) -> list[Slot]:
        if start.tzinfo is None:
            raise ValueError("a slot's start needs its offset or Z (UTC)")
        if minutes <= 0 or capacity <= 0 or weeks <= 0:
            raise ValueError("minutes, capacity and weeks must be positive")
        series = uuid.uuid4().hex[:12]
        now = _iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            for moment in weekly_starts(start, weeks, zone):
                conn.execute(
                    text(
                        "INSERT INTO call_slot (series, starts_at, minutes, capacity, "
                        "created_at) VALUES (:s, :t, :m, :c, :n)"
                    ),
                    {"s": series, "t": _iso(moment), "m": minutes, "c": capacity, "n": now},
                )
        return [s for s in self.slots() if s.series == series]

    def slots(self, *, since: datetime | None = None) -> list[Slot]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, series, starts_at, minutes, capacity, booked FROM call_slot "
                    "WHERE starts_at >= :t ORDER BY starts_at, id"
                ),
                {"t": _iso(since) if since else ""},
            ).all()
        return [_slot(row) for row in rows]

    def free_slots(self, latest: datetime) -> list[Slot]:
        """Slots with a free place that start after now and no later than ``latest``;
        a place whose hold has run out counts as free (a read: the next hold releases it)."""
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, series, starts_at, minutes, capacity, booked FROM call_slot "
                    "WHERE starts_at > :n AND starts_at <= :l AND booked - (SELECT COUNT(*) "
                    "FROM call_booking AS b WHERE b.slot_id = call_slot.id "
                    "AND b.status = 'held' AND b.held_until <= :n) < capacity "
                    "ORDER BY starts_at, id LIMIT 40"
                ),
                {"n": _iso(now), "l": _iso(latest)},
            ).all()
        return [_slot(row) for row in rows]

    # --- the attendee's booking ---------------------------------------------------------

    def release_expired(self) -> int:
        """Give back the places of holds past their time; returns how many."""
        now = _iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            return _release_expired(conn, now)

    def hold(self, kit_id: str, code: str, slot_id: int, latest: datetime) -> HoldResult:
        """Hold a place in ``slot_id`` for this slip, if the slot starts after now and no
        later than ``latest`` and has a free place. A hold this slip had is given back; a
        booking it has stays until the new time is confirmed."""
        moment = self.clock()
        now = _iso(moment)
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            _release_expired(conn, now)
            _give_back(conn, kit_id, code, "held", "expired", now)
            taken = conn.execute(
                text(
                    "UPDATE call_slot SET booked = booked + 1 WHERE id = :id "
                    "AND booked < capacity AND starts_at > :n AND starts_at <= :l"
                ),
                {"id": slot_id, "n": now, "l": _iso(latest)},
            )
            if taken.rowcount != 1:
                return "taken"
            current = conn.execute(
                text(
                    "SELECT id FROM call_booking WHERE kit_id = :k AND referral_code = :c "
                    "AND status = 'booked'"
                ),
                {"k": kit_id, "c": code},
            ).scalar()
            conn.execute(
                text(
                    "INSERT INTO call_booking (ref, kit_id, referral_code, slot_id, status, "
                    "held_until, replaces, created_at, updated_at) "
                    "VALUES (:r, :k, :c, :s, 'held', :h, :p, :n, :n)"
                ),
                {
                    "r": secrets.token_hex(12),
                    "k": kit_id,
                    "c": code,
                    "s": slot_id,
                    "h": _iso(moment + self.hold_for),
                    "p": current,
                    "n": now,
                },
            )
        return "held"

    def confirm(self, kit_id: str, code: str, phone: str | None) -> bool:
        """Turn this slip's live hold into its booking (giving up the one it replaces);
        False when there is no hold or it has expired."""
        now = _iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            _release_expired(conn, now)
            row = conn.execute(
                text(
                    "SELECT id, replaces FROM call_booking WHERE kit_id = :k "
                    "AND referral_code = :c AND status = 'held'"
                ),
                {"k": kit_id, "c": code},
            ).first()
            if row is None:
                return False
            if row[1] is not None:
                _give_back(conn, kit_id, code, "booked", "cancelled", now)
            done = conn.execute(
                text(
                    "UPDATE call_booking SET status = 'booked', held_until = NULL, "
                    "phone = :p, updated_at = :n WHERE id = :id AND status = 'held'"
                ),
                {"p": phone, "n": now, "id": row[0]},
            )
            if done.rowcount != 1:
                return True  # confirmed by the same slip's other request meanwhile
            # A booked call replaces a call-back request of the same slip.
            _close_callback(conn, kit_id, code, now)
        return True

    def cancel(self, kit_id: str, code: str) -> bool:
        """Cancel this slip's booking and any hold; True when there was one."""
        now = _iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            held = _give_back(conn, kit_id, code, "held", "cancelled", now)
            booked = _give_back(conn, kit_id, code, "booked", "cancelled", now)
        return held + booked > 0

    def _live(self, kit_id: str, code: str) -> dict[str, Booking]:
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT b.ref, b.status, b.held_until, b.replaces, s.id, s.series, "
                    "s.starts_at, s.minutes, s.capacity, s.booked FROM call_booking AS b "
                    "JOIN call_slot AS s ON s.id = b.slot_id WHERE b.kit_id = :k "
                    "AND b.referral_code = :c AND b.status IN ('held', 'booked')"
                ),
                {"k": kit_id, "c": code},
            ).all()
        found: dict[str, Booking] = {}
        for row in rows:
            held_until = _parse(row[2]) if row[2] else None
            if row[1] == "held" and held_until is not None and held_until <= now:
                continue
            found[row[1]] = Booking(
                ref=row[0],
                slot=_slot(row[4:]),
                status=row[1],
                held_until=held_until,
                changing=row[3] is not None,
            )
        return found

    def held(self, kit_id: str, code: str) -> Booking | None:
        """This slip's live hold, if any."""
        return self._live(kit_id, code).get("held")

    def booked(self, kit_id: str, code: str) -> Booking | None:
        """This slip's confirmed booking, if any."""
        return self._live(kit_id, code).get("booked")

    # --- call-back requests -------------------------------------------------------------

    def request_callback(
        self,
        kit_id: str,
        code: str,
        window: tuple[datetime, datetime],
        deadline: datetime,
        phone: str | None,
    ) -> None:
        """Open this slip's call-back request (replacing an open one)."""
        now = _iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            _close_callback(conn, kit_id, code, now)
            conn.execute(
                text(
                    "INSERT INTO callback_request (kit_id, referral_code, window_start, "
                    "window_end, deadline, phone, created_at) "
                    "VALUES (:k, :c, :ws, :we, :d, :p, :n)"
                ),
                {
                    "k": kit_id,
                    "c": code,
                    "ws": _iso(window[0]),
                    "we": _iso(window[1]),
                    "d": _iso(deadline),
                    "p": phone,
                    "n": now,
                },
            )

    def cancel_callback(self, kit_id: str, code: str) -> bool:
        now = _iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            _one_at_a_time(conn)
            return _close_callback(conn, kit_id, code, now) > 0

    def callback(self, kit_id: str, code: str) -> Callback | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT window_start, window_end, deadline, created_at FROM "
                    "callback_request WHERE kit_id = :k AND referral_code = :c "
                    "AND cancelled_at IS NULL"
                ),
                {"k": kit_id, "c": code},
            ).first()
        if row is None:
            return None
        return Callback(*(_parse(v) for v in row))

    def open_callbacks(self) -> list[tuple[str, str, Callback]]:
        """Every open call-back request as (kit, code, request), oldest first: the worklist
        reads each one's level from its visit, which may arrive after the request."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT kit_id, referral_code, window_start, window_end, deadline, "
                    "created_at FROM callback_request WHERE cancelled_at IS NULL "
                    "ORDER BY created_at, id"
                )
            ).all()
        return [(r[0], r[1], Callback(*(_parse(v) for v in r[2:]))) for r in rows]

    def arranged(self, kit_id: str, code: str) -> Arranged | None:
        """What the call arranged, for the slip's page: the latest triage decision the
        clinicians recorded for this slip (never their note), or None before one."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT data FROM referral_event WHERE kit_id = :k AND referral_code = :c "
                    "AND kind = 'decision' ORDER BY id DESC LIMIT 1"
                ),
                {"k": kit_id, "c": code},
            ).first()
        if row is None:
            return None
        data = json.loads(row[0])
        decision = data.get("decision")
        if not isinstance(decision, str):
            return None
        at = data.get("escalation_arranged_at")
        when = None
        if isinstance(at, str):
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
        return Arranged(decision, when)


# The worklist's tiers: a request is placed by its visit's level once that arrives.
TIERS = {"emergency": 0, "urgent": 1, "routine": 2, "self_care": 3}


def by_priority(
    requests: list[tuple[str, str, Callback]], level_of: Callable[[str, str], str | None]
) -> list[tuple[str | None, str, str, Callback]]:
    """Call-back requests as (level, kit, code, request) in calling order: by the level of
    their visit (not arrived yet: last), then by deadline, then by age."""
    placed = [(level_of(kit, code), kit, code, cb) for kit, code, cb in requests]
    return sorted(placed, key=lambda r: (TIERS.get(r[0] or "", 9), r[3].deadline, r[3].created_at))


def forget(conn: Connection, kit_id: str, code: str, now: str) -> None:
    """A withdrawal: cancel the slip's holds, booking and call-back request, and erase the
    phone numbers given for them. Runs in the withdrawal's own transaction."""
    _one_at_a_time(conn)
    _give_back(conn, kit_id, code, "held", "cancelled", now)
    _give_back(conn, kit_id, code, "booked", "cancelled", now)
    _close_callback(conn, kit_id, code, now)
    for table in ("call_booking", "callback_request"):
        conn.execute(
            text(f"UPDATE {table} SET phone = NULL WHERE kit_id = :k AND referral_code = :c"),
            {"k": kit_id, "c": code},
        )


# PostgreSQL: booking writes take this lock, one transaction at a time. A hold, a change, a
# release of run-out holds and a withdrawal each touch several slot and booking rows in an
# order of their own; queued, they cannot deadlock. (SQLite has one writer anyway.) The
# capacity guarantee does not rest on it: that is the UPDATE's condition and the CHECK.
_BOOKING_LOCK = 84700006


def _one_at_a_time(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _BOOKING_LOCK})


def _slot(row: Any) -> Slot:
    return Slot(
        slot_id=int(row[0]),
        series=str(row[1]),
        starts_at=_parse(row[2]),
        minutes=int(row[3]),
        capacity=int(row[4]),
        booked=int(row[5]),
    )


def _release_expired(conn: Connection, now: str) -> int:
    # Each expired hold is claimed by its own UPDATE: two workers releasing at once
    # cannot both give back the same place (the second finds the row no longer held).
    slots = conn.execute(
        text(
            "UPDATE call_booking SET status = 'expired', updated_at = :n "
            "WHERE status = 'held' AND held_until <= :n RETURNING slot_id"
        ),
        {"n": now},
    ).all()
    for (slot_id,) in slots:
        conn.execute(
            text("UPDATE call_slot SET booked = booked - 1 WHERE id = :id"), {"id": slot_id}
        )
    return len(slots)


def _give_back(conn: Connection, kit_id: str, code: str, status: str, to: str, now: str) -> int:
    slots = conn.execute(
        text(
            "UPDATE call_booking SET status = :to, held_until = NULL, updated_at = :n "
            "WHERE kit_id = :k AND referral_code = :c AND status = :st RETURNING slot_id"
        ),
        {"to": to, "n": now, "k": kit_id, "c": code, "st": status},
    ).all()
    for (slot_id,) in slots:
        conn.execute(
            text("UPDATE call_slot SET booked = booked - 1 WHERE id = :id"), {"id": slot_id}
        )
    return len(slots)


def _close_callback(conn: Connection, kit_id: str, code: str, now: str) -> int:
    done = conn.execute(
        text(
            "UPDATE callback_request SET cancelled_at = :n WHERE kit_id = :k "
            "AND referral_code = :c AND cancelled_at IS NULL"
        ),
        {"n": now, "k": kit_id, "c": code},
    )
    return int(done.rowcount)
