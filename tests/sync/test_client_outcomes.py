"""What the sync client does with each kind of answer: permanent refusals end the run,
records the server cannot take are set aside with the reason while the others go,
conflicts are reported, one relay at a time, honest status, and what purge may rely on."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from sync import protocol as p
from sync.client import (
    RetryNotice,
    SyncSummary,
    classify,
    clear_confirmed_payloads,
    confirmed_records,
    confirmed_visits,
    lock_path,
    outbox_status,
    relay_lock,
    requeue,
    set_aside_records,
    sync_outbox,
)
from tests.support.fault_proxy import FaultProxy
from tests.sync.kit_side import (
    FAST,
    T0,
    assert_all_on_server_once,
    consent,
    kit_engine,
    queue,
    rows,
    visit,
    visits_with_consent,
)
from tests.sync.live_server import EnrolledKit, LiveServer, enroll_kit


@pytest.fixture
def kit(server: LiveServer) -> EnrolledKit:
    return enroll_kit(server)


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[FaultProxy]:
    host, port = server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as started:
        yield started


def _via(kit: EnrolledKit, proxy: FaultProxy) -> p.KitCredentials:
    return dataclasses.replace(kit.credentials, server_url=proxy.url)


def _edit(engine: Engine, record_id: str, column: str, old: str, new: str) -> None:
    """Change a stored row behind the client's back (as a damaged or meddled file would)."""
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        done = conn.execute(
            text(f"UPDATE outbox SET {column} = replace({column}, :o, :n) WHERE record_id = :r"),
            {"o": old, "n": new, "r": record_id},
        )
        assert done.rowcount == 1


# --- permanent refusals end the run at once -------------------------------------------


def test_revoked_kit_stops_at_the_first_refusal(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 30))
    server.store.revoke(kit.kit_id, "laptop reported stolen")
    notices: list[RetryNotice] = []

    summary = sync_outbox(engine, _via(kit, proxy), FAST, on_retry=notices.append)

    assert proxy.requests == 1 and notices == []
    assert summary.exit_code == 1
    assert summary.last_error is not None
    assert "revoked" in summary.last_error and "laptop reported stolen" in summary.last_error
    # Nothing is set aside for a kit problem: the records wait for the kit to be re-enrolled.
    assert summary.set_aside == [] and summary.still_unsent == 60
    assert {r.state for r in rows(engine)} == {"pending"}
    assert outbox_status(engine).last_error == summary.last_error


def test_wrong_credential_asks_for_enrolment(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 2))
    wrong = dataclasses.replace(_via(kit, proxy), credential="not-the-credential")
    summary = sync_outbox(engine, wrong, FAST)
    assert proxy.requests == 1
    assert summary.last_error is not None and "enrol the kit again" in summary.last_error
    assert summary.still_unsent == 4


def test_tls_failure_is_permanent(server: LiveServer, kit: EnrolledKit, tmp_path: Path) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 2))
    # The server speaks plain HTTP: a TLS handshake with it fails.
    tls = dataclasses.replace(kit.credentials, server_url=server.url.replace("http:", "https:"))
    notices: list[RetryNotice] = []
    summary = sync_outbox(engine, tls, FAST, on_retry=notices.append)
    assert notices == []
    assert summary.last_error is not None and "secure connection" in summary.last_error
    assert summary.still_unsent == 4
    assert {r.state for r in rows(engine)} == {"pending"}


# --- records the server cannot take ------------------------------------------------------


