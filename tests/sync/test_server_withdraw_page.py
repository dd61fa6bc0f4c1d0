"""Withdrawal from the slip's page, served by the real server on SQLite and PostgreSQL:
before and after the visit reached the centre, refused without the slip's own signature,
idempotent, and afterwards the page says only that consent was withdrawn."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from sync import protocol as p
from sync.server.withdraw_pages import TEXTS
from tests.sync.live_server import (
    EnrolledKit,
    LiveServer,
    ManualClock,
    PlainCodes,
    consent_record,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
    withdrawal_record,
)

CODES = PlainCodes()
CONTACT = {"name": "Zebulon Quixano", "phone": "+34 611 987 654"}
EN, ES = TEXTS["en"], TEXTS["es"]

# What each level's page tells the attendee to do, in English and Spanish (urgent first).
LEVEL_INSTRUCTIONS = (
    "A clinician needs to talk to you today or tomorrow.",
    "Go to the Emergency Department now. Show this slip.",
    "Your back pain can be looked after at home.",
    "A physiotherapist or doctor should check your back in the coming weeks.",
    "Un profesional sanitario debe hablar con usted hoy o mañana.",
    "Vaya a Urgencias ahora. Muestre esta hoja.",
    "Su dolor de espalda puede tratarse en casa.",
    "Un fisioterapeuta o un médico debería revisarle la espalda en las próximas semanas.",
)


@pytest.fixture
def centre(db_url: str) -> Iterator[LiveServer]:
    with run_server(db_url, emergency_number="112", code_rules=CODES) as live:
        yield live


def _url(server: LiveServer, code: str, tail: str = "") -> str:
    return f"{server.url}/r/{code.replace('-', '')}{tail}"


def _page(server: LiveServer, kit: EnrolledKit, code: str, **params: str) -> requests.Response:
    sig = CODES.sign(code, kit.slip_key)
    return requests.get(_url(server, code), params={"s": sig, **params}, timeout=10)


def _post(server: LiveServer, code: str, form: dict[str, str]) -> requests.Response:
    return requests.post(_url(server, code, "/withdraw"), data=form, timeout=10)


def _withdraw(
    server: LiveServer, kit: EnrolledKit, code: str, language: str = "en"
) -> requests.Response:
    """As a phone does it: the offer's link, the confirmation form, its POST."""
    page = _page(server, kit, code, lang=language)
    link = re.search(r'<a href="([^"]+/withdraw\?[^"]+)"', page.text)
    assert link is not None, page.text
    confirm = requests.get(f"{server.url}/r/{html.unescape(link.group(1))}", timeout=10)
    assert confirm.status_code == 200
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', confirm.text))
    assert re.search(r'<form method="post" action="withdraw">', confirm.text)
    return _post(server, code, {**fields, "confirm": "yes"})


def _text(response: requests.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def _rows(server: LiveServer, kit_id: str) -> str:
    """Every stored column of the kit's records, as text."""
    with server.store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM record WHERE kit_id = :k ORDER BY record_id"), {"k": kit_id}
        ).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def _listed(server: LiveServer, kit: EnrolledKit) -> list[str]:
    answer = requests.get(server.api("/withdrawals"), headers=kit.headers, timeout=10)
    assert answer.status_code == 200 and answer.headers[p.PROTOCOL_HEADER] == "1"
    body = p.WithdrawalsResponse.model_validate_json(answer.content)
    return [w.referral_code for w in body.withdrawals]


def _only_withdrawn(response: requests.Response, done: dict[str, str]) -> None:
    """The page after: the withdrawal and the safety advice, nothing of the referral."""
    assert response.status_code == 200
    shown = _text(response)
    assert done["done_title"] in shown and done["done_lead"] in shown
    assert "112" in shown  # the emergency number and the warning signs stay
    assert '<section class="warn">' in response.text
    for instruction in LEVEL_INSTRUCTIONS:
        assert instruction not in shown
    assert "upload your referral soon" not in shown
    assert done["offer"] not in shown and "<form" not in response.text
    assert not re.search(r"<script\b", response.text)


