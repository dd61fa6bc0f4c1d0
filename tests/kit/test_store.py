"""The SQLite file: settings, migrations, and visits that survive kill -9 (its schema:
``test_schema.py``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.store import Store, StoreError
from popup_kit.store.db import make_engine, migrate
from popup_kit.store.migrations import HEAD
from tests.kit.conftest import T0, visit_input
from tests.kit.schema_support import later_release

ROOT = Path(__file__).resolve().parents[2]


def test_pragmas_wal_full_sync_foreign_keys(tmp_path: Path) -> None:
    store = Store(tmp_path / "kit.sqlite3")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert (tmp_path / "kit.sqlite3").stat().st_mode & 0o077 == 0  # owner only
    store.close()


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    store = Store(tmp_path / "kit.sqlite3")
    with pytest.raises(Exception, match="FOREIGN KEY"), store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO consent_event VALUES ('c', 'no-such-visit', 'initial', '{}', "
                "'v', 'h', 'en', 'm', 'AB', 't')"
            )
        )
    store.close()


def test_reopening_migrates_nothing_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "kit.sqlite3"
    store = Store(path)
    store.close()
    engine = make_engine(path, store.key)
    assert migrate(engine, path, key=store.key) == int(HEAD)
    assert not list(tmp_path.glob("*.bak"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer popup-kit"):
        Store(path)


def test_upgrade_keeps_unsent_records_and_a_backup(config: KitConfig, tmp_path: Path) -> None:
    service = VisitService(config)
    saved = [service.record_visit(visit_input()) for _ in range(3)]
    service.close()
    path = config.db_path
    key = Store(path).key
    engine = make_engine(path, key)
    later = later_release(tmp_path)  # this release's revisions and one adding a column
    assert migrate(engine, path, key=key, script_location=later) == int(HEAD) + 1
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"))
        assert pending.scalar() == 6
        codes = set(conn.execute(text("SELECT referral_code FROM visit")).scalars())
        assert codes == {v.code for v in saved}
        conn.execute(text("SELECT printed_at FROM visit_version")).all()
    engine.dispose()
    backup = path.with_name(f"{path.name}.schema-{HEAD}.bak")
    copy = make_engine(backup, key)  # the backup is encrypted like the store
    with copy.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM outbox")).scalar() == 6
    copy.dispose()
    # this release refuses the upgraded file rather than run on a schema it does not know
    with pytest.raises(StoreError, match="newer popup-kit"):
        VisitService(config)


WRITER = textwrap.dedent(
    """
    import sys
    from popup_kit.config import load_config
    from popup_kit.services import VisitService
    from tests.kit.conftest import visit_input, with_contact

    service = VisitService(load_config())
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        saved = service.record_visit(with_contact() if i % 2 else visit_input())
        if i % 3 == 0:
            service.correct_visit(saved.visit_id, saved.answers, "CD", saved.contact)
        print(saved.code, flush=True)
    """
)


def _check_whole(config: KitConfig) -> set[str]:
    """Every visit whole: versions, consent and outbox rows all there; nothing half."""
    store = Store(config.db_path)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            visits = conn.execute(text("SELECT visit_id, latest_version FROM visit")).all()
            for visit_id, latest in visits:
                versions = conn.execute(
                    text("SELECT version, record_id FROM visit_version WHERE visit_id = :v"),
                    {"v": visit_id},
                ).all()
                assert sorted(v for v, _ in versions) == list(range(1, latest + 1))
                consents = (
                    conn.execute(
                        text("SELECT consent_id FROM consent_event WHERE visit_id = :v"),
                        {"v": visit_id},
                    )
                    .scalars()
                    .all()
                )
                assert len(consents) == 1
                queued = set(
                    conn.execute(
                        text("SELECT record_id FROM outbox WHERE visit_id = :v"), {"v": visit_id}
                    ).scalars()
                )
                assert queued == {r for _, r in versions} | set(consents)
            orphans = conn.execute(
                text(
                    "SELECT COUNT(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM "
                    "visit_version vv WHERE vv.record_id = o.record_id) AND NOT EXISTS "
                    "(SELECT 1 FROM consent_event c WHERE c.consent_id = o.record_id)"
                )
            ).scalar()
            assert orphans == 0
            return set(conn.execute(text("SELECT referral_code FROM visit")).scalars())
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_mid_save_leaves_each_visit_whole_or_absent(config: KitConfig) -> None:
    rng = random.Random(20261124)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reported: set[str] = set()
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        # Let it save a random number of visits, then kill it wherever it is.
        for _ in range(rng.randint(1, 25)):
            line = child.stdout.readline().strip()
            if line:
                reported.add(line)
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate()
        stored = _check_whole(config)
        # Every visit the writer saw committed is there (a kill after COMMIT keeps it).
        assert reported <= stored
        reported |= {line for line in rest.split() if line in stored}
    assert len(stored) >= 12


def test_every_connection_has_secure_delete_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "kit.sqlite3")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    store.close()


def test_visits_recorded_at_the_same_instant_list_the_latest_recorded_first(
    config: KitConfig,
) -> None:
    service = VisitService(config, clock=lambda: T0)
    try:
        made = [service.record_visit(visit_input()).visit_id for _ in range(4)]
        listed = [v.visit_id for v in service.store.visits()]
    finally:
        service.close()
    assert listed == made[::-1]