def test_bad_records_set_aside_with_reasons_and_the_rest_confirmed(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    good = visits_with_consent(kit.kit_id, 10)
    orphan = consent(kit.kit_id, "v")
    orphan["body"].pop("visit_id")  # the server needs it: rejected per record
    huge = visit(kit.kit_id)
    huge["body"]["note"] = "x" * (9 * 1024 * 1024)  # over the server's request size limit
    malformed = visit(kit.kit_id)
    malformed["record_id"] = "not an id"  # fails the protocol's own check on the kit
    queue(engine, [*good[:7], orphan, huge, *good[7:14], malformed, *good[14:]])
    altered = good[3]["record_id"]
    _edit(engine, altered, "payload", '"Ana"', '"Bea"')  # changed on the laptop after queueing

    summary = sync_outbox(engine, _via(kit, proxy), FAST)

    reasons = {s.record_id: s.reason for s in summary.set_aside}
    assert set(reasons) == {orphan["record_id"], huge["record_id"], malformed["record_id"], altered}
    assert "visit_id" in reasons[orphan["record_id"]]
    assert "HTTP 413" in reasons[huge["record_id"]]
    assert "malformed" in reasons[malformed["record_id"]]
    assert "changed after it was queued" in reasons[altered]
    assert summary.confirmed == len(good) - 1
    assert summary.exit_code == 1 and summary.still_unsent == 0 and summary.set_aside_total == 4
    held = {r.record_id for r in server.store.records()}
    assert held == {r["record_id"] for r in good} - {altered}
    listed = set_aside_records(engine)
    assert {s.record_id: s.reason for s in listed} == reasons
    assert outbox_status(engine).set_aside == 4

    # Once the cause is dealt with (here: the record restored), a set-aside row can go again.
    _edit(engine, altered, "payload", '"Bea"', '"Ana"')
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        assert requeue(conn, [altered]) == 1
    again = sync_outbox(engine, _via(kit, proxy), FAST)
    assert again.confirmed == 1 and again.set_aside_total == 3


def test_same_id_different_content_is_a_reported_conflict(
    server: LiveServer, kit: EnrolledKit, tmp_path: Path
) -> None:
    first_kit = kit_engine(tmp_path / "kit.sqlite3")
    record = visit(kit.kit_id)
    queue(first_kit, [record])
    assert sync_outbox(first_kit, kit.credentials, FAST).all_confirmed
    # The same kit, reinstalled from an old backup, holds another content under that id.
    restored = kit_engine(tmp_path / "restored.sqlite3")
    changed = json.loads(json.dumps(record))
    changed["body"]["answers"]["pain_nrs"] = 9
    queue(restored, [changed, visit(kit.kit_id)])

    summary = sync_outbox(restored, kit.credentials, FAST)

    assert [c.record_id for c in summary.conflicts] == [record["record_id"]]
    assert "different content" in summary.conflicts[0].reason
    assert summary.confirmed == 1 and summary.exit_code == 1
    (row,) = [r for r in rows(restored) if r.record_id == record["record_id"]]
    assert row.state == "set_aside" and (row.last_error or "").startswith("conflict: ")
    stored = server.store.conflicts()
    assert [c["record_id"] for c in stored] == [record["record_id"]]
    body = server.store.record_body(record["record_id"])
    assert body is not None and body["answers"]["pain_nrs"] == 6  # the original is kept


# --- one relay at a time -----------------------------------------------------------------


def test_a_held_relay_lock_means_busy_and_nothing_sent(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 3))
    with relay_lock(lock_path(engine)) as held:
        assert held
        summary = sync_outbox(engine, _via(kit, proxy), FAST)
    assert summary.busy and summary.exit_code == 1
    assert summary.still_unsent == 6 and proxy.requests == 0
    assert sync_outbox(engine, _via(kit, proxy), FAST).all_confirmed


def test_the_lock_of_a_killed_relay_is_released(
    server: LiveServer, kit: EnrolledKit, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 3))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(lock_path(engine)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert sync_outbox(engine, kit.credentials, FAST).busy
    finally:
        holder.kill()  # SIGKILL: no chance to unlock
        holder.wait()
    summary = sync_outbox(engine, kit.credentials, FAST)
    assert summary.all_confirmed and summary.confirmed == 6


def test_two_relays_of_one_kit_take_turns(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 60))
    proxy.set_mix({"ok": 0.7, "drop_after_commit": 0.3})
    config = dataclasses.replace(FAST, lock_wait=60.0)
    barrier = threading.Barrier(2)
    results: list[SyncSummary] = []

    def relay() -> None:
        barrier.wait()
        results.append(sync_outbox(engine, _via(kit, proxy), config))

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(r.all_confirmed for r in results)
    assert sorted(r.confirmed for r in results) == [0, 120]
    assert_all_on_server_once(server.store, engine, kit.credentials)


# --- honest status and purge -------------------------------------------------------------


