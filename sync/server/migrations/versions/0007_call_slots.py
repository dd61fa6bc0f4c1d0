"""Call slots, the attendee's bookings and call-back requests.

The slot's ``booked`` counter is raised only by ``booked < capacity`` in the same UPDATE,
and the CHECK makes an overbooked row impossible whatever the statement. One held and one
booked call at most per slip (kit and code).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    # Times are ISO 8601 UTC text, as everywhere in this schema: they sort as they compare.
    op.execute(
        f"""CREATE TABLE call_slot (
            id {serial},
            series TEXT NOT NULL,
            starts_at TEXT NOT NULL,
            minutes INTEGER NOT NULL CHECK (minutes > 0),
            capacity INTEGER NOT NULL CHECK (capacity > 0),
            booked INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            CHECK (booked >= 0 AND booked <= capacity)
        )"""
    )
    op.execute("CREATE INDEX call_slot_start ON call_slot (starts_at)")
    # status: held (until held_until), booked, cancelled, expired. ``replaces``: the booking
    # a change gives up once the new time is confirmed. ``phone``: only when the booth
    # recorded none; scrubbed on withdrawal.
    op.execute(
        f"""CREATE TABLE call_booking (
            id {serial},
            ref TEXT NOT NULL UNIQUE,
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            slot_id INTEGER NOT NULL REFERENCES call_slot (id),
            status TEXT NOT NULL,
            held_until TEXT,
            replaces INTEGER,
            phone TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    op.execute(
        "CREATE UNIQUE INDEX call_booking_one_held ON call_booking (kit_id, referral_code) "
        "WHERE status = 'held'"
    )
    op.execute(
        "CREATE UNIQUE INDEX call_booking_one_booked ON call_booking (kit_id, referral_code) "
        "WHERE status = 'booked'"
    )
    op.execute("CREATE INDEX call_booking_holds ON call_booking (status, held_until)")
    # A call-back request; ``level`` is read from the visit when it arrives (NULL before).
    op.execute(
        f"""CREATE TABLE callback_request (
            id {serial},
            kit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            window_start TEXT NOT NULL,
            window_end TEXT NOT NULL,
            deadline TEXT NOT NULL,
            phone TEXT,
            created_at TEXT NOT NULL,
            cancelled_at TEXT
        )"""
    )
    op.execute(
        "CREATE UNIQUE INDEX callback_one_open ON callback_request (kit_id, referral_code) "
        "WHERE cancelled_at IS NULL"
    )
