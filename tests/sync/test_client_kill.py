"""kill -9 of the syncing process, run after run, and a server restarted mid-sync: nothing
lost, nothing duplicated, and the kit never believes in a record the server lacks."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from sync import protocol as p
from sync.client import RetryNotice, SyncSummary, outbox_status, sync_outbox
from sync.server import ServerStore
from tests.support.fault_proxy import FaultProxy
from tests.sync.kit_side import (
    FAST,
    assert_all_on_server_once,
    kit_engine,
    queue,
    rows,
    visits_with_consent,
)
from tests.sync.live_server import LiveServer, enroll_kit, run_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUNS = 12  # half killed at a random moment, half while the server's answer is held
BATCH = 5


def _proxy(server: LiveServer, **options: object) -> FaultProxy:
    host, port = server.url.removeprefix("http://").split(":")
    return FaultProxy(host, int(port), **options)  # type: ignore[arg-type]


def _relay(db: Path, data_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sync.relay_process", str(db), str(data_dir), str(BATCH)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", "the relay did not start"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _invariants(store: ServerStore, engine: Engine, credentials: p.KitCredentials) -> None:
    """What must hold at every moment, however the relay died. (The server may still be
    working through the dead relay's last batch: one snapshot of it, taken first.)"""
    snapshot = [r for r in store.records() if r.kit_id == credentials.kit_id]
    held = {r.record_id: r for r in snapshot}
    assert len(held) == len(snapshot)
    kit_rows = {r.record_id: r for r in rows(engine)}
    assert set(held) <= set(kit_rows), "the server holds a record the kit never queued"
    for record_id, stored in held.items():
        row = kit_rows[record_id]
        assert row.state in ("sent", "confirmed"), (record_id, row.state)
        assert stored.content_hash == row.content_hash
    for row in kit_rows.values():
        assert row.state in ("pending", "sent", "confirmed"), row
        if row.state == "confirmed":
            assert row.record_id in held, "confirmed but the server does not have it"
            assert row.receipt is not None and p.verify_receipt(
                row.receipt,
                credentials.receipt_key,
                record_id=row.record_id,
                content_hash=row.content_hash,
            )


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    any_server: LiveServer, tmp_path: Path
) -> None:
    rng = random.Random(4711)
    kit = enroll_kit(any_server)
    proxy = _proxy(any_server, delay_all=0.01).start()
    try:
        credentials = dataclasses.replace(kit.credentials, server_url=proxy.url)
        data_dir = tmp_path / "data"
        credentials.save(data_dir)
        db = tmp_path / "kit.sqlite3"
        engine = kit_engine(db)
        queued = 0
        held_kills = 0
        for run in range(RUNS):
            records = visits_with_consent(kit.kit_id, rng.randint(5, 12))
            queue(engine, records)
            queued += len(records)
            if run % 2:
                # The server commits, its answer is held, and the relay dies waiting.
                proxy.rearm()
                proxy.set_plan(["ok"] * rng.randint(0, 1) + ["hold"])
                proc = _relay(db, data_dir)
                assert proxy.holding.wait(timeout=60), "the relay never reached the server"
                _kill(proc)
                proxy.release()
                proxy.set_plan([])
                held_kills += 1
                assert outbox_status(engine).awaiting_answer > 0
            else:
                proc = _relay(db, data_dir)
                time.sleep(rng.uniform(0.0, 0.25))  # the random moment itself
                _kill(proc)
            _invariants(any_server.store, engine, credentials)

        proc = _relay(db, data_dir)
        assert proc.wait(timeout=120) == 0
        if proc.stdout is not None:
            assert proc.stdout.read().splitlines()[-1].startswith("done ")
            proc.stdout.close()
    finally:
        proxy.stop()
    assert held_kills == RUNS // 2
    assert len(rows(engine)) == queued
    assert_all_on_server_once(any_server.store, engine, credentials)
    status = outbox_status(engine)
    assert status.all_confirmed and status.confirmed == queued


@pytest.fixture
def restartable(db_url: str) -> Iterator[tuple[str, int]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield db_url, port


def test_server_restarted_mid_sync(restartable: tuple[str, int], tmp_path: Path) -> None:
    db_url, port = restartable
    engine = kit_engine(tmp_path / "kit.sqlite3")
    first_batch_done = threading.Event()
    server_stopped = threading.Event()
    server_down_seen = threading.Event()
    restarted = threading.Event()
    notices: list[RetryNotice] = []
    result: list[SyncSummary] = []

    def on_retry(notice: RetryNotice) -> None:
        notices.append(notice)
        server_down_seen.set()
        restarted.wait(timeout=60)  # the kit keeps trying; the test brings the server back

    def progress(done: int, total: int) -> None:
        if done > 0 and not first_batch_done.is_set():
            first_batch_done.set()
            server_stopped.wait(timeout=60)  # mid-sync: the rest goes after the restart

    with run_server(db_url, port=port) as first:
        kit = enroll_kit(first)
        records = visits_with_consent(kit.kit_id, 60)
        queue(engine, records)
        proxy = _proxy(first).start()  # the proxy's upstream address survives the restart
        credentials = dataclasses.replace(kit.credentials, server_url=proxy.url)
        relay = threading.Thread(
            target=lambda: result.append(
                sync_outbox(engine, credentials, FAST, progress=progress, on_retry=on_retry)
            )
        )
        relay.start()
        assert first_batch_done.wait(timeout=60)
        assert len(first.store.records()) == FAST.batch_size  # the rest after the restart
    # The server is down now; the relay meets a failure and waits to retry.
    server_stopped.set()
    try:
        assert server_down_seen.wait(timeout=60)
        with run_server(db_url, port=port) as second:
            restarted.set()
            relay.join(timeout=120)
            assert not relay.is_alive()
            (summary,) = result
            assert summary.all_confirmed, summary
            assert summary.confirmed == len(records)
            assert notices and all(n.failure.transient for n in notices)
            assert_all_on_server_once(second.store, engine, kit.credentials)
    finally:
        server_stopped.set()
        restarted.set()
        proxy.stop()