def test_status_is_honest_before_during_and_after(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    empty = outbox_status(engine)
    assert empty.queued == 0 and empty.oldest_unsent_at is None and empty.all_confirmed
    queue(engine, visits_with_consent(kit.kit_id, 3), now=T0)
    status = outbox_status(engine)
    assert status.queued == 6 and status.oldest_unsent_at == T0
    assert status.oldest_unsent_age(T0 + timedelta(hours=2)) == timedelta(hours=2)
    assert status.last_error is None and status.next_attempt_at is None

    proxy.set_mix({"5xx": 1.0})
    failed = sync_outbox(engine, _via(kit, proxy), dataclasses.replace(FAST, attempts=2))
    status = outbox_status(engine)
    assert status.queued == 6 and not status.all_confirmed
    assert status.last_error == failed.last_error and "HTTP 503" in (failed.last_error or "")
    assert status.next_attempt_at == failed.next_attempt_at is not None

    proxy.set_mix(None)
    sync_outbox(engine, _via(kit, proxy), FAST)
    status = outbox_status(engine)
    assert status.queued == 0 and status.confirmed == 6 and status.all_confirmed
    assert status.last_error is None and status.next_attempt_at is None
    assert status.last_confirmed_at is not None


def test_purge_relies_only_on_verified_receipts(
    server: LiveServer, kit: EnrolledKit, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 3)
    queue(engine, records)
    confirmed_at = T0 + timedelta(hours=1)
    assert sync_outbox(engine, kit.credentials, FAST, clock=lambda: confirmed_at).all_confirmed
    key = kit.credentials.receipt_key
    after = confirmed_at + timedelta(seconds=1)
    visit_ids = [r["body"]["visit_id"] for r in records if r["record_type"] == "visit"]

    assert confirmed_records(engine, key, before=confirmed_at) == []
    found = confirmed_records(engine, key, before=after)
    assert {r.record_id for r in found} == {r["record_id"] for r in records}
    assert all(r.confirmed_at == confirmed_at for r in found)
    assert sorted(confirmed_visits(engine, key, before=after)) == sorted(visit_ids)
    assert confirmed_records(engine, b"another key" * 3, before=after) == []

    # A receipt altered on the laptop no longer counts; a new version not yet sent holds
    # its visit back too.
    tampered = records[0]  # the consent of the first visit
    _edit(engine, tampered["record_id"], "receipt", 'signature":"', 'signature":"0')
    queue(engine, [visit(kit.kit_id, visit_id=visit_ids[1], version=2)])
    left = confirmed_visits(engine, key, before=after)
    assert left == [visit_ids[2]]
    assert tampered["record_id"] not in {
        r.record_id for r in confirmed_records(engine, key, before=after)
    }

    # Purge drops the personal payload of confirmed rows; hash and receipt stay, and a row
    # still waiting for the server keeps what it has to send.
    purgeable = [r.record_id for r in confirmed_records(engine, key, before=after)]
    waiting = rows(engine)[-1].record_id
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        assert clear_confirmed_payloads(conn, [*purgeable, waiting]) == len(purgeable)
        payloads = dict(conn.execute(text("SELECT record_id, payload FROM outbox")).all())
    assert all(payloads[rid] == "{}" for rid in purgeable)
    assert json.loads(payloads[waiting])["record_id"] == waiting
    assert {r.record_id for r in confirmed_records(engine, key, before=after)} == set(purgeable)


def test_consent_withdrawal_travels_through_sync(any_server: LiveServer, tmp_path: Path) -> None:
    kit = enroll_kit(any_server)
    engine = kit_engine(tmp_path / "kit.sqlite3")
    contact = {"name": "Maria Lopez", "phone": "+44 7700 900123"}
    record = visit(kit.kit_id, contact=contact)
    visit_id = record["body"]["visit_id"]
    queue(engine, [consent(kit.kit_id, visit_id), record])
    assert sync_outbox(engine, kit.credentials, FAST).all_confirmed
    assert "Maria Lopez" in json.dumps(any_server.store.record_body(record["record_id"]))

    withdrawal = consent(kit.kit_id, visit_id, kind="withdrawal", c1=False, c2=False)
    # A correction made before the withdrawal, queued after it, arrives late.
    late = visit(
        kit.kit_id, visit_id=visit_id, version=2, supersedes=record["record_id"], contact=contact
    )
    queue(engine, [withdrawal, late])
    assert sync_outbox(engine, kit.credentials, FAST).all_confirmed
    for rid in (record["record_id"], late["record_id"]):
        body = any_server.store.record_body(rid)
        assert body is not None and body["withdrawn"] is True and body["visit_id"] == visit_id
        assert "Maria" not in json.dumps(body) and "contact" not in body
        assert "answers" not in body
    with any_server.store.engine.connect() as conn:
        stored = json.dumps([list(r) for r in conn.exec_driver_sql("SELECT * FROM record")])
    assert "Maria" not in stored and "900123" not in stored
    assert_all_on_server_once(any_server.store, engine, kit.credentials)


def test_sync_from_the_kits_own_store(server: LiveServer, kit: EnrolledKit, tmp_path: Path) -> None:
    """The client drains the outbox of the kit's own (encrypted) store."""
    from popup_kit.store import Store

    engine = Store(tmp_path / "data" / "kit.sqlite3").engine
    queue(engine, visits_with_consent(kit.kit_id, 5))
    summary = sync_outbox(engine, kit.credentials, FAST)
    assert summary.all_confirmed and summary.confirmed == 10
    assert_all_on_server_once(server.store, engine, kit.credentials)


# --- the one classification ------------------------------------------------------------


def _response(status: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers)
    return response


MARK = {p.PROTOCOL_HEADER: "1", "Content-Type": "application/json"}


def _error(error: str, detail: str) -> bytes:
    return p.ErrorResponse(error=error, detail=detail).model_dump_json().encode()


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "words"),
    [
        (200, p.HaveResponse(have=[]).model_dump_json().encode(), MARK, None, ""),
        (
            200,
            b"<html>Accept the terms</html>",
            {"Content-Type": "text/html"},
            "transient",
            "captive portal",
        ),
        (302, b"", {"Location": "http://login.example/"}, "transient", "login.example"),
        (
            200,
            b'{"protocol": "popup-kit-sync", "protocol_version": 1}',
            {},
            "transient",
            "captive portal",
        ),
        (503, b"Service Unavailable", {}, "transient", "HTTP 503"),
        (
            503,
            _error("unavailable", "database busy"),
            {**MARK, "Retry-After": "5"},
            "transient",
            "database busy",
        ),
        (429, b"", {"Retry-After": "7"}, "transient", "slow down"),
        (408, b"", {}, "transient", "HTTP 408"),
        (
            401,
            _error("unauthenticated", "wrong credential"),
            MARK,
            "permanent",
            "enrol the kit again",
        ),
        (403, _error("kit_revoked", "kit k is revoked: stolen"), MARK, "permanent", "stolen"),
        (413, _error("too_large", "over 8 MB"), MARK, "record", "over 8 MB"),
        (422, _error("invalid_request", "records.0: bad"), MARK, "record", "records.0"),
        (404, _error("not_found", "no such endpoint"), MARK, "permanent", "HTTP 404"),
        (
            403,
            b"Forbidden",
            {"Content-Type": "text/plain"},
            "transient",
            "did not come from the triage server",
        ),
    ],
)
def test_classify_responses(
    status: int, body: bytes, headers: dict[str, str], kind: str | None, words: str
) -> None:
    failure = classify(response=_response(status, body, headers))
    if kind is None:
        assert failure is None
        return
    assert failure is not None
    assert failure.kind == kind and words in failure.reason
    if "Retry-After" in headers:
        assert failure.retry_after == float(headers["Retry-After"])


