"""Sync from the kit's real store: two kits, one server that goes down mid-sync and comes
back, `popup-kit sync` and `report`, the landing page before and after, and the purge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from popup_kit.cli import main
from popup_kit.config import KitConfig, load_config
from popup_kit.enrolment import require_credentials
from popup_kit.services import VisitService
from popup_kit.slips import visit_url
from popup_kit.store import Store
from popup_kit.syncing import purge, reconcile, run_sync, status
from tests.forms.answers import BENIGN
from tests.kit.conftest import CONSENT_ALL, visit_input, with_contact
from tests.sync.kit_side import FAST
from tests.sync.live_server import run_server

VISITS_PER_KIT = 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'server.sqlite3'}"


def kit(tmp_path: Path, name: str, server_url: str) -> KitConfig:
    kit_toml = tmp_path / f"{name}.toml"
    kit_toml.write_text(f'[server]\nbase_url = "{server_url}"\n[sync]\nretention_days = 7\n')
    return load_config(kit_toml, data_dir=tmp_path / name)


def enroll(config: KitConfig, server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    token = server.store.create_enrollment(config.kit_id)
    code = main_in(config, ["enroll", server.url, token, "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["kit_id"] == config.kit_id


def main_in(config: KitConfig, args: list[str]) -> int:
    """The CLI on this kit's data directory and kit.toml, as its coordinator runs it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POPUP_KIT_DATA_DIR", str(config.data_dir))
        mp.setenv("POPUP_KIT_CONFIG", config.source)
        return main(args)


