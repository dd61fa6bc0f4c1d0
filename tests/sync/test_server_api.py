"""Every answer is recognisably the server's; bad input never causes a 5xx; withdrawal; CLI."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from popup_kit.cli import main
from sync import protocol as p
from sync.server import ServerStore, migrations
from tests.sync.live_server import (
    LiveServer,
    consent_record,
    enroll_kit,
    envelope,
    ingest,
    run_server,
    visit_record,
    withdrawal_record,
)


def _marked(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers[p.PROTOCOL_HEADER] == "1"
    assert p.is_protocol_response(response.status_code, response.headers, response.content)
    body: dict[str, Any] = response.json()
    return body


def test_health_and_openapi(server: LiveServer) -> None:
    health = _marked(requests.get(server.api("/health"), timeout=10), 200)
    assert health["status"] == "ok" and health["schema_versions"] == [1, 2]
    doc = requests.get(f"{server.url}/openapi.json", timeout=10)
    assert doc.status_code == 200
    assert doc.headers[p.PROTOCOL_HEADER] == "1"
    paths = doc.json()["paths"]
    for path in ("/api/v1/ingest", "/api/v1/have", "/api/v1/enroll", "/api/v1/health"):
        assert path in paths
    assert "IngestResponse" in doc.json()["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/nowhere", None, 404),
        ("get", "/api/v1/ingest", None, 405),
        # Without a credential the body is never read: 401 whatever it holds.
        ("post", "/api/v1/ingest", b"not json", 401),
        ("post", "/api/v1/have", b'{"record_ids": "x"}', 401),
        ("post", "/api/v1/ingest", b"not json", 422),
        ("post", "/api/v1/ingest", b"[]", 422),
        ("post", "/api/v1/ingest", b'{"kit_id": "k", "records": [{"record_id": 1}]}', 422),
        ("post", "/api/v1/have", b'{"record_ids": "x"}', 422),
        ("post", "/api/v1/enroll", b'{"token": 5}', 422),
        (
            "post",
            "/api/v1/enroll",
            b'{"token": "aaaaaaaaaa", "kit_id": "k", "slip_key": "!!!not base64!!!!!!!"}',
            422,
        ),
        (
            "post",
            "/api/v1/enroll",
            b'{"token": "aaaaaaaaaa", "kit_id": "k\\u0000", '
            b'"slip_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}',
            422,
        ),
        (
            "post",
            "/api/v1/enroll",
            b'{"token": "aaaaaaaaaa", "kit_id": "k", '
            b'"slip_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}',
            403,
        ),
    ],
)
def test_errors_carry_the_marker(
    server: LiveServer, method: str, path: str, body: bytes | None, status: int
) -> None:
    headers = {"Content-Type": "application/json"}
    if path.endswith(("/ingest", "/have")) and status != 401:
        headers.update(enroll_kit(server).headers)
    response = requests.request(method, server.url + path, data=body, headers=headers, timeout=10)
    error = _marked(response, status)
    assert error["error"]


def test_oversized_input_refused_without_5xx(server: LiveServer) -> None:
    kit = enroll_kit(server)
    record = envelope(visit_record(kit.kit_id))
    too_many = {"kit_id": kit.kit_id, "records": [record] * (p.MAX_BATCH + 1)}
    response = requests.post(server.api("/ingest"), json=too_many, headers=kit.headers, timeout=30)
    assert "records" in _marked(response, 422)["detail"]
    huge = b'{"kit_id": "k", "records": [], "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    response = requests.post(
        server.api("/ingest"),
        data=huge,
        headers={**kit.headers, "Content-Type": "application/json"},
        timeout=30,
    )
    _marked(response, 413)
    # Awkward but valid JSON inside a body is stored or refused per record, never a 5xx.
    odd = visit_record(kit.kit_id)
    odd["body"]["note"] = "nul \u0000 and \u2603 and \U0001f600"
    odd["body"]["visit_id"] = "has\u0000nul"
    nested = visit_record(kit.kit_id)
    nested["body"]["answers"] = {"deep": [[[[{"x": 1.5e300}]]]]}
    results = p.IngestResponse.model_validate_json(ingest(server, kit, [odd, nested]).content)
    assert [r.status for r in results.results] == ["rejected", "accepted"]


def test_consent_withdrawal_scrubs_the_visit(sqlite_url: str) -> None:
    with run_server(sqlite_url) as server:
        kit = enroll_kit(server)
        contact = {"name": "Maria Lopez", "phone": "+44 7700 900123"}
        visit = visit_record(kit.kit_id, contact=contact)
        visit_id = visit["body"]["visit_id"]
        consent = consent_record(kit.kit_id, visit_id)
        other = visit_record(kit.kit_id, contact={"name": "Sam Lee", "phone": "+44 7700 900999"})
        ingest(server, kit, [visit, consent, other])
        assert "Maria Lopez" in json.dumps(server.store.record_body(visit["record_id"]))

        withdrawal = withdrawal_record(kit.kit_id, visit_id)
        correction = visit_record(kit.kit_id, visit_id=visit_id, contact=contact, version=2)
        results = p.IngestResponse.model_validate_json(
            ingest(server, kit, [withdrawal, correction]).content
        ).results
        assert [r.status for r in results] == ["accepted", "accepted"]

        # Nothing personal or clinical of that visit is left in any column of its rows.
        with server.store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM record").all()
        mine = json.dumps([list(r) for r in rows if visit_id in r])
        others = json.dumps([list(r) for r in rows if visit_id not in r])
        assert mine.count(visit_id) > 0
        for personal in ("Maria Lopez", "900123", "leg_pain_side", "RO1", "asked by phone"):
            assert personal not in mine
        assert "Sam Lee" in others and "leg_pain_side" in others  # the other visit is untouched
        for record in (visit, consent, correction):
            body = server.store.record_body(record["record_id"])
            assert body is not None
            assert body["visit_id"] == visit_id and body["withdrawn"] is True
            assert not {"answers", "contact", "outcome", "items", "age_years"} & body.keys()
        # The skeleton stays: ids, hashes, times, and the fact of withdrawal.
        held = {r.record_id: r for r in server.store.records()}
        assert held[visit["record_id"]].scrubbed and held[correction["record_id"]].scrubbed
        assert held[visit["record_id"]].content_hash == p.Envelope.from_record(visit).content_hash
        assert server.store.record_body(withdrawal["record_id"])["visit_id"] == visit_id  # type: ignore[index]
        # A resend of the original after withdrawal is recognised, not stored again.
        (again,) = p.IngestResponse.model_validate_json(
            ingest(server, kit, [visit]).content
        ).results
        assert again.status == "already_received"
        assert "Maria Lopez" not in json.dumps(server.store.record_body(visit["record_id"]))


def test_cli_enroll_revoke_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    config = tmp_path / "server.toml"
    config.write_text(f'database_url = "{db}"\n')
    cfg = ["--config", str(config)]
    assert main(["server", "migrate", *cfg]) == 0
    capsys.readouterr()
    assert main(["server", "enroll", "kit-cli", "--json", *cfg]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    with run_server(db) as server:
        key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        response = requests.post(
            server.api("/enroll"),
            json={"token": token, "kit_id": "kit-cli", "slip_key": key},
            timeout=10,
        )
        answer = p.EnrollResponse.model_validate_json(response.content)
        headers = p.auth_header("kit-cli", answer.credential)
        records = [visit_record("kit-cli"), visit_record("kit-cli")]
        body = {"kit_id": "kit-cli", "records": [envelope(r) for r in records]}
        results = requests.post(server.api("/ingest"), json=body, headers=headers, timeout=10)
        receipts = {r["record_id"]: r["receipt"] for r in results.json()["results"]}

        assert main(["server", "records", "--json", *cfg]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert sorted(r["record_id"] for r in listed) == sorted(receipts)
        for row in listed:
            assert row["kit_id"] == "kit-cli" and row["record_type"] == "visit"
            assert row["content_hash"] == receipts[row["record_id"]]["content_hash"]
            assert row["received_at"] == receipts[row["record_id"]]["received_at"]

        assert main(["server", "revoke", "kit-cli", "--reason", "kit retired", *cfg]) == 0
        refused = requests.post(server.api("/ingest"), json=body, headers=headers, timeout=10)
        assert refused.status_code == 403 and "kit retired" in refused.json()["detail"]
    capsys.readouterr()
    assert main(["server", "revoke", "kit-cli", *cfg]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert main(["server", "records", *cfg]) == 0
    assert "2 records" in capsys.readouterr().out


def _head() -> int:
    """The newest revision: the highest-numbered file in the versions folder."""
    versions = Path(migrations.__file__).parent / "versions"
    return max(int(f.name[:4]) for f in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))


def test_migrations_are_idempotent_and_refuse_a_newer_database(db_url: str) -> None:
    head = _head()
    store = ServerStore(db_url)
    assert store.schema_version == head
    store.close()
    store = ServerStore(db_url)
    assert store.schema_version == head
    with store.engine.begin() as conn:
        found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        assert found == f"{head:04d}"
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    store.close()
    with pytest.raises(RuntimeError, match="newer than this server knows"):
        ServerStore(db_url)


def test_a_database_from_the_numbered_migrations_is_adopted(sqlite_url: str) -> None:
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT);"
            "INSERT INTO schema_version VALUES (1, 'initial', 'then');"
            "CREATE TABLE kit (kit_id TEXT PRIMARY KEY, created_at TEXT NOT NULL,"
            " enrolled_at TEXT, credential_hash TEXT, receipt_key TEXT, slip_key TEXT,"
            " revoked_at TEXT, revoked_reason TEXT);"
            "CREATE TABLE enrollment_token (token_hash TEXT PRIMARY KEY, kit_id TEXT NOT NULL,"
            " created_at TEXT NOT NULL, used_at TEXT);"
            "CREATE TABLE withdrawal (visit_id TEXT PRIMARY KEY, kit_id TEXT NOT NULL,"
            " record_id TEXT NOT NULL, withdrawn_at TEXT NOT NULL);"
            "INSERT INTO withdrawal VALUES ('v-1', 'kit-old', 'r-1', 'then');"
            "INSERT INTO kit (kit_id, created_at) VALUES ('kit-old', 'then');"
            "CREATE TABLE record (record_id TEXT PRIMARY KEY, kit_id TEXT NOT NULL,"
            " record_type TEXT NOT NULL, schema_version INTEGER NOT NULL,"
            " content_hash TEXT NOT NULL, created_at TEXT NOT NULL,"
            " received_at TEXT NOT NULL, signature TEXT NOT NULL, visit_id TEXT,"
            " visit_version INTEGER, referral_code TEXT, payload TEXT NOT NULL,"
            " body TEXT NOT NULL, scrubbed_at TEXT);"
        )
    store = ServerStore(sqlite_url)
    try:
        assert store.schema_version == _head()
        with store.engine.connect() as conn:  # the withdrawal kept, now keyed by kit
            assert conn.exec_driver_sql("SELECT kit_id, visit_id FROM withdrawal").all() == [
                ("kit-old", "v-1")
            ]
        token = store.create_enrollment("kit-old")  # the new columns are there
        assert store.enroll(token, "kit-old", b"k" * 32)[0]
    finally:
        store.close()


def test_withdrawal_as_a_consent_event(server: LiveServer) -> None:
    kit = enroll_kit(server)
    visit = visit_record(kit.kit_id, contact={"name": "Maria Lopez", "phone": "+44 7700 900123"})
    visit_id = visit["body"]["visit_id"]
    partial = consent_record(kit.kit_id, visit_id)
    partial["record_id"] = str(uuid.uuid4())
    partial["body"] = {**partial["body"], "kind": "withdrawal"}
    partial["body"]["items"] = {**partial["body"]["items"], "c2": False}  # C1 still granted
    ingest(server, kit, [visit, partial])
    # Refusing C2 is no withdrawal, but the centre then holds only the counts shape.
    cut = server.store.record_body(visit["record_id"])
    assert cut is not None and cut["sharing"] == "counts" and "withdrawn" not in cut
    assert cut["level"] == "routine" and cut["day"] == "2026-11-22"
    assert "Maria Lopez" not in json.dumps(cut) and "answers" not in cut
    full = consent_record(kit.kit_id, visit_id)
    full["record_id"] = str(uuid.uuid4())
    full["body"] = {**full["body"], "kind": "withdrawal", "items": {"c1": False}}
    ingest(server, kit, [full])
    body = server.store.record_body(visit["record_id"])
    assert body is not None and body["withdrawn"] is True and "contact" not in body