def test_classify_http_date_retry_after() -> None:
    failure = classify(
        response=_response(429, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    )
    assert failure is not None and failure.retry_after == 0.0  # a date already past


@pytest.mark.parametrize(
    ("error", "kind", "delivered", "words"),
    [
        (requests.exceptions.SSLError("certificate verify failed"), "permanent", False, "secure"),
        (requests.exceptions.ConnectTimeout("connect"), "transient", False, "reached in time"),
        (requests.exceptions.ReadTimeout("read"), "transient", True, "did not answer in time"),
        (requests.exceptions.ConnectionError("reset by peer"), "transient", True, "dropped"),
        (requests.exceptions.ChunkedEncodingError("cut"), "transient", True, "damaged"),
        (requests.exceptions.InvalidURL("no host"), "permanent", False, "address"),
    ],
)
def test_classify_errors(error: BaseException, kind: str, delivered: bool, words: str) -> None:
    failure = classify(error=error)
    assert failure is not None
    assert (failure.kind, failure.maybe_delivered) == (kind, delivered)
    assert words in failure.reason


def test_classify_refused_connection_was_never_delivered(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    try:
        requests.post(f"http://127.0.0.1:{port}/", timeout=5)
    except requests.RequestException as exc:
        failure = classify(error=exc)
    else:  # pragma: no cover
        pytest.fail("a closed port accepted a connection")
    assert failure is not None
    assert failure.kind == "transient" and not failure.maybe_delivered
    assert "could not connect" in failure.reason


def test_summary_json_is_complete(server: LiveServer, kit: EnrolledKit, tmp_path: Path) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    queue(engine, visits_with_consent(kit.kit_id, 1))
    data: dict[str, Any] = sync_outbox(engine, kit.credentials, FAST).as_json()
    assert data["confirmed"] == 2 and data["all_confirmed"] is True
    assert json.loads(json.dumps(data)) == data
