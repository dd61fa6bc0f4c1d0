"""The kit's sync client against the real server through a fault-injecting proxy, on
SQLite and on PostgreSQL: whatever the network does, every record ends on the server
exactly once and the kit's rows end confirmed by verified receipts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import protocol as p
from sync.client import RetryNotice, SyncConfig, SyncSummary, outbox_status, sync_outbox
from tests.support.fault_proxy import FaultProxy
from tests.sync.kit_side import (
    FAST,
    assert_all_on_server_once,
    kit_engine,
    queue,
    rows,
    visits_with_consent,
)
from tests.sync.live_server import EnrolledKit, LiveServer, enroll_kit


def _via(kit: EnrolledKit, proxy: FaultProxy) -> p.KitCredentials:
    return dataclasses.replace(kit.credentials, server_url=proxy.url)


def _proxy(server: LiveServer, **options: object) -> FaultProxy:
    host, port = server.url.removeprefix("http://").split(":")
    return FaultProxy(host, int(port), **options)  # type: ignore[arg-type]


@pytest.fixture
def kit(any_server: LiveServer) -> EnrolledKit:
    return enroll_kit(any_server)


@pytest.fixture
def proxy_for(any_server: LiveServer) -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


# Each fault mixed with clean answers by a seeded draw, so every run is the same run.
MODES = {
    "reset": ({"reset": 0.4, "ok": 0.6}, FAST),
    "slow": ({"delay:0.05": 0.5, "ok": 0.5}, FAST),
    # Answers later than the read timeout: the server commits after the kit gave up.
    "timeout": ({"delay:1.5": 0.3, "ok": 0.7}, dataclasses.replace(FAST, read_timeout=0.75)),
    "5xx": ({"5xx": 0.4, "ok": 0.6}, FAST),
    "429": ({"429:1": 0.25, "ok": 0.75}, FAST),
    "drop_after_commit": ({"drop_after_commit": 0.4, "ok": 0.6}, FAST),
    "portal": ({"portal": 0.4, "ok": 0.6}, FAST),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_record_reaches_the_server_exactly_once(
    mode: str,
    any_server: LiveServer,
    kit: EnrolledKit,
    proxy_for: list[FaultProxy],
    tmp_path: Path,
) -> None:
    mix, config = MODES[mode]
    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 60)
    queue(engine, records)
    proxy = _proxy(any_server, mix=mix, seed=7).start()
    proxy_for.append(proxy)
    notices: list[RetryNotice] = []
    progress: list[tuple[int, int]] = []

    summary = sync_outbox(
        engine,
        _via(kit, proxy),
        config,
        progress=lambda done, total: progress.append((done, total)),
        on_retry=notices.append,
    )

    fault = next(name for name in mix if name != "ok").split(":")[0]
    assert proxy.seen[fault] > 0, "the fault was never injected"
    assert summary.all_confirmed and summary.exit_code == 0, summary
    assert summary.confirmed == len(records)
    assert summary.conflicts == [] and summary.set_aside == []
    assert summary.still_unsent == 0 and summary.last_error is None
    assert_all_on_server_once(any_server.store, engine, kit.credentials)
    assert progress[-1] == (len(records), len(records))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)

    if fault in ("reset", "5xx", "portal", "429", "delay") and mode != "slow":
        assert notices, "a transient failure must have been retried"
    if fault == "429":
        # Retry-After: 1 is honoured; backoff alone would wait at most 0.05 s.
        limited = [n for n in notices if "HTTP 429" in n.failure.reason]
        assert limited and all(n.wait >= 1.0 for n in limited)
    if fault == "portal":
        assert all("captive portal" in n.failure.reason for n in notices)
    if fault == "drop_after_commit":
        # The server committed but the answer was lost: the kit asks before resending.
        for i, (path, got) in enumerate(proxy.log[:-1]):
            if got == "drop_after_commit" and path.endswith("/ingest"):
                assert proxy.log[i + 1][0].endswith("/have"), proxy.log
        assert summary.already_there > 0
    if mode == "timeout":
        assert any("did not answer in time" in n.failure.reason for n in notices)


def test_a_portal_that_never_lets_go_is_an_honest_failure(
    any_server: LiveServer, kit: EnrolledKit, proxy_for: list[FaultProxy], tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 5)
    queue(engine, records)
    proxy = _proxy(any_server, mix={"portal": 1.0}).start()
    proxy_for.append(proxy)
    config = dataclasses.replace(FAST, attempts=3)

    summary = sync_outbox(engine, _via(kit, proxy), config)

    assert proxy.requests == 3
    assert summary.exit_code == 1 and not summary.all_confirmed
    assert summary.confirmed == 0 and summary.still_unsent == len(records)
    assert summary.last_error is not None and "captive portal" in summary.last_error
    assert summary.next_attempt_at is not None
    assert any_server.store.records() == []
    status = outbox_status(engine)
    assert status.queued == len(records) and status.last_error == summary.last_error
    assert status.next_attempt_at == summary.next_attempt_at
    # Once the network lets the kit through, the same outbox drains completely.
    proxy.set_mix(None)
    again = sync_outbox(engine, _via(kit, proxy), config)
    assert again.all_confirmed
    assert_all_on_server_once(any_server.store, engine, kit.credentials)


def test_answers_lost_after_commit_are_settled_with_have(
    any_server: LiveServer, kit: EnrolledKit, proxy_for: list[FaultProxy], tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 20)
    queue(engine, records)
    proxy = _proxy(any_server, plan=["drop_after_commit"]).start()
    proxy_for.append(proxy)

    first = sync_outbox(engine, _via(kit, proxy), dataclasses.replace(FAST, attempts=1))
    # The server has the first batch, the kit does not know it yet.
    assert first.exit_code == 1
    assert "connection dropped" in (first.last_error or "")
    assert len(any_server.store.records()) == FAST.batch_size
    status = outbox_status(engine)
    assert status.awaiting_answer == FAST.batch_size and status.queued == len(records)

    second = sync_outbox(engine, _via(kit, proxy), FAST)
    assert second.all_confirmed
    assert second.already_there == FAST.batch_size
    assert second.sent == len(records) - FAST.batch_size  # the held ones were not resent
    assert proxy.log[1][0].endswith("/have")
    assert_all_on_server_once(any_server.store, engine, kit.credentials)


def test_two_kits_sync_at_once(
    any_server: LiveServer, proxy_for: list[FaultProxy], tmp_path: Path
) -> None:
    import threading

    kits = [enroll_kit(any_server) for _ in range(2)]
    engines = [kit_engine(tmp_path / f"kit{i}.sqlite3") for i in range(2)]
    for kit, engine in zip(kits, engines, strict=True):
        queue(engine, visits_with_consent(kit.kit_id, 40))
    proxy = _proxy(
        any_server, mix={"ok": 0.6, "reset": 0.1, "5xx": 0.1, "drop_after_commit": 0.2}, seed=3
    ).start()
    proxy_for.append(proxy)
    barrier = threading.Barrier(2)
    results: dict[int, SyncSummary] = {}

    def relay(i: int) -> None:
        barrier.wait()
        results[i] = sync_outbox(engines[i], _via(kits[i], proxy), FAST)

    threads = [threading.Thread(target=relay, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert results[i].all_confirmed, results[i]
        assert_all_on_server_once(any_server.store, engines[i], kits[i].credentials)
    assert len(any_server.store.records()) == 160


def test_stop_event_ends_the_run_between_batches(
    any_server: LiveServer, kit: EnrolledKit, tmp_path: Path
) -> None:
    import threading

    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 50)
    queue(engine, records)
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= FAST.batch_size:
            stop.set()

    summary = sync_outbox(engine, kit.credentials, FAST, progress=progress, stop=stop)
    assert summary.stopped and summary.exit_code == 1
    assert summary.confirmed == FAST.batch_size
    assert summary.still_unsent == len(records) - FAST.batch_size
    assert summary.last_error == "the sync was stopped before the outbox was empty"
    states = [r.state for r in rows(engine)]
    assert states.count("confirmed") == FAST.batch_size
    assert states.count("pending") == len(records) - FAST.batch_size  # none left 'sent'


def test_time_bound_ends_a_run_against_a_failing_server(
    any_server: LiveServer, kit: EnrolledKit, proxy_for: list[FaultProxy], tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 3))
    proxy = _proxy(any_server, mix={"5xx": 1.0}).start()
    proxy_for.append(proxy)
    config = SyncConfig(attempts=10_000, backoff_initial=0.01, backoff_max=0.02, total_time=0.5)
    summary = sync_outbox(engine, _via(kit, proxy), config)
    assert summary.exit_code == 1
    assert summary.last_error is not None and "HTTP 503" in summary.last_error
    assert 1 < proxy.requests < 10_000
    assert outbox_status(engine).queued == 6