def cli_process(config: KitConfig, args: list[str]) -> subprocess.Popen[str]:
    """The CLI as a separate process, as on two laptops."""
    env = dict(
        os.environ,
        POPUP_KIT_DATA_DIR=str(config.data_dir),
        POPUP_KIT_CONFIG=config.source,
        PYTHONPATH=str(ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "popup_kit", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def record_day(config: KitConfig, count: int) -> list[str]:
    service = VisitService(config)
    try:
        codes = []
        for i in range(count):
            visit = with_contact() if i % 3 == 0 else visit_input()
            codes.append(service.record_visit(visit).code)
        first = service.find_by_code(codes[0])
        assert first is not None
        service.correct_visit(first.visit_id, {**BENIGN, "osteoporosis": True}, "CD", first.contact)
        return codes
    finally:
        service.close()


def landing(url: str) -> str:
    return requests.get(url, timeout=10).text


@pytest.fixture
def two_kits(
    tmp_path: Path, server_db: str, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Any, KitConfig, KitConfig]]:
    with run_server(server_db) as server:
        a = kit(tmp_path, "kit-a", server.url)
        b = kit(tmp_path, "kit-b", server.url)
        enroll(a, server, capsys)
        enroll(b, server, capsys)
        yield server, a, b


def test_two_kits_server_down_mid_sync_everything_once(
    tmp_path: Path, server_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(server_db) as server:
        port = int(server.url.rsplit(":", 1)[1])
        a = kit(tmp_path, "kit-a", server.url)
        b = kit(tmp_path, "kit-b", server.url)
        enroll(a, server, capsys)
        enroll(b, server, capsys)
    codes_a = record_day(a, VISITS_PER_KIT)
    codes_b = record_day(b, VISITS_PER_KIT)
    expected = 2 * (2 * VISITS_PER_KIT + 1)  # a visit and a consent each, one correction

    # the slip's QR page before the kit has synced: genuine, "will upload soon"
    slip = visit_url(a, codes_a[0])  # consent C2 given; corrected to routine
    unshared = visit_url(a, codes_a[1])  # C2 refused

    with run_server(server_db, port=port) as server:
        assert "upload" in landing(slip).lower() and "upload" in landing(unshared).lower()

        # kit A syncs; the server goes away part-way and comes back at the same address
        store_a = Store(a.db_path)
        halfway = threading.Event()
        server_down = threading.Event()

        def progress(done: int, total: int) -> None:
            if done >= total // 3 and not halfway.is_set():
                halfway.set()
                # the next batches meet a server that is gone
                assert server_down.wait(60)

        result: dict[str, Any] = {}

        def sync_a() -> None:
            settings = FAST.__class__(**{**FAST.__dict__, "batch_size": 5, "attempts": 1000})
            result["a"] = run_sync(a, store_a, sync_config=settings, progress=progress)

        worker = threading.Thread(target=sync_a)
        worker.start()
        assert halfway.wait(60)
    # the server is down now; kit A keeps trying with short backoff
    server_down.set()
    with run_server(server_db, port=port) as server:
        worker.join(120)
        assert not worker.is_alive()
        assert result["a"].all_confirmed, result["a"].as_json()

        # kit B, and kit A again, through the coordinator's command, at the same time
        runs = {
            key: cli_process(config, ["sync", "--json"]) for key, config in (("a", a), ("b", b))
        }
        finished = {key: run.communicate(timeout=120) for key, run in runs.items()}
        assert {key: run.returncode for key, run in runs.items()} == {"a": 0, "b": 0}, finished
        assert json.loads(finished["a"][0])["sent"] == 0  # nothing left for kit A
        assert json.loads(finished["b"][0])["confirmed"] == expected // 2

        held = server.store.records()
        assert len(held) == expected
        assert len({r.record_id for r in held}) == expected  # each exactly once
        assert {r.kit_id for r in held} == {a.kit_id, b.kit_id}

        # the reconciliation says so, and so does the slip's page now (shared with C2)
        for config, day_codes in ((a, codes_a), (b, codes_b)):
            assert main_in(config, ["report", "--json"]) == 0
            report = json.loads(capsys.readouterr().out)
            assert report["all_confirmed"] and report["confirmed"] == expected // 2
            assert report["captured"]["visits"] == len(day_codes)
            assert report["still_only_here"] == {"records": 0, "codes": []}
        page = landing(slip)
        assert "upload" not in page.lower() and "Routine referral" in page
        page = landing(unshared)
        assert "Follow the advice on your slip" in page and "Self-care" not in page
    store_a.close()


def test_report_and_sync_when_nothing_can_be_sent(
    tmp_path: Path, server_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(server_db) as server:
        a = kit(tmp_path, "kit-a", server.url)
        enroll(a, server, capsys)
    codes = record_day(a, 3)
    # the server is gone: sync says so and exits non-zero; nothing is called sent
    assert main_in(a, ["sync", "--json", "--time-limit", "3"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["still_unsent"] == 7 and summary["confirmed"] == 0
    assert summary["last_error"]
    assert main_in(a, ["report", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["still_only_here"]["records"] == 7
    assert sorted(report["still_only_here"]["codes"]) == sorted(codes)


def test_not_enrolled_is_said_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = kit(tmp_path, "kit-a", "https://triage.example.org")
    record_day(a, 1)
    assert main_in(a, ["sync"]) == 1
    assert "not enrolled" in capsys.readouterr().err


def test_purge_only_after_verified_receipt_and_retention(
    tmp_path: Path, server_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(server_db) as server:
        a = kit(tmp_path, "kit-a", server.url)
        enroll(a, server, capsys)
        service = VisitService(a)
        kept = service.record_visit(with_contact())
        unsent_contact = None
        store = service.store
        creds = require_credentials(a)
        now = service.clock()

        summary = run_sync(a, store, sync_config=FAST)
        assert summary.all_confirmed
        # confirmed, but the retention period has not passed: the contact stays
        assert purge(a, store, creds, now=now + timedelta(days=6)).visits == 0
        visit = service.get_visit(kept.visit_id)
        assert visit is not None and visit.contact is not None

        # a visit recorded after the sync: not confirmed, so never purged
        later = service.record_visit(
            visit_input(consent=dict(CONSENT_ALL), contact=with_contact().contact)
        )
        unsent_contact = later.contact

        done = purge(a, store, creds, now=now + timedelta(days=8))
        assert done.visits == 1 and done.records == 2
        purged = service.get_visit(kept.visit_id)
        assert purged is not None and purged.contact is None and purged.purged
        assert purged.answers == kept.answers and purged.code == kept.code  # the skeleton
        still = service.get_visit(later.visit_id)
        assert still is not None and still.contact == unsent_contact
        report = reconcile(a, store, None, bounds=None)
        assert report.purged_visits == 1 and report.only_here == 2
        assert status(store).confirmed == 2
        service.close()


def test_a_forged_receipt_never_lets_the_kit_purge(
    tmp_path: Path, server_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import text

    with run_server(server_db) as server:
        a = kit(tmp_path, "kit-a", server.url)
        enroll(a, server, capsys)
        service = VisitService(a)
        kept = service.record_visit(with_contact())
        assert run_sync(a, service.store, sync_config=FAST).all_confirmed
        with service.store.engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET receipt = REPLACE(receipt, 'a', 'b')"))
        creds = require_credentials(a)
        later = service.clock() + timedelta(days=30)
        assert purge(a, service.store, creds, now=later).visits == 0
        visit = service.get_visit(kept.visit_id)
        assert visit is not None and visit.contact is not None
        service.close()
