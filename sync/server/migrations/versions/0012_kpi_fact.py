"""What the KPIs read of each shared referral, kept one row a visit (``kpi_fact``).

The rows are derived (``sync.server.kpis``): worked out from the records, the event log,
the call-back requests, the follow-up answers and the withdrawals. Triggers on those
tables, whatever statement changes them, drop the row of the visit or slip concerned at
once (so a withdrawal or a scrub leaves nothing behind in it) and note it in
``kpi_stale``; the next KPI reading works those out again before it reads.

Every visit already held is noted here, so the first reading works out them all.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# (table, what keys it: a visit or a slip, the events that change it)
_WATCHED = (
    ("record", "visit", ("INSERT", "UPDATE")),
    ("withdrawal", "visit", ("INSERT",)),
    ("referral_event", "code", ("INSERT", "UPDATE")),
    ("callback_request", "code", ("INSERT", "UPDATE")),
    ("followup_response", "code", ("INSERT", "UPDATE", "DELETE")),
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    else:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    op.execute(
        """CREATE TABLE kpi_fact (
            kit_id TEXT NOT NULL,
            visit_id TEXT NOT NULL,
            referral_code TEXT NOT NULL,
            level TEXT NOT NULL,
            rules TEXT NOT NULL,
            booth TEXT NOT NULL,
            event TEXT NOT NULL,
            visit_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            callback_end TEXT,
            reached_at TEXT,
            first_decision TEXT,
            first_decision_at TEXT,
            first_arranged_at TEXT,
            later_decisions TEXT NOT NULL,
            intake_back INTEGER,
            intake_leg INTEGER,
            week2_at TEXT,
            week2_back INTEGER,
            week2_leg INTEGER,
            warned_at TEXT,
            PRIMARY KEY (kit_id, visit_id)
        )"""
    )
    op.execute("CREATE INDEX kpi_fact_code ON kpi_fact (kit_id, referral_code)")
    # Working out a few visits again reads their records by kit and visit.
    op.execute("CREATE INDEX record_kit_visit ON record (kit_id, visit_id)")
    op.execute(
        f"""CREATE TABLE kpi_stale (
            id {serial},
            kit_id TEXT NOT NULL,
            visit_id TEXT,
            referral_code TEXT
        )"""
    )
    if postgres:
        _postgres_triggers()
    else:
        _sqlite_triggers()
    op.execute(
        "INSERT INTO kpi_stale (kit_id, visit_id) SELECT DISTINCT kit_id, visit_id FROM record "
        "WHERE visit_id IS NOT NULL"
    )


def _sqlite_triggers() -> None:
    for table, key, events in _WATCHED:
        column = "visit_id" if key == "visit" else "referral_code"
        for event in events:
            row = "OLD" if event == "DELETE" else "NEW"
            when = f"WHEN {row}.visit_id IS NOT NULL" if key == "visit" else ""
            body = (
                f"DELETE FROM kpi_fact WHERE kit_id = {row}.kit_id "
                f"AND {column} = {row}.{column}; "
                f"INSERT INTO kpi_stale (kit_id, {column}) VALUES ({row}.kit_id, {row}.{column});"
            )
            op.execute(
                f"CREATE TRIGGER kpi_{table}_{event.lower()} AFTER {event} ON {table} "
                f"{when} BEGIN {body} END"
            )


def _postgres_triggers() -> None:
    op.execute(
        """CREATE FUNCTION kpi_visit_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.visit_id IS NOT NULL THEN
                DELETE FROM kpi_fact WHERE kit_id = NEW.kit_id AND visit_id = NEW.visit_id;
                INSERT INTO kpi_stale (kit_id, visit_id) VALUES (NEW.kit_id, NEW.visit_id);
            END IF;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE FUNCTION kpi_code_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            kit TEXT;
            code TEXT;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                kit := OLD.kit_id; code := OLD.referral_code;
            ELSE
                kit := NEW.kit_id; code := NEW.referral_code;
            END IF;
            DELETE FROM kpi_fact WHERE kit_id = kit AND referral_code = code;
            INSERT INTO kpi_stale (kit_id, referral_code) VALUES (kit, code);
            RETURN NULL;
        END $$"""
    )
    for table, key, events in _WATCHED:
        function = "kpi_visit_changed" if key == "visit" else "kpi_code_changed"
        op.execute(
            f"CREATE TRIGGER kpi_{table}_changed AFTER {' OR '.join(events)} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
