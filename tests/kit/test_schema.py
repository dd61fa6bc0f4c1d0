"""The kit's schema from one source: the models. A new store made from them and a store
from the field (numbered schema 2, built here from the DDL that release ran, frozen in
``schema_v2.sql``) both match the models with no difference, have the same tables,
indexes and constraints, and the field store keeps every row."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.store import Store, StoreError
from popup_kit.store.db import make_engine, migrate
from popup_kit.store.migrations import BASELINE, HEAD, MIGRATIONS_DIR
from popup_kit.store.tables import kit_metadata
from sync.sqlite import connect_raw, is_plain
from tests.kit.conftest import StepClock, visit_input, with_contact
from tests.kit.schema_support import KIT_TABLE_NAMES, V2_DDL, later_release, v2_store

ROOT = Path(__file__).resolve().parents[2]
# kept in a store adopted from the field: its history, and what keeps older releases out
LEGACY_LOG = "schema_migration"


def differences(engine: Engine) -> list[Any]:
    """Alembic's comparison of the file against the models: types, nullability, server
    defaults, indexes, unique constraints, foreign keys, tables."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and name == LEGACY_LOG)
                ),
            },
        )
        return list(compare_metadata(context, kit_metadata()))


def structure(engine: Engine) -> dict[str, Any]:
    """Everything SQLite knows of each kit table, as its own PRAGMAs report it."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]

        names = {
            r[0]
            for r in rows("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] not in ("alembic_version", LEGACY_LOG)
        }
        out["tables"] = sorted(names)
        for name in sorted(names - {"sqlite_sequence"}):
            sql = rows(f"SELECT sql FROM sqlite_master WHERE name = '{name}'")[0][0]
            indexes = {}
            for _seq, index, unique, origin, partial in rows(f"PRAGMA index_list({name})"):
                columns = [r[2] for r in rows(f"PRAGMA index_xinfo({index})") if r[5]]
                # SQLite names unique constraints' indexes itself: keep what they cover
                key = index if origin == "c" else f"{origin}:{','.join(columns)}"
                indexes[key] = (unique, origin, partial, columns)
            out[name] = {
                "columns": rows(f"PRAGMA table_info({name})"),
                "indexes": indexes,
                "foreign_keys": rows(f"PRAGMA foreign_key_list({name})"),
                "autoincrement": "AUTOINCREMENT" in sql.upper(),
                "checks": sql.upper().count("CHECK"),
            }
    return out


def table_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted(
                (tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {name}").all()), key=repr
            )
            for name in KIT_TABLE_NAMES
        }


def filled_plain_store(config: KitConfig, path: Path) -> None:
    """Rows of every kind, written by the visit service: visits with and without a
    contact, a correction, a void, a withdrawal, a tally, a draft, outbox rows in every
    state."""
    store = Store(path, encrypted=False)
    service = VisitService(config, clock=StepClock(), store=store)
    first = service.record_visit(with_contact())
    second = service.record_visit(visit_input())
    third = service.record_visit(with_contact())
    service.correct_visit(first.visit_id, first.answers, "CD", first.contact)
    service.void_visit(second.visit_id, "entered twice", "CD")
    service.withdraw_consent(third.visit_id, "CD")
    service.record_tally("ineligible", "AB")
    service.save_draft("d1", "AB", "es", {"note": "half way"})
    with store.write_engine.begin() as conn:
        ids = list(conn.execute(text("SELECT id FROM outbox ORDER BY id")).scalars())
        conn.execute(
            text(
                "UPDATE outbox SET state = 'confirmed', sent_at = 't1', confirmed_at = 't2', "
                "receipt = '{}', attempts = 1 WHERE id = :i"
            ),
            {"i": ids[0]},
        )
        conn.execute(
            text("UPDATE outbox SET state = 'sent', sent_at = 't3' WHERE id = :i"), {"i": ids[1]}
        )
        conn.execute(
            text("UPDATE outbox SET state = 'set_aside', last_error = 'rejected' WHERE id = :i"),
            {"i": ids[2]},
        )
    service.close()


def test_a_new_store_is_the_models_with_no_difference(tmp_path: Path) -> None:
    store = Store(tmp_path / "kit.sqlite3")
    try:
        assert differences(store.engine) == []
        shape = structure(store.engine)
        assert shape["tables"] == sorted([*KIT_TABLE_NAMES, "sqlite_sequence"])
        # the indexes the queries rely on, by name, on their columns
        assert shape["outbox"]["indexes"]["outbox_reconcile"][3] == [
            "state",
            "visit_id",
            "sent_at",
            "last_error",
        ]
        assert shape["outbox"]["indexes"]["outbox_state"][3] == ["state", "id"]
        assert shape["visit"]["indexes"]["visit_created"][3] == ["created_at"]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(HEAD,)]
            assert not conn.execute(
                text(f"SELECT 1 FROM sqlite_master WHERE name = '{LEGACY_LOG}'")
            ).all()
    finally:
        store.close()


def test_a_store_from_the_field_is_adopted_as_it_is(config: KitConfig, tmp_path: Path) -> None:
    """Schema 2, plain (as the field's stores were before encryption): encrypted in place,
    stamped at the baseline, every row the same, and then the same schema as a new store."""
    source = tmp_path / "source.sqlite3"
    filled_plain_store(config, source)
    v2_store(config.db_path, rows_from=source)
    before = table_rows(make_engine(config.db_path))
    assert sum(len(r) for r in before.values()) > 20 and all(before.values())

    adopted = Store(config.db_path)
    fresh = Store(tmp_path / "fresh" / "kit.sqlite3")
    try:
        assert adopted.encrypted_plain and not is_plain(config.db_path)
        assert differences(adopted.engine) == []
        assert structure(adopted.engine) == structure(fresh.engine)
        assert table_rows(adopted.engine) == before
        with adopted.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                (BASELINE,)
            ]
            # a popup-kit from before Alembic reads MAX(version) here: 3 is newer than it knows
            versions = conn.execute(text(f"SELECT version FROM {LEGACY_LOG} ORDER BY 1"))
            assert list(versions.scalars()) == [1, 2, 3]
        # the booth reads and writes it as any store
        service = VisitService(config, store=adopted)
        old = {v.code for v in service.list_visits()}
        assert len(old) == 3
        service.record_visit(visit_input())
        assert len(service.list_visits()) == 4
    finally:
        adopted.close()
        fresh.close()
    # opened again: already at its revision, nothing changes
    again = Store(config.db_path)
    try:
        with again.engine.connect() as conn:
            assert conn.execute(text(f"SELECT COUNT(*) FROM {LEGACY_LOG}")).scalar() == 3
    finally:
        again.close()


def test_the_comparison_shows_a_schema_that_strays(tmp_path: Path) -> None:
    """The comparison can fail: a file whose schema strays from the models (an index
    missing, a column without its default) shows the differences."""
    path = tmp_path / "kit.sqlite3"
    ddl = V2_DDL.read_text()
    ddl = ddl.replace("CREATE INDEX outbox_reconcile", "-- ").replace(
        "detail TEXT NOT NULL DEFAULT ''", "detail TEXT NOT NULL"
    )
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl)
    engine = make_engine(path)
    try:
        found = differences(engine)
    finally:
        engine.dispose()
    kinds = {
        (d[0][0], d[0][2], d[0][3]) if isinstance(d, list) else (d[0], d[1].name) for d in found
    }
    assert ("add_index", "outbox_reconcile") in kinds
    assert ("modify_default", "audit", "detail") in kinds


MakeStore = Callable[[Path], Store]


def _fresh(path: Path) -> Store:
    return Store(path)


def _adopted(path: Path) -> Store:
    v2_store(path)
    return Store(path)


@pytest.mark.parametrize("make", [_fresh, _adopted], ids=["new", "adopted"])
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO visit_version (record_id, visit_id, version, created_at, volunteer, "
        "language, status, answers, outcome, triage, forms_version) VALUES "
        "('r2', 'v1', 2, 't', 'AB', 'en', 'deleted', '{}', '{}', 'routine', 'f')",
        "INSERT INTO visit_version (record_id, visit_id, version, created_at, volunteer, "
        "language, status, answers, outcome, triage, forms_version) VALUES "
        "('r2', 'v1', 1, 't', 'AB', 'en', 'active', '{}', '{}', 'routine', 'f')",
        "INSERT INTO visit (visit_id, kit_id, referral_code, created_at, latest_version) "
        "VALUES ('v2', 'k', 'CODE1', 't', 1)",
        "INSERT INTO consent_event VALUES ('c2', 'v1', 'revoked', '{}', 'v', 'h', 'en', 'm', "
        "'AB', 't')",
        "INSERT INTO consent_event VALUES ('c2', 'nowhere', 'initial', '{}', 'v', 'h', 'en', "
        "'m', 'AB', 't')",
        "INSERT INTO tally (kind, volunteer, created_at) VALUES ('bored', 'AB', 't')",
        "INSERT INTO outbox (record_id, record_type, payload, content_hash, state, created_at) "
        "VALUES ('o2', 'visit', '{}', 'h', 'lost', 't')",
        "INSERT INTO outbox (record_id, record_type, payload, content_hash, created_at) "
        "VALUES ('o1', 'visit', '{}', 'h', 't')",
    ],
    ids=[
        "version-status",
        "version-twice",
        "code-twice",
        "consent-kind",
        "consent-no-visit",
        "tally-kind",
        "outbox-state",
        "outbox-record-twice",
    ],
)
def test_both_refuse_what_the_constraints_forbid(
    tmp_path: Path, make: MakeStore, statement: str
) -> None:
    store = make(tmp_path / "kit.sqlite3")
    try:
        with store.write_engine.begin() as conn:
            conn.execute(text("INSERT INTO visit VALUES ('v1', 'k', 'CODE1', 't', 1)"))
            conn.execute(
                text(
                    "INSERT INTO visit_version (record_id, visit_id, version, created_at, "
                    "volunteer, language, status, answers, outcome, triage, forms_version) "
                    "VALUES ('r1', 'v1', 1, 't', 'AB', 'en', 'active', '{}', '{}', 'routine', 'f')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO outbox (record_id, record_type, payload, content_hash, "
                    "created_at) VALUES ('o1', 'visit', '{}', 'h', 't')"
                )
            )
        with pytest.raises(IntegrityError), store.write_engine.begin() as conn:
            conn.execute(text(statement))
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT state, attempts FROM outbox")).one()
            assert tuple(row) == ("pending", 0)  # the defaults, from the schema itself
    finally:
        store.close()


def test_the_fast_path_head_is_the_revisions_head() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    assert scripts.get_current_head() == HEAD
    assert scripts.get_base() == BASELINE


def test_an_up_to_date_store_opens_without_loading_alembic(tmp_path: Path) -> None:
    Store(tmp_path / "kit.sqlite3").close()
    probe = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from popup_kit.store import Store
        Store(Path({str(tmp_path / "kit.sqlite3")!r})).close()
        print("alembic" in sys.modules)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_field_store_is_adopted_then_upgraded_with_a_backup(
    config: KitConfig, tmp_path: Path
) -> None:
    source = tmp_path / "source.sqlite3"
    filled_plain_store(config, source)
    v2_store(config.db_path, rows_from=source)
    before = table_rows(make_engine(config.db_path))
    key = Store(config.db_path).key  # encrypted in place and adopted at the baseline
    engine = make_engine(config.db_path, key)
    try:
        assert (
            migrate(engine, config.db_path, key=key, script_location=later_release(tmp_path)) == 2
        )
        after = table_rows(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
            printed = conn.execute(text("SELECT printed_at FROM visit_version")).scalars().all()
    finally:
        engine.dispose()
    assert printed and set(printed) == {None}
    # every row as it was, with the new column empty
    assert after["visit_version"] == sorted(((*r, None) for r in before["visit_version"]), key=repr)
    assert {k: v for k, v in after.items() if k != "visit_version"} == {
        k: v for k, v in before.items() if k != "visit_version"
    }
    backup = config.db_path.with_name(f"{config.db_path.name}.schema-{BASELINE}.bak")
    raw = connect_raw(backup, key)  # encrypted like the store
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(BASELINE,)]
        assert raw.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == len(before["outbox"])
    finally:
        raw.close()
    with pytest.raises(StoreError, match="newer popup-kit"):
        Store(config.db_path)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("UPDATE schema_migration SET version = 7 WHERE version = 2", "newer popup-kit"),
        ("DELETE FROM schema_migration WHERE version = 2", "pre-release popup-kit"),
        ("DROP TABLE schema_migration", "no schema revision"),
    ],
    ids=["legacy-newer", "legacy-older", "no-version"],
)
def test_a_file_it_cannot_adopt_is_refused_and_left_as_it_was(
    tmp_path: Path, setup: str, message: str
) -> None:
    path = tmp_path / "kit.sqlite3"
    v2_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute(setup)

    def contents() -> list[Any]:
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            schema = found.fetchall()
            log = [r[0] for r in schema if r[1] == LEGACY_LOG]
            return schema + (conn.execute(f"SELECT * FROM {LEGACY_LOG}").fetchall() if log else [])

    before = contents()
    with pytest.raises(StoreError, match=message):
        Store(path, encrypted=False)
    assert contents() == before
    assert "alembic_version" not in str(before)


def test_an_unknown_revision_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kit.sqlite3"
    store = Store(path)
    with store.write_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    store.close()
    with pytest.raises(StoreError, match="newer popup-kit"):
        Store(path)


def test_the_key_is_in_no_log_line_and_no_url(
    config: KitConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating a store, adopting one and upgrading one run Alembic on the keyed
    connection: nothing logged, at any level, carries the key."""
    caplog.set_level(logging.DEBUG)
    new = Store(tmp_path / "new" / "kit.sqlite3")
    source = tmp_path / "source.sqlite3"
    filled_plain_store(config, source)
    v2_store(config.db_path, rows_from=source)
    adopted = Store(config.db_path)
    assert adopted.key is not None and new.key is not None
    adopted.close()
    engine = make_engine(config.db_path, adopted.key)
    migrate(engine, config.db_path, key=adopted.key, script_location=later_release(tmp_path))
    assert "0002" in caplog.text  # Alembic's own lines were captured
    for key in (new.key, adopted.key):
        for form in (key.hex(), key.hex().upper()):
            assert form not in caplog.text
            assert form not in str(engine.url) and form not in str(new.engine.url)
    engine.dispose()
    new.close()


def test_a_creation_cut_short_leaves_no_half_store(tmp_path: Path) -> None:
    """The tables and the stamp are one transaction: when stamping fails (here the
    revisions' environment itself fails), no table is left behind and the next open
    creates the store whole."""
    location = later_release(tmp_path)
    (location / "env.py").write_text("raise RuntimeError('environment failed')\n")
    path = tmp_path / "kit.sqlite3"
    store = Store(path)  # made and stamped
    store.close()
    path.unlink()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    engine = make_engine(path, store.key)
    try:
        with pytest.raises(RuntimeError, match="environment failed"):
            migrate(engine, path, key=store.key, script_location=location)
        with engine.connect() as conn:
            left = conn.execute(text("SELECT name FROM sqlite_master")).scalars().all()
        assert left == []
        assert migrate(engine, path, key=store.key) == int(HEAD)
        assert differences(engine) == []
    finally:
        engine.dispose()
