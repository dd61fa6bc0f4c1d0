"""A withdrawal removes the contact from everything the kit holds, in one transaction, and
the contact is never sent afterwards: checked on the bytes of every file and on the wire."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from popup_kit.config import KitConfig
from popup_kit.domain import Contact
from popup_kit.enrolment import require_credentials
from popup_kit.services import VisitService
from popup_kit.syncing import run_sync
from popup_kit.vault import save_credentials
from tests.kit.conftest import CONSENT_ALL, visit_input
from tests.kit.test_sync_kit import enroll, kit
from tests.support.fault_proxy import FaultProxy
from tests.support.sqlcipher_pages import decrypted_store
from tests.sync.live_server import run_server

LEAVING = Contact("Zebulon Quixano", "+34 611 987 654")
STAYING = Contact("Marisol Ybarra", "+34 622 456 789")


def secrets(contact: Contact) -> list[bytes]:
    return [contact.name.encode(), contact.phone.encode(), contact.phone[-7:].encode()]


def folder_bytes(service: VisitService) -> bytes:
    """Every file of the data folder as it lies on disk, plus the store and its WAL
    decrypted page by page (free pages included)."""
    folder = service.config.data_dir
    raw = b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
    return raw + decrypted_store(service.config.db_path, service.store.key)


def with_(contact: Contact) -> Any:
    return visit_input(consent=dict(CONSENT_ALL), contact=contact)


def test_withdrawn_contact_is_in_no_byte_of_the_data_folder(service: VisitService) -> None:
    leaving = service.record_visit(with_(LEAVING))
    service.record_visit(with_(STAYING))
    before = folder_bytes(service)
    assert all(s in before for s in secrets(LEAVING))  # the scan sees through the cipher

    service.withdraw_consent(leaving.visit_id, "CD")
    after = folder_bytes(service)  # store still open, WAL included
    for secret in secrets(LEAVING):
        assert secret not in after, secret
    # the scan does find what is still held: the other attendee's contact
    assert all(s in after for s in secrets(STAYING))
    key = service.store.key
    service.close()
    folder = service.config.data_dir
    closed = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    closed += decrypted_store(service.config.db_path, key)
    assert not any(s in closed for s in secrets(LEAVING))


def test_queued_visit_record_is_rebuilt_without_the_contact(service: VisitService) -> None:
    leaving = service.record_visit(with_(LEAVING))
    with service.store.engine.connect() as conn:
        (old_hash,) = conn.execute(
            text("SELECT content_hash FROM outbox WHERE record_type = 'visit'")
        ).one()
    service.withdraw_consent(leaving.visit_id, "CD")
    with service.store.engine.connect() as conn:
        payload, new_hash = conn.execute(
            text("SELECT payload, content_hash FROM outbox WHERE record_type = 'visit'")
        ).one()
    from sync.records import content_hash

    envelope = json.loads(payload)
    assert "contact" not in envelope["body"]
    assert envelope["body"]["answers"]  # the rest of the record stays
    assert new_hash != old_hash and new_hash == content_hash(envelope)


def test_a_failed_withdrawal_changes_nothing(
    service: VisitService, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaving = service.record_visit(with_(LEAVING))

    def broken(*_args: object, **_kwargs: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr("popup_kit.store.enqueue", broken)
    with pytest.raises(OSError, match="disk full"):
        service.withdraw_consent(leaving.visit_id, "CD")
    kept = service.get_visit(leaving.visit_id)
    assert kept is not None and kept.contact == LEAVING and kept.consent["c3"]
    with service.store.engine.connect() as conn:
        payload = conn.execute(
            text("SELECT payload FROM outbox WHERE record_type = 'visit'")
        ).scalar_one()
        kinds = conn.execute(text("SELECT kind FROM consent_event")).scalars().all()
    assert LEAVING.name in payload and kinds == ["initial"]


def test_withdrawal_before_sync_never_puts_the_contact_on_the_wire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        config: KitConfig = kit(tmp_path, "kit-a", server.url)
        enroll(config, server, capsys)
        host, port = server.url.removeprefix("http://").split(":")
        with FaultProxy(host, int(port)) as proxy:
            creds = require_credentials(config)
            save_credentials(config, dataclasses.replace(creds, server_url=proxy.url))
            service = VisitService(config)
            try:
                leaving = service.record_visit(with_(LEAVING))
                staying = service.record_visit(with_(STAYING))
                service.withdraw_consent(leaving.visit_id, "CD")
                summary = run_sync(config, service.store)
            finally:
                service.close()
            wire = b"".join(proxy.decoded_bodies())
    assert summary.confirmed == 5, summary  # two visits, two consents, one withdrawal
    assert leaving.visit_id.encode() in wire and staying.visit_id.encode() in wire
    for secret in secrets(LEAVING):
        assert secret not in wire, secret
    assert STAYING.name.encode() in wire  # the wire is readable: the other contact went


def test_withdrawal_after_sync_clears_the_confirmed_payloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        config: KitConfig = kit(tmp_path, "kit-a", server.url)
        enroll(config, server, capsys)
        service = VisitService(config)
        try:
            leaving = service.record_visit(with_(LEAVING))
            service.record_visit(with_(STAYING))
            assert run_sync(config, service.store).all_confirmed
            assert all(s in folder_bytes(service) for s in secrets(LEAVING))
            service.withdraw_consent(leaving.visit_id, "CD")
            after = folder_bytes(service)
            with service.store.engine.connect() as conn:
                kept = conn.execute(
                    text(
                        "SELECT state, content_hash, receipt FROM outbox "
                        "WHERE visit_id = :v AND record_type = 'visit'"
                    ),
                    {"v": leaving.visit_id},
                ).one()
        finally:
            service.close()
    for secret in secrets(LEAVING):
        assert secret not in after, secret
    assert all(s in after for s in secrets(STAYING))
    assert kept[0] == "confirmed" and kept[1] and kept[2]  # hash and receipt stay
