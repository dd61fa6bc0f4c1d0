"""The centre tells the kit: a withdrawal made on the slip's page reaches the kit's next
sync, which removes the contact from every byte of its store exactly as `popup-kit
withdraw` does, and the report says so. Another kit never hears of it."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from popup_kit.config import KitConfig, load_config
from popup_kit.domain import ON_THE_SLIP_PAGE, VisitRecord
from popup_kit.enrolment import require_credentials
from popup_kit.services import VisitService
from popup_kit.slips import kit_key, visit_url
from popup_kit.syncing import apply_centre_withdrawals, run_sync
from sync.withdrawals import fetch_withdrawals
from tests.kit.test_sync_kit import enroll, kit, main_in
from tests.kit.test_withdrawal import LEAVING, STAYING, folder_bytes, secrets, with_
from tests.printouts.conftest import pdf_text
from tests.support.fault_proxy import FaultProxy
from tests.sync.live_server import LiveServer, run_server


def withdraw_on_phone(url: str) -> str:
    """What the attendee does on the slip's page: the link, the confirmation, its POST."""
    page = requests.get(url, timeout=10)
    link = re.search(r'<a href="([^"]+/withdraw\?[^"]+)"', page.text)
    assert link is not None, page.text
    base = url.split("/r/", 1)[0]
    confirm = requests.get(f"{base}/r/{html.unescape(link.group(1))}", timeout=10)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', confirm.text))
    done = requests.post(url.split("?", 1)[0] + "/withdraw", data={**fields, "confirm": "yes"})
    assert done.status_code == 200 and "Your consent is withdrawn" in done.text
    return done.text


def booth_kit(tmp_path: Path, server_url: str) -> KitConfig:
    """A kit whose booth has its own emergency number."""
    toml = tmp_path / "kit-a.toml"
    toml.write_text(f'[server]\nbase_url = "{server_url}"\n[booth]\nemergency_number = "112"\n')
    return load_config(toml, data_dir=tmp_path / "kit-a")


def report(config: KitConfig, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    main_in(config, ["report", "--date", "all", "--json"])
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def record_two(config: KitConfig) -> tuple[VisitRecord, VisitRecord]:
    service = VisitService(config)
    try:
        return service.record_visit(with_(LEAVING)), service.record_visit(with_(STAYING))
    finally:
        service.close()


def sync_and_read(config: KitConfig) -> bytes:
    """One sync, then every byte of the kit's data folder (the store decrypted)."""
    service = VisitService(config)
    try:
        summary = run_sync(config, service.store)
        assert summary.all_confirmed, summary
        return folder_bytes(service)
    finally:
        service.close()


@pytest.mark.parametrize("synced_first", [False, True], ids=["before_sync", "after_sync"])
def test_withdrawal_on_the_slip_page_reaches_the_kit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], synced_first: bool
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        config = booth_kit(tmp_path, server.url)
        enroll(config, server, capsys)
        leaving, _staying = record_two(config)
        if synced_first:
            held = sync_and_read(config)
            assert all(s in held for s in secrets(LEAVING))  # the scan sees the contact
        withdraw_on_phone(visit_url(config, leaving.code))
        creds = require_credentials(config)
        assert fetch_withdrawals(creds).codes == [leaving.code]
        # Applied twice before the kit's withdrawal record goes: the second changes nothing.
        service = VisitService(config)
        try:
            first = apply_centre_withdrawals(config, service.store, creds)
            second = apply_centre_withdrawals(config, service.store, creds)
            with service.store.engine.connect() as conn:
                events = conn.execute(
                    text("SELECT COUNT(*) FROM consent_event WHERE kind = 'withdrawal'")
                ).scalar()
        finally:
            service.close()
        assert first.applied == [leaving.code] and second.applied == [] and not second.error
        assert events == 1

        held = sync_and_read(config)
        for secret in secrets(LEAVING):
            assert secret not in held, secret
        assert all(s in held for s in secrets(STAYING))
        after = VisitService(config)
        try:
            visit = after.get_visit(leaving.visit_id)
            assert visit is not None and visit.contact is None
            assert not any(visit.consent.values())
            with after.store.engine.connect() as conn:
                methods = conn.execute(
                    text("SELECT method FROM consent_event WHERE kind = 'withdrawal'")
                ).scalars()
                assert list(methods) == [ON_THE_SLIP_PAGE]
        finally:
            after.close()
        # The kit's own withdrawal record reached the centre: it is not told again.
        assert fetch_withdrawals(creds).codes == []
        summary = report(config, capsys)
        assert summary["withdrawn"] == {"visits": 1, "on_slip_page": [leaving.code]}
        assert summary["all_confirmed"] is True
        capsys.readouterr()
        main_in(config, ["report", "--date", "all"])
        shown = capsys.readouterr().out
        assert "withdrawn on the slip's page" in shown and leaving.code in shown
        paper = tmp_path / "report.pdf"
        main_in(config, ["report", "--date", "all", "--out", str(paper)])
        printed = " ".join(pdf_text(paper.read_bytes()).split())
        assert "Consent withdrawn: 1 visits (1 on the slip's page)" in printed
        assert leaving.code in printed
        afterwards = requests.get(visit_url(config, leaving.code), timeout=10).text
        assert "Your consent is withdrawn" in afterwards
        # The booth's own emergency number (the server's default is 999) stays with it.
        assert "Emergency number: 112" in afterwards and "999" not in afterwards