def _visit(kit: EnrolledKit, code: str, **extra: Any) -> list[dict[str, Any]]:
    visit = visit_record(kit.kit_id, code=code, triage="urgent", contact=CONTACT, **extra)
    # The consent first, as a kit may send it: it is scrubbed when its visit arrives.
    return [consent_record(kit.kit_id, visit["body"]["visit_id"]), visit]


def test_withdrawal_before_the_visit_reached_the_centre(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    offered = _page(centre, kit, code)
    assert "upload your referral soon" in offered.text and EN["offer"] in offered.text

    done = _withdraw(centre, kit, code)
    _only_withdrawn(done, EN)
    _only_withdrawn(_page(centre, kit, code), EN)
    assert _listed(centre, kit) == [code]

    records = _visit(kit, code)
    answer = ingest(centre, kit, records)
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "accepted"]
    later = consent_record(kit.kit_id, records[1]["body"]["visit_id"])
    assert ingest(centre, kit, [later]).json()["results"][0]["status"] == "accepted"
    stored = _rows(centre, kit.kit_id)
    assert stored.count("'withdrawn': True") + stored.count('"withdrawn":true') >= 6
    for private in (CONTACT["name"], CONTACT["phone"], "unilateral", "Ana", "read_aloud_tap"):
        assert private not in stored, private
    _only_withdrawn(_page(centre, kit, code), EN)

    # Listed until the kit's own withdrawal record arrives; then no more.
    assert _listed(centre, kit) == [code]
    visit_id = records[1]["body"]["visit_id"]
    ingest(centre, kit, [withdrawal_record(kit.kit_id, visit_id)])
    assert _listed(centre, kit) == []


