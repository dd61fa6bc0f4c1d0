"""Receipts signed with the server's Ed25519 key; the server's files private."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import requests
from sqlalchemy import text

from sync import protocol as p
from tests.sync.live_server import LiveServer, enroll_kit, ingest, run_server, visit_record


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_receipts_verify_with_the_public_key_and_no_kit_secret_is_kept(
    any_server: LiveServer,
) -> None:
    kit = enroll_kit(any_server)
    assert kit.credentials.receipt_key.startswith(p.ED25519_PREFIX)
    record = visit_record(kit.kit_id)
    response = ingest(any_server, kit, [record])
    (result,) = p.IngestResponse.model_validate_json(response.content).results
    assert result.receipt is not None
    assert p.verify_receipt(result.receipt, kit.credentials.receipt_key, record_id=result.record_id)
    # Tampered receipts fail.
    later = result.receipt.model_copy(update={"received_at": "2030-01-01T00:00:00.000000Z"})
    assert not p.verify_receipt(later, kit.credentials.receipt_key)
    # The public key is no secret: an HMAC made with it is not a receipt.
    public = kit.credentials.receipt_key[len(p.ED25519_PREFIX) :]
    forged = p.sign_receipt(public, result.record_id, result.receipt.content_hash, "x")
    assert not p.verify_receipt(forged, kit.credentials.receipt_key)
    forged2 = p.sign_receipt(kit.credentials.receipt_key, result.record_id, "h", "x")
    assert not p.verify_receipt(forged2, kit.credentials.receipt_key)
    with any_server.store.engine.connect() as conn:
        secrets = conn.execute(text("SELECT receipt_key FROM kit")).scalars().all()
    assert secrets and all(value is None for value in secrets)


def test_every_kit_gets_the_same_public_key_across_restarts(sqlite_url: str) -> None:
    with run_server(sqlite_url) as server:
        first = enroll_kit(server).credentials.receipt_key
    with run_server(sqlite_url) as server:
        second = enroll_kit(server).credentials.receipt_key
        health = requests.get(server.api("/health"), timeout=10)
        assert health.status_code == 200
    assert first == second and len(first) == len(p.ED25519_PREFIX) + 32


def test_server_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    url = f"sqlite:///{folder / 'server.sqlite3'}"
    with run_server(url) as server:
        kit = enroll_kit(server)
        assert ingest(server, kit, [visit_record(kit.kit_id)]).status_code == 200
        assert _mode(folder) == 0o700
        files = sorted(folder.iterdir())
        names = {f.name for f in files}
        assert {"server.sqlite3", "server-key.pem"} <= names
        for path in files:
            assert _mode(path) == 0o600, path
        pem = (folder / "server-key.pem").read_bytes()
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert base64.b64encode(pem) not in (folder / "server.sqlite3").read_bytes()
