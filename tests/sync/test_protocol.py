"""The wire protocol's pure parts: marker recognition, receipts, schema upgrades, credentials."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sync import protocol as p
from sync.records import content_hash, make_record

HEADERS = {p.PROTOCOL_HEADER: "1", "Content-Type": "application/json"}


def _record() -> dict[str, Any]:
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="visit",
        kit_id="kit-1",
        created_at="2026-11-22T10:00:00Z",
        body={"visit_id": "v1", "answers": {"pain_nrs": 3}},
    )


def test_protocol_response_needs_header_and_marker() -> None:
    good = p.HealthResponse(schema_versions=[1]).model_dump_json()
    assert p.is_protocol_response(200, HEADERS, good)
    assert p.is_protocol_response(403, {"x-popup-kit-protocol": "1"}, good.encode())
    assert p.is_protocol_response(200, HEADERS, json.loads(good))
    portal = b"<html><body><h1>Accept the terms to continue</h1></body></html>"
    assert not p.is_protocol_response(200, HEADERS, portal)
    assert not p.is_protocol_response(200, {"Content-Type": "application/json"}, good)
    assert not p.is_protocol_response(200, {p.PROTOCOL_HEADER: "2"}, good)
    other = json.dumps({"protocol": "something-else", "protocol_version": 1})
    assert not p.is_protocol_response(200, HEADERS, other)
    assert not p.is_protocol_response(200, HEADERS, b"\xff\xfe")
    assert not p.is_protocol_response(200, HEADERS, "[1, 2]")


def test_receipt_verifies_only_unaltered_with_its_key() -> None:
    key = b"r" * 32
    receipt = p.sign_receipt(key, "rec-1", "ab" * 32, "2026-11-22T10:00:00.000000Z")
    assert p.verify_receipt(receipt, key, record_id="rec-1", content_hash="ab" * 32)
    assert not p.verify_receipt(receipt, b"x" * 32)
    assert not p.verify_receipt(receipt, key, record_id="rec-2")
    assert not p.verify_receipt(receipt, key, content_hash="cd" * 32)
    for field in ("record_id", "content_hash", "received_at"):
        forged = receipt.model_copy(update={field: getattr(receipt, field) + "0"})
        assert not p.verify_receipt(forged, key)


def test_envelope_hash_matches_records_module() -> None:
    record = _record()
    env = p.Envelope.from_record(record)
    assert env.content_hash == content_hash(record)
    assert env.record() == record
    assert env.computed_hash() == env.content_hash
    # Round trip through JSON keeps the hash.
    again = p.Envelope.model_validate_json(env.model_dump_json())
    assert again.computed_hash() == env.content_hash


@pytest.mark.parametrize(
    "change",
    [
        {"record_type": "photo"},
        {"schema_version": 0},
        {"created_at": "yesterday"},
        {"record_id": "a b"},
        {"content_hash": "XYZ"},
        {"extra": 1},
    ],
)
def test_envelope_rejects_malformed(change: dict[str, Any]) -> None:
    data = p.Envelope.from_record(_record()).model_dump() | change
    with pytest.raises(ValidationError):
        p.Envelope.model_validate(data)


def test_batch_is_bounded() -> None:
    env = p.Envelope.from_record(_record())
    p.IngestRequest(kit_id="kit-1", records=[env] * p.MAX_BATCH)
    with pytest.raises(ValidationError):
        p.IngestRequest(kit_id="kit-1", records=[env] * (p.MAX_BATCH + 1))


def test_upgrade_runs_every_step_from_an_old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"visit_id": "v1", "pain": 4}
    # Version 1 visits were always sent whole: upgraded as referrals, marked as old.
    assert p.upgrade_body("visit", 1, body) == {**body, "sharing": "referral", "legacy": True}
    assert p.upgrade_body("consent", 1, body) == body
    assert p.upgrade_body("visit", 2, body) == body
    with pytest.raises(p.SchemaVersionError, match="not supported"):
        p.upgrade_body("visit", p.CURRENT_SCHEMA_VERSION + 1, body)
    with pytest.raises(p.SchemaVersionError):
        p.upgrade_body("visit", 0, body)

    # Pretend the current schema is 3: a version-1 body passes through both steps in order.
    def one_to_two(_kind: str, b: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in b.items() if k != "pain"}, "pain_nrs": b["pain"]}

    def two_to_three(_kind: str, b: dict[str, Any]) -> dict[str, Any]:
        return {**b, "steps": [*b.get("steps", []), 3]}

    monkeypatch.setattr(p, "CURRENT_SCHEMA_VERSION", 3)
    monkeypatch.setattr(p, "UPGRADES", {1: one_to_two, 2: two_to_three})
    assert p.upgrade_body("visit", 1, body) == {"visit_id": "v1", "pain_nrs": 4, "steps": [3]}
    assert p.upgrade_body("visit", 3, {"x": 1}) == {"x": 1}
    monkeypatch.setattr(p, "UPGRADES", {1: one_to_two})
    with pytest.raises(p.SchemaVersionError, match="no upgrade from schema version 2"):
        p.upgrade_body("visit", 1, body)


def test_credentials_saved_private_and_reloaded(tmp_path: Path) -> None:
    creds = p.KitCredentials("http://127.0.0.1:8470", "kit-1", "secret-cred", b"\x01" * 32)
    path = creds.save(tmp_path / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert p.KitCredentials.load(tmp_path / "data") == creds
    assert p.KitCredentials.load(tmp_path / "elsewhere") is None
    path.write_text("{not json", "utf-8")
    with pytest.raises(ValueError, match="enrol this kit again"):
        p.KitCredentials.load(tmp_path / "data")