def test_withdrawal_after_the_visit_synced(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    records = _visit(kit, code)
    ingest(centre, kit, records)
    before = _page(centre, kit, code)
    assert LEVEL_INSTRUCTIONS[0] in _text(before)
    assert EN["offer"] in before.text
    assert CONTACT["name"] in _rows(centre, kit.kit_id)  # the check sees what is held

    _only_withdrawn(_withdraw(centre, kit, code), EN)
    stored = _rows(centre, kit.kit_id)
    for private in (CONTACT["name"], CONTACT["phone"], "unilateral", "Ana"):
        assert private not in stored, private
    # A correction sent afterwards is scrubbed on arrival too.
    visit_id = records[1]["body"]["visit_id"]
    correction = visit_record(kit.kit_id, visit_id=visit_id, code=code, contact=CONTACT, version=2)
    assert ingest(centre, kit, [correction]).json()["results"][0]["status"] == "accepted"
    assert CONTACT["name"] not in _rows(centre, kit.kit_id)
    _only_withdrawn(_page(centre, kit, code), EN)
    assert _listed(centre, kit) == [code]


def test_forged_or_missing_signature_is_refused(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    ingest(centre, kit, _visit(kit, code))
    forged = CODES.sign(code, secrets.token_bytes(32))  # a key no enrolled kit holds
    good = CODES.sign(code, kit.slip_key)
    for form in (
        {"s": forged, "confirm": "yes"},
        {"s": good[::-1], "confirm": "yes"},
        {"s": "", "confirm": "yes"},
        {"confirm": "yes"},
        {"s": good},  # no confirmation step
        {"s": good, "confirm": "no"},
    ):
        refused = _post(centre, code, form)
        assert refused.status_code == 404 and "Not found" in refused.text, form
    # The signature only in the address, not in the form, does not withdraw either.
    in_query = requests.post(
        _url(centre, code, "/withdraw"), params={"s": good}, data={"confirm": "yes"}, timeout=10
    )
    assert in_query.status_code == 404
    for params in ({"s": forged}, {}):
        page = requests.get(_url(centre, code, "/withdraw"), params=params, timeout=10)
        assert page.status_code == 404 and "<form" not in page.text
    junk = requests.post(
        _url(centre, code, "/withdraw"),
        data=b"s=%ff%fe&confirm=yes&" + b"x=1&" * 20,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert junk.status_code == 404
    assert CONTACT["name"] in _rows(centre, kit.kit_id)  # nothing scrubbed
    assert LEVEL_INSTRUCTIONS[0] in _text(_page(centre, kit, code))
    assert _listed(centre, kit) == []
    with centre.store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM attendee_withdrawal")).scalar() == 0


def test_another_kits_signature_never_withdraws_this_kits_visit(centre: LiveServer) -> None:
    owner, other = enroll_kit(centre), enroll_kit(centre)
    code = CODES.new_code()
    ingest(centre, owner, _visit(owner, code))
    # The same code signed with the other kit's key: a withdrawal of the other kit's slip.
    _only_withdrawn(_withdraw(centre, other, code), EN)
    assert CONTACT["name"] in _rows(centre, owner.kit_id)
    assert LEVEL_INSTRUCTIONS[0] in _text(_page(centre, owner, code))
    assert _listed(centre, owner) == [] and _listed(centre, other) == [code]


def test_repeat_withdrawal_is_idempotent(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    first = _withdraw(centre, kit, code)
    sig = CODES.sign(code, kit.slip_key)
    again = _post(centre, code, {"s": sig, "lang": "en", "confirm": "yes"})
    assert again.status_code == 200 and again.text == first.text
    # The confirmation step, opened again, shows the withdrawal instead of a new form.
    _only_withdrawn(
        requests.get(_url(centre, code, "/withdraw"), params={"s": sig}, timeout=10), EN
    )
    with centre.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT kit_id, withdrawn_at FROM attendee_withdrawal")).all()
    assert len(rows) == 1 and rows[0][0] == kit.kit_id
    assert _listed(centre, kit) == [code]


def test_spanish_slip_withdraws_in_spanish(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    page = _page(centre, kit, code, lang="es")
    assert ES["offer"] in page.text
    confirm = requests.get(
        _url(centre, code, "/withdraw"),
        params={"s": CODES.sign(code, kit.slip_key), "lang": "es"},
        timeout=10,
    )
    shown = _text(confirm)
    assert '<html lang="es">' in confirm.text
    for key in ("confirm_title", "keeps_fact", "reminders", "advice", "safety", "confirm"):
        assert ES[key] in shown, key
        assert EN[key] not in shown, key
    done = _withdraw(centre, kit, code, "es")
    _only_withdrawn(done, ES)
    assert '<html lang="es">' in done.text and EN["done_title"] not in _text(done)
    # Opened later without the language: still the slip's language, as withdrawn.
    _only_withdrawn(_page(centre, kit, code), ES)


def test_pages_carry_no_script_and_post_only_to_the_server(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    sig = CODES.sign(code, kit.slip_key)
    confirm = requests.get(_url(centre, code, "/withdraw"), params={"s": sig}, timeout=10)
    assert "form-action 'self'" in confirm.headers["Content-Security-Policy"]
    assert "script-src" not in confirm.headers["Content-Security-Policy"]
    assert confirm.headers["Cache-Control"] == "no-store"
    assert not re.search(r"<(script|iframe|img|link)\b|\son\w+=", confirm.text)
    assert "Set-Cookie" not in confirm.headers
    # Every style block of the page and of the offer is allowed by its hash, none other.
    offered = _page(centre, kit, code)
    for page in (confirm, offered):
        blocks = re.findall(r"<style>(.*?)</style>", page.text, flags=re.S)
        assert len(blocks) == 2
        for block in blocks:
            digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in page.headers["Content-Security-Policy"]


def test_a_withdrawal_landing_while_its_visit_is_ingested_still_scrubs_it(
    centre: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's withdrawal commits after the batch was checked for withdrawn codes and
    before the visit is inserted: the insert itself still sees it."""
    kit = enroll_kit(centre)
    code = CODES.new_code()
    store = centre.store
    checked = store._withdrawn_codes

    def then_withdrawn(*args: Any) -> set[str]:
        found = checked(*args)
        store.withdraw_by_attendee(kit.kit_id, code, "en")
        return found

    monkeypatch.setattr(store, "_withdrawn_codes", then_withdrawn)
    visit = visit_record(kit.kit_id, code=code, triage="urgent", contact=CONTACT)
    assert ingest(centre, kit, [visit]).json()["results"][0]["status"] == "accepted"
    monkeypatch.undo()
    # A record of the visit arriving afterwards is scrubbed on arrival too.
    ingest(centre, kit, [consent_record(kit.kit_id, visit["body"]["visit_id"])])
    stored = _rows(centre, kit.kit_id)
    for private in (CONTACT["name"], "unilateral", "read_aloud_tap"):
        assert private not in stored, private
    _only_withdrawn(_page(centre, kit, code), EN)


def test_withdrawal_pages_share_the_landing_rate_limit(sqlite_url: str) -> None:
    clock = ManualClock()
    with run_server(
        sqlite_url, code_rules=CODES, rate_clock=clock, landing_rate=(2, 60.0)
    ) as server:
        kit = enroll_kit(server)
        code = CODES.new_code()
        sig = CODES.sign(code, kit.slip_key)
        confirm = requests.get(_url(server, code, "/withdraw"), params={"s": sig}, timeout=10)
        assert confirm.status_code == 200
        assert _page(server, kit, code).status_code == 200
        limited = _post(server, code, {"s": sig, "confirm": "yes"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        again = requests.get(_url(server, code, "/withdraw"), params={"s": sig}, timeout=10)
        assert again.status_code == 429
        assert server.store.attendee_withdrawal(kit.kit_id, code) is None
        clock.now += 60
        assert _post(server, code, {"s": sig, "confirm": "yes"}).status_code == 200
        assert server.store.attendee_withdrawal(kit.kit_id, code) is not None


def test_wrong_signatures_posted_spend_the_codes_allowance(sqlite_url: str) -> None:
    with run_server(
        sqlite_url, code_rules=CODES, rate_clock=ManualClock(), code_attempts=(3, 3600.0)
    ) as server:
        kit = enroll_kit(server)
        code = CODES.new_code()
        guesses = [
            _post(server, code, {"s": CODES.sign(code, secrets.token_bytes(32)), "confirm": "yes"})
            for _ in range(4)
        ]
        assert [g.status_code for g in guesses] == [404, 404, 404, 429]
        assert server.store.attendee_withdrawal(kit.kit_id, code) is None
        # The slip's own signature is never locked out by someone guessing.
        right = _post(server, code, {"s": CODES.sign(code, kit.slip_key), "confirm": "yes"})
        assert right.status_code == 200
        assert server.store.attendee_withdrawal(kit.kit_id, code) is not None


def test_withdrawal_after_sync_leaves_no_contact_in_the_servers_files(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    with run_server(sqlite_url, code_rules=CODES) as server:
        kit = enroll_kit(server)
        code, other = CODES.new_code(), CODES.new_code()
        ingest(server, kit, _visit(kit, code))
        kept = {"name": "Marisol Ybarra", "phone": "+34 622 456 789"}
        ingest(server, kit, [visit_record(kit.kit_id, code=other, contact=kept)])

        def on_disk() -> bytes:
            files = [path, path.with_name(path.name + "-wal")]
            return b"".join(f.read_bytes() for f in files if f.exists())

        assert CONTACT["name"].encode() in on_disk()  # the scan sees what is there
        _withdraw(server, kit, code)
        held = on_disk()
        assert CONTACT["name"].encode() not in held and CONTACT["phone"].encode() not in held
        assert kept["name"].encode() in held


def test_a_visit_withdrawn_on_its_page_leaves_the_export(centre: LiveServer) -> None:
    from sync.server.export import shared_referrals

    kit = enroll_kit(centre)
    code, other = CODES.new_code(), CODES.new_code()
    ingest(centre, kit, _visit(kit, code) + _visit(kit, other))

    def exported() -> set[str]:
        return {r.code for r in shared_referrals(centre.store.engine)}

    assert exported() == {code, other}  # both shared (C2) before
    _withdraw(centre, kit, code)
    assert exported() == {other}
