"""Enrolment, authentication and batch ingest against the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import threading
import uuid
from typing import Any

import requests

from sync import protocol as p
from sync.records import make_record
from tests.sync.live_server import (
    EnrolledKit,
    LiveServer,
    consent_record,
    enroll_kit,
    envelope,
    ingest,
    visit_record,
)


def _results(response: requests.Response) -> list[p.RecordResult]:
    assert response.status_code == 200, response.text
    assert p.is_protocol_response(response.status_code, response.headers, response.content)
    return p.IngestResponse.model_validate_json(response.content).results


def _verified(kit: EnrolledKit, result: p.RecordResult, record: dict[str, Any]) -> p.Receipt:
    assert result.receipt is not None
    chash = p.Envelope.from_record(record).content_hash
    assert p.verify_receipt(
        result.receipt,
        kit.credentials.receipt_key,
        record_id=record["record_id"],
        content_hash=chash,
    )
    return result.receipt


def test_batch_results_idempotent_resend_and_conflict(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server)
    visit = visit_record(kit.kit_id)
    consent = consent_record(kit.kit_id, visit["body"]["visit_id"])
    first = _results(ingest(any_server, kit, [visit, consent]))
    assert [r.status for r in first] == ["accepted", "accepted"]
    assert [r.record_id for r in first] == [visit["record_id"], consent["record_id"]]
    receipts = [_verified(kit, r, rec) for r, rec in zip(first, [visit, consent], strict=True)]

    again = _results(ingest(any_server, kit, [visit, consent]))
    assert [r.status for r in again] == ["already_received", "already_received"]
    assert [r.receipt for r in again] == receipts

    changed = {**visit, "body": {**visit["body"], "age_years": 48}}
    (conflict,) = _results(ingest(any_server, kit, [changed]))
    assert conflict.status == "conflict"
    assert conflict.receipt is None
    assert "different content" in conflict.reason
    conflicts = any_server.store.conflicts()
    assert [(c["record_id"], c["incoming_hash"]) for c in conflicts] == [
        (visit["record_id"], p.Envelope.from_record(changed).content_hash)
    ]
    # The original is kept.
    assert any_server.store.record_body(visit["record_id"])["age_years"] == 47  # type: ignore[index]
    assert len(any_server.store.records()) == 2


def test_hash_mismatch_rejected_rest_accepted(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server)
    good1, bad, good2 = (visit_record(kit.kit_id) for _ in range(3))
    envelopes = [envelope(good1), envelope(bad), envelope(good2)]
    envelopes[1]["body"]["age_years"] = 99  # altered after the kit hashed it
    response = requests.post(
        any_server.api("/ingest"),
        json={"kit_id": kit.kit_id, "records": envelopes},
        headers=kit.headers,
        timeout=10,
    )
    results = _results(response)
    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
    assert "content hash" in results[1].reason
    held = {r.record_id for r in any_server.store.records()}
    assert held == {good1["record_id"], good2["record_id"]}


def test_have_query_settles_an_ambiguous_send(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server)
    sent, unsent = visit_record(kit.kit_id), visit_record(kit.kit_id)
    (result,) = _results(ingest(any_server, kit, [sent]))
    response = requests.post(
        any_server.api("/have"),
        json={"record_ids": [unsent["record_id"], sent["record_id"]]},
        headers=kit.headers,
        timeout=10,
    )
    assert p.is_protocol_response(response.status_code, response.headers, response.content)
    have = p.HaveResponse.model_validate_json(response.content).have
    assert [h.record_id for h in have] == [sent["record_id"]]
    assert have[0].receipt == result.receipt
    assert have[0].content_hash == p.Envelope.from_record(sent).content_hash
    assert p.verify_receipt(have[0].receipt, kit.credentials.receipt_key)


def test_concurrent_ingesters_store_each_record_once(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server)
    records = [visit_record(kit.kit_id) for _ in range(60)]
    barrier = threading.Barrier(2)
    outcomes: list[list[p.RecordResult]] = []

    def relay() -> None:
        with requests.Session() as session:
            body = {"kit_id": kit.kit_id, "records": [envelope(r) for r in records]}
            barrier.wait()
            response = session.post(
                any_server.api("/ingest"), json=body, headers=kit.headers, timeout=60
            )
            outcomes.append(_results(response))

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 2
    held = [r.record_id for r in any_server.store.records()]
    assert sorted(held) == sorted(r["record_id"] for r in records)
    for a, b in zip(*outcomes, strict=True):
        assert sorted([a.status, b.status]) == ["accepted", "already_received"]
        assert a.receipt == b.receipt


def test_schema_v1_payload_accepted(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server)
    # A literal version-1 envelope, as the first release of the kit sends it.
    v1 = {
        "record_id": str(uuid.uuid4()),
        "record_type": "visit",
        "schema_version": 1,
        "kit_id": kit.kit_id,
        "created_at": "2026-01-05T09:00:00Z",
        "body": {"visit_id": str(uuid.uuid4()), "version": 1, "answers": {"age_years": 30}},
    }
    future = make_record(
        record_id=str(uuid.uuid4()),
        record_type="visit",
        kit_id=kit.kit_id,
        created_at="2026-01-05T09:00:00Z",
        body={},
    )
    future["schema_version"] = p.CURRENT_SCHEMA_VERSION + 1
    ok, too_new = _results(ingest(any_server, kit, [v1, future]))
    assert ok.status == "accepted"
    assert too_new.status == "rejected"
    assert "schema version" in too_new.reason


def test_enrolment_token_works_once(server: LiveServer) -> None:
    token = server.store.create_enrollment("kit-a")
    key = base64.b64encode(b"k" * 32).decode()
    body = {"token": token, "kit_id": "kit-a", "slip_key": key}
    first = requests.post(server.api("/enroll"), json=body, timeout=10)
    assert first.status_code == 200
    answer = p.EnrollResponse.model_validate_json(first.content)
    assert answer.kit_id == "kit-a" and len(base64.b64decode(answer.receipt_key)) == 32
    second = requests.post(server.api("/enroll"), json=body, timeout=10)
    assert second.status_code == 403
    assert p.is_protocol_response(second.status_code, second.headers, second.content)
    wrong = requests.post(
        server.api("/enroll"),
        json={**body, "token": server.store.create_enrollment("kit-b") + "x"},
        timeout=10,
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "enrollment_refused"
    other_kit = requests.post(
        server.api("/enroll"),
        json={**body, "token": server.store.create_enrollment("kit-c"), "kit_id": "kit-d"},
        timeout=10,
    )
    assert other_kit.status_code == 403


def test_auth_required_and_own_records_only(server: LiveServer) -> None:
    kit_a, kit_b = enroll_kit(server), enroll_kit(server)
    record = visit_record(kit_a.kit_id)
    body = {"kit_id": kit_a.kit_id, "records": [envelope(record)]}
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        p.auth_header(kit_a.kit_id, "wrong-credential"),
        {"Authorization": f"Basic {kit_a.kit_id}:{kit_a.credentials.credential}"},
    ):
        response = requests.post(server.api("/ingest"), json=body, headers=headers, timeout=10)
        assert response.status_code == 401, headers
        assert p.is_protocol_response(response.status_code, response.headers, response.content)
        have = requests.post(
            server.api("/have"), json={"record_ids": []}, headers=headers, timeout=10
        )
        assert have.status_code == 401
    # Kit B's credential with kit A's batch: refused as a whole.
    response = requests.post(server.api("/ingest"), json=body, headers=kit_b.headers, timeout=10)
    assert response.status_code == 403
    assert response.json()["error"] == "wrong_kit"
    # Kit B's batch smuggling kit A's record: that record is rejected.
    (result,) = _results(ingest(server, kit_b, [record]))
    assert result.status == "rejected"
    assert kit_a.kit_id in result.reason
    assert server.store.records() == []
    # Kit B cannot learn about kit A's records either.
    (accepted,) = _results(ingest(server, kit_a, [record]))
    assert accepted.status == "accepted"
    have = requests.post(
        server.api("/have"),
        json={"record_ids": [record["record_id"]]},
        headers=kit_b.headers,
        timeout=10,
    )
    assert have.json()["have"] == []


def test_revoked_kit_refused_with_reason(server: LiveServer) -> None:
    kit = enroll_kit(server)
    assert server.store.revoke(kit.kit_id, "laptop reported stolen")
    response = ingest(server, kit, [visit_record(kit.kit_id)])
    assert response.status_code == 403
    assert p.is_protocol_response(response.status_code, response.headers, response.content)
    assert response.json()["error"] == "kit_revoked"
    assert "laptop reported stolen" in response.json()["detail"]
    assert server.store.records() == []


def test_rekey_rotates_credential_and_keeps_receipts_verifiable(server: LiveServer) -> None:
    kit = enroll_kit(server)
    record = visit_record(kit.kit_id)
    (first,) = _results(ingest(server, kit, [record]))
    again = enroll_kit(server, kit.kit_id, rekey=True)
    assert again.credentials.credential != kit.credentials.credential
    assert again.credentials.receipt_key == kit.credentials.receipt_key
    assert ingest(server, kit, [record]).status_code == 401  # the old credential is gone
    (resent,) = _results(ingest(server, again, [record]))
    assert resent.status == "already_received" and resent.receipt == first.receipt
    _verified(again, resent, record)
