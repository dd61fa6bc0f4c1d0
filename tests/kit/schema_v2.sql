-- The kit's schema as popup-kit wrote it before the models became its one source:
-- schema_migration version 2 (visits, consent, drafts, tallies, audit, outbox and the
-- reconciliation index). Frozen: an adopted store must match the models exactly.

CREATE TABLE schema_migration (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);

-- version 1: visits, consent, drafts, outbox
CREATE TABLE visit (
    visit_id TEXT PRIMARY KEY,
    kit_id TEXT NOT NULL,
    referral_code TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    latest_version INTEGER NOT NULL
);
CREATE INDEX visit_created ON visit(created_at);
CREATE TABLE visit_version (
    record_id TEXT PRIMARY KEY,
    visit_id TEXT NOT NULL REFERENCES visit(visit_id),
    version INTEGER NOT NULL,
    supersedes TEXT,
    created_at TEXT NOT NULL,
    volunteer TEXT NOT NULL,
    language TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'void')),
    void_reason TEXT,
    note TEXT,
    answers TEXT NOT NULL,
    outcome TEXT NOT NULL,
    triage TEXT NOT NULL,
    forms_version TEXT NOT NULL,
    contact_name TEXT,
    contact_phone TEXT,
    purged_at TEXT,
    UNIQUE (visit_id, version)
);
CREATE TABLE consent_event (
    consent_id TEXT PRIMARY KEY,
    visit_id TEXT NOT NULL REFERENCES visit(visit_id),
    kind TEXT NOT NULL CHECK (kind IN ('initial', 'withdrawal')),
    items TEXT NOT NULL,
    text_version TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    language TEXT NOT NULL,
    method TEXT NOT NULL,
    volunteer TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX consent_visit ON consent_event(visit_id);
CREATE TABLE draft (
    draft_id TEXT PRIMARY KEY,
    volunteer TEXT NOT NULL,
    language TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE tally (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('ineligible', 'consent_refused')),
    volunteer TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX tally_created ON tally(created_at);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    visit_id TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_visit ON audit(visit_id);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    record_type TEXT NOT NULL,
    visit_id TEXT,
    payload TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'confirmed', 'set_aside')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    confirmed_at TEXT,
    receipt TEXT
);
CREATE INDEX outbox_state ON outbox(state, id);
CREATE INDEX outbox_visit ON outbox(visit_id);
INSERT INTO schema_migration (version, name, applied_at) VALUES (1, 'visits, consent, drafts, outbox', '2026-11-24T09:00:01.000000Z');

-- version 2: outbox index for the reconciliation
CREATE INDEX outbox_reconcile ON outbox(state, visit_id, sent_at, last_error);
INSERT INTO schema_migration (version, name, applied_at) VALUES (2, 'outbox index for the reconciliation', '2026-11-24T09:00:02.000000Z');