def _kit_sees(server: LiveServer, config: KitConfig) -> bytes:
    creds = require_credentials(config)
    answer = requests.get(server.api("/withdrawals"), headers=creds.headers(), timeout=10)
    assert answer.status_code == 200
    return answer.content


def test_another_kit_never_learns_of_the_withdrawal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        a = kit(tmp_path, "kit-a", server.url)
        b = kit(tmp_path, "kit-b", server.url)
        enroll(a, server, capsys)
        enroll(b, server, capsys)
        leaving_a, _ = record_two(a)
        leaving_b, _ = record_two(b)
        withdraw_on_phone(visit_url(a, leaving_a.code))
        assert leaving_a.code.encode() in _kit_sees(server, a)  # the listing works
        heard = _kit_sees(server, b)
        assert leaving_a.code.encode() not in heard
        assert json.loads(heard)["withdrawals"] == []
        # A slip of A's code signed with B's key is B's slip: B hears of it, has no such
        # visit, and changes nothing; A's visit is untouched.
        withdraw_on_phone(visit_url(a, leaving_a.code, kit_key(b)))
        assert json.loads(_kit_sees(server, b))["withdrawals"][0]["referral_code"] == (
            leaving_a.code
        )
        assert leaving_a.code.encode() in _kit_sees(server, a)
        held_b = sync_and_read(b)
        assert all(s in held_b for s in secrets(LEAVING))  # kit B's own visit keeps its contact
        # Kit A's coordinator sees the withdrawal applied by the sync.
        capsys.readouterr()
        assert main_in(a, ["sync"]) == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert f"withdrawn on the slip's page, contact removed here: {leaving_a.code}" in shown
        assert main_in(a, ["sync", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["withdrawn_on_slip_page"] == []  # applied once
        service = VisitService(b)
        try:
            visit = service.get_visit(leaving_b.visit_id)
            assert visit is not None and visit.contact == LEAVING
        finally:
            service.close()
        assert report(b, capsys)["withdrawn"] == {"visits": 0, "on_slip_page": []}


def test_an_answer_not_from_the_centre_applies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_server(f"sqlite:///{tmp_path / 'server.sqlite3'}") as server:
        config = kit(tmp_path, "kit-a", server.url)
        enroll(config, server, capsys)
        leaving, _ = record_two(config)
        withdraw_on_phone(visit_url(config, leaving.code))
        creds = require_credentials(config)
        host, port = server.url.removeprefix("http://").split(":")
        with FaultProxy(host, int(port)) as proxy:
            proxy.set_plan(["portal"])  # a Wi-Fi login page answers the first request
            portal = fetch_withdrawals(dataclasses.replace(creds, server_url=proxy.url))
        assert portal.codes == [] and "captive portal" in portal.error
        wrong = dataclasses.replace(creds, credential="not-the-credential")
        refused = fetch_withdrawals(wrong)
        assert refused.codes == [] and "credential" in refused.error
        service = VisitService(config)
        try:
            visit = service.get_visit(leaving.visit_id)
            assert visit is not None and visit.contact == LEAVING
        finally:
            service.close()
