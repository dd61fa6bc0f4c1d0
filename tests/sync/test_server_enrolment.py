"""Enrolment as an attacker would try it: replayed and expired tokens, taking over a live
kit, bad kit ids. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

import pytest
import requests

from sync import protocol as p
from sync.server import ServerStore
from sync.server.store import AuthError
from tests.sync.live_server import T0, LiveServer, enroll_kit


class StepClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


def _key() -> bytes:
    return secrets.token_bytes(32)


def _post(server: LiveServer, token: str, kit_id: str, key: bytes) -> requests.Response:
    body = {"token": token, "kit_id": kit_id, "slip_key": base64.b64encode(key).decode()}
    return requests.post(server.api("/enroll"), json=body, timeout=10)


def test_token_expires(db_url: str) -> None:
    clock = StepClock()
    store = ServerStore(db_url, clock=clock, token_hours=2)
    try:
        token = store.create_enrollment("kit-late")
        clock.now += timedelta(hours=2, seconds=1)
        with pytest.raises(AuthError) as refused:
            store.enroll(token, "kit-late", _key())
        assert refused.value.status == 403 and "expired" in refused.value.detail
        fresh = store.create_enrollment("kit-late")
        clock.now += timedelta(hours=1, minutes=59)
        credential, _ = store.enroll(fresh, "kit-late", _key())
        assert store.authenticate(f"Bearer kit-late:{credential}").kit_id == "kit-late"
    finally:
        store.close()


def test_token_replay_refused_and_only_its_hash_stored(any_server: LiveServer) -> None:
    token = any_server.store.create_enrollment("kit-once")
    assert _post(any_server, token, "kit-once", _key()).status_code == 200
    replay = _post(any_server, token, "kit-once", _key())
    assert replay.status_code == 403
    assert p.is_protocol_response(replay.status_code, replay.headers, replay.content)
    with any_server.store.engine.connect() as conn:
        from sqlalchemy import text

        stored = [row[0] for row in conn.execute(text("SELECT token_hash FROM enrollment_token"))]
        creds = [row[0] for row in conn.execute(text("SELECT credential_hash FROM kit"))]
    assert token not in stored and len(stored) == 1
    assert all(c is None or len(c) == 64 for c in creds)


def test_live_kit_cannot_be_taken_over(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server, "kit-live")
    # A second token (for example a leaked one) does not replace the live kit's keys.
    token = any_server.store.create_enrollment("kit-live")
    takeover = _post(any_server, token, "kit-live", _key())
    assert takeover.status_code == 409
    assert takeover.json()["error"] == "kit_enrolled"
    assert "revoke" in takeover.json()["detail"]
    # The real kit still works, with its own key.
    have = requests.post(
        any_server.api("/have"), json={"record_ids": []}, headers=kit.headers, timeout=10
    )
    assert have.status_code == 200
    held = {k.kit_id: k.slip_key for k in any_server.store.kits()}
    assert held["kit-live"] == kit.slip_key


def test_deliberate_rekey_replaces_the_keys(any_server: LiveServer) -> None:
    kit = enroll_kit(any_server, "kit-rekey")
    new_key = _key()
    token = any_server.store.create_enrollment("kit-rekey", rekey=True)
    assert _post(any_server, token, "kit-rekey", new_key).status_code == 200
    old = requests.post(
        any_server.api("/have"), json={"record_ids": []}, headers=kit.headers, timeout=10
    )
    assert old.status_code == 401
    assert {k.kit_id: k.slip_key for k in any_server.store.kits()}["kit-rekey"] == new_key


def test_revoked_kit_enrols_again_with_a_new_token_only(any_server: LiveServer) -> None:
    enroll_kit(any_server, "kit-rev")
    early = any_server.store.create_enrollment("kit-rev")
    assert any_server.store.revoke("kit-rev", "laptop lost")
    # A token made before the revocation died with it.
    assert _post(any_server, early, "kit-rev", _key()).status_code == 403
    token = any_server.store.create_enrollment("kit-rev")
    again = _post(any_server, token, "kit-rev", _key())
    assert again.status_code == 200
    answer = p.EnrollResponse.model_validate_json(again.content)
    assert any_server.store.authenticate(f"Bearer kit-rev:{answer.credential}").kit_id == "kit-rev"


@pytest.mark.parametrize("bad", ["<script>", "kit[/]x", "", "-kit", "a" * 81, "kit x"])
def test_bad_kit_ids_refused(sqlite_url: str, bad: str) -> None:
    store = ServerStore(sqlite_url)
    try:
        with pytest.raises(ValueError, match="not a valid kit id"):
            store.create_enrollment(bad)
        assert store.kits() == []
    finally:
        store.close()


def test_bad_kit_id_refused_at_enrol_endpoint(server: LiveServer) -> None:
    response = _post(server, "0" * 40, "<script>", _key())
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.headers["content-type"].startswith("application/json")
